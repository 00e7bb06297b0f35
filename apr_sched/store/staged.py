"""Staged batches: a large batch's rows written in steps, hidden until one commit shows them.

A large batch's job and attempt rows are written in chunks, each its own transaction, under
a ``batches`` row whose ``event_base`` is NULL: while it is NULL the rows are *staged*, and
every reader of the jobs table leaves their seq range out (``_visible``, kept in memory
beside the row: no other process reads jobs). Publishing sets ``event_base`` (the seq of
the batch's first event) in one transaction: from that commit on the batch is visible
whole, and its "submitted" events, one per job at ``event_base`` + (job seq - first seq),
are answered from memory (``_unwritten``) until they are written to the events table in
chunks, the last of which deletes the ``batches`` row. After a crash, ``recover_batches``
(at scheduler start) deletes staged rows and writes the events of a published batch,
derived from its jobs rows exactly as the chunks write them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, overload

from apr_sched.models import JobEvent, JobStatus
from apr_sched.store.base import StoreBase

JobFilter = tuple[str, list[Any]]
"""A ``WHERE`` clause over the jobs table and its arguments, from ``job_filter``."""

_BATCH_EVENTS = """
INSERT INTO events (seq, time, kind, job_id, host_id, attempt, from_state, to_state, reason)
SELECT ? + seq - ?, submitted_at, 'job', job_id, NULL, 1, NULL,
       CASE WHEN json_extract(spec, '$.hold') THEN 'HELD' ELSE 'PENDING' END, 'submitted'
FROM jobs WHERE seq BETWEEN ? AND ? ORDER BY seq
"""
"""A published batch's "submitted" events, from its jobs rows: (event_base, first_seq,
from seq, to seq). The same values the Scheduler gives them in memory."""


class SubmittedEvents(Sequence[JobEvent]):
    """A large batch's "submitted" events, made when read (10,000 of them are not built,
    held and freed for nothing): event i is job ``first_seq`` + i's, numbered ``base`` + i,
    the same values as ``_BATCH_EVENTS`` writes from the jobs rows."""

    __slots__ = ("base", "first_seq", "held", "size", "time")

    def __init__(self, first_seq: int, size: int, base: int, time: datetime,
                 held: frozenset[int] = frozenset()) -> None:
        self.first_seq, self.size, self.base, self.time = first_seq, size, base, time
        self.held = held
        """Offsets of the jobs submitted HELD (``hold``): their event says so."""

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> JobEvent: ...
    @overload
    def __getitem__(self, index: slice) -> list[JobEvent]: ...
    def __getitem__(self, index: int | slice) -> JobEvent | list[JobEvent]:
        if isinstance(index, slice):
            return [self._event(i) for i in range(*index.indices(self.size))]
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(index)
        return self._event(index)

    def _event(self, index: int) -> JobEvent:
        return JobEvent.model_construct(
            kind="job", seq=self.base + index, time=self.time,
            job_id=str(self.first_seq + index), attempt=1, from_status=None,
            to_status=JobStatus.HELD if index in self.held else JobStatus.PENDING,
            reason="submitted", host_id=None)


@dataclass(slots=True)


class _UnwrittenEvents:
    """A published batch's events, answered from memory until all are in the table."""

    last_seq: int
    events: SubmittedEvents
    written: int = 0
    """Events ``[0, written)`` are in the events table."""


class StagedBatches(StoreBase):
    """The batches table, and which job seqs readers must not see yet."""

    _hidden: dict[int, int]
    """Staged batches, first job seq -> last: rows no reader here may see yet."""
    _unwritten: dict[int, _UnwrittenEvents]
    """Published batches, by first job seq, whose events are not all written yet."""

    def _visible(self, where: JobFilter, *, unwritten: bool = False) -> JobFilter:
        """``where`` leaving out staged batches (and, if ``unwritten``, published ones whose
        events are not all written): empty when no batch is in flight, as almost always."""
        ranges = list(self._hidden.items())
        if unwritten:
            ranges += [(first, batch.last_seq) for first, batch in self._unwritten.items()]
        if not ranges:
            return where
        clause, args = where
        extra = " AND ".join("seq NOT BETWEEN ? AND ?" for _ in ranges)
        clause = f"{clause} AND {extra}" if clause else f" WHERE {extra}"
        return clause, [*args, *(bound for span in ranges for bound in span)]

    def hide_batch(self, first_seq: int, last_seq: int) -> None:
        """From now on no reader sees jobs ``first_seq``..``last_seq``: call before the first
        of them is written (``open_batch``, in that write's transaction)."""
        self._hidden[first_seq] = last_seq

    def open_batch(self, first_seq: int, last_seq: int) -> None:
        """Record the staged batch, so that a crash before it is published removes it."""
        self._db.execute("INSERT INTO batches VALUES (?, ?, NULL)", (first_seq, last_seq))

    def publish_batch(self, events: SubmittedEvents) -> None:
        """Make the staged batch visible whole at this transaction's commit, with its
        "submitted" events (answered from memory until they are written)."""
        first_seq = events.first_seq
        updated = self._db.execute(
            "UPDATE batches SET event_base=? WHERE first_seq=? AND event_base IS NULL",
            (events.base, first_seq)).rowcount
        if updated != 1:
            raise RuntimeError(f"batch {first_seq} is not staged")
        batch = _UnwrittenEvents(self._hidden[first_seq], events)

        def visible() -> None:
            self._unwritten[first_seq] = batch
            del self._hidden[first_seq]

        self.after_commit(visible)

    def write_batch_events(self, first_seq: int, count: int) -> bool:
        """Write the next ``count`` events of a published batch (from its jobs rows, like
        ``recover_batches``); True once they are all written and the batch is closed."""
        batch = self._unwritten[first_seq]
        start = batch.written
        end = min(start + count, len(batch.events))
        self._db.execute(_BATCH_EVENTS, (batch.events.base, first_seq, start + first_seq,
                                         end - 1 + first_seq))
        done = end == len(batch.events)
        if done:
            self._db.execute("DELETE FROM batches WHERE first_seq=?", (first_seq,))

        def written() -> None:
            batch.written = end
            if done:
                del self._unwritten[first_seq]

        self.after_commit(written)
        return done

    def delete_staged_jobs(self, first_seq: int, count: int) -> bool:
        """Delete up to ``count`` rows of a staged batch that failed, last first; True once
        none is left and the batch is forgotten (its jobs stay hidden until then)."""
        last = self._hidden[first_seq]
        low = max(first_seq, last - count + 1)
        self._db.execute("DELETE FROM attempts WHERE job_id IN "
                         "(SELECT job_id FROM jobs WHERE seq BETWEEN ? AND ?)", (low, last))
        self._db.execute("DELETE FROM edges WHERE seq BETWEEN ? AND ?", (low, last))
        self._db.execute("DELETE FROM jobs WHERE seq BETWEEN ? AND ?", (low, last))
        done = low == first_seq
        if done:
            self._db.execute("DELETE FROM batches WHERE first_seq=?", (first_seq,))

        def deleted() -> None:
            if done:
                del self._hidden[first_seq]
            else:
                self._hidden[first_seq] = low - 1

        self.after_commit(deleted)
        return done

    def recover_batches(self) -> tuple[int, int]:
        """After a crash (at scheduler start, before anything is read): delete the rows of
        batches that were staged, write the events of those published; returns how many
        batches of each. Not at open: ``apr-sched token`` opens the store beside a daemon."""
        staged = published = 0
        with self.transaction():
            for first, last, base in self._db.execute(
                    "SELECT first_seq, last_seq, event_base FROM batches").fetchall():
                if base is None:
                    self._db.execute("DELETE FROM attempts WHERE job_id IN "
                                     "(SELECT job_id FROM jobs WHERE seq BETWEEN ? AND ?)",
                                     (first, last))
                    self._db.execute("DELETE FROM edges WHERE seq BETWEEN ? AND ?",
                                     (first, last))
                    self._db.execute("DELETE FROM jobs WHERE seq BETWEEN ? AND ?",
                                     (first, last))
                    staged += 1
                else:
                    self._db.execute(_BATCH_EVENTS.replace("INSERT", "INSERT OR IGNORE", 1),
                                     (base, first, first, last))
                    published += 1
            self._db.execute("DELETE FROM batches")
        return staged, published
