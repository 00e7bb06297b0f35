"""Recording transitions: checked, written with their event in one transaction, applied after.

The Scheduler decides what changes; the journal is how it writes that down. ``record``
checks a job's status change against ``transitions``, writes the job's row, its attempt's
row and the event in the current transaction, and changes memory (the job's status, the
count per status, the event published to followers) only once that transaction has
committed. A transaction that fails gives back the event seqs it took, so followers never
see a hole in the numbering. Only the Scheduler holds a Journal; nothing here decides what
happens next, and nothing here calls back into the Scheduler. ``PgidSaver`` batches the
one bookkeeping write that may safely be deferred.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from apr_sched import transitions
from apr_sched.errors import StoreUnavailable
from apr_sched.events import EventHub
from apr_sched.models import Event, HostEvent, HostState, Job, JobEvent, JobStatus, utcnow
from apr_sched.store import Store

log = logging.getLogger("apr_sched")


class Journal:
    """Event numbering, job status counts, and the one way a job transition is written."""

    def __init__(self, store: Callable[[], Store], hub: EventHub) -> None:
        self._store = store
        self._hub = hub
        self.last_seq = 0
        """The newest event's seq (taken, inside a transaction; committed, outside one)."""
        self.counts = dict.fromkeys(JobStatus, 0)
        """Jobs per status as committed: kept as transitions happen, never counted."""
        self._pending_status: dict[str, JobStatus] | None = None
        """Inside a transaction: each touched job's status as it will be after COMMIT."""

    def restore(self, store: Store) -> None:
        """Continue the numbering and the counts of the state dir (at start)."""
        self.last_seq = store.max_event_seq()
        self._hub.last_seq = self.last_seq
        for status, count in store.count_by_status().items():
            self.counts[JobStatus(status)] = count

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """A store transaction that also undoes our event numbering if it fails."""
        if self._pending_status is not None:  # joined an outer one
            yield
            return
        event_seq = self.last_seq
        self._pending_status = {}
        try:
            with self._store().transaction():
                yield
        except BaseException:
            self.last_seq = event_seq
            raise
        finally:
            self._pending_status = None

    def written_status(self, job_id: str) -> JobStatus | None:
        """Inside a transaction: the status this transaction gives the job, if it touched
        it (what a cascade decides its dependents by before the COMMIT)."""
        return None if self._pending_status is None else self._pending_status.get(job_id)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction commits (at once outside one)."""
        self._store().after_commit(callback)

    def record(
        self,
        job: Job,
        to_status: JobStatus,
        reason: str,
        *,
        job_cols: dict[str, Any] | None = None,
        attempt_cols: dict[str, Any] | None = None,
        attempt: int | None = None,
        host_id: str | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Write a transition (or a same-state note) with its event; the status changes in
        memory, and the event is published, only once the write has committed (``then``
        runs right after that). The attempt's row follows the job's status;
        ``attempt_cols`` adds to it."""
        store = self._store()
        with self.transaction():
            assert self._pending_status is not None
            from_status = self._pending_status.get(job.job_id, job.status)
            transitions.check(from_status, to_status)
            event = self.job_event(job, from_status, to_status, reason, utcnow(),
                                   attempt=attempt, host_id=host_id)
            columns = {"status": to_status.value, **(job_cols or {})}
            store.update_job(job.job_id, **columns)
            if to_status is not from_status or attempt_cols is not None:
                store.save_attempt(job.job_id, attempt or job.attempt,
                                   status=to_status.value, **(attempt_cols or {}))
            store.insert_events([event])
            self._pending_status[job.job_id] = to_status

            def apply() -> None:
                self.counts[job.status] -= 1
                self.counts[to_status] += 1
                job.status = to_status
                self.publish([event])

            store.after_commit(apply)
            if then is not None:
                store.after_commit(then)

    def write(self, job: Job, change: transitions.Change) -> None:
        """Record a transition built by ``transitions``; its ``then`` runs after COMMIT."""
        self.record(job, change.to_status, change.reason, job_cols=change.job_cols,
                    attempt_cols=change.attempt_cols, attempt=change.attempt,
                    host_id=change.host_id, then=change.then)

    def job_event(self, job: Job, from_status: JobStatus | None, to_status: JobStatus,
                  reason: str, now: datetime, *, attempt: int | None = None,
                  host_id: str | None = None) -> JobEvent:
        """The next event, about a job (numbered now; written by the caller)."""
        self.last_seq += 1
        return JobEvent(seq=self.last_seq, time=now, job_id=job.job_id,
                        attempt=attempt or job.attempt, from_status=from_status,
                        to_status=to_status, reason=reason, host_id=host_id or job.host_id)

    def host_event(self, host_id: str, from_state: HostState | None,
                   to_state: HostState | None, reason: str) -> HostEvent:
        """The next event, about a host (numbered now; written by the caller)."""
        self.last_seq += 1
        return HostEvent(seq=self.last_seq, time=utcnow(), host_id=host_id,
                         from_state=from_state, to_state=to_state, reason=reason)

    def publish(self, events: Sequence[Event]) -> None:
        """Hand committed events to the followers."""
        self._hub.publish(events)


class PgidSaver:
    """New attempts' pgids, persisted in one transaction per loop iteration, not one per job.

    Safe to defer, and to lose: until it lands, a restarted scheduler finds the wrapper in
    /proc by its rc path. A write the store refuses stays pending (``on_refused`` is told,
    to retry later)."""

    def __init__(self, journal: Journal, store: Callable[[], Store], jobs: Mapping[str, Job],
                 on_refused: Callable[[], None]) -> None:
        self._journal = journal
        self._store = store
        self._jobs = jobs
        self._on_refused = on_refused
        self._job_ids: list[str] = []

    def __bool__(self) -> bool:
        """Some pgid is not saved yet."""
        return bool(self._job_ids)

    def soon(self, job_id: str) -> None:
        if not self._job_ids:
            asyncio.get_running_loop().call_soon(self._save_logged)
        self._job_ids.append(job_id)

    def save(self) -> None:
        """Write the pending pgids now (StoreUnavailable: they stay pending)."""
        if not self._job_ids:
            return
        store = self._store()
        with self._journal.transaction():
            for job_id in self._job_ids:
                job = self._jobs.get(job_id)  # None: ended (and left memory) already
                pgid = None if job is None else job.pgid
                if pgid is not None:
                    store.update_job(job_id, pgid=pgid)
        self._job_ids = []

    def _save_logged(self) -> None:
        try:
            self.save()
        except StoreUnavailable as exc:
            log.warning("pgids not saved yet: %s", exc.message)
            self._on_refused()
