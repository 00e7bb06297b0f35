"""Store and disk health: why the scheduler is degraded, and the backoff out of it.

Two things stop the Scheduler doing its work: the store refusing writes (disk full,
read-only file, I/O error: ``Store.failure``) and the state disk falling below its
free-space floor (``DiskFloor``; the database and the logs live there). While either
holds, dispatch pauses and a ``RetryTimer`` wakes the Scheduler every ``STORE_RETRY_SEC``
to record what ended meanwhile and try again: a backoff while degraded, never a poll while
healthy. This module only measures and keeps time; the Scheduler does the retrying.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from apr_sched.store import Store

log = logging.getLogger("apr_sched")

STORE_RETRY_SEC = 2.0
"""While the store refuses writes, how often to retry recording attempts that ended."""


class DiskFloor:
    """The state disk's free-space floor: below ``min_free_mb``, the scheduler is degraded."""

    def __init__(self, path: Path, min_free_mb: float) -> None:
        self.path = path
        self.min_free_mb = min_free_mb
        self.low: str | None = None
        """Why the disk is too full (None while it has room), as of the last ``check``."""

    def check(self) -> bool:
        """True (and ``low`` says why) while the disk has less free space than the floor;
        the change either way is logged once."""
        try:
            stat = os.statvfs(self.path)
        except OSError:
            return False
        free_mb = stat.f_bavail * stat.f_frsize / 1e6
        if free_mb >= self.min_free_mb:
            if self.low:
                log.info("state disk has room again (%.0f MB free): dispatching", free_mb)
            self.low = None
            return False
        if not self.low:
            log.warning("state disk %s: %.1f MB free, below min_free_disk_mb=%g: dispatch "
                        "paused", self.path, free_mb, self.min_free_mb)
        self.low = (f"state disk {self.path} has {free_mb:.1f} MB free, below "
                    f"min_free_disk_mb={self.min_free_mb:g}: dispatch paused")
        return True


def degraded_reason(store: Store | None, disk: DiskFloor) -> str | None:
    """Why the scheduler cannot do its work right now (None when healthy)."""
    if store is not None and store.failure:
        return store.failure
    return disk.low


class RetryTimer:
    """At most one pending call of ``action``, ``delay_sec`` after it was first asked for."""

    def __init__(self, action: Callable[[], None], delay_sec: float = STORE_RETRY_SEC) -> None:
        self._action = action
        self.delay_sec = delay_sec
        self._timer: asyncio.TimerHandle | None = None

    def arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is None:
            self._timer = loop.call_later(self.delay_sec, self._fire)

    def cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        self._action()
