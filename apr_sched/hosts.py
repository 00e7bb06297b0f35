"""The host registry: registration, executors, liveness, and the host transitions they call for.

The Scheduler is the one writer; this module owns the hosts in memory and answers what a
host event means. Registering, a heartbeat, a connection coming up or going down, silence,
unregistering: each is decided here as a ``HostChange`` (the host as it will be stored and
the event's states and reason), which the Scheduler writes with its event in one
transaction and then hands back to ``HostRegistry`` to apply to memory (the host, its
executor, its capacity in the placement pool, its countdowns). A failed write therefore
changes nothing. The decisions themselves are pure functions (``registration``,
``heartbeat_state``, ``reachability_state``, ``silence_state``), so host states added
later (drain, close, open) get their rules here, beside these.

Two timers per host live in ``HostLiveness``: a heartbeat countdown for hosts that report
over the API (a host that has ever sent a heartbeat is expected to keep sending them,
across a scheduler restart too: the countdown starts at startup), and a lost countdown
while an SSH host is unreachable, after which its attempts are declared lost. They only
keep time; the Scheduler gets a narrow callback ("this host is silent", "this host is
lost") and makes the transition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apr_sched.errors import HostBusy, NotFound
from apr_sched.executors.base import Executor
from apr_sched.executors.local import LocalExecutor
from apr_sched.executors.prefix import PrefixExecutor
from apr_sched.executors.ssh import SshExecutor
from apr_sched.executors.ssh_target import ssh_target
from apr_sched.models import Host, HostLoad, HostSpec, HostState, is_valid_id, utcnow
from apr_sched.placement import HostCapacity, HostPool

ReachabilityCallback = Callable[[str, bool, str], None]
"""``(host_id, reachable, reason)``: an SSH host's connection came up or went down."""


@dataclass(frozen=True, slots=True)
class HostChange:
    """A host transition to write with its event, then apply."""

    host: Host
    """The host as it will be stored (for a removal: as it was)."""
    from_state: HostState | None
    """None: the host is new."""
    to_state: HostState | None
    """None: the host is removed."""
    reason: str

    @property
    def host_id(self) -> str:
        return self.host.host_id


def reach(spec: HostSpec) -> tuple[Any, ...]:
    """What decides which executor a host gets and where it connects."""
    return (spec.executor_prefix, spec.ssh, spec.ssh_identity_file, spec.ssh_known_hosts,
            spec.ssh_connect_timeout_sec, spec.remote_spool)


def registration(old: Host | None, spec: HostSpec, now: datetime,
                 running: Sequence[str]) -> HostChange | None:
    """Registering ``spec`` (new, or an update of ``old`` whose attempts ``running`` are
    live): the change to write, or None when nothing changed. A host whose jobs run may
    not change how it is reached (HostBusy)."""
    if old is None:
        host = Host(**spec.model_dump(), registered_at=now, last_heartbeat=None)
        reason = "registered"
    else:
        host = Host(**spec.model_dump(), state=old.state, state_reason=old.state_reason,
                    registered_at=old.registered_at, last_heartbeat=old.last_heartbeat,
                    load=old.load)
        if host.spec() == old.spec():
            return None
        if running and reach(old) != reach(host):
            raise HostBusy(
                f"host {host.host_id} runs {len(running)} job(s); how it is reached "
                f"(ssh, executor_prefix, spool) cannot change until they end",
                {"host_id": host.host_id, "running_jobs": list(running)})
        reason = "updated"
    target = ssh_target(host)
    if (old is None or reach(old) != reach(host)) and target is not None:
        host.state = HostState.OFFLINE  # until the connection is up (as install does)
        reason = f"{reason}; connecting to {target.describe()}"
    elif host.state is not HostState.ONLINE and host.state_reason:
        reason = f"{reason}; {host.state_reason}"
    return HostChange(host, old.state if old else None, host.state, reason)


def removal(host: Host, running: Sequence[str]) -> HostChange:
    """Unregistering ``host``: refused while it runs jobs (stop or let them finish first)."""
    if running:
        raise HostBusy(
            f"host {host.host_id} still runs {len(running)} job(s): {', '.join(running[:10])}",
            {"host_id": host.host_id, "running_jobs": list(running)},
        )
    return HostChange(host, host.state, None, "unregistered")


def heartbeat_state(host: Host, *, unreachable: bool) -> HostState | None:
    """The state a heartbeat brings the host to; None: it stays as it is. An SSH host
    whose connection is down stays OFFLINE whatever its heartbeats say."""
    return HostState.ONLINE if host.state is HostState.OFFLINE and not unreachable else None


def reachability_state(host: Host, reachable: bool) -> HostState | None:
    """The state an SSH connection coming up or going down brings the host to; None: it
    stays as it is (only its reason changes)."""
    if reachable and host.state is HostState.OFFLINE:
        return HostState.ONLINE
    if not reachable and host.state is HostState.ONLINE:
        return HostState.OFFLINE
    return None


def silence_state(host: Host) -> HostState | None:
    """The state a host whose heartbeats stopped goes to; None: it stays as it is."""
    return HostState.OFFLINE if host.state is HostState.ONLINE else None


def executor_unreachable(executor: Executor | None) -> bool:
    """An SSH host's executor whose connection is down (nothing can be sent there)."""
    return isinstance(executor, SshExecutor) and not executor.is_reachable()


class HostRegistry:
    """The registered hosts, their executors and countdowns, as the Scheduler applied them.

    Keyword options: ``run_as_owner`` and ``job_cgroups`` go to the executors it makes;
    ``on_reachable`` is told when an SSH host's connection comes up or goes down;
    ``on_silent`` and ``on_lost`` come from the countdowns (``HostLiveness``).
    """

    def __init__(
        self,
        pool: HostPool,
        *,
        run_as_owner: bool,
        job_cgroups: bool,
        heartbeat_timeout_sec: float,
        host_lost_after_sec: float,
        on_reachable: ReachabilityCallback,
        on_silent: Callable[[str], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self._pool = pool
        self._run_as_owner = run_as_owner
        self._job_cgroups = job_cgroups
        self._on_reachable = on_reachable
        self.hosts: dict[str, Host] = {}
        self.executors: dict[str, Executor] = {}
        self.liveness = HostLiveness(
            heartbeat_timeout_sec=heartbeat_timeout_sec, host_lost_after_sec=host_lost_after_sec,
            on_silent=on_silent, on_lost=on_lost)

    def __len__(self) -> int:
        return len(self.hosts)

    def __contains__(self, host_id: object) -> bool:
        return host_id in self.hosts

    def get(self, host_id: str) -> Host:
        """The registered host (NotFound otherwise)."""
        host = self.hosts.get(host_id) if is_valid_id(host_id) else None
        if host is None:
            raise NotFound(f"no host {host_id!r}", {"host_id": host_id})
        return host

    def count(self, state: HostState) -> int:
        return sum(1 for host in self.hosts.values() if host.state is state)

    def view(self, host_id: str, running: int) -> Host:
        """A copy for callers, with what its jobs use now and how many run there."""
        host = self.hosts[host_id].model_copy()
        capacity = self._pool.get(host_id)
        if capacity is not None:
            host.used_slots = capacity.used_slots
            host.used_cpu = capacity.used_cpu
            host.used_memory_gb = capacity.used_memory_gb
        host.running_jobs = running
        return host

    def executor_for(self, host_id: str) -> Executor:
        """The host's executor (a local one for a host no longer registered)."""
        return self.executors.get(host_id) or self._local_executor(host_id)

    def is_unreachable(self, host_id: str) -> bool:
        return executor_unreachable(self.executors.get(host_id))

    # decisions -----------------------------------------------------------------------------
    def registration(self, spec: HostSpec, now: datetime,
                     running: Sequence[str]) -> HostChange | None:
        return registration(self.hosts.get(spec.host_id), spec, now, running)

    def removal(self, host_id: str, running: Sequence[str]) -> HostChange:
        return removal(self.get(host_id), running)

    def state_change(self, host_id: str, state: HostState | None, reason: str,
                     last_heartbeat: datetime | None = None) -> HostChange | None:
        """Moving the host to ``state``; None when it is in it already (or ``state`` is
        None): then only its reason changes (``note``)."""
        host = self.hosts[host_id]
        if state is None or host.state is state:
            return None
        update: dict[str, Any] = {"state": state, "state_reason": reason}
        if last_heartbeat is not None:
            update["last_heartbeat"] = last_heartbeat
        return HostChange(host.model_copy(update=update), host.state, state, reason)

    # applying (after the commit) ---------------------------------------------------------------
    def install(self, host: Host) -> None:
        """Install a host (new or changed) in memory; jobs running there keep their usage."""
        old = self.hosts.get(host.host_id)
        self.hosts[host.host_id] = host
        if old is None or reach(old) != reach(host):
            previous = self.executors.get(host.host_id)
            if previous is not None:
                asyncio.get_running_loop().create_task(previous.close())
            executor = self._make_executor(host)
            self.executors[host.host_id] = executor
            if isinstance(executor, SshExecutor):
                host.state = HostState.OFFLINE
                host.state_reason = f"connecting to {executor.target.describe()}"
            executor.open()
        capacity = HostCapacity.from_spec(host, accepting=host.state is HostState.ONLINE)
        current = self._pool.get(host.host_id)
        if current is not None:
            capacity.used_slots, capacity.used_cpu = current.used_slots, current.used_cpu
            capacity.used_memory_gb = current.used_memory_gb
        self._pool.upsert(capacity)

    def apply_state(self, change: HostChange) -> None:
        """A committed state change: OFFLINE hosts get no jobs, and an unreachable SSH host
        starts its countdown to having its attempts declared lost."""
        assert change.to_state is not None
        host = self.hosts[change.host_id]
        host.state, host.state_reason = change.to_state, change.reason
        self._pool.set_accepting(host.host_id, change.to_state is HostState.ONLINE)
        self.watch_reachability(host.host_id)

    async def remove(self, host_id: str) -> None:
        """A committed removal: forget the host, close its executor, free its capacity."""
        del self.hosts[host_id]
        self.liveness.forget(host_id)
        await self.executors.pop(host_id).close()
        self._pool.remove(host_id)

    def note(self, host_id: str, reason: str) -> None:
        """The host stays in its state; only why changes (not written: it is a note)."""
        self.hosts[host_id].state_reason = reason

    def heard_from(self, host_id: str, load: HostLoad | None) -> None:
        """A heartbeat: its time and figures (kept in memory), and a fresh countdown."""
        host = self.hosts[host_id]
        host.last_heartbeat = utcnow()
        if load is not None:
            host.load = load
        self.liveness.heard_from(host_id)

    # countdowns ----------------------------------------------------------------------------
    def watch_reachability(self, host_id: str) -> None:
        """While an SSH host is OFFLINE, count down to declaring its attempts lost."""
        self.liveness.unreachable(host_id, self.hosts[host_id].state is HostState.OFFLINE
                                  and isinstance(self.executors.get(host_id), SshExecutor))

    def start_countdowns(self) -> None:
        """At start: SSH hosts start OFFLINE until they answer; hosts that sent heartbeats
        before the restart must send them again."""
        for host in self.hosts.values():
            self.watch_reachability(host.host_id)
            if host.last_heartbeat is not None:
                self.liveness.heard_from(host.host_id)

    async def close_executors(self) -> None:
        for executor in self.executors.values():
            await executor.close()

    # executors -----------------------------------------------------------------------------
    def _local_executor(self, host_id: str) -> LocalExecutor:
        return LocalExecutor(host_id, run_as_owner=self._run_as_owner,
                             cgroups=self._job_cgroups)

    def _make_executor(self, host: HostSpec) -> Executor:
        target = ssh_target(host)
        if target is not None:
            return SshExecutor(host.host_id, target, host.remote_spool,
                               on_reachable=self._on_reachable, on_load=self._host_load)
        if host.executor_prefix:
            return PrefixExecutor(host.host_id, host.executor_prefix, host.remote_spool,
                                  cgroups=self._job_cgroups)
        return self._local_executor(host.host_id)

    def _host_load(self, host_id: str, load: HostLoad) -> None:
        """An SSH host's load figures (from its agent): kept for views, never written."""
        host = self.hosts.get(host_id)
        if host is not None:
            host.load = load


class HostLiveness:
    """Per-host countdowns with narrow callbacks: ``on_silent(host_id)`` when heartbeats
    stopped for ``heartbeat_timeout_sec``, ``on_lost(host_id)`` when a host stayed
    unreachable for ``host_lost_after_sec``."""

    def __init__(
        self,
        *,
        heartbeat_timeout_sec: float,
        host_lost_after_sec: float,
        on_silent: Callable[[str], None],
        on_lost: Callable[[str], None],
    ) -> None:
        self.heartbeat_timeout_sec = heartbeat_timeout_sec
        self.host_lost_after_sec = host_lost_after_sec
        self._on_silent = on_silent
        self._on_lost = on_lost
        self._heartbeat: dict[str, asyncio.TimerHandle] = {}
        self._lost: dict[str, asyncio.TimerHandle] = {}

    def heard_from(self, host_id: str) -> None:
        """A heartbeat arrived (or, at startup, one is expected): restart the countdown."""
        _cancel(self._heartbeat.pop(host_id, None))
        self._heartbeat[host_id] = asyncio.get_running_loop().call_later(
            self.heartbeat_timeout_sec, self._silent, host_id)

    def unreachable(self, host_id: str, is_unreachable: bool) -> None:
        """Start (or cancel) the countdown to declaring the host's attempts lost."""
        _cancel(self._lost.pop(host_id, None))
        if is_unreachable:
            self._lost[host_id] = asyncio.get_running_loop().call_later(
                self.host_lost_after_sec, self._lost_now, host_id)

    def forget(self, host_id: str) -> None:
        _cancel(self._heartbeat.pop(host_id, None))
        _cancel(self._lost.pop(host_id, None))

    def close(self) -> None:
        for host_id in [*self._heartbeat, *self._lost]:
            self.forget(host_id)

    def _silent(self, host_id: str) -> None:
        self._heartbeat.pop(host_id, None)
        self._on_silent(host_id)

    def _lost_now(self, host_id: str) -> None:
        self._lost.pop(host_id, None)
        self._on_lost(host_id)


def _cancel(timer: asyncio.TimerHandle | None) -> None:
    if timer is not None:
        timer.cancel()
