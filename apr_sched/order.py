"""The order pending jobs wait in: the key each is queued under, and the queue seq counter.

The key is ``(priority, queue seq)``: high priority first, then the order jobs were queued
in. A submit, a retry and a rerun take a new seq (to the back of their priority); a
resumed job keeps the seq it had (back in its place); ``top`` takes a seq below every seq
given so far (the front of its priority), ``bottom`` a new one at the back. The queue
sorts by the key but never computes it, so a new ordering rule (fair share among equal
priorities) changes this module, not the queue or the Scheduler. Pure.
"""

from __future__ import annotations

from apr_sched.jobs import Book
from apr_sched.models import Job


class QueueOrder:
    """Queue seqs handed out so far, and the key a pending job is queued under."""

    def __init__(self) -> None:
        self.last_seq = 0
        """The newest queue seq taken (persisted with each job as ``queue_seq``)."""
        self.first_seq = 1
        """The lowest queue seq taken: ``front`` goes below it (it may go below zero)."""

    def reserve(self, count: int) -> int:
        """Take ``count`` consecutive seqs now and return the first (a large batch takes
        its seqs before it is written; one that fails leaves a gap, which orders nothing)."""
        first = self.last_seq + 1
        self.last_seq += count
        return first

    def front(self) -> int:
        """A seq before every one taken: the front of its priority (``top``)."""
        self.first_seq -= 1
        return self.first_seq

    def back(self) -> int:
        """A seq after every one taken: the back of its priority (``bottom``)."""
        self.last_seq += 1
        return self.last_seq

    def key(self, job: Job, book: Book) -> tuple[int, int]:
        """``(priority, seq)``: the queue puts the highest priority first, then the lowest
        seq."""
        return job.priority, book.queue_seq
