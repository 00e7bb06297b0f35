"""What follows when a job ends: its dependents are released or cancelled, down the graph.

``eligibility`` decides (a released dependent may be queued; one whose dependency can
never hold is doomed); this writes and applies those decisions for the Scheduler, from a
worklist, never by recursion. A cancelled dependent is itself an upstream that ended, so
its own dependents are decided inside the same transaction (``Journal.written_status``
tells ``status_of`` the status being written): a 1,000-job chain that loses its head is
cancelled in a few transactions, not 1,000 fsyncs, cut at ``CHUNK`` cancellations each,
one per loop turn (the loop is never held long), the doomed kept out of the queue
meanwhile.

A write the store refuses changes nothing: the jobs decided in that chunk are tracked
again from the committed statuses (which decides the first of them again) and the cascade
resumes once the store takes writes (``retry``). After a crash, recovery decides the same
way from the upstreams' statuses.
"""

from __future__ import annotations

import functools
import logging
from collections import deque
from collections.abc import Callable, Iterable

from apr_sched import transitions
from apr_sched.dependencies import Cancelled, Decision
from apr_sched.eligibility import Eligibility
from apr_sched.errors import StoreUnavailable
from apr_sched.jobs import JobTable
from apr_sched.journal import Journal
from apr_sched.models import Job, JobStatus, utcnow

log = logging.getLogger("apr_sched")

CHUNK = 250
"""Cancellations written per transaction, one per loop turn: measured ~170 us each (the
rows, the event, the dependents decided), so ~40 ms a turn, and a 1,000-job chain cancelled
in 4 fsynced transactions (``bench/bench_graphs.py``)."""
WAITING = (JobStatus.PENDING, JobStatus.HELD)


class Cascade:
    """Applies dependency decisions for the Scheduler (the one writer).

    ``enqueue`` queues a released job (eligibility still decides); ``ended`` is told of
    each job this cancels, once committed (waiters, memory); ``soon`` runs the next chunk
    on the next loop turn; ``on_refused`` asks for a retry once the store refused a write.
    """

    def __init__(self, journal: Journal, table: JobTable, eligibility: Eligibility, *,
                 enqueue: Callable[[Job], None], ended: Callable[[Job], None],
                 wake: Callable[[], None], soon: Callable[[Callable[[], None]], None],
                 on_refused: Callable[[], None]) -> None:
        self._journal = journal
        self._table = table
        self._eligibility = eligibility
        self._enqueue = enqueue
        self._ended = ended
        self._wake = wake
        self._soon = soon
        self._on_refused = on_refused
        self._todo: deque[Decision] = deque()
        self._running = False
        self._refused = False
        self.cancelled = 0
        """Jobs this cascade has cancelled so far (for benchmarks and logs)."""

    def __len__(self) -> int:
        """Decisions not applied yet."""
        return len(self._todo)

    def upstreams_ended(self, job_ids: Iterable[str]) -> None:
        """These jobs' final statuses are committed: decide and apply their dependents."""
        for job_id in job_ids:
            self.apply(self._eligibility.upstream_ended(job_id))

    def apply(self, decisions: Iterable[Decision]) -> None:
        for decision in decisions:
            if isinstance(decision, Cancelled):
                self._eligibility.cancelling(decision)
            self._todo.append(decision)
        if not self._running and not self._refused:
            self._run()

    def retry(self) -> None:
        """The store takes writes again: go on where a refused write stopped."""
        if self._refused:
            self._refused = False
            self._run()

    def _run(self) -> None:
        """Queue the released up to the next cancellation; write up to CHUNK cancellations
        (and what they decide in turn) in one transaction; the rest next turn."""
        self._running = True
        try:
            self._release_leading()
            if self._todo:
                self._write_chunk()
        finally:
            self._running = False
        if self._todo and not self._refused:
            self._soon(self._run)

    def _release_leading(self) -> None:
        released = False
        while self._todo and not isinstance(self._todo[0], Cancelled):
            job = self._table.jobs.get(self._todo.popleft().job_id)
            if job is not None and job.status in WAITING:
                self._enqueue(job)
                released = True
        if released:
            self._wake()

    def _write_chunk(self) -> None:
        decided: list[Decision] = []
        released: list[Job] = []
        now = utcnow()
        try:
            with self._journal.transaction():
                written = 0
                while self._todo and written < CHUNK:
                    decision = self._todo.popleft()
                    decided.append(decision)
                    job = self._table.jobs.get(decision.job_id)
                    if job is None or self._status(job) not in WAITING:
                        continue  # stopped or cancelled meanwhile
                    if not isinstance(decision, Cancelled):
                        released.append(job)
                        continue
                    self._journal.write(job, transitions.cancelled(job, decision.reason, now))
                    self._journal.after_commit(functools.partial(self._ended, job))
                    written += 1
                    for more in self._eligibility.upstream_ended(job.job_id):
                        if isinstance(more, Cancelled):
                            self._eligibility.cancelling(more)
                        self._todo.append(more)
        except StoreUnavailable as exc:
            log.warning("dependents of ended jobs not decided yet: %s", exc.message)
            self._undo(decided)
            return
        self.cancelled += written
        for job in released:
            self._enqueue(job)
        if released:
            self._wake()

    def _status(self, job: Job) -> JobStatus:
        return self._journal.written_status(job.job_id) or job.status

    def _undo(self, decided: list[Decision]) -> None:
        """Nothing of the chunk was written: track its jobs (and those it decided) again
        from the committed statuses; what that decides waits for the store."""
        again = [*decided, *self._todo]
        self._todo.clear()
        for decision in again:
            self._eligibility.leave(decision.job_id)
            job = self._table.jobs.get(decision.job_id)
            if job is None or job.status not in WAITING:
                continue
            doomed = self._eligibility.arrive(job)
            if doomed is not None:
                self._eligibility.cancelling(doomed)
                self._todo.append(doomed)
            else:
                self._enqueue(job)
        self._refused = bool(self._todo)
        if self._refused:
            self._on_refused()
