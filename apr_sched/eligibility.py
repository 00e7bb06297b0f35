"""When a job may enter the dispatch queue, and why one that may not is waiting.

The dispatch pass only sees queued jobs, so whatever keeps a pending job from running
before its turn (a hold today; dependencies, a begin time or an array throttle later) is
decided here, when the Scheduler is about to queue it (``admits``), and never costs the
pass anything. ``pending_reason`` is what a waiting job's view says. Pure: it answers
from the job alone, and the Scheduler does the queueing.
"""

from __future__ import annotations

from collections.abc import Callable

from apr_sched.models import Job, JobStatus

HELD_REASON = "held: resume to queue it again"
DISPATCH_REASON = "waiting for dispatch"


class Eligibility:
    """Which pending jobs may wait in the dispatch queue."""

    def admits(self, job: Job) -> bool:
        """May the job wait in the dispatch queue now? (A HELD job may not.)"""
        return job.status is JobStatus.PENDING

    def pending_reason(self, job: Job,
                       placement_reason: Callable[[str], str | None]) -> str | None:
        """Why a waiting job is not running: what keeps it out of the queue, else why its
        autocluster did not place (``placement_reason(job_id)``, asked only then); None
        for a job that is not waiting."""
        if job.status is JobStatus.PENDING:
            return placement_reason(job.job_id) or DISPATCH_REASON
        if job.status is JobStatus.HELD:
            return HELD_REASON
        return None
