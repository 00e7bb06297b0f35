"""Futures-style waiting for the sync clients: ``JobHandle``, ``wait_all``, ``as_completed``.

    with apr_sched.connect() as client:
        handles = [client.submit_handle(spec) for spec in specs]
        for job in client.as_completed(handles, timeout=3600):
            print(job.job_id, job.status)

One implementation for the in-process ``BlockingScheduler`` and the daemon's
``SchedulerClient``: both follow the scheduler's event stream with ``events_since`` (a long
poll), so a waiting script costs the scheduler one reply per burst of events, or per
MAX_POLL_SEC of quiet, whatever the number of jobs waited on, and never a polling loop.
A job is re-read only when one of its own events arrives.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Protocol, TypeAlias

if TYPE_CHECKING:
    from apr_sched.models import Event, Job

__all__ = ["MAX_POLL_SEC", "JobHandle", "JobRef", "as_completed", "wait_all", "wait_one"]

MAX_POLL_SEC = 30.0
"""The longest single long poll; a quiet scheduler is asked again this often."""
EVENTS_PER_POLL = 1000


class WaitableClient(Protocol):
    """What the helpers need of a client (both sync clients have it)."""

    def get_job(self, job_id: str) -> Job: ...

    def stop(self, job_id: str) -> Job: ...

    def wait(self, job_id: str, timeout: float | None = None) -> Job: ...

    def events_since(self, seq: int, *, wait: float = 0.0, limit: int = 1000
                     ) -> list[Event]: ...

    def _event_cursor(self) -> int:
        """The newest event's sequence number."""
        ...

    def _jobs_by_id(self, job_ids: Sequence[str]) -> list[Job]:
        """These jobs without their timelines, in order; NotFound for a missing one."""
        ...


class JobHandle:
    """One submitted job, as a future: ``result()`` blocks until it is final.

    A job that ends FAILED is still a result (check ``result().status``): the outcome of a
    tool run is data, not an exception. ``stop()`` asks the scheduler to stop it.
    """

    __slots__ = ("_client", "job_id")

    def __init__(self, client: WaitableClient, job: JobRef) -> None:
        self._client = client
        self.job_id = job_id_of(job)

    def result(self, timeout: float | None = None) -> Job:
        """The final job; TimeoutError if it is not final within ``timeout`` seconds."""
        return self._client.wait(self.job_id, timeout)

    def done(self) -> bool:
        return self._client._jobs_by_id([self.job_id])[0].status.is_final

    def job(self) -> Job:
        """The job as it is now, with its attempts and event timeline."""
        return self._client.get_job(self.job_id)

    def stop(self) -> Job:
        return self._client.stop(self.job_id)

    def __repr__(self) -> str:
        return f"JobHandle({self.job_id!r})"


JobRef: TypeAlias = "str | Job | JobHandle"
"""A job named by its id, its ``Job`` or a ``JobHandle``."""


def job_id_of(job: JobRef) -> str:
    return job if isinstance(job, str) else job.job_id


def as_completed(client: WaitableClient, jobs: Iterable[JobRef],
                 timeout: float | None = None) -> Iterator[Job]:
    """Each job once it is final, in the order they finish (those final already first).

    ``timeout`` counts from this call; when it passes, TimeoutError names the jobs not yet
    final. Unknown ids raise NotFound.
    """
    job_ids = list(dict.fromkeys(job_id_of(job) for job in jobs))
    deadline = None if timeout is None else time.monotonic() + timeout
    return _finishing(client, job_ids, deadline, timeout)


def wait_all(client: WaitableClient, jobs: Iterable[JobRef],
             timeout: float | None = None) -> list[Job]:
    """Every job once final, in the order given (TimeoutError as in ``as_completed``)."""
    refs = [job_id_of(job) for job in jobs]
    final = {job.job_id: job for job in as_completed(client, refs, timeout)}
    return [final[job_id] for job_id in refs]


def wait_one(client: WaitableClient, job_id: str, timeout: float | None = None) -> Job:
    """``wait`` for a client that has no waiter of its own (the daemon's)."""
    return next(as_completed(client, [job_id], timeout))


def _finishing(client: WaitableClient, job_ids: list[str], deadline: float | None,
               timeout: float | None) -> Iterator[Job]:
    # The cursor is taken before the first read: an event after it is never missed.
    seq = client._event_cursor()
    pending = set(job_ids)
    touched = job_ids
    while True:
        if touched:
            for job in client._jobs_by_id(touched):
                if job.status.is_final:
                    pending.discard(job.job_id)
                    yield job
        if not pending:
            return
        events = client.events_since(seq, wait=_poll_wait(deadline, timeout, pending),
                                     limit=EVENTS_PER_POLL)
        if events:
            seq = events[-1].seq
        touched = list(dict.fromkeys(
            e.job_id for e in events if e.kind == "job" and e.job_id in pending))


def _poll_wait(deadline: float | None, timeout: float | None, pending: set[str]) -> float:
    if deadline is None:
        return MAX_POLL_SEC
    left = deadline - time.monotonic()
    if left <= 0:
        names = ", ".join(sorted(pending, key=lambda i: (len(i), i))[:10])
        more = f" and {len(pending) - 10} more" if len(pending) > 10 else ""
        raise TimeoutError(f"job{'s' if len(pending) > 1 else ''} {names}{more} not final "
                           f"after {timeout:g}s")
    return min(MAX_POLL_SEC, left)
