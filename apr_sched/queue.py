"""Pending jobs, grouped so that one dispatch decision costs the same for 10 or 100,000 jobs.

Jobs whose requests no host could tell apart (equal ``ResourceRequest.cluster_key()``) form
an *autocluster*. Inside a cluster, jobs wait in a heap of ``(-priority, seq, job_id, cluster)``
tuples (high priority first, then submit order); the clusters themselves wait in a heap keyed
by their head job. A dispatch pass walks heads in global best-job order and, as soon as a
head does not fit, skips its whole cluster for the rest of the pass: every job behind it
needs the same, so trying them would only repeat the same answer.

Removal is lazy: a removed job's tuple stays in its heap until it surfaces, and a heap is
rebuilt when its dead tuples outnumber the live ones, so mass removals never slow later
passes. Pure and synchronous: no I/O, no asyncio, no scheduler.
"""

from __future__ import annotations

import heapq
from collections.abc import Hashable
from dataclasses import dataclass, field
from typing import Protocol

from apr_sched.models import ResourceRequest
from apr_sched.placement import HostCapacity

_COMPACT_MIN_DEAD = 64
"""Dead tuples a cluster heap may carry before a rebuild is considered."""


@dataclass(slots=True, eq=False)
class _Cluster:
    """One autocluster: a request shared by its jobs, their heap, and its last reason."""

    key: Hashable
    request: ResourceRequest
    heap: list[tuple[int, int, str, _Cluster]] = field(default_factory=list)
    live: int = 0
    dead: int = 0
    order_id: int = 0
    """Id of this cluster's valid entry in the cluster order heap; 0 none, -1 dropped."""
    order_key: tuple[int, int] = (0, 0)
    """(-priority, seq) of that entry; never later than the live head's."""
    reason: str | None = None


_JobEntry = tuple[int, int, str, _Cluster]
_OrderEntry = tuple[int, int, int, _Cluster]


class Placer(Protocol):
    """What a dispatch pass asks about each head: ``placement.HostPool`` answers for hosts
    alone, ``resources.Resources`` for everything a running job holds."""

    def least_loaded_fit(self, req: ResourceRequest) -> HostCapacity | None: ...
    def unplaceable_reason(self, req: ResourceRequest) -> str | None: ...
    def capacity_reason(self, req: ResourceRequest) -> str: ...
    def allocate(self, host_id: str, req: ResourceRequest) -> None: ...


class PendingQueue:
    """Pending jobs grouped into autoclusters (identical ResourceRequest.cluster_key()), a heap
    per cluster ordered by priority (high first) then seq (submit order)."""

    def __init__(self) -> None:
        self._jobs: dict[str, _JobEntry] = {}
        """job_id -> its live tuple; a tuple in a heap that is not this one is dead."""
        self._clusters: dict[Hashable, _Cluster] = {}
        self._order: list[_OrderEntry] = []
        """Clusters by head job; may hold stale entries (``order_id`` mismatch)."""
        self._last_order_id = 0

    def __len__(self) -> int:
        return len(self._jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._jobs

    def cluster_count(self) -> int:
        """Autoclusters holding at least one queued job."""
        return len(self._clusters)

    def push(self, job_id: str, priority: int, seq: int, request: ResourceRequest) -> None:
        """Queue a job; a job already queued is replaced (new priority, seq or request)."""
        if job_id in self._jobs:
            self.remove(job_id)
        key = request.cluster_key()
        cluster = self._clusters.get(key)
        if cluster is None:
            cluster = self._clusters[key] = _Cluster(key, request)
        entry = (-priority, seq, job_id, cluster)
        heapq.heappush(cluster.heap, entry)
        self._jobs[job_id] = entry
        cluster.live += 1
        if cluster.order_id == 0 or (entry[0], entry[1]) < cluster.order_key:
            heapq.heappush(self._order, self._order_entry(cluster, entry))
            if len(self._order) > 2 * len(self._clusters) + _COMPACT_MIN_DEAD:
                self._compact_order()

    def remove(self, job_id: str) -> bool:
        """Unqueue a job (held, stopped, removed); True if it was queued."""
        entry = self._jobs.pop(job_id, None)
        if entry is None:
            return False
        cluster = entry[3]
        cluster.live -= 1
        if cluster.live == 0:
            self._drop(cluster)
        else:
            cluster.dead += 1
            if cluster.dead > _COMPACT_MIN_DEAD and cluster.dead > cluster.live:
                self._compact_cluster(cluster)
        return True

    def reason(self, job_id: str) -> str | None:
        """Why the job's cluster did not place in the last pass that tried it; None if it
        placed then or was never tried."""
        entry = self._jobs.get(job_id)
        return None if entry is None else entry[3].reason

    def dispatch_pass(self, pool: Placer, limit: int | None = None) -> list[tuple[str, str]]:
        """Place heads in global best-job order; return ``(job_id, host_id)`` in order made.

        A placed cluster's next head competes again with the other heads; a cluster whose
        head does not fit is skipped for the rest of the pass and keeps the reason why.
        """
        order = self._order
        placed: list[tuple[str, str]] = []
        skipped: list[_OrderEntry] = []
        try:
            while limit is None or len(placed) < limit:
                best = self._best_head()
                if best is None:
                    break
                cluster, head = best
                request = cluster.request
                host = pool.least_loaded_fit(request)
                if host is None:
                    cluster.reason = pool.unplaceable_reason(request) or pool.capacity_reason(
                        request
                    )
                    skipped.append(heapq.heappop(order))
                    continue
                pool.allocate(host.host_id, request)
                cluster.reason = None
                placed.append((head[2], host.host_id))
                self._pop_head(cluster, head)
        finally:  # skipped clusters go back even if the pool raised
            for entry in skipped:
                heapq.heappush(order, entry)
        return placed

    def _best_head(self) -> tuple[_Cluster, _JobEntry] | None:
        """The best live head of all clusters, its cluster's order entry on top of the order
        heap; stale entries met on the way are dropped or corrected."""
        order = self._order
        while order:
            top = order[0]
            cluster = top[3]
            if top[2] != cluster.order_id:
                heapq.heappop(order)
                continue
            head = self._head(cluster)
            if head is None:
                heapq.heappop(order)
                self._drop(cluster)
            elif head[0] != top[0] or head[1] != top[1]:
                heapq.heapreplace(order, self._order_entry(cluster, head))
            else:
                return cluster, head
        return None

    def _pop_head(self, cluster: _Cluster, head: _JobEntry) -> None:
        """Unqueue a placed head; its cluster's order entry (on top) moves to the next head."""
        heapq.heappop(cluster.heap)
        del self._jobs[head[2]]
        cluster.live -= 1
        following = self._head(cluster)
        if following is None:
            heapq.heappop(self._order)
            self._drop(cluster)
        else:
            heapq.heapreplace(self._order, self._order_entry(cluster, following))

    def _head(self, cluster: _Cluster) -> _JobEntry | None:
        """The cluster's best live tuple, discarding dead ones above it."""
        heap = cluster.heap
        jobs = self._jobs
        while heap:
            top = heap[0]
            if jobs.get(top[2]) is top:
                return top
            heapq.heappop(heap)
            cluster.dead -= 1
        return None

    def _order_entry(self, cluster: _Cluster, head: _JobEntry) -> _OrderEntry:
        self._last_order_id += 1
        cluster.order_id = self._last_order_id
        cluster.order_key = (head[0], head[1])
        return (head[0], head[1], cluster.order_id, cluster)

    def _drop(self, cluster: _Cluster) -> None:
        """Forget an empty cluster; its entry in the order heap becomes stale."""
        cluster.order_id = -1
        cluster.heap.clear()
        cluster.dead = 0
        if self._clusters.get(cluster.key) is cluster:
            del self._clusters[cluster.key]

    def _compact_cluster(self, cluster: _Cluster) -> None:
        jobs = self._jobs
        cluster.heap = [entry for entry in cluster.heap if jobs.get(entry[2]) is entry]
        heapq.heapify(cluster.heap)
        cluster.dead = 0

    def _compact_order(self) -> None:
        """Rebuild the cluster order from the live clusters, leaving stale entries behind."""
        self._order = [
            (c.order_key[0], c.order_key[1], c.order_id, c)
            for c in self._clusters.values()
            if c.order_id > 0
        ]
        heapq.heapify(self._order)
