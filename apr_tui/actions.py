"""Pause, resume, stop and rerun: which jobs each applies to, and what the stop dialog asks.

Headless (the app runs the actions; the main screen and the job detail screen both ask
through ``AprTui.request_action``, so a stop asks the same question wherever it starts).
Jobs an action does not apply to are left out before anything is sent, and the question
says how many; the scheduler still has the final word (a refusal is a notification).
"""

from __future__ import annotations

from collections.abc import Sequence

from apr_sched.models import FINAL_STATUSES, Job, JobStatus
from apr_tui.rows import count_by_status, display_name

APPLIES: dict[str, frozenset[JobStatus]] = {
    "pause": frozenset({JobStatus.PENDING, JobStatus.RUNNING}),
    "resume": frozenset({JobStatus.HELD, JobStatus.PAUSED}),
    "stop": frozenset({JobStatus.PENDING, JobStatus.HELD, JobStatus.RUNNING, JobStatus.PAUSED}),
    "rerun": FINAL_STATUSES,
}
"""Which states each action applies to (the scheduler has the final word)."""
DONE_VERB = {"pause": "paused", "resume": "resumed", "stop": "stop sent to",
             "rerun": "rerun queued for"}
ASKS_FIRST = frozenset({"stop"})
"""Actions that cannot be undone: a dialog asks first."""
LISTED_IDS = 8
"""A question names the jobs' ids up to this many."""


def applicable(action: str, jobs: Sequence[Job]) -> list[Job]:
    applies = APPLIES[action]
    return [job for job in jobs if job.status in applies]


def counts_phrase(jobs: Sequence[Job]) -> str:
    """``8 RUNNING, 4 PENDING``: most common state first, then in state order."""
    counts = [(status, count) for status, count in count_by_status(jobs).items() if count]
    counts.sort(key=lambda item: -item[1])
    return ", ".join(f"{count} {status.value}" for status, count in counts)


def _jobs_word(count: int) -> str:
    return f"{count} job{'' if count == 1 else 's'}"


def question(action: str, jobs: Sequence[Job]) -> str:
    """What the dialog asks before ``action`` on ``jobs`` (those it applies to are acted
    on): ``Stop 12 jobs: 8 RUNNING, 4 PENDING?``, then the ids, what is left out, and
    what stopping does."""
    targets = applicable(action, jobs)
    verb = action.capitalize()
    if len(targets) == 1:
        job = targets[0]
        text = f"{verb} job {job.job_id} ({display_name(job)}, {job.status.value})?"
    else:
        ids = [job.job_id for job in targets]
        shown = ", ".join(ids[:LISTED_IDS])
        if len(ids) > LISTED_IDS:
            shown += f" and {len(ids) - LISTED_IDS} more"
        text = f"{verb} {_jobs_word(len(targets))}: {counts_phrase(targets)}?\n({shown})"
    chosen = {job.job_id for job in targets}
    left = [job for job in jobs if job.job_id not in chosen]
    if left:
        text += (f"\n{_jobs_word(len(left))} ({counts_phrase(left)}) "
                 f"{'is left as it is' if len(left) == 1 else 'are left as they are'}.")
    if action == "stop":
        text += "\nRunning jobs get SIGTERM, then SIGKILL after the grace period."
    return text


def left_out(action: str, jobs: Sequence[Job]) -> str:
    """``; 1 job (1 SUCCEEDED) left as it is``, or nothing when the action applies to all."""
    applies = APPLIES[action]
    left = [job for job in jobs if job.status not in applies]
    if not left:
        return ""
    return f"; {_jobs_word(len(left))} ({counts_phrase(left)}) left as " \
           f"{'it is' if len(left) == 1 else 'they are'}"


def nothing_to_do(action: str, jobs: Sequence[Job]) -> str:
    """Why an action does nothing to these jobs (none is in a state it applies to)."""
    names = ", ".join(sorted(status.value for status in APPLIES[action]))
    if len(jobs) == 1:
        return f"cannot {action} job {jobs[0].job_id}: it is {jobs[0].status.value} " \
               f"({action} applies to {names})"
    return f"cannot {action} any of {_jobs_word(len(jobs))} ({counts_phrase(jobs)}); " \
           f"{action} applies to {names}"
