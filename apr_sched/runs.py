"""Supervising live attempts: start, watch, signals, timeouts and the SIGKILL after a grace.

The Scheduler decides what a job's state is; this module keeps each live attempt's process
handle and timers, sends signals, and reports back through narrow callbacks given when the
Scheduler builds it: ``on_started(run)`` once the wrapper runs, ``on_end(run, status)`` once
an attempt has ended, ``on_timeout(run)`` when an attempt's running time is up, and
``on_log_note(run, text)`` when the attempt's log reached its size limit (``loglimit``). It
never touches job state or the store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from apr_sched.errors import AprError
from apr_sched.executors.base import Executor, ExitStatus, Launch, RunHandle, StartFailed
from apr_sched.loglimit import LogLimit, LogLimiter
from apr_sched.logs import AttemptFiles, LogTrim
from apr_sched.models import Job, ResourceRequest

log = logging.getLogger("apr_sched")

SIGNAL_RETRY_SEC = 5.0
"""How long to wait before sending a signal again to an unreachable host."""


@dataclass(slots=True, eq=False)
class Run:
    """A live attempt: its executor, process handle, timers and why we may be ending it."""

    job_id: str
    attempt: int
    host_id: str
    request: ResourceRequest
    executor: Executor
    started: asyncio.Future[RunHandle | None]
    handle: RunHandle | None = None
    task: asyncio.Task[None] | None = None
    timeout_timer: asyncio.TimerHandle | None = None
    kill_timer: asyncio.TimerHandle | None = None
    ending: str | None = None
    """transitions.STOP or TIMEOUT once we have decided to end the attempt."""
    term_sent_at: datetime | None = None
    """When SIGTERM went out for ``ending``; SIGKILL is due one grace period later."""


class RunSupervisor:
    """The live attempts, one per running or paused job."""

    def __init__(
        self,
        *,
        stop_grace_sec: float,
        on_started: Callable[[Run], None],
        on_end: Callable[[Run, ExitStatus], None],
        on_timeout: Callable[[Run], None],
        log_limit: LogLimit | None = None,
        on_log_note: Callable[[Run, str], None] = lambda run, text: None,
    ) -> None:
        self.stop_grace_sec = stop_grace_sec
        self._on_started = on_started
        self._on_end = on_end
        self._on_timeout = on_timeout
        self._log_limiter = None if log_limit is None else LogLimiter(
            log_limit, self._live_logs, on_log_note, self._log_trimmed)
        self._runs: dict[str, Run] = {}
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Awaitable[None]) -> None:
        """Run ``coro`` in the background, keeping a reference until it is done."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def __len__(self) -> int:
        return len(self._runs)

    def get(self, job_id: str) -> Run | None:
        return self._runs.get(job_id)

    def all(self) -> list[Run]:
        return list(self._runs.values())

    def is_current(self, run: Run) -> bool:
        """False once the attempt has ended (or been replaced): late callbacks do nothing."""
        return self._runs.get(run.job_id) is run

    def on_host(self, host_id: str) -> list[str]:
        return sorted(r.job_id for r in self._runs.values() if r.host_id == host_id)

    def per_host(self) -> Counter[str]:
        return Counter(run.host_id for run in self._runs.values())

    def _live_logs(self) -> list[tuple[Run, Path]]:
        return [(run, run.handle.files.log) for run in self._runs.values()
                if run.handle is not None]

    @staticmethod
    def _log_trimmed(run: Run, trim: LogTrim) -> None:
        """The local log dropped its middle: so may the executor's copy (an SSH spool)."""
        if run.handle is not None:
            run.executor.log_trimmed(run.handle, trim.dropped)

    def add(self, job_id: str, attempt: int, host_id: str, request: ResourceRequest,
            executor: Executor) -> Run:
        run = Run(job_id, attempt, host_id, request, executor,
                  started=asyncio.get_running_loop().create_future())
        self._runs[job_id] = run
        return run

    def abandon(self, run: Run) -> None:
        """Stop watching an attempt whose host is gone (the caller records it lost)."""
        if run.task is not None:
            run.task.cancel()
        abandon = getattr(run.executor, "abandon", None)
        if abandon is not None and run.handle is not None:
            abandon(run.handle)

    def discard(self, run: Run) -> None:
        """The attempt's end is recorded: forget it and its timers."""
        self._cancel_timers(run)
        if self._runs.get(run.job_id) is run:
            del self._runs[run.job_id]

    # starting and watching -----------------------------------------------------------------
    def launch(self, run: Run, launch: Launch) -> None:
        run.task = asyncio.get_running_loop().create_task(self._start_and_watch(run, launch))

    def adopt(self, run: Run, handle: RunHandle) -> None:
        """Watch an attempt an earlier scheduler started (found again at restart)."""
        run.handle = handle
        run.started.set_result(handle)
        run.task = asyncio.get_running_loop().create_task(self._watch(run))
        if self._log_limiter is not None:
            self._log_limiter.wake()

    def never_started(self, run: Run) -> None:
        if not run.started.done():
            run.started.set_result(None)

    async def _start_and_watch(self, run: Run, launch: Launch) -> None:
        try:
            handle = await run.executor.start(launch)
        except StartFailed as exc:
            self.never_started(run)
            self._on_end(run, ExitStatus(None, detail=f"could not start: {exc}"))
            return
        except Exception as exc:  # a bug must not leave the job RUNNING forever
            log.exception("starting job %s failed", run.job_id)
            self.never_started(run)
            self._on_end(run, ExitStatus(None, detail=f"could not start: {exc!r}"))
            return
        run.handle = handle
        run.started.set_result(handle)
        self._on_started(run)
        if self._log_limiter is not None:
            self._log_limiter.wake()
        await self._watch(run)

    async def _watch(self, run: Run) -> None:
        assert run.handle is not None
        try:
            status = await run.executor.wait(run.handle)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("watching job %s failed", run.job_id)
            status = ExitStatus(None, lost=True, detail=f"watch failed: {exc!r}")
        if self._log_limiter is not None and self.is_current(run):
            await self._log_limiter.settle(run, run.handle.files.log)
        if self.is_current(run):
            self._on_end(run, status)

    # timeouts ------------------------------------------------------------------------------
    def arm_timeout(self, run: Run, remaining_sec: float) -> None:
        self.disarm_timeout(run)
        run.timeout_timer = asyncio.get_running_loop().call_later(
            max(0.0, remaining_sec), self._timeout_fired, run)

    def disarm_timeout(self, run: Run) -> None:
        if run.timeout_timer is not None:
            run.timeout_timer.cancel()
            run.timeout_timer = None

    def _timeout_fired(self, run: Run) -> None:
        run.timeout_timer = None
        if self.is_current(run) and not run.ending:
            self._on_timeout(run)

    # signals -------------------------------------------------------------------------------
    async def signal(self, run: Run, signum: int) -> bool:
        """Send ``signum`` to the attempt; False if it has no process (never started or
        already ended). Raises AprError when the host cannot be reached."""
        handle = await run.started
        if handle is None or not self.is_current(run):
            return False
        await run.executor.signal(handle, signum)
        return True

    async def terminate(self, run: Run) -> None:
        """SIGTERM (and SIGCONT, so a paused job can act on it); SIGKILL after the grace."""
        if not await self.signal(run, signal.SIGTERM):
            return
        await self.signal(run, signal.SIGCONT)
        self.kill_after(run, self.stop_grace_sec)

    def kill_after(self, run: Run, delay_sec: float) -> None:
        """Arm the SIGKILL that ends an attempt which ignored SIGTERM."""
        if run.kill_timer is not None:
            return
        run.kill_timer = asyncio.get_running_loop().call_later(
            max(0.0, delay_sec), lambda: self.spawn(self.keep_trying(self.kill, run)))

    async def kill(self, run: Run) -> None:
        await self.signal(run, signal.SIGKILL)

    async def keep_trying(self, action: Callable[[Run], Awaitable[None]], run: Run) -> None:
        """Signals nobody waits on (timeouts, the SIGKILL after the grace) are retried while
        the attempt's host is unreachable, until they land or the attempt ends."""
        while self.is_current(run) and not self._closing:
            try:
                await action(run)
                return
            except AprError as exc:
                log.warning("job %s: %s; trying again in %gs", run.job_id, exc.message,
                            SIGNAL_RETRY_SEC)
                await asyncio.sleep(SIGNAL_RETRY_SEC)  # retry backoff, not a condition wait

    def sweep(self, run: Run) -> None:
        """After a stopped or timed-out attempt ended: SIGKILL whatever of it is left (a
        child that left the process group is still found by the executor's marker)."""
        handle = run.handle
        if handle is None:
            return

        async def sweep() -> None:
            with contextlib.suppress(AprError, OSError):
                await run.executor.signal(handle, signal.SIGKILL)

        self.spawn(sweep())

    def _cancel_timers(self, run: Run) -> None:
        for timer in (run.timeout_timer, run.kill_timer):
            if timer is not None:
                timer.cancel()
        run.timeout_timer = run.kill_timer = None

    async def close(self) -> None:
        """Stop supervising: running jobs keep running (found again next start)."""
        self._closing = True
        if self._log_limiter is not None:
            await self._log_limiter.close()
        for run in self._runs.values():
            self._cancel_timers(run)
            if run.task is not None:
                run.task.cancel()
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        tasks.extend(self._background)
        for task in self._background:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def wait_ended(self, timeout: float) -> None:
        tasks = [run.task for run in self._runs.values() if run.task is not None]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)


def never_ran(found: ExitStatus, pgid: int | None, log_path: Path) -> bool:
    """At restart: an attempt whose wrapper cannot be found (``found.lost``) and that left
    no pgid, no rc and no output never ran its command: the scheduler stopped between
    creating the log and spawning the wrapper (or before either), so it may simply be
    queued again."""
    if not found.lost or pgid is not None:
        return False
    try:
        return log_path.stat().st_size == 0
    except FileNotFoundError:
        return True


def launch_of(job: Job, host_id: str, files: AttemptFiles) -> Launch:
    """What the job's current attempt starts with on ``host_id``."""
    return Launch(job_id=job.job_id, attempt=job.attempt, host_id=host_id, command=job.command,
                  workdir=job.workdir, env=dict(job.env), owner=job.owner, umask=job.umask,
                  output_path=job.output_path, error_path=job.error_path, files=files)
