"""Keeping live attempts' logs under their size limit while the jobs write them.

A job writes its log directly (no daemon pipe: jobs outlive the daemon), so nothing tells
the daemon when a log grows. Every ``check_every_sec`` while attempts run, one ``stat`` per
live log (in a worker thread) says its size; only a log past the limit (and grown by
``slack`` since it was last trimmed) is trimmed, by ``logs.limit_log``: the head stays, a
notice follows it, the middle becomes a hole whose disk space is released, the tail stays. An
attempt's end checks once more, so a job that wrote its flood between two checks is
trimmed too. Nothing runs while no attempt does.

Where the filesystem cannot punch holes (``EOPNOTSUPP``: NFSv3, vfat ...), or the log
cannot be opened for writing, the log is left to grow, and that is said once per attempt:
truncating or rewriting a file the job still appends to would shift the byte offsets that
followers and the SSH log resume count on. The free-space floor (``min_free_disk_mb``)
still pauses dispatch before the disk fills.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from apr_sched.logs import BLOCK_SIZE, LogTrim, limit_log

__all__ = ["LogLimit", "LogLimiter", "describe_bytes"]

log = logging.getLogger("apr_sched")

K = TypeVar("K", bound=Hashable)


def describe_bytes(count: int) -> str:
    """``1 MB``, ``512 KB``, ``1.5 GB``, ``300 bytes`` (units of 2**10)."""
    for unit, size in (("GB", 1 << 30), ("MB", 1 << 20), ("KB", 1 << 10)):
        if count >= size:
            return f"{count / size:.3g} {unit}"
    return f"{count} bytes"


@dataclass(frozen=True, slots=True)
class LogLimit:
    """How large an attempt's log may grow and how much of its end is kept."""

    max_bytes: int
    keep_tail: int
    check_every_sec: float

    def __post_init__(self) -> None:
        if not 0 < self.keep_tail < self.max_bytes:
            raise ValueError(f"need 0 < keep_tail < max_bytes, got {self.keep_tail} and "
                             f"{self.max_bytes}")
        if self.check_every_sec <= 0:
            raise ValueError(f"check_every_sec must be > 0, got {self.check_every_sec}")

    @property
    def slack(self) -> int:
        """Growth past the last trim before a log is trimmed again: one thread hop per
        1/64 of the limit (and at least a block), not one per check."""
        return max(BLOCK_SIZE, self.max_bytes // 64)

    def trimmed_note(self) -> str:
        return (f"log over {describe_bytes(self.max_bytes)}: kept the first "
                f"{describe_bytes(self.max_bytes - self.keep_tail)} and the last "
                f"{describe_bytes(self.keep_tail)}, the middle is dropped")

    def refused_note(self, reason: str) -> str:
        return (f"log over {describe_bytes(self.max_bytes)}, but its middle cannot be dropped "
                f"here ({reason}): the log keeps growing")


@dataclass(slots=True)
class _Seen:
    size: int = 0
    """The log's size when it was last trimmed (or found not worth trimming yet)."""
    refused: bool = False
    """Trimming failed once: the attempt's log is left alone from then on."""


class LogLimiter(Generic[K]):
    """Trims the live logs ``live()`` lists (key, path) and reports through
    ``on_note(key, text)`` the first trim of each and a trim that cannot be done, and
    through ``on_trim(key, trim)`` every trim (what was dropped, for a remote copy).

    ``wake()`` when an attempt starts: the check timer runs only while ``live()`` lists
    something. Cost per check: one ``stat`` per live log, in a worker thread.
    """

    def __init__(self, limit: LogLimit, live: Callable[[], Iterable[tuple[K, Path]]],
                 on_note: Callable[[K, str], None],
                 on_trim: Callable[[K, LogTrim], None] = lambda key, trim: None) -> None:
        self.limit = limit
        self._live = live
        self._on_note = on_note
        self._on_trim = on_trim
        self._seen: dict[K, _Seen] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._trimming: asyncio.Task[None] | None = None
        self._closed = False

    def wake(self) -> None:
        """Make sure the periodic check is armed (an attempt started)."""
        if self._timer is None and self._trimming is None and not self._closed:
            self._timer = asyncio.get_running_loop().call_later(
                self.limit.check_every_sec, self._check)

    def _check(self) -> None:
        """One pass over the live logs: sizes and any trims in a worker thread, so a
        check of thousands of running jobs never holds the loop."""
        self._timer = None
        live = list(self._live())
        keys = {key for key, _ in live}
        for key in self._seen.keys() - keys:
            del self._seen[key]
        if not live:
            return  # nothing runs: asleep until wake()
        entries = [(key, path, self._seen.setdefault(key, _Seen())) for key, path in live]
        self._trimming = asyncio.get_running_loop().create_task(self._pass(entries))
        self._trimming.add_done_callback(self._passed)

    async def _pass(self, entries: list[tuple[K, Path, _Seen]]) -> None:
        results = await asyncio.to_thread(self._trim_due, entries)
        for key, outcome in results:
            self._report(key, outcome)

    def _passed(self, task: asyncio.Task[None]) -> None:
        self._trimming = None
        if not task.cancelled() and task.exception() is not None:
            log.error("log size check failed", exc_info=task.exception())
        self.wake()

    def _trim_due(self, entries: list[tuple[K, Path, _Seen]],
                  ) -> list[tuple[K, LogTrim | OSError | None]]:
        """In a worker thread: trim the logs that are due."""
        return [(key, self._trim_one(path)) for key, path, seen in entries
                if self._due(path, seen, self.limit.slack)]

    def _due(self, path: Path, seen: _Seen, slack: int) -> bool:
        """Past the limit and grown by ``slack`` since the last trim; the size is noted."""
        if seen.refused:
            return False
        try:
            size = os.stat(path).st_size
        except OSError:
            return False
        if size <= self.limit.max_bytes or size < seen.size + slack:
            return False
        seen.size = size
        return True

    async def settle(self, key: K, path: Path) -> None:
        """The attempt has ended: trim its log one last time if it needs it (the flood
        may have come after the last check)."""
        if self._trimming is not None:  # never two trims of one log at once
            await asyncio.wait([self._trimming])
        seen = self._seen.setdefault(key, _Seen())
        if self._due(path, seen, slack=1):
            outcome = await asyncio.to_thread(self._trim_one, path)
            self._report(key, outcome)
        self._seen.pop(key, None)

    def _trim_one(self, path: Path) -> LogTrim | OSError | None:
        """In a worker thread: trim one log, or say why it cannot be."""
        try:
            return limit_log(path, self.limit.max_bytes, self.limit.keep_tail)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return exc

    def _report(self, key: K, outcome: LogTrim | OSError | None) -> None:
        seen = self._seen.get(key)
        if isinstance(outcome, OSError):
            if seen is not None:
                seen.refused = True
            self._on_note(key, self.limit.refused_note(outcome.strerror or str(outcome)))
            return
        if outcome is None:
            return
        if outcome.first:
            self._on_note(key, self.limit.trimmed_note())
        self._on_trim(key, outcome)

    async def close(self) -> None:
        """Stop checking (the daemon is going away; the jobs and their logs stay)."""
        self._closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._trimming is not None:
            self._trimming.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._trimming
