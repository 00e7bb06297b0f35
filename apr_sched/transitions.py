"""Which job status changes are legal, and how an ended attempt reads: one table, one place.

Pure: no store, no loop. The Scheduler asks before it writes; a transition this table does
not list is a bug in the caller, so ``check`` raises ``RuntimeError`` instead of writing
it. Control actions people ask for (pause, resume, stop, rerun) have their own table, so
a refusal names the state that forbids it.
"""

from __future__ import annotations

from apr_sched.errors import IllegalTransition
from apr_sched.executors.base import ExitStatus
from apr_sched.models import FINAL_STATUSES, Job, JobStatus
from apr_sched.states import ACTIONS as ACTIONS  # re-exported: they live with the states

_ENDINGS = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMEOUT,
                      JobStatus.STOPPED})

LEGAL: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.PENDING: frozenset({JobStatus.RUNNING, JobStatus.HELD, JobStatus.STOPPED}),
    JobStatus.HELD: frozenset({JobStatus.PENDING, JobStatus.STOPPED}),
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
