"""When a job may enter the dispatch queue, and why one that may not is waiting.

The dispatch pass only sees queued jobs, so whatever keeps a pending job from running
before its turn is decided here, when the Scheduler is about to queue it (``admits``), and
never costs the pass anything: a hold, dependencies not yet met (``dependencies``), a begin
time not yet reached. A job entering PENDING or HELD from outside (submit, restart, rerun)
``arrive``s: its dependencies are tracked and its begin time noted (a large batch's jobs
are ``expect``ed at its commit and arrive in steps, kept out of the queue until then).
When a job ends, ``upstream_ended`` says which dependents that releases or dooms (O(edges
on it)); the Scheduler writes the cancellations and queues the released (``cascade``).
Begin times wait
in one heap under one loop timer for the earliest (``BeginTimes``); when it fires, the
Scheduler is told which jobs are due and queues them. ``pending_reason`` is what a waiting
job's view says. Policies answer; the Scheduler writes.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Protocol

from apr_sched.dependencies import (
    Cancelled,
    Decision,
    DependencyIndex,
    Edge,
    Upstream,
    edges_of,
)
from apr_sched.models import Job, JobStatus, utcnow

HELD_REASON = "held: resume to queue it again"
DISPATCH_REASON = "waiting for dispatch"

StatusOf = Callable[[str], JobStatus | None]
"""A job's status now (as the current transaction will leave it), None for no such job."""


class Cancellable(Protocol):
    def cancel(self) -> None: ...


CallLater = Callable[[float, Callable[[], None]], Cancellable]
"""``loop.call_later``: the one timer source begin times use."""


def job_upstream(status: JobStatus) -> Upstream:
    """A single job as the upstream of an edge."""
    return Upstream(total=1, ended=int(status.is_final),
                    succeeded=int(status is JobStatus.SUCCEEDED), status=status.value)


def begin_text(at: datetime) -> str:
    """``2026-12-01 18:00 (local)``: the server's local time, seconds only when set."""
    local = at.astimezone()
    return local.strftime("%Y-%m-%d %H:%M:%S" if local.second else "%Y-%m-%d %H:%M") + " (local)"


class BeginTimes:
    """Jobs that may not start before a time: a heap of (time, job), one timer armed for
    the earliest. Event-driven: nothing runs until that time; a job whose time changed or
    that left is dropped lazily when it surfaces."""

    def __init__(self, call_later: CallLater | None, on_due: Callable[[list[str]], None],
                 clock: Callable[[], datetime]) -> None:
        self._call_later = call_later
        self._on_due = on_due
        self._clock = clock
        self._at: dict[str, datetime] = {}
        self._heap: list[tuple[datetime, str]] = []
        self._timer: Cancellable | None = None
        self._armed_for: datetime | None = None

    def __len__(self) -> int:
        return len(self._at)

    def waiting(self, job_id: str) -> datetime | None:
        """The job's begin time while it is still in the future, else None."""
        at = self._at.get(job_id)
        if at is None or at <= self._clock():
            return None
        return at

    def add(self, job_id: str, at: datetime) -> bool:
        """Hold the job back until ``at``; False (nothing held) when ``at`` has passed."""
        self._at.pop(job_id, None)
        if at <= self._clock():
            return False
        self._at[job_id] = at
        heapq.heappush(self._heap, (at, job_id))
        if self._armed_for is None or at < self._armed_for:
            self._arm()
        return True

    def discard(self, job_id: str) -> None:
        self._at.pop(job_id, None)
        if not self._at:
            self._disarm()
            self._heap.clear()

    def close(self) -> None:
        self._disarm()

    def _arm(self) -> None:
        self._disarm()
        while self._heap and self._at.get(self._heap[0][1]) != self._heap[0][0]:
            heapq.heappop(self._heap)  # left, or moved to another time
        if not self._heap or self._call_later is None:
            return
        at = self._heap[0][0]
        self._armed_for = at
        self._timer = self._call_later(max(0.0, (at - self._clock()).total_seconds()),
                                       self._fire)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = None
        self._armed_for = None

    def _fire(self) -> None:
        self._timer = self._armed_for = None
        now = self._clock()
        due: list[str] = []
        while self._heap and self._heap[0][0] <= now:
            at, job_id = heapq.heappop(self._heap)
            if self._at.get(job_id) == at:
                del self._at[job_id]
                due.append(job_id)
        self._arm()  # the next one (or the same, if the wall clock ran behind the timer)
        if due:
            self._on_due(due)


class Eligibility:
    """Which pending jobs may wait in the dispatch queue, and what they wait for.

    ``status_of`` tells an upstream's status (the Scheduler answers from the transaction
    being written, memory, then the store); ``call_later`` is the loop's timer and
    ``on_due`` is told which jobs' begin times have come. Without them (tests of the
    seams), dependencies are unknown and begin times are never due.
    """

    def __init__(self, status_of: StatusOf | None = None, *, call_later: CallLater | None = None,
                 on_due: Callable[[list[str]], None] | None = None,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._status_of: StatusOf = status_of or (lambda job_id: None)
        self.dependencies = DependencyIndex(self._upstream)
        self.begin = BeginTimes(call_later, on_due or (lambda job_ids: None), clock)
        self._cancelling: dict[str, str] = {}
        """Dependents decided CANCELLED whose cancellation is not written yet."""
        self._expected: set[str] = set()
        """Jobs of a published batch that have not arrived yet (they arrive in steps)."""

    def _upstream(self, job_id: str) -> Upstream | None:
        status = self._status_of(job_id)
        return None if status is None else job_upstream(status)

    def arrive(self, job: Job) -> Cancelled | None:
        """A job entered PENDING or HELD from outside (submitted, restored, rerun): track
        its dependencies and begin time. Cancelled when a dependency can never hold (the
        caller writes that); None otherwise, waiting or not."""
        self.leave(job.job_id)
        if job.begin_at is not None:
            self.begin.add(job.job_id, job.begin_at)
        if not job.depends_on:
            return None
        decision = self.dependencies.add(job.job_id, edges_of(job.depends_on.as_mapping()))
        return decision if isinstance(decision, Cancelled) else None

    def expect(self, job_ids: Iterable[str]) -> None:
        """These jobs will ``arrive`` soon (a large batch's, a step at a time): until then
        they may not be queued, whatever asks."""
        self._expected.update(job_ids)

    def upstream_ended(self, job_id: str) -> list[Decision]:
        """``job_id`` reached a final status: the dependents it releases or dooms."""
        return self.dependencies.changed(job_id)

    def cancelling(self, decision: Cancelled) -> None:
        """Keep a doomed dependent out of the queue until its cancellation is written."""
        self._cancelling[decision.job_id] = decision.reason

    def leave(self, job_id: str) -> None:
        """The job no longer waits here (it ended, or arrives again)."""
        self.dependencies.discard(job_id)
        self.begin.discard(job_id)
        self._cancelling.pop(job_id, None)
        self._expected.discard(job_id)

    def begin_changed(self, job: Job) -> None:
        """The job's begin time was changed (modify): wait for the new one, if any."""
        self.begin.discard(job.job_id)
        if job.begin_at is not None:
            self.begin.add(job.job_id, job.begin_at)

    def waits_on(self, job_id: str) -> list[Edge]:
        return self.dependencies.unmet(job_id)

    def admits(self, job: Job) -> bool:
        """May the job wait in the dispatch queue now? Not while HELD, waiting for a
        dependency or its begin time, or about to be cancelled."""
        job_id = job.job_id
        return (job.status is JobStatus.PENDING and job_id not in self.dependencies
                and job_id not in self._cancelling and job_id not in self._expected
                and self.begin.waiting(job_id) is None)

    def pending_reason(self, job: Job,
                       placement_reason: Callable[[str], str | None]) -> str | None:
        """Why a waiting job is not running: what keeps it out of the queue, else why its
        autocluster did not place (``placement_reason(job_id)``, asked only then); None
        for a job that is not waiting."""
        if job.status not in (JobStatus.PENDING, JobStatus.HELD):
            return None
        job_id = job.job_id
        doomed = self._cancelling.get(job_id)
        if doomed is not None:
            return f"being cancelled: {doomed}"
        waits = self.dependencies.reason(job_id)
        begins = self.begin.waiting(job_id)
        if begins is not None:
            text = f"begins at {begin_text(begins)}"
            waits = f"{waits}; {text}" if waits else text
        if job.status is JobStatus.HELD:
            return f"{HELD_REASON} (then {waits})" if waits else HELD_REASON
        if waits:
            return waits
        return placement_reason(job_id) or DISPATCH_REASON
