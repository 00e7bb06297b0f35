"""Held log requests: ``GET /jobs/{id}/logs?offset=N&wait=S`` answers when the job writes.

A follower (``apr-sched logs --follow``, a waiting ``submit --wait``) asks for the lines
after byte N. If there are some, or the attempt has ended, the answer is immediate. Else the
request is held until one of these, whichever comes first:

- the log grows: ``logwatch.LogWatcher`` (inotify) wakes the request, which then waits
  ``GATHER_SEC`` more so a chatty job's burst of lines goes out in one reply, and reads;
- the job has an event (it ended, was requeued, paused ...): read again, answer if the
  attempt has ended;
- ``S`` seconds pass, the daemon shuts down, or the client closes its connection.

A held request costs nothing while nothing happens: no timer, no re-read. Where inotify
cannot watch the file (see ``logwatch``), a running job's log is re-read every
``RECHECK_SEC`` instead (bounded, and only for such files). At most ``max_held`` requests
are held at once (``MAX_HELD_LOG_REQUESTS``); past that a request is answered at once, as
with ``wait=0``, and the client asks again after a pause of its own.

Job events reach the held requests through one subscription shared by all of them, looked
up by job id: an event costs one dict lookup, whatever the number of followers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from apr_sched.errors import NotFound
from apr_sched.events import SubscriptionLagged
from apr_sched.logs import attempt_files
from apr_sched.logwatch import LogWatcher

if TYPE_CHECKING:
    from apr_sched.models import Job, LogTail
    from apr_sched.scheduler import Scheduler

__all__ = ["GATHER_SEC", "MAX_HELD_LOG_REQUESTS", "RECHECK_SEC", "LogWaits"]

log = logging.getLogger("apr_sched.http")

MAX_HELD_LOG_REQUESTS = 1024
"""Log requests held at once; one more is answered at once (``wait`` as if 0)."""
GATHER_SEC = 0.02
"""After a write wakes a held request, the time given to the writer to finish its burst
before the reply is read: a job printing thousands of lines a second costs a follower at
most ~1/GATHER_SEC replies a second, and a line is still printed within tens of ms."""
RECHECK_SEC = 0.5
"""How often a running job's log is re-read for a held request when inotify cannot watch
it (no inotify here, its watch limit reached, the file not there yet)."""

Turn = Callable[[], contextlib.AbstractAsyncContextManager[None]]


class LogWaits:
    """Holds log requests for one Scheduler (see the module docstring)."""

    def __init__(self, scheduler: Scheduler, *, max_held: int = MAX_HELD_LOG_REQUESTS) -> None:
        self.scheduler = scheduler
        self.max_held = max_held
        self.watcher = LogWatcher()
        self.held = 0
        """Requests held now."""
        self.answered_at_once = 0
        """Requests that asked to wait but were answered at once: the cap was reached."""
        self._by_job: dict[str, set[asyncio.Event]] = {}
        self._follower: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()

    async def read(self, job_id: str, offset: int, attempt: int | None, wait: float, *,
                   turn: Turn, gone: Callable[[], Awaitable[None]] | None = None) -> LogTail:
        """The lines after ``offset``, waiting up to ``wait`` seconds for some (see the
        module docstring). ``turn`` is entered around each read of the scheduler (the
        caller's share of the daemon); the wait itself is outside it."""
        if wait <= 0 or self.held >= self.max_held or self._closing.is_set():
            if wait > 0:
                self.answered_at_once += 1
            async with turn():
                return await self.scheduler.read_log(job_id, offset, attempt)
        self.held += 1
        try:
            async with self._job_events(job_id) as woken:
                return await self._hold(job_id, offset, attempt, wait, turn, woken, gone)
        finally:
            self.held -= 1

    async def _hold(self, job_id: str, offset: int, attempt: int | None, wait: float,
                    turn: Turn, woken: asyncio.Event,
                    gone: Callable[[], Awaitable[None]] | None) -> LogTail:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait
        while True:
            async with turn():
                job = await self._job(job_id)
                attempt = job.attempt if attempt is None else attempt
                path = attempt_files(self.scheduler.state_dir, job_id, attempt).log
                change = self.watcher.watch(path)  # before the read: no write is missed
                try:
                    tail = await self.scheduler.read_log(job_id, offset, attempt)
                except BaseException:
                    change.close()
                    raise
            with change:
                ended = attempt < job.attempt or job.status.is_final
                left = deadline - loop.time()
                if tail.lines or tail.offset != offset or ended or left <= 0:
                    return tail
                recheck = None if change.active or not job.status.is_active else RECHECK_SEC
                log.debug("job %s attempt %d: log request held at offset %d%s", job_id,
                          attempt, offset, "" if recheck is None else " (re-reading)")
                woken.clear()
                why = await _first(left if recheck is None else min(left, recheck), {
                    "log": change.changed.wait(), "job": woken.wait(),
                    "closing": self._closing.wait(),
                    **({"gone": gone()} if gone is not None else {})})
            if why in ("closing", "gone") or (why == "timeout" and recheck is None):
                return tail
            if why == "log":
                await asyncio.sleep(GATHER_SEC)

    async def _job(self, job_id: str) -> Job:
        page = await self.scheduler.list_jobs(ids=[job_id], limit=1)
        if not page.jobs:
            raise NotFound(f"no job {job_id!r}", {"job_id": job_id})
        return page.jobs[0]

    # job events, one subscription for all -------------------------------------------------
    @contextlib.asynccontextmanager
    async def _job_events(self, job_id: str) -> AsyncIterator[asyncio.Event]:
        """An Event set whenever ``job_id`` has a job event, while inside."""
        woken = asyncio.Event()
        self._by_job.setdefault(job_id, set()).add(woken)
        if self._follower is None or self._follower.done():
            self._follower = asyncio.create_task(self._follow_events())
        try:
            yield woken
        finally:
            group = self._by_job.get(job_id)
            if group is not None:
                group.discard(woken)
                if not group:
                    del self._by_job[job_id]

    async def _follow_events(self) -> None:
        while not self._closing.is_set():
            try:
                async with self.scheduler.subscribe(maxsize=10_000) as events:
                    async for event in events:
                        job_id = getattr(event, "job_id", None)
                        if event.kind == "job" and job_id in self._by_job:
                            for woken in self._by_job[job_id]:
                                woken.set()
                return  # the scheduler closed
            except SubscriptionLagged:  # events were missed: everyone reads again
                for group in self._by_job.values():
                    for woken in group:
                        woken.set()

    def close(self) -> None:
        """Answer every held request now (the daemon is shutting down)."""
        self._closing.set()
        if self._follower is not None:
            self._follower.cancel()
        self.watcher.close()


async def _first(timeout: float, waits: dict[str, Any]) -> str:
    """Run the awaitables in ``waits``; the name of the first to finish, or "timeout"."""
    tasks = {asyncio.ensure_future(aw): name for name, aw in waits.items()}
    try:
        done, _ = await asyncio.wait(tasks, timeout=timeout,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
    return next((tasks[task] for task in done), "timeout") if done else "timeout"
