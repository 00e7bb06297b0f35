"""The TUI's local mirror of the scheduler's jobs, kept current from events.

Headless and synchronous: a snapshot fills it, each ``JobEvent`` updates the job it names in
place (status, attempt, host, times), and jobs it has never seen are reported so the caller
can fetch them. Applying an event twice, or an event older than the snapshot followed by
the newer ones, ends in the same state: events carry the resulting state, not a delta.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from apr_sched.models import FINAL_STATUSES, Job, JobEvent, JobStatus
from apr_tui.rows import id_order

_HELD_REASON = "held: resume to queue it again"
_WAITING_REASON = "waiting for dispatch"


class JobBook:
    """Jobs by id in submit order, with counts per status and the reason of each job's
    latest event."""

    def __init__(self) -> None:
        self.jobs: dict[str, Job] = {}
        self.counts: dict[JobStatus, int] = dict.fromkeys(JobStatus, 0)
        self.since: dict[str, datetime] = {}
        """When each job entered its current state, when an event told us."""
        self.notes: dict[str, str] = {}
        """Reason of the latest event seen per job."""
        self.versions: dict[str, int] = {}
        """Bumped on every change of a job, so views can tell what is stale."""

    def __len__(self) -> int:
        return len(self.jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.jobs

    def get(self, job_id: str | None) -> Job | None:
        return None if job_id is None else self.jobs.get(job_id)

    def replace_all(self, jobs: Iterable[Job]) -> None:
        """Start over from a snapshot (the first load, or after falling behind)."""
        self.jobs = {}
        self.counts = dict.fromkeys(JobStatus, 0)
        self.since.clear()
        self.notes.clear()
        for job in sorted(jobs, key=_submit_order):
            self.jobs[job.job_id] = job
            self.counts[job.status] += 1
            self._bump(job.job_id)

    def upsert(self, job: Job) -> None:
        """Take a fresher view of a job (fetched, or returned by an action). A new job is
        kept in submit order (ids are increasing numbers)."""
        old = self.jobs.get(job.job_id)
        if old is not None:
            self.counts[old.status] -= 1
            if old.status is not job.status:
                self.since.pop(job.job_id, None)
            if job.pending_reason is None and job.status is old.status:
                job.pending_reason = old.pending_reason
            self.jobs[job.job_id] = job
        else:
            last = next(reversed(self.jobs), None) if self.jobs else None
            self.jobs[job.job_id] = job
            if last is not None and _submit_order(job) < _submit_order(self.jobs[last]):
                self.jobs = dict(sorted(self.jobs.items(), key=lambda kv: _submit_order(kv[1])))
        self.counts[job.status] += 1
        self._bump(job.job_id)

    def apply(self, event: JobEvent) -> bool:
        """Apply a job event; False when the job is unknown here (fetch it)."""
        job = self.jobs.get(event.job_id)
        if job is None:
            return False
        to = event.to_status
        self.notes[job.job_id] = event.reason
        if event.attempt != job.attempt:
            job.attempt = event.attempt
            job.host_id = job.started_at = job.finished_at = job.resumed_at = None
            job.exit_code = job.signal = None
            job.run_sec = 0.0
        if to is not job.status:
            self.counts[job.status] -= 1
            self.counts[to] += 1
            self.since[job.job_id] = event.time
            if to is JobStatus.RUNNING and job.status is JobStatus.PENDING:
                job.host_id = event.host_id
                job.started_at = job.resumed_at = event.time
                job.finished_at = None
                job.run_sec = 0.0
            elif to is JobStatus.RUNNING:  # resumed
                job.resumed_at = event.time
            elif to is JobStatus.PAUSED or to in FINAL_STATUSES:
                _stop_the_clock(job, event.time)
                if to in FINAL_STATUSES:
                    job.finished_at = event.time
            job.status = to
        if to is JobStatus.PENDING:
            job.pending_reason = job.pending_reason or _WAITING_REASON
        elif to is JobStatus.HELD:
            job.pending_reason = _HELD_REASON
        else:
            job.pending_reason = None
        self._bump(job.job_id)
        return True

    def active_count(self) -> int:
        """Jobs holding a process (RUNNING or PAUSED)."""
        return self.counts[JobStatus.RUNNING] + self.counts[JobStatus.PAUSED]

    def waiting_count(self) -> int:
        """Jobs waiting for a slot or released by hand (PENDING or HELD)."""
        return self.counts[JobStatus.PENDING] + self.counts[JobStatus.HELD]

    def version(self, job_id: str) -> int:
        return self.versions.get(job_id, 0)

    def _bump(self, job_id: str) -> None:
        self.versions[job_id] = self.versions.get(job_id, 0) + 1


def _stop_the_clock(job: Job, at: datetime) -> None:
    """Paused or ended at ``at``: fold the running stretch into ``run_sec`` (the scheduler
    does the same; its figure replaces this one when the job is next read)."""
    if job.resumed_at is not None:
        job.run_sec += max(0.0, (at - job.resumed_at).total_seconds())
        job.resumed_at = None


def _submit_order(job: Job) -> tuple[int, int, str]:
    return id_order(job.job_id)
