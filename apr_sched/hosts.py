"""Host liveness: the countdowns that turn silence into OFFLINE, and OFFLINE into "lost".

Two timers per host, owned here and nowhere else: a heartbeat countdown for hosts that
report over the API (a host that has ever sent a heartbeat is expected to keep sending
them, across a scheduler restart too: the countdown starts at startup), and a lost countdown
while an SSH host is unreachable, after which its attempts are declared lost. This module
only keeps time; the Scheduler gets a callback and makes the transition.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable


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
