"""Which job status changes are legal, and what each one writes: one table, one place.

Pure: no store, no loop. The Scheduler asks before it writes; a transition this table does
not list is a bug in the caller, so ``check`` raises ``RuntimeError`` instead of writing
it. Control actions people ask for (pause, resume, stop, rerun) have their own table, so
a refusal names the state that forbids it. Each transition's columns, reason and memory
changes are built here as a ``Change`` (``started``, ``attempt_ended``, ``paused`` ...),
which the Scheduler writes with ``Journal.write`` and which is applied only once it has
committed; how an ended attempt reads (``outcome``) and whether it retries are here too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from apr_sched.errors import IllegalTransition
from apr_sched.executors.base import ExitStatus
from apr_sched.jobs import Book
from apr_sched.models import FINAL_STATUSES, Job, JobStatus
from apr_sched.runs import Run
from apr_sched.states import ACTIONS as ACTIONS  # re-exported: they live with the states

_ENDINGS = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMEOUT,
                      JobStatus.STOPPED})

LEGAL: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.HELD, JobStatus.STOPPED,
                                  JobStatus.CANCELLED}),
    JobStatus.HELD: frozenset({JobStatus.PENDING, JobStatus.STOPPED, JobStatus.CANCELLED}),
    # back to PENDING only when recovery finds the attempt never started
    JobStatus.RUNNING: frozenset({JobStatus.PAUSED, JobStatus.PENDING} | _ENDINGS),
    JobStatus.PAUSED: frozenset({JobStatus.RUNNING} | _ENDINGS),
    # a retry or a rerun starts a new attempt
    **{final: frozenset({JobStatus.PENDING}) for final in FINAL_STATUSES},
}
"""status -> statuses it may move to. Staying in a status (a note on the timeline) is
always allowed."""


STOP = "stop"
TIMEOUT = "timeout"
"""Why the scheduler is ending an attempt (persisted with the job, re-armed at restart)."""


def check(from_status: JobStatus, to_status: JobStatus) -> None:
    """Refuse a transition the table does not list (a caller bug, never user input)."""
    if to_status is not from_status and to_status not in LEGAL[from_status]:
        raise RuntimeError(f"illegal transition {from_status.value} -> {to_status.value}")


def illegal(action: str, job: Job) -> IllegalTransition:
    return IllegalTransition(
        f"cannot {action} job {job.job_id}: it is {job.status.value}",
        {"job_id": job.job_id, "status": job.status.value, "action": action},
    )


def require(action: str, job: Job) -> None:
    """Raise IllegalTransition unless ``action`` applies to the job's current status."""
    if job.status not in ACTIONS[action]:
        raise illegal(action, job)


def outcome(ending: str | None, status: ExitStatus,
            timeout_sec: float | None) -> tuple[JobStatus, str]:
    """The final status of an ended attempt and the reason the timeline shows."""
    if ending == STOP:
        return JobStatus.STOPPED, "stopped by request"
    if ending == TIMEOUT:
        return JobStatus.TIMEOUT, f"exceeded timeout_sec={timeout_sec:g}"
    if status.lost:
        return JobStatus.FAILED, f"lost: {status.detail}"
    if status.exit_code == 0:
        return JobStatus.SUCCEEDED, "exit code 0"
    if status.exit_code is None:
        return JobStatus.FAILED, status.detail or f"killed by {status.signal}"
    if status.signal:
        return JobStatus.FAILED, f"exit code {status.exit_code} (killed by {status.signal}?)"
    return JobStatus.FAILED, f"exit code {status.exit_code}"


# What each transition writes ----------------------------------------------------------------
# Each builder below is pure: it returns the Change (status, reason, columns) the Scheduler
# writes, and what changes in memory (``then``) once that write has committed.

@dataclass(frozen=True, slots=True)
class Change:
    """One job transition as data, for ``Journal.write``."""

    to_status: JobStatus
    reason: str
    job_cols: dict[str, Any] | None = None
    attempt_cols: dict[str, Any] | None = None
    attempt: int | None = None
    """The attempt it is about when that is a new one (else the job's current one)."""
    host_id: str | None = None
    then: Callable[[], None] | None = None
    """Memory changes beyond the status, run once the write has committed."""


@dataclass(frozen=True, slots=True)
class Ended:
    """How an ended attempt is recorded, and whether the job retries."""

    change: Change
    run_sec: float
    retry: bool


def started(job: Job, book: Book, host_id: str, now: datetime) -> Change:
    """PENDING -> RUNNING: dispatched to ``host_id`` (written before the wrapper starts)."""
    def then() -> None:
        book.run_sec, book.resumed_at = 0.0, now
        job.host_id, job.started_at = host_id, now

    return Change(JobStatus.RUNNING, f"dispatched to {host_id}",
                  job_cols={"host_id": host_id, "started_at": now, "run_sec": 0.0,
                            "resumed_at": now, "pgid": None},
                  attempt_cols={"host_id": host_id, "started_at": now}, host_id=host_id,
                  then=then)


def new_attempt(job: Job, book: Book, now: datetime, reason: str, *, queue_seq: int,
                retries_used: int) -> Change:
    """-> PENDING as the next attempt (a retry or a rerun), queued at ``queue_seq``."""
    attempt = job.attempt + 1
    columns = {"attempt": attempt, "host_id": None, "started_at": None,
               "finished_at": None, "exit_code": None, "signal": None,
               "queue_seq": queue_seq, "retries_used": retries_used,
               "run_sec": 0.0, "resumed_at": None, "pgid": None, "ending": None,
               "term_sent_at": None}

    def then() -> None:
        for name in ("host_id", "started_at", "finished_at", "exit_code", "signal"):
            setattr(job, name, None)
        job.attempt = attempt
        book.ending = book.term_sent_at = None

    return Change(JobStatus.PENDING, reason, job_cols=columns,
                  attempt_cols={"queued_at": now}, attempt=attempt, then=then)


def retried(job: Job, book: Book, now: datetime, queue_seq: int) -> Change:
    """A failed or timed-out attempt's retry (``Ended.retry`` said it has one left)."""
    return new_attempt(job, book, now, f"retry {book.retries_used + 1} of {job.retry_limit} "
                                       f"as attempt {job.attempt + 1}",
                       queue_seq=queue_seq, retries_used=book.retries_used + 1)


def attempt_ended(job: Job, book: Book, ending: str | None, status: ExitStatus,
                  note: str | None, now: datetime) -> Ended:
    """An attempt ended: its final status and reason (``outcome``), its running time up to
    when it ended (never later than ``now``), and whether a retry is left."""
    end = now if status.ended_at is None else min(now, datetime.fromtimestamp(
        status.ended_at, UTC))
    run_sec = book.running_sec(end)
    final, reason = outcome(ending, status, job.timeout_sec)
    if note:
        reason = f"{reason} ({note})"
    retry = final in (JobStatus.FAILED, JobStatus.TIMEOUT) and book.retries_used < job.retry_limit

    def then() -> None:
        job.finished_at, job.exit_code, job.signal = end, status.exit_code, status.signal
        job.pgid = None

    ended = {"finished_at": end, "exit_code": status.exit_code, "signal": status.signal,
             "run_sec": run_sec}
    return Ended(Change(final, reason, job_cols={**ended, "resumed_at": None, "pgid": None},
                        attempt_cols={**ended, "reason": reason}, then=then),
                 run_sec=run_sec, retry=retry)


def paused(book: Book, now: datetime) -> Change:
    """RUNNING -> PAUSED (SIGSTOP went out): its running time stops counting."""
    run_sec = book.running_sec(now)

    def then() -> None:
        book.run_sec, book.resumed_at = run_sec, None

    return Change(JobStatus.PAUSED, "paused by request (SIGSTOP)",
                  job_cols={"run_sec": run_sec, "resumed_at": None}, then=then)


def resumed(book: Book, now: datetime) -> Change:
    """PAUSED -> RUNNING (SIGCONT went out): its running time counts again."""
    def then() -> None:
        book.resumed_at = now

    return Change(JobStatus.RUNNING, "resumed by request (SIGCONT)",
                  job_cols={"resumed_at": now}, then=then)


def stopped_before_running(job: Job, now: datetime) -> Change:
    """PENDING/HELD -> STOPPED at once."""
    def then() -> None:
        job.finished_at = now

    return Change(JobStatus.STOPPED, "stopped by request before it ran",
                  job_cols={"finished_at": now}, then=then)


def cancelled(job: Job, reason: str, now: datetime) -> Change:
    """PENDING/HELD -> CANCELLED: a dependency can never hold (``dependency 12 FAILED``)."""
    def then() -> None:
        job.finished_at = now

    return Change(JobStatus.CANCELLED, reason, job_cols={"finished_at": now},
                  attempt_cols={"reason": reason}, then=then)


def requeued_unstarted(job: Job, book: Book, host_id: str) -> Change:
    """RUNNING -> PENDING, the same attempt: it was committed RUNNING but its wrapper never
    started (the scheduler stopped in between); no retry is spent."""
    def then() -> None:
        job.host_id = job.started_at = None
        book.resumed_at = None

    return Change(JobStatus.PENDING,
                  f"never started on {host_id} before the scheduler stopped: queued again "
                  f"(no retry spent)",
                  job_cols={"host_id": None, "started_at": None, "resumed_at": None},
                  attempt_cols={"host_id": None, "started_at": None}, then=then)


def ending_intent(job: Job, book: Book, run: Run, ending: str | None, reason: str) -> Change:
    """A note (same status): the attempt is being ended (STOP, TIMEOUT), or no longer is
    (None). Persisted before any signal goes out, so a restart carries it out."""
    def then() -> None:
        run.ending = book.ending = ending
        run.term_sent_at = book.term_sent_at = None

    return Change(job.status, reason, job_cols={"ending": ending, "term_sent_at": None},
                  then=then)


def control_target(action: str, job: Job, run: Run | None) -> Run:
    """The live attempt a pause or resume goes to, or IllegalTransition saying why not (no
    live attempt, a host that cannot take it, an attempt being stopped)."""
    if run is None:
        raise illegal(action, job)
    refusal = run.executor.control_refusal()
    if refusal:
        raise IllegalTransition(refusal, {"job_id": job.job_id, "status": job.status.value,
                                          "host_id": run.host_id})
    if run.ending:
        raise IllegalTransition(f"cannot {action} job {job.job_id}: it is being stopped "
                                f"({run.ending})",
                                {"job_id": job.job_id, "status": job.status.value})
    return run
