"""Large batches: built and written in steps, invisible until one short commit shows them whole.

Built and written in one go, a 10,000-job batch held the event loop for about a second
(nothing was dispatched, reaped or answered meanwhile). Above ``STAGE_ABOVE`` jobs a batch
goes through four steps instead; none holds the loop for long, none keeps a transaction
open across an ``await`` (other transitions run their own short ones in between), and no
reader ever sees part of a batch:

1. The caller reserves the batch's job and queue seqs (one that fails leaves a gap).
2. ``stage`` builds the jobs and their rows ``CHUNK`` at a time,
   yielding between chunks, and writes the rows chunk by chunk, each chunk its own
   transaction, as a *staged* batch that the store hides from every reader
   (``apr_sched/store/staged.py``). A failure or a cancellation here deletes what was
   written, in the background (hidden meanwhile); after a crash, the next start deletes it.
3. ``publish``, in the caller's one short transaction, numbers the events after every
   event committed before (event seqs are a cursor: a reader must never see a later one
   commit first), marks the batch published and stores the idempotency reply. From that
   commit on the batch is visible whole, and committed before the caller answers 201.
4. ``settle``, after the commit, in the background: queues the jobs ``QUEUE_CHUNK`` at a
   time while the dispatcher waits (``queueing``), so a dispatch pass sees either none of
   the batch or all of it; then writes the events to the table in chunks (memory answers
   for them until then; after a crash, the next start writes them).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from types import TracebackType
from typing import Any, Generic, TypeVar

from apr_sched.errors import StoreUnavailable
from apr_sched.models import Job, JobSpec, new_pending_job
from apr_sched.store import (
    EdgeRow,
    IdempotencyKey,
    Store,
    SubmittedEvents,
    edge_rows,
    pending_job_row,
)

log = logging.getLogger("apr_sched")

STAGE_ABOVE = 200
"""Batches up to this size are written in one transaction (fast enough, and simpler)."""
CHUNK = 100
"""Jobs built, and jobs written (one transaction), per step of staging: ~5 ms each."""
CHECKPOINT_EVERY = 5
"""Steps between two WAL checkpoints, in a thread (~500 jobs staged, ~150 pages)."""
QUEUE_CHUNK = 500
"""Jobs queued per step once published."""
EVENT_CHUNK = 1000
"""Events written per transaction once published."""
DELETE_CHUNK = 200
"""Staged rows deleted per transaction after a failure: small, as the failure may be a full
disk, and each step needs room in the WAL."""
RETRY_SEC = 2.0
"""While the store refuses writes, how often to retry writing events or deleting rows."""

Book = TypeVar("Book")


class LongLivedObjects:
    """Around a large batch: no full garbage collection while it is validated and staged,
    and what it leaves in memory frozen once it is published.

    A 10,000-job batch leaves ~100,000 tracked objects in memory for as long as its jobs
    are unfinished, and a full collection walks every tracked object that is not frozen:
    measured, one 26 ms pause during such a batch in the daemon (which froze its start-up
    heap, cli.py), 70 to 290 ms pauses, several per batch, in a process that froze
    nothing; and every later full collection walks them again. Holding full collections
    off, then freezing the survivors as the daemon does after restore, avoids both; a
    frozen object is still freed when its job leaves memory (only garbage cycles that
    exist at that moment are kept for good). Young collections go on as usual.
    Process-wide, so nested uses are counted.
    """

    _holders = 0
    _saved: tuple[int, int, int] = (0, 0, 0)

    def __enter__(self) -> LongLivedObjects:
        cls = LongLivedObjects
        if cls._holders == 0:
            cls._saved = gc.get_threshold()
            gc.set_threshold(cls._saved[0], cls._saved[1], 1 << 30)
        cls._holders += 1
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        cls = LongLivedObjects
        cls._holders -= 1
        if cls._holders == 0:
            gc.set_threshold(*cls._saved)
        if et is None:
            gc.freeze()


@dataclass(slots=True)
class StagedBatch(Generic[Book]):
    """What a batch adds, built during staging, applied to memory once it is published."""

    first_seq: int
    now: datetime
    jobs: dict[str, Job]
    books: dict[str, Book]
    """By job id, as the Scheduler keeps them (one dict merge installs them all)."""
    copies: list[Job]
    """The jobs as submitted: what the caller returns."""
    events: SubmittedEvents | None = None
    """One "submitted" event per job, numbered at ``publish``."""
    held: set[int] = field(default_factory=set)
    """Offsets of the jobs submitted HELD."""


class BatchWriter:
    """Stages, publishes and settles large batches for the Scheduler (the one writer)."""

    def __init__(self, store: Callable[[], Store]) -> None:
        self._store = store
        self._tasks: set[asyncio.Task[None]] = set()
        self._queueing = 0
        self._closed = False

    @property
    def queueing(self) -> bool:
        """A published batch is being queued: dispatch waits until all of it is."""
        return self._queueing > 0

    async def stage(self, specs: list[JobSpec], first_seq: int, first_queue_seq: int,
                    now: datetime, make_book: Callable[[int, int, datetime], Book],
                    ) -> StagedBatch[Book]:
        """Build and write the batch, hidden, in steps; seqs from ``first_seq`` and
        ``first_queue_seq`` on are the caller's reservation. ``specs`` is consumed (each
        entry dropped once built) so that 10,000 specs are not all freed in one step."""
        store = self._store()
        batch: StagedBatch[Book] = StagedBatch(first_seq, now, {}, {}, [])
        now_iso = now.isoformat()
        last_seq = first_seq + len(specs) - 1
        store.hide_batch(first_seq, last_seq)
        try:
            for step, start in enumerate(range(0, last_seq - first_seq + 1, CHUNK)):
                chunk = specs[:CHUNK]
                del specs[:CHUNK]
                rows, edges = self._build(batch, chunk, first_seq + start,
                                          first_queue_seq + start, now, now_iso, make_book)
                del chunk
                await asyncio.sleep(0)
                with store.unsynced_transaction():  # the publish commit fsyncs them
                    if start == 0:
                        store.open_batch(first_seq, last_seq)
                    store.insert_jobs(rows)
                    store.insert_first_attempts([row[1] for row in rows], now_iso,
                                                {row[1] for row in rows if row[3] == "HELD"})
                    store.insert_edges(edges)
                if step % CHECKPOINT_EVERY == CHECKPOINT_EVERY - 1:
                    await asyncio.to_thread(store.checkpoint)
                else:
                    await asyncio.sleep(0)
        except BaseException:
            self.discard(batch)
            raise
        return batch

    @staticmethod
    def _build(batch: StagedBatch[Book], specs: Sequence[JobSpec], seq: int, queue_seq: int,
               now: datetime, now_iso: str, make_book: Callable[[int, int, datetime], Book],
               ) -> tuple[list[tuple[Any, ...]], list[EdgeRow]]:
        rows = []
        edges: list[EdgeRow] = []
        for offset, spec in enumerate(specs):
            job = new_pending_job(spec, str(seq + offset), now)
            batch.jobs[job.job_id] = job
            batch.copies.append(job.model_copy())
            batch.books[job.job_id] = make_book(seq + offset, queue_seq + offset, now)
            rows.append(pending_job_row(seq + offset, spec, now_iso, queue_seq + offset))
            edges += edge_rows(seq + offset, spec)
            if spec.hold:
                batch.held.add(seq + offset - batch.first_seq)
        return rows, edges

    def publish(self, batch: StagedBatch[Book], first_event_seq: int,
                idempotency_key: IdempotencyKey | None) -> SubmittedEvents:
        """Inside the caller's transaction: the batch becomes visible at its commit, its
        events numbered from ``first_event_seq``."""
        batch.events = SubmittedEvents(batch.first_seq, len(batch.jobs), first_event_seq,
                                       batch.now, frozenset(batch.held))
        store = self._store()
        store.publish_batch(batch.events)
        if idempotency_key is not None:
            store.save_idempotent_reply(idempotency_key, batch.copies)
        return batch.events

    def discard(self, batch: StagedBatch[Book]) -> None:
        """A batch that will not be published: delete its rows in the background."""
        self._spawn(self._discard(batch.first_seq), f"discard batch {batch.first_seq}")

    async def _discard(self, first_seq: int) -> None:
        await self._in_steps(lambda store: store.delete_staged_jobs(first_seq, DELETE_CHUNK),
                             f"rows of failed batch {first_seq} not deleted yet")

    def settle(self, batch: StagedBatch[Book], queue: Callable[[Sequence[Job]], None],
               queued: Callable[[], None]) -> None:
        """After the publish commit: queue the jobs in steps while dispatch waits, call
        ``queued``, then write the events to the table. The copies the caller got are held
        here too and let go a step at a time (all at once, 10,000 take ~18 ms to free)."""
        jobs, copies = list(batch.jobs.values()), list(batch.copies)
        batch.copies = []
        if self._closed:
            return
        self._queueing += 1
        self._spawn(self._settle(jobs, copies, batch.first_seq, queue, queued),
                    f"settle batch {batch.first_seq}")

    async def _settle(self, jobs: list[Job], copies: list[Job], first_seq: int,
                      queue: Callable[[Sequence[Job]], None], queued: Callable[[], None]
                      ) -> None:
        try:
            for start in range(0, len(jobs), QUEUE_CHUNK):
                if start:
                    await asyncio.sleep(0)
                queue(jobs[start:start + QUEUE_CHUNK])
        finally:
            self._queueing -= 1
        queued()
        while copies:  # the caller has answered by now: its copies go, a step at a time
            await asyncio.sleep(0)
            del copies[:QUEUE_CHUNK]
        await self._in_steps(lambda store: store.write_batch_events(first_seq, EVENT_CHUNK),
                             f"events of batch {first_seq} not written yet")

    async def _in_steps(self, step: Callable[[Store], bool], failing: str) -> None:
        """Run ``step`` in a transaction of its own until it says it is done, yielding
        between steps and checkpointing now and then (each step grows the WAL; on a full
        disk only a checkpoint lets it be reused); while the store refuses writes, retry
        every RETRY_SEC."""
        steps = 0
        while not self._closed:
            store = self._store()
            try:
                with store.unsynced_transaction():  # recovery redoes what a crash loses
                    done = step(store)
            except StoreUnavailable as exc:
                log.warning("%s: %s", failing, exc.message)
                await asyncio.to_thread(store.checkpoint)
                await asyncio.sleep(RETRY_SEC)
                continue
            if done:
                return
            steps += 1
            if steps % CHECKPOINT_EVERY == 0:
                await asyncio.to_thread(store.checkpoint)
            else:
                await asyncio.sleep(0)

    def _spawn(self, work: Coroutine[None, None, None], name: str) -> None:
        if self._closed:  # the store is closing: the next start finishes the work
            work.close()
            return
        task = asyncio.ensure_future(work)
        task.set_name(name)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("%s failed", task.get_name(), exc_info=task.exception())

    async def close(self) -> None:
        """Stop background work (what is left, the next start finishes from the store)."""
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
