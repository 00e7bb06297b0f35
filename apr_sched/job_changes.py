"""Changing jobs that are not running yet, or finished: rerun (with the cancelled part of the
graph below), modify, and moving a job within its priority (top, bottom).

The Scheduler's writing arm for these requests, as ``cascade`` is for dependency decisions:
each checks the request (``transitions``, ``changes``, ``job_graph``), writes it through the
Journal (in one transaction, memory changed after the commit) and hands the jobs back to
the Scheduler's queueing (``arrive``, ``enqueue``). Nothing here imports the Scheduler.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from apr_sched import transitions
from apr_sched.changes import modification
from apr_sched.dependencies import Condition, Edge
from apr_sched.eligibility import Eligibility, StatusOf
from apr_sched.errors import IllegalTransition, NotFound, StoreUnavailable
from apr_sched.job_graph import never_holds, rearmable
from apr_sched.jobs import JobTable
from apr_sched.journal import Journal
from apr_sched.models import Job, JobSpec, JobStatus, utcnow
from apr_sched.order import QueueOrder
from apr_sched.queue import PendingQueue
from apr_sched.store import Store


class JobChanges:
    """Rerun, modify, top and bottom for the Scheduler (the one writer).

    ``arrive`` queues jobs that entered PENDING from outside (their dependencies tracked
    again); ``enqueue`` queues one whose place or request changed; ``check_runnable``
    refuses a request no host could ever run; ``retime`` re-arms a running job's timer
    for a new limit; ``wake`` asks for a dispatch pass.
    """

    def __init__(self, journal: Journal, table: JobTable, store: Callable[[], Store],
                 order: QueueOrder, queue: PendingQueue, eligibility: Eligibility, *,
                 status_of: StatusOf, arrive: Callable[[Iterable[Job]], None],
                 enqueue: Callable[[Job], None],
                 check_runnable: Callable[[JobSpec], None],
                 retime: Callable[[Job], None], wake: Callable[[], None]) -> None:
        self._journal, self._table, self._store = journal, table, store
        self._order, self._queue, self._eligibility = order, queue, eligibility
        self._status_of = status_of
        self._arrive, self._enqueue, self._wake = arrive, enqueue, wake
        self._check_runnable, self._retime = check_runnable, retime

    def rerun(self, job_id: str, *, with_dependents: bool) -> Job:
        job = self._table.get(job_id)
        transitions.require("rerun", job)
        store = self._store()
        edges = [Edge(Condition(condition), upstream)
                 for upstream, condition in store.upstreams(job_id)]
        why = never_holds(edges, self._status_of)
        if why is not None:
            raise IllegalTransition(
                f"cannot rerun job {job_id}: {why}, so it could only be cancelled again; "
                "rerun that job with its dependents instead",
                {"job_id": job_id, "status": job.status.value, "action": "rerun"})
        rearmed = rearmable(job_id, dependents=store.dependents, upstreams=store.upstreams,
                            status_of=self._status_of) if with_dependents else []
        jobs = [self._installed(other) for other in (job_id, *rearmed)]
        now = utcnow()
        first = self._order.last_seq + 1
        note = f", with {len(rearmed)} cancelled dependents re-armed" if rearmed else ""
        try:
            with self._journal.transaction():
                for offset, one in enumerate(jobs):
                    reason = (f"rerun by request as attempt {one.attempt + 1}{note}"
                              if not offset else f"re-armed by the rerun of job {job_id} "
                                                 f"(attempt {one.attempt + 1})")
                    self._journal.write(one, transitions.new_attempt(
                        one, self._table.books[one.job_id], now, reason,
                        queue_seq=first + offset, retries_used=0))
        except StoreUnavailable:
            for one in jobs:
                self._table.forget(one)  # finished jobs stay in the store only
            raise
        self._order.last_seq = first + len(jobs) - 1
        for offset, one in enumerate(jobs):
            book = self._table.books[one.job_id]
            book.queue_seq, book.queued_at, book.retries_used = first + offset, now, 0
            book.run_sec, book.resumed_at = 0.0, None
        self._arrive(jobs)
        self._wake()
        return self._table.view(jobs[0])

    def _installed(self, job_id: str) -> Job:
        """The job in memory, read from the store first if it has finished."""
        job = self._table.jobs.get(job_id)
        if job is None:
            row = self._store().load_job(job_id)
            if row is None:
                raise NotFound(f"no job {job_id!r}", {"job_id": job_id})
            job, _ = self._table.install(row)
        return job

    def modify(self, job_id: str, changes: Mapping[str, Any]) -> Job:
        job = self._table.get(job_id)
        transitions.require("modify", job)
        change = modification(job, changes)
        if job.status in (JobStatus.PENDING, JobStatus.HELD):
            self._check_runnable(change.spec)
        self._journal.record(job, job.status, change.describe(),
                             job_cols={"spec": change.spec.model_dump_json()},
                             then=lambda: change.apply(job))
        if "begin_at" in change.changed:
            self._eligibility.begin_changed(job)
        if self._queue.remove(job_id) or job.status is JobStatus.PENDING:
            self._enqueue(job)  # under its new request: another autocluster, maybe
        if "timeout_sec" in change.changed and job.status is JobStatus.RUNNING:
            self._retime(job)
        self._wake()
        return self._table.view(job)

    def move(self, job_id: str, action: str) -> Job:
        """``top``: to the front of its priority; ``bottom``: to the back."""
        job = self._table.get(job_id)
        transitions.require(action, job)
        book = self._table.books[job_id]
        seq = self._order.front() if action == "top" else self._order.back()

        def then() -> None:
            book.queue_seq = seq

        where = "front" if action == "top" else "back"
        self._journal.record(job, job.status, f"moved to the {where} of priority "
                             f"{job.priority} by request", job_cols={"queue_seq": seq},
                             then=then)
        if self._queue.remove(job_id):
            self._enqueue(job)
        self._wake()
        return self._table.view(job)
