"""The seams the dispatch pass asks, each on its own: eligibility (may a job wait in the
queue, and why it waits), order (the key it waits under) and resources (what a running job
holds, and whether a request fits), driven with a real PendingQueue and HostPool."""

from __future__ import annotations

import pytest

from apr_sched.eligibility import DISPATCH_REASON, HELD_REASON, Eligibility
from apr_sched.errors import InvalidInput
from apr_sched.jobs import Book
from apr_sched.models import (
    HostSpec,
    Job,
    JobSpec,
    JobStatus,
    ResourceRequest,
    new_pending_job,
    utcnow,
)
from apr_sched.order import QueueOrder
from apr_sched.placement import HostCapacity, HostPool
from apr_sched.queue import PendingQueue
from apr_sched.resources import Resources

NOW = utcnow()


def job(job_id: str, status: JobStatus = JobStatus.PENDING, priority: int = 0,
        cpu: int = 1) -> Job:
    spec = JobSpec(command="true", priority=priority, resource_request=ResourceRequest(cpu=cpu))
    return new_pending_job(spec, job_id, NOW).model_copy(update={"status": status})


def test_only_a_pending_job_may_wait_in_the_queue() -> None:
    rules = Eligibility()
    assert rules.admits(job("1"))
    for status in JobStatus:
        if status is not JobStatus.PENDING:
            assert not rules.admits(job("1", status)), status


def test_a_waiting_job_says_why() -> None:
    rules = Eligibility()
    asked: list[str] = []

    def placement(job_id: str) -> str | None:
        asked.append(job_id)
        return {"2": "no host has 64 cpu free"}.get(job_id)

    assert rules.pending_reason(job("1"), placement) == DISPATCH_REASON
    assert rules.pending_reason(job("2"), placement) == "no host has 64 cpu free"
    assert rules.pending_reason(job("3", JobStatus.HELD), placement) == HELD_REASON
    assert rules.pending_reason(job("4", JobStatus.RUNNING), placement) is None
    assert asked == ["1", "2"], "placement is asked about queued jobs only"


def test_the_order_key_is_priority_then_queue_seq_and_seqs_are_never_reused() -> None:
    order = QueueOrder()
    assert order.reserve(3) == 1 and order.reserve(2) == 4 and order.last_seq == 5
    book = Book(seq=9, queue_seq=4, queued_at=NOW)
    assert order.key(job("9", priority=7), book) == (7, 4)


def test_the_queue_dispatches_in_the_order_the_keys_say() -> None:
    order, queue = QueueOrder(), PendingQueue()
    pool = HostPool()
    pool.upsert(HostCapacity("h", total_slots=10, total_cpu=10, total_memory_gb=10, labels={}))
    jobs = [job("1"), job("2", priority=5), job("3")]
    books = {j.job_id: Book(seq=int(j.job_id), queue_seq=order.reserve(1), queued_at=NOW)
             for j in jobs}
    books["1"].queue_seq = order.reserve(1)  # "1" went to the back (say, a retry)
    for j in jobs:
        priority, seq = order.key(j, books[j.job_id])
        queue.push(j.job_id, priority, seq, j.resource_request)
    assert [job_id for job_id, _ in queue.dispatch_pass(Resources(pool))] == ["2", "3", "1"]


def test_resources_block_a_whole_autocluster_and_free_what_an_ended_job_held() -> None:
    pool = HostPool()
    pool.upsert(HostCapacity("h", total_slots=4, total_cpu=4, total_memory_gb=8, labels={}))
    resources = Resources(pool)
    queue = PendingQueue()
    for n in range(1, 4):
        queue.push(str(n), 0, n, ResourceRequest(cpu=2))
    placed = queue.dispatch_pass(resources)
    assert placed == [("1", "h"), ("2", "h")]
    assert queue.reason("3"), "the blocked cluster says why"
    slots, cpu, memory = resources.usage()
    assert (slots.used, slots.total, cpu.used, cpu.total) == (2, 4, 4, 4)
    assert (memory.used, memory.total) == (0.0, 8.0)

    resources.release("h", ResourceRequest(cpu=2))
    assert queue.dispatch_pass(resources) == [("3", "h")]
    assert resources.usage()[1].used == 4


def test_a_job_nothing_could_ever_run_is_refused_before_it_is_queued() -> None:
    pool = HostPool()
    pool.upsert(HostCapacity.from_spec(HostSpec(host_id="h", total_slots=1, total_cpu=2,
                                                total_memory_gb=4)))
    resources = Resources(pool)
    resources.check_runnable([JobSpec(command="true")], batch=False)
    with pytest.raises(InvalidInput, match="cpu"):
        resources.check_runnable([JobSpec(command="true",
                                          resource_request=ResourceRequest(cpu=3))], batch=False)


def spec_job(job_id: str, **spec: object) -> Job:
    return new_pending_job(JobSpec.model_validate({"command": "true", **spec}), job_id, NOW)


class Timers:
    """The loop's ``call_later`` as eligibility sees it, with a clock the test moves."""

    def __init__(self) -> None:
        self.now = NOW
        self.armed: list[tuple[float, object]] = []
        self.due: list[list[str]] = []

    def call_later(self, delay: float, callback: object) -> Timers.Handle:
        handle = Timers.Handle(delay, callback)
        self.armed.append((delay, handle))
        return handle

    class Handle:
        def __init__(self, delay: float, callback: object) -> None:
            self.delay, self.callback, self.cancelled = delay, callback, False

        def cancel(self) -> None:
            self.cancelled = True

    def live(self) -> list[Timers.Handle]:
        return [h for _, h in self.armed if isinstance(h, Timers.Handle) and not h.cancelled]

    def fire(self, seconds: float) -> None:
        from datetime import timedelta

        self.now += timedelta(seconds=seconds)
        (handle,) = self.live()
        handle.cancelled = True
        handle.callback()  # type: ignore[operator]


def test_begin_times_wait_under_one_timer_for_the_earliest() -> None:
    from datetime import timedelta

    timers = Timers()
    rules = Eligibility(call_later=timers.call_later, on_due=timers.due.append,
                        clock=lambda: timers.now)
    at = {name: NOW + timedelta(seconds=s) for name, s in (("a", 30), ("b", 10), ("c", 10))}
    for name, when in at.items():
        rules.arrive(spec_job(name, begin_at=when))
    assert [round(h.delay) for h in timers.live()] == [10]  # re-armed for b, a's cancelled
    assert not rules.admits(job("b"))
    assert rules.pending_reason(job("b"), lambda _: None).startswith("begins at ")
    rules.leave("c")
    timers.fire(10)
    assert timers.due == [["b"]] and [round(h.delay) for h in timers.live()] == [20]
    assert rules.admits(job("b"))
    rules.arrive(spec_job("d", begin_at=NOW - timedelta(seconds=1)))
    assert rules.admits(job("d")) and len(rules.begin) == 1  # a past time holds nothing
    timers.fire(25)
    assert timers.due == [["b"], ["a"]] and timers.live() == []


def test_what_a_waiting_job_waits_for_comes_first_in_its_reason() -> None:
    from datetime import timedelta

    from apr_sched.dependencies import Cancelled

    statuses = {"1": JobStatus.RUNNING, "2": JobStatus.FAILED}
    rules = Eligibility(statuses.get)
    later = NOW + timedelta(hours=2)
    dependent = spec_job("5", depends_on={"after_ok": ["1"]}, begin_at=later)
    assert rules.arrive(dependent) is None and not rules.admits(dependent)
    reason = rules.pending_reason(dependent, lambda _: "no host has 64 cpu free")
    assert reason.startswith("waiting for job 1 (RUNNING) to succeed; begins at ")
    held = dependent.model_copy(update={"status": JobStatus.HELD})
    assert rules.pending_reason(held, lambda _: None).startswith(
        f"{HELD_REASON} (then waiting for job 1")
    doomed = spec_job("6", depends_on={"after_ok": ["2"]})
    decision = rules.arrive(doomed)
    assert decision == Cancelled("6", "dependency 2 FAILED")
    rules.cancelling(decision)
    assert not rules.admits(doomed)
    assert rules.pending_reason(doomed, lambda _: None) == (
        "being cancelled: dependency 2 FAILED")
    assert rules.upstream_ended("1") == []  # still RUNNING
    statuses["1"] = JobStatus.SUCCEEDED
    assert [d.job_id for d in rules.upstream_ended("1")] == ["5"]
