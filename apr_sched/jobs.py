"""The jobs in memory: every unfinished job with its bookkeeping; finished ones stay in SQLite.

Memory holds what is unfinished (DESIGN.md, "Bounded by design"): a job that reaches a
final status leaves it (``forget``) and is read from the store on demand (``get``). Each
job in memory has a ``Book``, the per-job facts the public ``Job`` model does not carry
(its seqs, retries spent, running time, a stop or timeout intent). The table only holds
and answers; the Scheduler changes it after each commit.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apr_sched.errors import NotFound
from apr_sched.models import Job, JobStatus, is_valid_id, stored_job
from apr_sched.store import Store, parse_time


def seconds_between(start: datetime | None, end: datetime | None) -> float:
    """Non-negative seconds from ``start`` to ``end`` (0 when either is unknown)."""
    if start is None or end is None:
        return 0.0
    return max(0.0, (end - start).total_seconds())


@dataclass(slots=True)
class Book:
    """Per-job bookkeeping that is not part of the public Job model."""

    seq: int
    queue_seq: int
    queued_at: datetime
    retries_used: int = 0
    run_sec: float = 0.0
    """Running time of the current attempt accumulated before ``resumed_at``."""
    resumed_at: datetime | None = None
    """When the current attempt last started or resumed running (None while paused)."""
    ending: str | None = None
    """A stop or timeout intent for the current attempt, as persisted."""
    term_sent_at: datetime | None = None

    def running_sec(self, now: datetime) -> float:
        """Running time of the current attempt up to ``now`` (what its timeout counts)."""
        return self.run_sec + seconds_between(self.resumed_at, now)


def job_from_row(row: Any) -> Job:
    """A stored job, built without validating it again (restart and listings build
    thousands: the spec was validated at submit, the columns are ours)."""
    return stored_job(json.loads(row["spec"]), row)


class JobTable:
    """Unfinished jobs and their books by id; ``pending_reason(job)`` says why a PENDING or
    HELD job is not running (asked when a view is made)."""

    def __init__(self, store: Callable[[], Store],
                 pending_reason: Callable[[Job], str | None]) -> None:
        self._store = store
        self._pending_reason = pending_reason
        self.jobs: dict[str, Job] = {}
        self.books: dict[str, Book] = {}
        self.last_seq = 0
        """The newest job's seq (its id): the next job is ``last_seq + 1``."""

    def __len__(self) -> int:
        return len(self.jobs)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self.jobs

    def __iter__(self) -> Iterator[Job]:
        return iter(list(self.jobs.values()))

    def install(self, row: Any) -> tuple[Job, Book]:
        """Keep a stored job in memory (unfinished, or about to run again)."""
        job = job_from_row(row)
        book = Book(
            seq=row["seq"], queue_seq=row["queue_seq"], queued_at=job.submitted_at,
            retries_used=row["retries_used"], run_sec=row["run_sec"],
            resumed_at=parse_time(row["resumed_at"]), ending=row["ending"],
            term_sent_at=parse_time(row["term_sent_at"]),
        )
        self.add(job, book)
        return job, book

    def add(self, job: Job, book: Book) -> None:
        self.jobs[job.job_id] = job
        self.books[job.job_id] = book

    def forget(self, job: Job) -> None:
        """A final job leaves memory: it lives on in the store, read on demand."""
        if job.status.is_final:
            self.jobs.pop(job.job_id, None)
            self.books.pop(job.job_id, None)

    def get(self, job_id: str) -> Job:
        """The job in memory if unfinished, else as stored (a finished job is not kept)."""
        if not is_valid_id(job_id):
            raise NotFound(f"no job {job_id!r}", {"job_id": job_id})
        job = self.jobs.get(job_id)
        if job is None:
            row = self._store().load_job(job_id)
            if row is None:
                raise NotFound(f"no job {job_id!r}", {"job_id": job_id})
            job = job_from_row(row)
        return job

    def status(self, job_id: str) -> JobStatus | None:
        """A job's status, from memory or the store (None: no such job, or staged)."""
        job = self.jobs.get(job_id)
        if job is not None:
            return job.status
        if not is_valid_id(job_id):
            return None
        stored = self._store().job_status(job_id)
        return None if stored is None else JobStatus(stored)

    def statuses(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        """Many jobs' statuses at once (unknown ids left out): memory, then one store
        query per 500 of the rest."""
        found: dict[str, JobStatus] = {}
        rest: list[str] = []
        for job_id in dict.fromkeys(job_ids):
            job = self.jobs.get(job_id)
            if job is not None:
                found[job_id] = job.status
            elif is_valid_id(job_id):
                rest.append(job_id)
        if rest:
            found.update((job_id, JobStatus(status))
                         for job_id, status in self._store().job_statuses(rest).items())
        return found

    def view(self, job: Job) -> Job:
        """A copy for callers, with the running time and why it waits."""
        view = job.model_copy()
        book = self.books.get(job.job_id)
        if book is not None:  # running time as the timeout counts it (apr_tui shows it)
            view.run_sec, view.resumed_at = book.run_sec, book.resumed_at
        reason = self._pending_reason(job)
        if reason is not None:
            view.pending_reason = reason
        return view

    def row_view(self, row: Any) -> Job:
        """A listed row as a view: the job in memory if it is there, else the row itself."""
        job = self.jobs.get(row["job_id"])
        return self.view(job) if job is not None else job_from_row(row)


class FinalWaiters:
    """Callers waiting for jobs to reach a final status (``Scheduler.wait``)."""

    def __init__(self) -> None:
        self._futures: dict[str, list[asyncio.Future[None]]] = {}

    async def until_final(self, job_id: str, timeout: float | None) -> None:
        """Return once ``final(job_id)`` is called (TimeoutError after ``timeout``)."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._futures.setdefault(job_id, []).append(future)
        try:
            async with asyncio.timeout(timeout):
                await future
        finally:
            waiters = self._futures.get(job_id, [])
            if future in waiters:
                waiters.remove(future)

    def final(self, job_id: str) -> None:
        """The job is final: everyone waiting for it returns."""
        for future in self._futures.pop(job_id, []):
            if not future.done():
                future.set_result(None)

    def cancel_all(self) -> None:
        for futures in self._futures.values():
            for future in futures:
                if not future.done():
                    future.cancel()
