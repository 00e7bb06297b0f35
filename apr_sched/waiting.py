"""Wait for jobs to end, print their output once, and tell how they ended by an exit code.

``wait_for_jobs(client, ids)`` is what ``apr-sched submit --wait`` and ``apr-sched wait``
run, and what an LSF ``bsub -K`` / ``bwait`` shim calls: a make recipe or a flow script
blocks on a job and gets its outcome as its own exit status (``outcomes.EXIT_CODES``).
``follow_log`` is ``apr-sched logs --follow``.

Cost to the daemon: long polls only, nothing asked again and again. Job states come from
``GET /events?since=&wait=``, held by the daemon until something happens; only an event
naming a waited job makes the waiter read its state. A running job's output comes from
``GET /jobs/{id}/logs?offset=N&wait=S``, held until the job writes a line past N (or its
attempt ends), so a line is printed as soon as it is written. The waiter holds the event
poll and one log poll per followed running job at once, each on its own connection, and
sleeps in ``select`` until one of them answers. Pending, held or ``--quiet`` waits read no
log at all.

Fallbacks, bounded: at most ``MAX_LOG_POLLS`` logs are held at once (more running jobs are
read whenever something answers, and at least every ``LOG_RETRY_MAX_SEC``); a log poll the
daemon answers at once without news while the job still runs (it holds no more requests,
or is an older daemon without log long polls) is asked again after a pause growing from
``LOG_RETRY_MIN_SEC`` to ``LOG_RETRY_MAX_SEC``.

A daemon restart is ridden out: the waiter reconnects with backoff for up to
``reconnect_timeout`` seconds, reads the states again, and continues each log at the offset
already printed, so no line is lost or printed twice.

Ctrl-C, SIGTERM and SIGHUP of the waiting process stop the waited jobs (unless told not
to), keep printing until they have ended, and then give ``128 + signal``; a second signal
leaves at once. A SIGHUP that was ignored when we started (``nohup``) stays ignored.
"""

from __future__ import annotations

import contextlib
import functools
import json
import select
import signal
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from types import FrameType
from typing import Any, TextIO, TypeVar

from apr_sched.durations import format_duration
from apr_sched.errors import Forbidden, IllegalTransition, NotFound
from apr_sched.outcomes import (
    EXIT_CANCELLED,
    EXIT_CANNOT_START,
    EXIT_CODES,
    EXIT_CODES_HELP,
    EXIT_LOST,
    EXIT_STOPPED,
    EXIT_TIMEOUT,
    EXIT_WAIT_FAILED,
    exit_code_for,
    worst_exit_code,
)
from apr_sched.rawclient import DaemonUnreachable, RawClient
from apr_sched.states import JobStatus
from apr_sched.views import JobView

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

STATE_POLL_SEC = 30.0
"""The longest one event long poll waits (well under the daemon's limit of 60 s)."""
LOG_POLL_SEC = 30.0
"""The longest one log long poll waits."""
MAX_LOG_POLLS = 16
"""Logs held at once, one connection each (the daemon allows 64 per client)."""
LOG_RETRY_MIN_SEC = 0.25
LOG_RETRY_MAX_SEC = 5.0
RECONNECT_FIRST_SEC = 0.1
RECONNECT_MAX_SEC = 2.0
STATE_IDS_PER_REQUEST = 200
"""Job ids per ``GET /jobs?id=`` (the query string stays short)."""
T = TypeVar("T")
_FINAL = frozenset(status.value for status in JobStatus if status.is_final)


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
        for signum in self.NAMES:
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # nohup: the caller wants us to outlive the terminal
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals are not ours to handle
                break
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
class _Tracked:
    """One waited job: what is known of it, how much of its output is printed, and its log
    poll (a connection of its own while the job runs)."""

    __slots__ = (
        "attempt",
        "done",
        "due",
        "job_id",
        "missing",
        "offset",
        "pause",
        "poller",
        "polling",
        "sent_at",
        "view",
    )

    def __init__(self, job_id: str, attempt: int | None) -> None:
        self.job_id = job_id
        self.view: JobView | None = None
        self.attempt = attempt
        """The attempt whose log is being printed (None until the job is first read)."""
        self.offset = 0
        self.missing = False
        self.done = False
        """Final, and every attempt's output printed."""
        self.poller: RawClient | None = None
        self.polling = False
        """A log poll is out on ``poller`` and not answered yet."""
        self.sent_at = 0.0
        self.due = 0.0
        """Not before this (monotonic) may its log be asked for again (a back-off)."""
        self.pause = LOG_RETRY_MIN_SEC

    def fileno(self) -> int:
        """Its log poll's socket (for ``select``)."""
        return -1 if self.poller is None else self.poller.fileno()

    def following(self) -> bool:
        """Its current attempt runs (or is paused): its log is to be followed."""
        view = self.view
        return (not self.done and view is not None and view.status.is_active
                and self.attempt == view.attempt)

    def ended(self) -> bool:
        """The attempt being printed has ended: what is in its log is all there will be."""
        view = self.view
        return view is not None and self.attempt is not None and (
            self.attempt < view.attempt or view.status.is_final)


class WaitResult:
    """How a wait ended: ``code`` is the exit code to leave with."""

    __slots__ = ("code", "interrupted", "jobs")

    def __init__(self, code: int, jobs: dict[str, JobView | None] | None = None,
                 interrupted: int | None = None) -> None:
        self.code = code
        self.jobs: dict[str, JobView | None] = jobs or {}
        """Each waited job as last read (None: no such job)."""
        self.interrupted = interrupted
        """The signal that interrupted the wait, if one did."""

    def __repr__(self) -> str:
        return f"WaitResult(code={self.code}, interrupted={self.interrupted})"


class _Waiter:
    def __init__(self, client: RawClient, job_ids: Sequence[str], *,
                 output: TextIO | None, notices: TextIO, first_attempt: int | None,
                 reconnect_timeout: float, label_lines: bool, pinned: bool = False,
                 json_lines: bool = False, since: int | None = None,
                 known: dict[str, JobView] | None = None) -> None:
        self.client = client
        self.pinned = pinned
        """Print one attempt only (``logs --follow --attempt N``): no moving on to a retry."""
        self.json_lines = json_lines
        """Print each log reply as a JSON line (``logs --follow --json``)."""
        self.tracked = {job_id: _Tracked(job_id, first_attempt)
                        for job_id in dict.fromkeys(job_ids)}
        for job_id, view in (known or {}).items():
            if job_id in self.tracked:
                self._set_view(self.tracked[job_id], view)
        self.output = output
        self.notices = notices
        self.reconnect_timeout = reconnect_timeout
        self.label_lines = label_lines
        self.signals = _Signals()
        self.since = since
        self._events: RawClient | None = None
        self._events_out = False

    # the loop ---------------------------------------------------------------------------
    def run(self) -> None:
        """Until every job has ended and its output is printed."""
        if self.since is None or any(t.view is None for t in self.tracked.values()):
            self._retrying(self._start)
        while not self._all_done():
            self._retrying(self._turn)
        self._drop_polls()

    def _all_done(self) -> bool:
        return all(t.done for t in self.tracked.values())

    def _start(self) -> None:
        if self.since is None:
            self.since = int(self._call(self.client.health).get("last_event_seq", 0))
        self._read_states([t.job_id for t in self.tracked.values() if t.view is None])

    def _turn(self) -> None:
        """Settle what can be settled, hold the polls, and handle whichever answers."""
        self._settle()
        if self._all_done():
            return
        self._send_polls()
        now = time.monotonic()
        dues = [t.due for t in self.tracked.values()
                if t.following() and not t.polling and self.output is not None]
        timeout = max(0.0, min(dues) - now) if dues else None
        sources: list[Any] = [t for t in self.tracked.values() if t.polling]
        if self._events_out:
            sources.append(self)
        with self.signals.blocking():
            try:
                ready, _, _ = select.select(sources, [], [], timeout)
            except _Interrupted:
                self._drop_polls()
                raise
        for source in ready:
            if source is self:
                self._on_events()
            else:
                self._on_log(source)

    def fileno(self) -> int:
        """The event poll's socket (the waiter is itself a ``select`` source for it)."""
        return -1 if self._events is None else self._events.fileno()

    def _send_polls(self) -> None:
        if not self._events_out:
            if self._events is None:
                self._events = self.client.clone()
            assert self.since is not None
            self._events.send_events(self.since, STATE_POLL_SEC)
            self._events_out = True
        if self.output is None:
            return
        held = sum(1 for t in self.tracked.values() if t.polling)
        now = time.monotonic()
        for tracked in self.tracked.values():
            if not tracked.following() or tracked.polling or now < tracked.due:
                continue
            if held < MAX_LOG_POLLS:
                if tracked.poller is None:
                    tracked.poller = self.client.clone()
                tracked.poller.send_logs(tracked.job_id, attempt=tracked.attempt,
                                         offset=tracked.offset, wait=LOG_POLL_SEC)
                tracked.polling, tracked.sent_at = True, now
                held += 1
            else:  # more running jobs than held polls: read it now, again in a while
                printed = self._drain(tracked)
                self._back_off(tracked, printed)

    def _back_off(self, tracked: _Tracked, printed: bool) -> None:
        if printed:
            tracked.pause = LOG_RETRY_MIN_SEC
        else:
            tracked.pause = min(tracked.pause * 2, LOG_RETRY_MAX_SEC)
        tracked.due = time.monotonic() + tracked.pause

    def _on_events(self) -> None:
        assert self._events is not None
        reply = self._events.finish()
        if reply is None:
            return  # sent again on a fresh connection
        self._events_out = False
        page = reply[1] if isinstance(reply[1], dict) else {}
        assert self.since is not None
        last = int(page.get("last_seq", self.since))
        jumped = last < self.since
        self.since = last
        events = page.get("events") or []
        if self.output is None:  # --quiet: only an ending matters, not a start or a pause
            events = [e for e in events if e.get("to_status") in _FINAL]
        named = {e.get("job_id") for e in events}
        ids = [t.job_id for t in self.tracked.values() if not t.done and not t.missing
               and (jumped or t.job_id in named)]
        if ids:
            self._read_states(ids)

    def _on_log(self, tracked: _Tracked) -> None:
        assert tracked.poller is not None
        reply = tracked.poller.finish()
        if reply is None:
            return
        tracked.polling = False
        data = reply[1] if isinstance(reply[1], dict) else {}
        if self._take(tracked, data):
            tracked.pause, tracked.due = LOG_RETRY_MIN_SEC, 0.0
            return
        # Nothing new: the hold ran out, or the attempt ended, or the daemon did not hold it.
        self._read_states([tracked.job_id])
        if tracked.following() and time.monotonic() - tracked.sent_at < LOG_POLL_SEC - 1:
            self._back_off(tracked, printed=False)

    def _settle(self) -> None:
        """Jobs whose attempt has ended: print the rest of its log, move on to the next
        attempt or mark the job done. A job with a log poll out waits for its answer."""
        for tracked in self.tracked.values():
            view = tracked.view
            if tracked.done or view is None or tracked.attempt is None or tracked.polling:
                continue
            if self.output is None:
                tracked.done = view.status.is_final
                continue
            while tracked.ended():
                self._drain(tracked)
                if tracked.attempt < view.attempt and not self.pinned:
                    tracked.attempt, tracked.offset = tracked.attempt + 1, 0
                    self._notice(f"job {tracked.job_id} attempt {tracked.attempt}")
                    continue
                self._finish(tracked)
                break

    def _finish(self, tracked: _Tracked) -> None:
        tracked.done = True
        if tracked.poller is not None:
            tracked.poller.close()
            tracked.poller = None

    def _read_states(self, ids: list[str]) -> None:
        for start in range(0, len(ids), STATE_IDS_PER_REQUEST):
            chunk = ids[start:start + STATE_IDS_PER_REQUEST]
            found = self._call(self.client.job_dicts, chunk)
            for job_id in chunk:
                tracked = self.tracked[job_id]
                if job_id in found:
                    self._set_view(tracked, JobView(found[job_id]))
                else:
                    self._gone(tracked)

    @staticmethod
    def _set_view(tracked: _Tracked, view: JobView) -> None:
        tracked.view = view
        if tracked.attempt is None:
            tracked.attempt = view.attempt

    def _gone(self, tracked: _Tracked) -> None:
        tracked.missing = True
        tracked.view = None
        self._finish(tracked)
        self._notice(f"no job {tracked.job_id!r} (unknown, or purged)")

    # output -----------------------------------------------------------------------------
    def _drain(self, tracked: _Tracked) -> bool:
        """Print what the job's log holds past the offset, without waiting; True if any."""
        printed = False
        while True:
            try:
                reply = self._call(self.client.logs, tracked.job_id, attempt=tracked.attempt,
                                   offset=tracked.offset)
            except NotFound:
                return printed  # purged meanwhile: the next state read says so
            if not self._take(tracked, reply):
                return printed
            printed = True

    def _take(self, tracked: _Tracked, reply: dict[str, Any]) -> bool:
        """Print a log reply's lines and move the offset on; True if it brought anything."""
        offset = int(reply.get("offset", tracked.offset))
        lines = reply.get("lines") or []
        if lines:
            self._write(tracked.job_id, reply)
        moved = offset != tracked.offset
        tracked.offset = offset
        return bool(lines) or moved

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
    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One request, interruptible by a signal (which also drops the connections it
        interrupted, since their replies would be half read)."""
        try:
            with self.signals.blocking():
                return method(*args, **kwargs)
        except _Interrupted:
            self.client.close()
            self._drop_polls()
            raise

    def _drop_polls(self) -> None:
        """Close every long poll's connection (their replies are no longer wanted)."""
        if self._events is not None:
            self._events.close()
        self._events_out = False
        for tracked in self.tracked.values():
            tracked.polling = False
            if tracked.poller is not None:
                tracked.poller.close()

    def _retrying(self, step: Callable[[], T]) -> T:
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
                self._drop_polls()
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
        self.since = last if self.since is None else min(self.since, last)
        self._read_states([t.job_id for t in self.tracked.values()
                           if not t.done and not t.missing])

    # stopping ---------------------------------------------------------------------------
    def stop_unfinished(self) -> None:
        """Ask the daemon to stop each unfinished job. A signal meanwhile waits until the
        stops are sent (a second Ctrl-C must not leave a job unstopped); a daemon restart
        is ridden out as anywhere else."""
        for tracked in self.tracked.values():
            if tracked.done or tracked.missing:
                continue
            try:
                self._retrying(functools.partial(self.client.act, tracked.job_id, "stop"))
            except (IllegalTransition, NotFound):
                continue  # it ended (or went) meanwhile
            except Forbidden as exc:
                self._notice(exc.message)

    def unfinished(self) -> list[str]:
        return [t.job_id for t in self.tracked.values() if not t.done and not t.missing]

    # outcome ----------------------------------------------------------------------------
    def outcome(self) -> dict[str, JobView | None]:
        """Each job as last read; a FAILED one without an exit code or signal is read
        again whole (its timeline says whether it was lost or could not start)."""
        jobs: dict[str, JobView | None] = {}
        for tracked in self.tracked.values():
            view = tracked.view
            if view is not None and view.status is JobStatus.FAILED and (
                    view.exit_code is None and not view.signal):
                read = functools.partial(self._call, self.client.job_dict, view.job_id)
                view = JobView(self._retrying(read))
            jobs[tracked.job_id] = view
        return jobs


def wait_for_jobs(
    client: RawClient,
    job_ids: Sequence[str],
    *,
    output: TextIO | None = None,
    notices: TextIO | None = None,
    stop_on_interrupt: bool = True,
    reconnect_timeout: float = 600.0,
    first_attempt: int | None = None,
    label_lines: bool | None = None,
    since: int | None = None,
    known: dict[str, JobView] | None = None,
) -> WaitResult:
    """Block until every job in ``job_ids`` has ended; return the exit code that tells how.

    ``output``: where the jobs' output goes as it is written (None: nowhere, ``--quiet``);
    each job's current attempt from its first byte, or ``first_attempt`` on (1 for a job
    just submitted), then each retry's. ``label_lines`` (default: more than one job)
    prefixes each line with ``<job id>: ``. ``notices`` (default stderr) gets one-line
    notes: a new attempt, the daemon away and back, a stop on interrupt. ``since`` (an
    event number taken before the jobs were submitted) and ``known`` (their submit
    replies) save the first round trips. Signals: see the module docstring (handlers are
    installed only in the main thread).
    """
    if not job_ids:
        raise ValueError("no job ids to wait for")
    waiter = _Waiter(client, job_ids, output=output,
                     notices=sys.stderr if notices is None else notices,
                     first_attempt=first_attempt, reconnect_timeout=reconnect_timeout,
                     label_lines=len(set(job_ids)) > 1 if label_lines is None else label_lines,
                     since=since, known=known)
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
        finally:
            waiter._drop_polls()
    if interrupted is not None:
        return WaitResult(128 + interrupted, jobs, interrupted)
    return WaitResult(worst_exit_code([exit_code_for(job) for job in jobs.values()]), jobs)


def follow_log(client: RawClient, job_id: str, attempt: int, offset: int, *,
               output: TextIO, pinned: bool, json_lines: bool = False,
               notices: TextIO | None = None) -> int:
    """``apr-sched logs --follow``: print one job's lines from ``offset`` of ``attempt``
    as they are written, until it has ended (the same long polls and offsets as a wait);
    ``pinned`` stays on that attempt instead of moving on to a retry; ``json_lines`` prints
    each reply as JSON. Returns 0, or 128 + N when signal N ended it (the job is left
    alone)."""
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
    finally:
        waiter._drop_polls()
    return 0
