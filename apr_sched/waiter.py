"""The waiter behind ``waiting.wait_for_jobs`` and ``follow_log``: long polls held at once.

It holds the event poll and one log poll per followed running job, each on its own
connection, and sleeps in ``select`` until one answers (see ``waiting``'s docstring for
what it costs the daemon and the bounded fallbacks).
"""

from __future__ import annotations

import functools
import json
import select
import time

from apr_sched.durations import format_duration
from apr_sched.errors import Forbidden, IllegalTransition, NotFound
from apr_sched.interrupts import Interrupted, Signals
from apr_sched.rawclient import DaemonUnreachable, RawClient
from apr_sched.states import JobStatus
from apr_sched.views import JobView

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, TextIO, TypeVar

    T = TypeVar("T")

__all__ = ["LOG_POLL_SEC", "MAX_LOG_POLLS", "STATE_POLL_SEC", "Waiter"]

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
EVENTS_PER_POLL = 1000
"""Events asked for per poll; a reply with fewer holds every event up to its time."""
_FINAL = frozenset(status.value for status in JobStatus if status.is_final)



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


class Waiter:
    def __init__(self, client: RawClient, job_ids: Sequence[str], *,
                 output: TextIO | None, notices: TextIO, first_attempt: int | None,
                 reconnect_timeout: float, label_lines: bool, pinned: bool = False,
                 json_lines: bool = False, since: int | None = None,
                 known: dict[str, JobView] | None = None,
                 signals: Signals | None = None) -> None:
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
        self.signals = Signals() if signals is None else signals
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
        self.drop_polls()

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
            except Interrupted:
                self.drop_polls()
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
        """A log poll for each followed running job (up to MAX_LOG_POLLS), and the event
        poll unless every unfinished job has a log poll held: a held log poll answers when
        its attempt ends, so a lone running job costs one connection, not two."""
        if self.output is not None:
            self._send_log_polls()
        needed = any(not t.done and not t.missing and not t.polling
                     for t in self.tracked.values())
        if needed and not self._events_out:
            if self._events is None:
                self._events = self.client.clone()
            assert self.since is not None
            self._events.send_events(self.since, STATE_POLL_SEC, EVENTS_PER_POLL)
            self._events_out = True
        self.client.close()  # idle while the polls are held: the daemon's connection back

    def _send_log_polls(self) -> None:
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
        latest = {e.get("job_id"): e for e in events if e.get("kind", "job") == "job"}
        if self.output is None:  # --quiet: only an ending matters, not a start or a pause
            named = {e.get("job_id") for e in events if e.get("to_status") in _FINAL}
        else:
            named = set(latest)
        whole = len(events) < EVENTS_PER_POLL  # every event up to the reply: none to come
        ids = []
        for tracked in self.tracked.values():
            if tracked.done or tracked.missing or not (jumped or tracked.job_id in named):
                continue
            if whole and not jumped and self._succeeded(tracked, latest.get(tracked.job_id)):
                continue
            ids.append(tracked.job_id)
        if ids:
            self._read_states(ids)

    @staticmethod
    def _succeeded(tracked: _Tracked, event: dict[str, Any] | None) -> bool:
        """Settle a job whose latest event is its success, without reading it again (a
        success's exit code is 0); False when a look at the job is needed (any other
        ending says its exit code, signal or reason only in the job itself)."""
        view = tracked.view
        if (event is None or view is None or event.get("to_status") != "SUCCEEDED"
                or int(event.get("attempt", 0)) < view.attempt):
            return False
        tracked.view = view.succeeded_by(event)
        return True

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
                    self.notice(f"job {tracked.job_id} attempt {tracked.attempt}")
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
        self.notice(f"no job {tracked.job_id!r} (unknown, or purged)")

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

    def notice(self, text: str) -> None:
        try:  # noqa: SIM105 - contextlib.suppress would load contextlib for this alone
            print(f"apr-sched: {text}", file=self.notices, flush=True)
        except (OSError, ValueError):  # stderr closed or gone: the outcome still counts
            pass

    # the daemon going away --------------------------------------------------------------
    def _call(self, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """One request, interruptible by a signal (which also drops the connections it
        interrupted, since their replies would be half read)."""
        try:
            with self.signals.blocking():
                return method(*args, **kwargs)
        except Interrupted:
            self.client.close()
            self.drop_polls()
            raise

    def drop_polls(self) -> None:
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
                self.drop_polls()
                now = time.monotonic()
                if deadline is None:
                    if self.reconnect_timeout <= 0:
                        raise
                    deadline = now + self.reconnect_timeout
                    self.notice(f"{exc.message}; trying again for up to "
                                 f"{format_duration(self.reconnect_timeout)}")
                if now >= deadline:
                    raise
                with self.signals.blocking():
                    time.sleep(min(pause, deadline - now))  # reconnect backoff
                pause = min(pause * 2, RECONNECT_MAX_SEC)
                continue
            if deadline is not None:
                self.notice("the daemon answers again; still waiting")
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
                self.notice(exc.message)

    def unfinished(self) -> list[str]:
        return [t.job_id for t in self.tracked.values() if not t.done and not t.missing]

    # outcome ----------------------------------------------------------------------------
    def outcome(self) -> dict[str, JobView | None]:
        """Each job as last read; a FAILED one without an exit code or signal is read
        again whole (its timeline says whether it was lost or could not start), and so is
        a CANCELLED one (its timeline names the dependency)."""
        jobs: dict[str, JobView | None] = {}
        for tracked in self.tracked.values():
            view = tracked.view
            if view is not None and (view.status is JobStatus.CANCELLED or (
                    view.status is JobStatus.FAILED and view.exit_code is None
                    and not view.signal)):
                read = functools.partial(self._call, self.client.job_dict, view.job_id)
                view = JobView(self._retrying(read))
            jobs[tracked.job_id] = view
        return jobs
