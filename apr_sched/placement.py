"""Where a job can run: does a request fit a host, and which fitting host is least loaded.

Pure and synchronous (no I/O, no asyncio), so the scheduler's dispatch loop, the tests and
the benchmarks all drive it the same way.

Load measure
    ``load = max(used_slots / total_slots, used_cpu / total_cpu,
    used_memory_gb / total_memory_gb)``; a dimension whose total is 0 is left out (a host
    registered with 0 GB has no memory to share, so it only takes jobs asking for 0 GB).
    The busiest dimension decides, because that is the one that runs out first. Equal loads
    are broken by ``host_id`` so a choice is the same on every run.

Why decisions stay cheap
    * ``HostPool`` keeps its hosts in a list sorted by ``(load, host_id)``, so "least loaded
      host that fits" is the first fitting host of a walk, not a sort per decision.
    * Per ``ResourceRequest.cluster_key()`` it caches the hosts whose labels and totals could
      ever fit ("eligible"), updated in place when a host is added, changed or removed, so a
      decision never re-checks labels.
    * When no eligible host had room at some moment, the cache entry remembers that moment.
      Hosts only gain room through ``release``, ``set_accepting(..., True)`` or ``upsert``,
      which stamp the host with an increasing "freed" epoch; the next decision for that
      request looks only at hosts freed since, instead of at every eligible host. In a
      dispatch pass every blocked cluster asks about the same freed hosts, so that set is
      built once, drops hosts as they fill, and carries the most room any of them had:
      a request above that fails without looking at a host.

Refusing what could never run
    ``check_runnable`` is what submit asks before it queues anything: a job that no
    registered host (in any state) could run is refused, naming the field and the reason,
    unless its spec says ``allow_pending``.

Change hosts through the pool (``allocate``, ``release``, ``set_accepting``, ``upsert``).
A ``HostCapacity`` edited in place must be upserted again right after, before any other
pool call: until then the load order and the caches describe it as it was.
"""

from __future__ import annotations

import bisect
from collections.abc import Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from apr_sched.errors import InvalidInput, NotFound
from apr_sched.models import HostSpec, JobSpec, ResourceRequest

_EPS = 1e-9
"""Tolerance for memory sums: GB are floats, and 0.1 + 0.2 must still fit in 0.3."""

_MAX_CACHED_REQUESTS = 10_000
"""Above this many distinct cached requests, the caches start over (bounded memory)."""


_Labels = tuple[tuple[str, str], ...]
_Spec = tuple[int, int, float, _Labels]
"""total_slots, total_cpu, total_memory_gb, sorted labels."""


@dataclass(slots=True)
class HostCapacity:
    """A host as placement sees it: its totals, labels, what its jobs use now, and
    whether it takes new jobs (``accepting`` is False when OFFLINE, DRAINING or CLOSED)."""

    host_id: str
    total_slots: int
    total_cpu: int
    total_memory_gb: float
    labels: dict[str, str]
    used_slots: int = 0
    used_cpu: int = 0
    used_memory_gb: float = 0.0
    accepting: bool = True

    @classmethod
    def from_spec(cls, spec: HostSpec, *, accepting: bool = True) -> HostCapacity:
        """An idle host with the totals and labels of ``spec``."""
        return cls(
            host_id=spec.host_id,
            total_slots=spec.total_slots,
            total_cpu=spec.total_cpu,
            total_memory_gb=spec.total_memory_gb,
            labels=dict(spec.labels),
            accepting=accepting,
        )

    def load(self) -> float:
        """The fullest dimension's used fraction (see the module docstring)."""
        load = 0.0
        if self.total_slots > 0:
            load = self.used_slots / self.total_slots
        if self.total_cpu > 0:
            load = max(load, self.used_cpu / self.total_cpu)
        if self.total_memory_gb > 0:
            load = max(load, self.used_memory_gb / self.total_memory_gb)
        return load

    def has_labels(self, req: ResourceRequest) -> bool:
        labels = self.labels
        return all(labels.get(key) == value for key, value in req.host_labels.items())

    def has_room(self, req: ResourceRequest) -> bool:
        """Free slots, cpu and memory suffice now, and the host takes new jobs (labels aside)."""
        return (
            self.accepting
            and self.used_slots + req.slots <= self.total_slots
            and self.used_cpu + req.cpu <= self.total_cpu
            and self.used_memory_gb + req.memory_gb <= self.total_memory_gb + _EPS
        )

    def fits_now(self, req: ResourceRequest) -> bool:
        return self.has_room(req) and self.has_labels(req)

    def could_ever_fit(self, req: ResourceRequest) -> bool:
        """Labels match and the totals suffice: the job could run here once the host is idle."""
        return (
            req.slots <= self.total_slots
            and req.cpu <= self.total_cpu
            and req.memory_gb <= self.total_memory_gb + _EPS
            and self.has_labels(req)
        )

    def _spec_key(self) -> _Spec:
        return (
            self.total_slots,
            self.total_cpu,
            self.total_memory_gb,
            tuple(sorted(self.labels.items())),
        )


@dataclass(slots=True)
class _Eligible:
    """What the pool remembers about one autocluster's request."""

    request: ResourceRequest
    hosts: set[str]
    no_room_since: int | None = None
    """Freed-epoch at which no eligible host had room; None when not known."""
    text_version: int = -1
    unplaceable_text: str | None = None
    capacity_text: str | None = None


@dataclass(slots=True)
class _Freed:
    """Hosts that gained room since some epoch, with the most any of them had free then.

    Allocations only shrink free room, so the maxima stay upper bounds until the next free:
    a request above them fails without looking at a single host.
    """

    host_ids: set[str]
    open_ids: set[str]
    """Those still with a slot, a cpu and some memory free: dropped as they fill up, so
    blocked requests that need all three look at fewer hosts as a pass goes on."""
    max_free_slots: int = 0
    max_free_cpu: int = 0
    max_free_memory_gb: float = 0.0


def _is_open(host: HostCapacity) -> bool:
    return (
        host.accepting
        and host.used_slots < host.total_slots
        and host.used_cpu < host.total_cpu
        and host.used_memory_gb < host.total_memory_gb - _EPS
    )


class HostPool:
    """The hosts placement chooses among, kept ordered by load so least-loaded lookup is cheap."""

    def __init__(self) -> None:
        self._hosts: dict[str, HostCapacity] = {}
        self._order: list[tuple[float, str]] = []
        self._order_key: dict[str, tuple[float, str]] = {}
        self._eligible: dict[Hashable, _Eligible] = {}
        self._by_request: dict[int, tuple[ResourceRequest, _Eligible]] = {}
        """id(request) -> (request, entry): skips cluster_key() for a request seen before;
        holding the request keeps its id from being reused."""
        self._label_hosts: dict[tuple[str, str], set[str]] = {}
        """(label, value) -> ids of hosts carrying it, to build eligible sets fast."""
        self._specs: dict[str, _Spec] = {}
        self._accepting: dict[str, bool] = {}
        """Totals, labels and accepting as last upserted: what changed is known even when
        the caller edited the ``HostCapacity`` in place before upserting it again."""
        self._freed_at: dict[str, int] = {}
        """host_id -> epoch it last gained room; insertion order is epoch order."""
        self._epoch = 0
        self._freed_cache: dict[int, _Freed] = {}
        self._freed_cache_epoch = 0
        self._version = 0
        """Bumped when hosts, specs or accepting change: cached reason texts go stale."""

    # -- the host set -------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._hosts)

    def __iter__(self) -> Iterator[HostCapacity]:
        """Hosts from least to most loaded."""
        hosts = self._hosts
        return iter([hosts[host_id] for _, host_id in self._order])

    def __contains__(self, host_id: object) -> bool:
        return host_id in self._hosts

    def get(self, host_id: str) -> HostCapacity | None:
        return self._hosts.get(host_id)

    def upsert(self, host: HostCapacity) -> None:
        """Add ``host`` or replace the one with its id, keeping the ``used_*`` it carries."""
        host_id = host.host_id
        old_spec = self._specs.get(host_id)
        if old_spec is not None:
            self._unorder(host_id)
            self._index_labels(host_id, old_spec[3], add=False)
        spec = host._spec_key()
        self._hosts[host_id] = host
        self._specs[host_id] = spec
        self._index_labels(host_id, spec[3], add=True)
        self._reorder(host_id)
        spec_changed = spec != old_spec
        if spec_changed or self._accepting.get(host_id) != host.accepting:
            self._version += 1
        self._accepting[host_id] = host.accepting
        if spec_changed:
            for entry in self._eligible.values():
                if host.could_ever_fit(entry.request):
                    entry.hosts.add(host_id)
                else:
                    entry.hosts.discard(host_id)
        self._mark_freed(host_id)

    def remove(self, host_id: str) -> None:
        """Forget a host; unknown ids are ignored so removal is idempotent."""
        if self._hosts.pop(host_id, None) is None:
            return
        self._index_labels(host_id, self._specs.pop(host_id)[3], add=False)
        del self._accepting[host_id]
        self._unorder(host_id)
        self._freed_at.pop(host_id, None)
        self._freed_cache.clear()
        self._version += 1
        for entry in self._eligible.values():
            entry.hosts.discard(host_id)

    def set_accepting(self, host_id: str, accepting: bool) -> None:
        host = self._require(host_id)
        if host.accepting == accepting:
            return
        host.accepting = accepting
        self._accepting[host_id] = accepting
        self._version += 1
        self._freed_cache.clear()
        if accepting:
            self._mark_freed(host_id)

    # -- usage --------------------------------------------------------------------------

    def allocate(self, host_id: str, req: ResourceRequest) -> None:
        """Count ``req`` as running on the host (no fit check: recovery may overcommit)."""
        host = self._require(host_id)
        host.used_slots += req.slots
        host.used_cpu += req.cpu
        host.used_memory_gb += req.memory_gb
        self._unorder(host_id)
        self._reorder(host_id)
        if not _is_open(host):
            for freed in self._freed_cache.values():
                freed.open_ids.discard(host_id)

    def release(self, host_id: str, req: ResourceRequest) -> None:
        """Give back what ``req`` used, never below 0; a host already removed is ignored."""
        host = self._hosts.get(host_id)
        if host is None:
            return
        host.used_slots = max(0, host.used_slots - req.slots)
        host.used_cpu = max(0, host.used_cpu - req.cpu)
        memory = host.used_memory_gb - req.memory_gb
        host.used_memory_gb = memory if memory > _EPS else 0.0
        self._unorder(host_id)
        self._reorder(host_id)
        self._mark_freed(host_id)

    # -- decisions ----------------------------------------------------------------------

    def least_loaded_fit(self, req: ResourceRequest) -> HostCapacity | None:
        """The least loaded host that fits ``req`` now (ties by host_id), or None."""
        entry = self._entry(req)
        eligible = entry.hosts
        if not eligible:
            return None
        if entry.no_room_since is not None:
            # Only hosts freed since the last "no room" can have room now.
            freed = self._freed_since(entry.no_room_since)
            if (
                req.slots > freed.max_free_slots
                or req.cpu > freed.max_free_cpu
                or req.memory_gb - _EPS > freed.max_free_memory_gb
            ):
                best = None
            else:
                ids = freed.open_ids if req.cpu and req.memory_gb > _EPS else freed.host_ids
                best = self._least_loaded_with_room(ids & eligible, req)
        elif len(eligible) * 4 <= len(self._order):
            best = self._least_loaded_with_room(eligible, req)
        else:
            best = self._first_with_room_in_load_order(eligible, req)
        if best is None:
            entry.no_room_since = self._epoch
        return best

    def could_run_somewhere(self, req: ResourceRequest) -> bool:
        """Some registered host (in any state) has the labels and totals ``req`` needs."""
        return bool(self._entry(req).hosts)

    def unplaceable_reason(self, req: ResourceRequest) -> str | None:
        """None when some registered host could ever run ``req``; else why none can."""
        entry = self._entry(req)
        if entry.hosts:
            return None
        if entry.text_version == self._version and entry.unplaceable_text is not None:
            return entry.unplaceable_text
        text = self._explain_unplaceable(req)
        self._cache_text(entry)
        entry.unplaceable_text = text
        return text

    def capacity_reason(self, req: ResourceRequest) -> str:
        """Why ``req``, which could run somewhere, is still waiting (room, hosts not accepting)."""
        entry = self._entry(req)
        if (
            entry.no_room_since == self._epoch
            and entry.text_version == self._version
            and entry.capacity_text is not None
        ):
            return entry.capacity_text
        hosts = [self._hosts[host_id] for host_id in entry.hosts]
        room = sum(1 for host in hosts if host.has_room(req))
        closed = sum(1 for host in hosts if not host.accepting)
        eligible = len(hosts)
        noun = "host has" if eligible == 1 else "hosts have"
        text = (
            f"waiting for capacity: needs {req.describe()}; "
            f"{room} of {eligible} eligible {noun} room"
        )
        if closed:
            text += f"; {closed} eligible host{'s' if closed != 1 else ''} offline/draining"
        if room == 0:
            entry.no_room_since = self._epoch
            self._cache_text(entry)
            entry.capacity_text = text
        return text

    # -- internals ----------------------------------------------------------------------

    def _require(self, host_id: str) -> HostCapacity:
        host = self._hosts.get(host_id)
        if host is None:
            raise NotFound(f"unknown host {host_id!r}", {"host_id": host_id})
        return host

    def _unorder(self, host_id: str) -> None:
        key = self._order_key.pop(host_id)
        index = bisect.bisect_left(self._order, key)
        del self._order[index]

    def _reorder(self, host_id: str) -> None:
        key = (self._hosts[host_id].load(), host_id)
        self._order_key[host_id] = key
        bisect.insort(self._order, key)

    def _mark_freed(self, host_id: str) -> None:
        self._epoch += 1
        self._freed_at.pop(host_id, None)
        self._freed_at[host_id] = self._epoch

    def _entry(self, req: ResourceRequest) -> _Eligible:
        seen = self._by_request.get(id(req))
        if seen is not None and seen[0] is req:
            return seen[1]
        key = req.cluster_key()
        entry = self._eligible.get(key)
        if entry is None:
            if len(self._eligible) >= _MAX_CACHED_REQUESTS:
                self._eligible.clear()
                self._by_request.clear()
            entry = _Eligible(request=req, hosts=self._could_ever_fit(req))
            self._eligible[key] = entry
        if len(self._by_request) >= _MAX_CACHED_REQUESTS:
            self._by_request.clear()
        self._by_request[id(req)] = (req, entry)
        return entry

    def _could_ever_fit(self, req: ResourceRequest) -> set[str]:
        """Hosts whose labels and totals suit ``req``, starting from the rarest label."""
        hosts = self._hosts
        slots, cpu, memory = req.slots, req.cpu, req.memory_gb - _EPS
        return {
            host_id
            for host_id in self._labelled(req)
            if (host := hosts[host_id]).total_slots >= slots
            and host.total_cpu >= cpu
            and host.total_memory_gb >= memory
        }

    def _freed_since(self, since: int) -> _Freed:
        """Hosts freed after epoch ``since``, shared by every request that asks until the
        next free (within a dispatch pass, that is every blocked cluster)."""
        if self._freed_cache_epoch != self._epoch:
            self._freed_cache.clear()
            self._freed_cache_epoch = self._epoch
        freed = self._freed_cache.get(since)
        if freed is not None:
            return freed
        freed = _Freed(set(), set())
        hosts = self._hosts
        for host_id, epoch in reversed(self._freed_at.items()):
            if epoch <= since:
                break
            freed.host_ids.add(host_id)
            host = hosts[host_id]
            if _is_open(host):
                freed.open_ids.add(host_id)
            if host.accepting:
                freed.max_free_slots = max(freed.max_free_slots, host.total_slots - host.used_slots)
                freed.max_free_cpu = max(freed.max_free_cpu, host.total_cpu - host.used_cpu)
                freed.max_free_memory_gb = max(
                    freed.max_free_memory_gb, host.total_memory_gb - host.used_memory_gb
                )
        self._freed_cache[since] = freed
        return freed

    def _least_loaded_with_room(
        self, host_ids: Iterable[str], req: ResourceRequest
    ) -> HostCapacity | None:
        hosts, order_key = self._hosts, self._order_key
        slots, cpu, memory = req.slots, req.cpu, req.memory_gb - _EPS
        best: HostCapacity | None = None
        best_key: tuple[float, str] | None = None
        for host_id in host_ids:
            host = hosts[host_id]
            if (
                host.accepting
                and host.used_slots + slots <= host.total_slots
                and host.used_cpu + cpu <= host.total_cpu
                and host.used_memory_gb + memory <= host.total_memory_gb
            ):
                key = order_key[host_id]
                if best_key is None or key < best_key:
                    best, best_key = host, key
        return best

    def _first_with_room_in_load_order(
        self, eligible: set[str], req: ResourceRequest
    ) -> HostCapacity | None:
        hosts = self._hosts
        slots, cpu, memory = req.slots, req.cpu, req.memory_gb - _EPS
        for _, host_id in self._order:
            if host_id not in eligible:
                continue
            host = hosts[host_id]
            if (
                host.accepting
                and host.used_slots + slots <= host.total_slots
                and host.used_cpu + cpu <= host.total_cpu
                and host.used_memory_gb + memory <= host.total_memory_gb
            ):
                return host
        return None

    def _labelled(self, req: ResourceRequest) -> Iterable[str]:
        """Ids of hosts carrying every label ``req`` asks for."""
        if not req.host_labels:
            return self._hosts.keys()
        empty: set[str] = set()
        by_label = sorted(
            (self._label_hosts.get(item, empty) for item in req.host_labels.items()), key=len
        )
        return by_label[0].intersection(*by_label[1:])

    def _index_labels(self, host_id: str, labels: _Labels, add: bool) -> None:
        for item in labels:
            if add:
                self._label_hosts.setdefault(item, set()).add(host_id)
            else:
                ids = self._label_hosts.get(item)
                if ids is not None:
                    ids.discard(host_id)
                    if not ids:
                        del self._label_hosts[item]

    def _cache_text(self, entry: _Eligible) -> None:
        if entry.text_version != self._version:
            entry.text_version = self._version
            entry.unplaceable_text = None
            entry.capacity_text = None

    def _explain_unplaceable(self, req: ResourceRequest) -> str:
        return self.unrunnable(req)[1]

    def unrunnable(self, req: ResourceRequest) -> tuple[str, str]:
        """Which field of a job's spec no registered host satisfies, and why: e.g.
        ``("resource_request.cpu", "needs 100 cpu; largest host has 8")``. Hosts count
        whatever their state (an OFFLINE host may come back, a CLOSED one be opened)."""
        field = "resource_request"
        if not self._hosts:
            return field, "no hosts registered"
        labelled = [self._hosts[host_id] for host_id in self._labelled(req)]
        if not labelled:
            return self._explain_labels(req)
        where = "host"
        if req.host_labels:
            where += " with " + ", ".join(f"{k}={v}" for k, v in sorted(req.host_labels.items()))
        largest_memory = max(host.total_memory_gb for host in labelled)
        if req.memory_gb > largest_memory + _EPS:
            return (f"{field}.memory_gb",
                    f"needs {req.memory_gb:g} GB memory; largest {where} has {largest_memory:g} GB")
        largest_cpu = max(host.total_cpu for host in labelled)
        if req.cpu > largest_cpu:
            return f"{field}.cpu", f"needs {req.cpu} cpu; largest {where} has {largest_cpu}"
        largest_slots = max(host.total_slots for host in labelled)
        if req.slots > largest_slots:
            return (f"{field}.slots",
                    f"needs {req.slots} slots; largest {where} has {largest_slots}")
        plural = "s" if req.slots != 1 else ""
        return field, (
            f"needs {req.slots} slot{plural}, {req.cpu} cpu and {req.memory_gb:g} GB on one "
            f"host; no {where} has all of that"
        )

    def _explain_labels(self, req: ResourceRequest) -> tuple[str, str]:
        for key, value in sorted(req.host_labels.items()):
            if not any(host.labels.get(key) == value for host in self._hosts.values()):
                return f"resource_request.host_labels.{key}", f"no host has label {key}={value}"
        wanted = ", ".join(f"{k}={v}" for k, v in sorted(req.host_labels.items()))
        return "resource_request.host_labels", f"no host has all labels {wanted}"


def check_runnable(pool: HostPool, specs: Sequence[JobSpec], *, batch: bool) -> None:
    """Refuse jobs no registered host could ever run, unless they say ``allow_pending``:
    without it such a job would pend forever. InvalidInput names each one's field
    (``jobs[3].resource_request.cpu`` in a batch) and reason; nothing is queued.

    Costs one cached lookup per distinct request (``HostPool`` keeps the eligible hosts
    of each autocluster), so a 10,000-job batch of a few kinds checks a few requests."""
    details = []
    explained: dict[Hashable, tuple[str, str]] = {}
    for index, spec in enumerate(specs):
        req = spec.resource_request
        if spec.allow_pending or pool.could_run_somewhere(req):
            continue
        key = req.cluster_key()
        if key not in explained:
            explained[key] = pool.unrunnable(req)
        field, reason = explained[key]
        details.append({"field": f"jobs[{index}].{field}" if batch else field,
                        "message": reason})
    if not details:
        return
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    if len(details) > 5:
        summary += f"; and {len(details) - 5} more"
    if batch:
        raise InvalidInput(
            f"batch rejected, no job queued: no registered host could ever run "
            f"{len(details)} of its jobs: {summary} (set allow_pending on a job to queue "
            "it anyway)", details)
    raise InvalidInput(
        f"{summary} (no registered host could ever run this job: set allow_pending, "
        "apr-sched submit --allow-pending, to queue it anyway)", details)
