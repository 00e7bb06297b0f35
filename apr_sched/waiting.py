"""Wait for jobs to end, print their output once, and tell how they ended by an exit code.

``wait_for_jobs(client, ids)`` is what ``apr-sched submit --wait`` and ``apr-sched wait``
run, and what an LSF ``bsub -K`` / ``bwait`` shim calls: a make recipe or a flow script
blocks on a job and gets its outcome as its own exit status (``EXIT_CODES`` below).

Cost to the daemon. Job states come from the daemon's long poll (``GET /events?since=&wait=``):
the request sits in the daemon until something happens, and only an event naming one of
the waited jobs makes the waiter read their states again. Output has no event: while a
waited job runs, its log is read from the byte offset already printed, and the long poll
itself is the pause between reads, growing from ``LOG_CHECK_MIN_SEC`` to
``LOG_CHECK_MAX_SEC`` while the job is quiet (a job's end is an event, so its last lines
come at once). Pending, held or paused jobs, and ``--quiet`` waits, read no log at all.

A daemon restart is ridden out: the waiter reconnects with backoff for up to
``reconnect_timeout`` seconds, reads the states again, and continues each log at the offset
already printed, so no line is lost or printed twice.

Ctrl-C, SIGTERM and SIGHUP of the waiting process stop the waited jobs (unless told not
to), keep printing until they have ended, and then give ``128 + signal``; a second signal
leaves at once. A SIGHUP that was ignored when we started (``nohup``) stays ignored.
"""

from __future__ import annotations

import contextlib
import json
import signal
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from types import FrameType
from typing import TYPE_CHECKING, Any, TextIO

from apr_sched.client import DaemonUnreachable, SchedulerClient
from apr_sched.durations import format_duration
from apr_sched.errors import Forbidden, IllegalTransition, NotFound
from apr_sched.states import JobStatus

if TYPE_CHECKING:  # the models load with the first reply they parse
    from apr_sched.models import Job

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_CANNOT_START",
    "EXIT_CODES",
    "EXIT_CODES_HELP",
    "EXIT_LOST",
    "EXIT_STOPPED",
    "EXIT_TIMEOUT",
    "EXIT_WAIT_FAILED",
    "WaitResult",
    "exit_code_for",
    "follow_log",
    "wait_for_jobs",
    "worst_exit_code",
]

EXIT_TIMEOUT = 201
EXIT_STOPPED = 202
EXIT_LOST = 203
EXIT_CANNOT_START = 204
EXIT_CANCELLED = 205
"""Reserved for the CANCELLED final state another issue adds."""
EXIT_WAIT_FAILED = 206
"""The wait itself failed: no such job (or purged), or the daemon stayed away too long."""

EXIT_CODES: tuple[tuple[str, str], ...] = (
    ("0-255", "the job's own exit code (0: SUCCEEDED)"),
    ("128+N", "the job was killed by signal N (137: SIGKILL, 143: SIGTERM)"),
    (str(EXIT_TIMEOUT), "TIMEOUT: the job ran past its --timeout and was ended"),
    (str(EXIT_STOPPED), "STOPPED: someone stopped the job (apr-sched stop, the TUI)"),
    (str(EXIT_LOST), "lost: the job's host or wrapper vanished; how it ended is unknown"),
    (str(EXIT_CANNOT_START), "cannot start: the job could not be started on its host"),
    (str(EXIT_CANCELLED), "CANCELLED (reserved for a final state still to come)"),
    (str(EXIT_WAIT_FAILED), "the wait failed: no such job, or the daemon stayed away "
                            "longer than --reconnect-timeout"),
    ("2", "invalid input or a refused submit: nothing was submitted"),
    ("129/130/143", "this command got SIGHUP/SIGINT/SIGTERM: the jobs were stopped "
                    "(unless --no-stop-on-interrupt) and have ended"),
)
"""Every exit code a wait can give, as ``apr-sched wait --help`` prints them."""

def _exit_codes_help() -> str:
    lines = ["exit codes:"]
    for code, meaning in EXIT_CODES:
        lines += textwrap.wrap(meaning, 79, initial_indent=f"  {code:<12} ",
                               subsequent_indent=" " * 15)
    lines += textwrap.wrap(
        "several jobs: the worst outcome, in this order: the wait failed, lost, cannot "
        "start, CANCELLED, STOPPED, TIMEOUT, killed by a signal, a non-zero exit, 0 (the "
        "first job given wins a tie)", 79, initial_indent="  ", subsequent_indent="  ")
    return "\n".join(lines) + "\n"


EXIT_CODES_HELP = _exit_codes_help()
"""The table ``apr-sched wait --help`` ends with."""

LOST_REASON = "lost:"
CANNOT_START_REASON = "could not start"
"""How the scheduler's timeline words these endings (transitions.outcome, runs.py)."""

LOG_CHECK_MIN_SEC = 0.25
LOG_CHECK_MAX_SEC = 5.0
STATE_POLL_SEC = 30.0
"""The longest one long poll waits (well under the daemon's limit of 60 s)."""
RECONNECT_FIRST_SEC = 0.1
RECONNECT_MAX_SEC = 2.0
STATE_IDS_PER_REQUEST = 200
"""Job ids per ``GET /jobs?id=`` (the query string stays short)."""

_UNFINISHED = (JobStatus.PENDING, JobStatus.HELD, JobStatus.RUNNING, JobStatus.PAUSED)


# outcome -> exit code ----------------------------------------------------------------------
def exit_code_for(job: Job | None) -> int:
    """The exit code that tells how ``job`` ended (None: there is no such job)."""
    if job is None:
        return EXIT_WAIT_FAILED
    status = job.status
    if status is JobStatus.SUCCEEDED:
        return 0
    if status is JobStatus.TIMEOUT:
        return EXIT_TIMEOUT
    if status is JobStatus.STOPPED:
        return EXIT_STOPPED
    if status.value == "CANCELLED":  # pragma: no cover - the state does not exist yet
        return EXIT_CANCELLED
    if job.exit_code is not None:
        return job.exit_code if 0 < job.exit_code < 256 else 1
    if job.signal:
        return 128 + _signal_number(job.signal)
    reason = _last_reason(job)
    return EXIT_CANNOT_START if reason.startswith(CANNOT_START_REASON) else EXIT_LOST


def _signal_number(name: str) -> int:
    try:
        return int(signal.Signals[name])
    except KeyError:
        digits = name.removeprefix("SIG")
        return int(digits) if digits.isdigit() else int(signal.SIGKILL)


def _last_reason(job: Job) -> str:
    for attempt in reversed(job.attempts):
        if attempt.attempt == job.attempt and attempt.reason:
            return attempt.reason
    return job.events[-1].reason if job.events else ""


def _rank(code: int) -> int:
    """How bad an outcome is (higher is worse), for waits on several jobs."""
    order = (EXIT_WAIT_FAILED, EXIT_LOST, EXIT_CANNOT_START, EXIT_CANCELLED, EXIT_STOPPED,
             EXIT_TIMEOUT)
    if code in order:
        return 10 + len(order) - order.index(code)
    if code == 0:
        return 0
    return 2 if code > 128 else 1


def worst_exit_code(codes: Sequence[int]) -> int:
    """The worst of several outcomes (see ``EXIT_CODES_HELP``); the first given wins a tie."""
    worst = 0
    for code in codes:
        if _rank(code) > _rank(worst):
            worst = code
    return worst


# signals ------------------------------------------------------------------------------------
class _Interrupted(BaseException):
    """A signal asked the waiting process to end (BaseException: no handler swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class _Signals:
    """SIGINT, SIGTERM and SIGHUP recorded, and raised as ``_Interrupted`` only inside
    ``blocking()`` (a network wait, a backoff sleep): output is never cut mid-line."""

    NAMES = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: list[int] = []
        self._taken = 0
        self._armed = False
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> _Signals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.NAMES:
                if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                    continue  # nohup: the caller wants us to outlive the terminal
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._armed:
            self.check()

    def check(self) -> None:
        """Raise for a signal not raised yet."""
        if len(self.received) > self._taken:
            self._taken = len(self.received)
            self._armed = False
            raise _Interrupted(self.received[-1])

    @contextlib.contextmanager
    def blocking(self) -> Iterator[None]:
        self.check()
        self._armed = True
        try:
            yield
        finally:
            self._armed = False


# waiting ------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Tracked:
    """One waited job: what is known of it and how much of its output is printed."""

    job_id: str
    job: Job | None = None
    attempt: int | None = None
    """The attempt whose log is being printed (None until the job is first read)."""
    offset: int = 0
    missing: bool = False
    done: bool = False
    """Final, and every attempt's output printed."""


@dataclass(slots=True)
class WaitResult:
    """How a wait ended: ``code`` is the exit code to leave with."""

    code: int
    jobs: dict[str, Job | None] = field(default_factory=dict)
    """Each waited job as last read (None: no such job)."""
    interrupted: int | None = None
    """The signal that interrupted the wait, if one did."""


class _Waiter:
    def __init__(self, client: SchedulerClient, job_ids: Sequence[str], *,
                 output: TextIO | None, notices: TextIO, first_attempt: int | None,
                 reconnect_timeout: float, label_lines: bool, pinned: bool = False,
                 json_lines: bool = False) -> None:
        self.client = client
        self.pinned = pinned
        """Print one attempt only (``logs --follow --attempt N``): no moving on to a retry."""
        self.json_lines = json_lines
        """Print each log reply as a JSON line (``logs --follow --json``)."""
        self.tracked = {job_id: _Tracked(job_id, attempt=first_attempt)
                        for job_id in dict.fromkeys(job_ids)}
        self.output = output
        self.notices = notices
        self.reconnect_timeout = reconnect_timeout
        self.label_lines = label_lines
        self.signals = _Signals()
        self.since = 0
        self._log_pause = LOG_CHECK_MIN_SEC

    # the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        """Until every job has ended and its output is printed."""
        self._retrying(self._start)
        while not all(t.done for t in self.tracked.values()):
            printed = self._retrying(self._print_output)
            if all(t.done for t in self.tracked.values()):
                return
            self._log_pause = LOG_CHECK_MIN_SEC if printed else min(
                self._log_pause * 2, LOG_CHECK_MAX_SEC)
            if self._retrying(self._wait_for_event):
                self._retrying(self._read_states)

    def _start(self) -> None:
        health = self._call(self.client.health)
        self.since = int(health.get("last_event_seq", 0))
        self._read_states()

    def _wait_for_event(self) -> bool:
        """One long poll; True when an event names a waited job (or the feed jumped)."""
        reading = any(t.job is not None and t.job.status is JobStatus.RUNNING
                      and not t.done for t in self.tracked.values()) and self.output is not None
        wait = self._log_pause if reading else STATE_POLL_SEC
        page = self._call(self.client.events, since=self.since, wait=wait)
        last = int(page.get("last_seq", self.since))
        events = page.get("events") or []
        jumped = last < self.since
        self.since = last
        return jumped or any(e.get("job_id") in self.tracked for e in events)

    def _read_states(self) -> None:
        ids = [t.job_id for t in self.tracked.values() if not t.done and not t.missing]
        for start in range(0, len(ids), STATE_IDS_PER_REQUEST):
            chunk = ids[start:start + STATE_IDS_PER_REQUEST]
            reply = self._call(self.client.request, "GET", "/jobs",
                               query={"id": ",".join(chunk), "limit": len(chunk)})[1]
            from apr_sched.models import JobPage

            found = {job.job_id: job for job in JobPage.model_validate(reply).jobs}
            for job_id in chunk:
                tracked = self.tracked[job_id]
                tracked.job = found.get(job_id)
                if tracked.job is None:
                    self._gone(tracked)
                elif tracked.attempt is None:
                    tracked.attempt = tracked.job.attempt

    def _gone(self, tracked: _Tracked) -> None:
        tracked.missing = tracked.done = True
        self._notice(f"no job {tracked.job_id!r} (unknown, or purged)")

    # output -----------------------------------------------------------------------------
    def _print_output(self) -> bool:
        """Print what each job wrote since last time; True if anything was printed. A job
        whose final state was read before its log is done once the log reads empty."""
        printed = False
        for tracked in self.tracked.values():
            job = tracked.job
            if tracked.done or job is None or tracked.attempt is None:
                continue
            if self.output is None:
                tracked.done = job.status.is_final
                continue
            if job.status in (JobStatus.PENDING, JobStatus.HELD) and (
                    tracked.attempt == job.attempt):
                continue  # nothing can have been written since it was last read
            while True:
                printed |= self._drain(tracked)
                if tracked.attempt < job.attempt and not self.pinned:
                    tracked.attempt, tracked.offset = tracked.attempt + 1, 0
                    self._notice(f"job {tracked.job_id} attempt {tracked.attempt}")
                    continue
                tracked.done = job.status.is_final or tracked.attempt < job.attempt
                break
        return printed

    def _drain(self, tracked: _Tracked) -> bool:
        printed = False
        while True:
            try:
                reply = self._call(self.client.logs, tracked.job_id, attempt=tracked.attempt,
                                   offset=tracked.offset)
            except NotFound:
                return printed  # purged meanwhile: the next state read says so
            offset = int(reply.get("offset", tracked.offset))
            lines = reply.get("lines") or []
            if lines:
                self._write(tracked.job_id, reply)
                printed = True
            moved = offset != tracked.offset
            tracked.offset = offset
            if not lines and not moved:
                return printed

    def _write(self, job_id: str, reply: dict[str, Any]) -> None:
        if self.output is None:
            return
        label = f"{job_id}: " if self.label_lines else ""
        if self.json_lines:
            text = json.dumps(reply) + "\n"
        else:
            text = "".join(f"{label}{line}\n" for line in reply["lines"])
        try:
            self.output.write(text)
            self.output.flush()
        except BrokenPipeError:
            self.output = None  # the reader went away: keep waiting for the outcome

    def _notice(self, text: str) -> None:
        with contextlib.suppress(OSError, ValueError):
            print(f"apr-sched: {text}", file=self.notices, flush=True)

    # the daemon going away --------------------------------------------------------------
    def _call(self, method: Any, *args: Any, **kwargs: Any) -> Any:
        """One request, interruptible by a signal (which also drops the connection it
        interrupted, since the reply would be half read)."""
        try:
            with self.signals.blocking():
                return method(*args, **kwargs)
        except _Interrupted:
            self.client.close()
            raise

    def _retrying(self, step: Any) -> Any:
        """Run ``step`` until it gets through, reconnecting while the daemon is away."""
        deadline: float | None = None
        pause = RECONNECT_FIRST_SEC
        while True:
            try:
                if deadline is not None:
                    self._resync()
                result = step()
            except DaemonUnreachable as exc:
                self.client.close()
                now = time.monotonic()
                if deadline is None:
                    if self.reconnect_timeout <= 0:
                        raise
                    deadline = now + self.reconnect_timeout
                    self._notice(f"{exc.message}; trying again for up to "
                                 f"{format_duration(self.reconnect_timeout)}")
                if now >= deadline:
                    raise
                with self.signals.blocking():
                    time.sleep(min(pause, deadline - now))  # reconnect backoff
                pause = min(pause * 2, RECONNECT_MAX_SEC)
                continue
            if deadline is not None:
                self._notice("the daemon answers again; still waiting")
            return result

    def _resync(self) -> None:
        """After a reconnect: the feed may have moved on (or restarted): read the states."""
        health = self._call(self.client.health)
        last = int(health.get("last_event_seq", 0))
        self.since = min(self.since, last)
        self._read_states()

    # stopping ---------------------------------------------------------------------------
    def stop_unfinished(self) -> None:
        """Ask the daemon to stop each unfinished job. A signal meanwhile waits until the
        stops are sent (a second Ctrl-C must not leave a job unstopped); a daemon restart
        is ridden out as anywhere else."""
        for tracked in self.tracked.values():
            if tracked.done or tracked.missing:
                continue
            try:
                self._retrying(lambda t=tracked: self.client.stop(t.job_id))
            except (IllegalTransition, NotFound):
                continue  # it ended (or went) meanwhile
            except Forbidden as exc:
                self._notice(exc.message)

    def unfinished(self) -> list[str]:
        return [t.job_id for t in self.tracked.values() if not t.done and not t.missing]

    # outcome ----------------------------------------------------------------------------
    def outcome(self) -> dict[str, Job | None]:
        jobs: dict[str, Job | None] = {}
        for tracked in self.tracked.values():
            job = tracked.job
            if job is not None and job.status is JobStatus.FAILED and job.exit_code is None \
                    and not job.signal:
                job = self._retrying(lambda j=job: self._call(self.client.job, j.job_id))
            jobs[tracked.job_id] = job
        return jobs


def wait_for_jobs(
    client: SchedulerClient,
    job_ids: Sequence[str],
    *,
    output: TextIO | None = None,
    notices: TextIO | None = None,
    stop_on_interrupt: bool = True,
    reconnect_timeout: float = 600.0,
    first_attempt: int | None = None,
    label_lines: bool | None = None,
) -> WaitResult:
    """Block until every job in ``job_ids`` has ended; return the exit code that tells how.

    ``output``: where the jobs' output goes as it is written (None: nowhere, ``--quiet``);
    each job's current attempt from its first byte, or ``first_attempt`` on (1 for a job
    just submitted), then each retry's. ``label_lines`` (default: more than one job)
    prefixes each line with ``<job id>: ``. ``notices`` (default stderr) gets one-line
    notes: a new attempt, the daemon away and back, a stop on interrupt. Signals: see the
    module docstring (handlers are installed only in the main thread).
    """
    if not job_ids:
        raise ValueError("no job ids to wait for")
    waiter = _Waiter(client, job_ids, output=output,
                     notices=sys.stderr if notices is None else notices,
                     first_attempt=first_attempt, reconnect_timeout=reconnect_timeout,
                     label_lines=len(set(job_ids)) > 1 if label_lines is None else label_lines)
    interrupted: int | None = None
    with waiter.signals:
        try:
            try:
                waiter.run()
            except _Interrupted as exc:
                interrupted = exc.signum
                if not stop_on_interrupt:
                    left = waiter.unfinished()
                    if left:
                        waiter._notice(f"interrupted; job {', '.join(left)} keeps running")
                    return WaitResult(128 + interrupted, interrupted=interrupted)
                left = waiter.unfinished()
                if left:
                    waiter._notice(f"interrupted: stopping job {', '.join(left)} "
                                   "(interrupt again to leave at once)")
                    waiter.stop_unfinished()
                    waiter.run()
            jobs = waiter.outcome()
        except _Interrupted as exc:
            signum = interrupted or exc.signum
            return WaitResult(128 + signum, interrupted=signum)
        except DaemonUnreachable as exc:
            waiter._notice(f"gave up waiting: {exc.message}")
            return WaitResult(EXIT_WAIT_FAILED, interrupted=interrupted)
    if interrupted is not None:
        return WaitResult(128 + interrupted, jobs, interrupted)
    return WaitResult(worst_exit_code([exit_code_for(job) for job in jobs.values()]), jobs)


def follow_log(client: SchedulerClient, job_id: str, attempt: int, offset: int, *,
               output: TextIO, pinned: bool, json_lines: bool = False,
               notices: TextIO | None = None) -> int:
    """``apr-sched logs --follow``: print one job's lines from ``offset`` of ``attempt``
    until it has ended (the same long poll and offsets as a wait); ``pinned`` stays on
    that attempt instead of moving on to a retry; ``json_lines`` prints each reply as
    JSON. Returns 0, or 128 + N when signal N ended it (the job is left alone)."""
    waiter = _Waiter(client, [job_id], output=output,
                     notices=sys.stderr if notices is None else notices,
                     first_attempt=attempt, reconnect_timeout=0.0, label_lines=False,
                     pinned=pinned, json_lines=json_lines)
    waiter.tracked[job_id].offset = offset
    try:
        with waiter.signals:
            waiter.run()
    except _Interrupted as exc:
        return 128 + exc.signum
    return 0
