"""Pending queue: order, matching, skipping blocked clusters, removal, reasons, cost."""

from __future__ import annotations

import random
import statistics
import time

from apr_sched.models import ResourceRequest
from apr_sched.placement import HostCapacity, HostPool
from apr_sched.queue import PendingQueue
from tests.placement_builders import host, pool_of, req


def drain_one_at_a_time(queue: PendingQueue, pool: HostPool, r: ResourceRequest) -> list[str]:
    """Run passes on a 1-slot pool, finishing each placed job before the next pass."""
    order = []
    while len(queue):
        placed = queue.dispatch_pass(pool)
        assert len(placed) == 1
        job_id, host_id = placed[0]
        order.append(job_id)
        pool.release(host_id, r)
    return order


def test_priority_high_first_then_submit_order_on_one_slot() -> None:
    pool = pool_of(host("only", slots=1))
    queue = PendingQueue()
    r = req()
    for job_id, priority, seq in [("a", 0, 1), ("b", 5, 2), ("c", 0, 3), ("d", 5, 4), ("e", -1, 5)]:
        queue.push(job_id, priority, seq, r)
    assert drain_one_at_a_time(queue, pool, r) == ["b", "d", "a", "c", "e"]


def test_priority_order_holds_across_clusters() -> None:
    pool = pool_of(host("only", slots=1, cpu=64))
    queue = PendingQueue()
    small, large = req(cpu=1), req(cpu=8)
    queue.push("s1", 1, 1, small)
    queue.push("l1", 3, 2, large)
    queue.push("s2", 2, 3, small)
    queue.push("l2", 0, 4, large)
    order = []
    while len(queue):
        [(job_id, host_id)] = queue.dispatch_pass(pool)
        order.append(job_id)
        pool.release(host_id, small if job_id.startswith("s") else large)
    assert order == ["l1", "s2", "s1", "l2"]


def test_placed_cluster_competes_again_in_global_order() -> None:
    pool = pool_of(host("h", slots=10, cpu=64))
    queue = PendingQueue()
    queue.push("a5", 5, 1, req(cpu=1))
    queue.push("a1", 1, 2, req(cpu=1))
    queue.push("b3", 3, 3, req(cpu=2))
    assert [j for j, _ in queue.dispatch_pass(pool)] == ["a5", "b3", "a1"]


def test_resource_matching_picks_the_host_that_fits() -> None:
    pool = pool_of(
        host("small", slots=1, cpu=4, memory_gb=16, tool="innovus"),
        host("big", slots=1, cpu=64, memory_gb=512, tool="innovus"),
        host("other", slots=1, cpu=64, memory_gb=512, tool="icc2"),
    )
    queue = PendingQueue()
    queue.push("mem", 0, 1, req(memory_gb=256, tool="innovus"))
    queue.push("lab", 0, 2, req(tool="icc2"))
    queue.push("cpu", 0, 3, req(cpu=4, tool="innovus"))
    assert sorted(queue.dispatch_pass(pool)) == [("cpu", "small"), ("lab", "other"), ("mem", "big")]


def test_least_loaded_spread_and_host_id_ties() -> None:
    pool = pool_of(host("b", slots=2), host("a", slots=2))
    queue = PendingQueue()
    for i in range(4):
        queue.push(f"j{i}", 0, i, req())
    assert queue.dispatch_pass(pool) == [("j0", "a"), ("j1", "b"), ("j2", "a"), ("j3", "b")]


def test_blocked_cluster_does_not_block_a_smaller_one() -> None:
    pool = pool_of(host("h", slots=4, cpu=8))
    queue = PendingQueue()
    pool.allocate("h", req(cpu=4))
    queue.push("big1", 10, 1, req(cpu=8))
    queue.push("big2", 10, 2, req(cpu=8))
    queue.push("small1", 0, 3, req(cpu=2))
    queue.push("small2", 0, 4, req(cpu=2))
    queue.push("small3", 0, 5, req(cpu=2))
    assert queue.dispatch_pass(pool) == [("small1", "h"), ("small2", "h")]
    assert queue.reason("big1") == queue.reason("big2")
    assert (queue.reason("big1") or "").startswith("waiting for capacity: needs 1 slot, 8 cpu")
    assert (queue.reason("small3") or "").startswith("waiting for capacity: needs 1 slot, 2 cpu")
    assert len(queue) == 3


def test_remove_and_removed_jobs_are_never_placed() -> None:
    pool = pool_of(host("h", slots=100, cpu=100))
    queue = PendingQueue()
    for i in range(10):
        queue.push(f"j{i}", 0, i, req())
    assert queue.remove("j0") and queue.remove("j5") and queue.remove("j9")
    assert not queue.remove("j0")
    assert not queue.remove("nope")
    assert "j0" not in queue and "j1" in queue and len(queue) == 7
    placed = [job_id for job_id, _ in queue.dispatch_pass(pool)]
    assert placed == ["j1", "j2", "j3", "j4", "j6", "j7", "j8"]
    assert len(queue) == 0 and queue.cluster_count() == 0


def test_remove_of_most_jobs_keeps_order_right() -> None:
    pool = pool_of(host("h", slots=1000, cpu=1000))
    queue = PendingQueue()
    for i in range(5000):
        queue.push(f"j{i}", i % 3, i, req(cpu=1 + i % 2))
    kept = {f"j{i}" for i in range(0, 5000, 97)}
    for i in range(5000):
        if f"j{i}" not in kept:
            assert queue.remove(f"j{i}")
    placed = [job_id for job_id, _ in queue.dispatch_pass(pool)]
    expected = sorted(kept, key=lambda j: (-(int(j[1:]) % 3), int(j[1:])))
    assert placed == expected


def test_push_of_a_queued_job_replaces_it() -> None:
    pool = pool_of(host("h", slots=1))
    queue = PendingQueue()
    r = req()
    queue.push("a", 0, 1, r)
    queue.push("b", 0, 2, r)
    queue.push("b", 9, 2, r)
    assert len(queue) == 2
    assert drain_one_at_a_time(queue, pool, r) == ["b", "a"]


def test_removing_a_whole_cluster_then_pushing_again() -> None:
    pool = pool_of(host("h", slots=10))
    queue = PendingQueue()
    queue.push("a", 5, 1, req())
    queue.remove("a")
    assert queue.cluster_count() == 0
    queue.push("b", 0, 2, req())
    assert queue.dispatch_pass(pool) == [("b", "h")]


def test_limit_caps_placements_per_pass() -> None:
    pool = pool_of(host("h", slots=10))
    queue = PendingQueue()
    for i in range(5):
        queue.push(f"j{i}", 0, i, req())
    assert [j for j, _ in queue.dispatch_pass(pool, limit=2)] == ["j0", "j1"]
    assert [j for j, _ in queue.dispatch_pass(pool, limit=0)] == []
    assert [j for j, _ in queue.dispatch_pass(pool)] == ["j2", "j3", "j4"]


def test_reasons_no_hosts_missing_label_memory_and_capacity() -> None:
    queue = PendingQueue()
    queue.push("any", 0, 1, req())
    assert queue.reason("any") is None
    queue.dispatch_pass(HostPool())
    assert queue.reason("any") == "no hosts registered"

    pool = pool_of(host("a", slots=1, memory_gb=128, tool="innovus"))
    queue.push("lab", 0, 2, req(tool="openroad"))
    queue.push("mem", 0, 3, req(memory_gb=256, tool="innovus"))
    queue.push("cap", 0, 4, req(tool="innovus"))
    assert queue.dispatch_pass(pool) == [("any", "a")]
    assert queue.reason("lab") == "no host has label tool=openroad"
    assert queue.reason("mem") == "needs 256 GB memory; largest host with tool=innovus has 128 GB"
    assert queue.reason("cap") == (
        "waiting for capacity: needs 1 slot, 1 cpu, tool=innovus; 0 of 1 eligible host has room"
    )
    assert queue.reason("any") is None and queue.reason("unknown") is None

    pool.release("a", req())
    assert queue.dispatch_pass(pool) == [("cap", "a")]


def test_hosts_not_accepting_get_nothing() -> None:
    pool = pool_of(host("a"), host("b"))
    pool.set_accepting("a", False)
    pool.set_accepting("b", False)
    queue = PendingQueue()
    queue.push("j", 0, 1, req())
    assert queue.dispatch_pass(pool) == []
    assert queue.reason("j") == (
        "waiting for capacity: needs 1 slot, 1 cpu; 0 of 2 eligible hosts have room; "
        "2 eligible hosts offline/draining"
    )
    pool.set_accepting("b", True)
    assert queue.dispatch_pass(pool) == [("j", "b")]


def _naive_pass(
    jobs: dict[str, tuple[int, int, ResourceRequest]], hosts: dict[str, HostCapacity]
) -> list[tuple[str, str]]:
    """The rule written the slow, obvious way: best job first, skip a cluster once blocked."""
    placed: list[tuple[str, str]] = []
    blocked: set[object] = set()
    while True:
        candidates = [(-p, s, j) for j, (p, s, r) in jobs.items() if r.cluster_key() not in blocked]
        if not candidates:
            return placed
        _, _, job_id = min(candidates)
        r = jobs[job_id][2]
        fitting = [h for h in hosts.values() if h.fits_now(r)]
        if not fitting:
            blocked.add(r.cluster_key())
            continue
        chosen = min(fitting, key=lambda h: (h.load(), h.host_id))
        chosen.used_slots += r.slots
        chosen.used_cpu += r.cpu
        chosen.used_memory_gb += r.memory_gb
        placed.append((job_id, chosen.host_id))
        del jobs[job_id]


def test_passes_match_the_obvious_algorithm() -> None:
    rng = random.Random(11)
    requests = [
        req(
            slots=rng.randint(1, 2),
            cpu=rng.choice([0, 1, 2, 4, 8]),
            memory_gb=rng.choice([0, 8, 32]),
            **({"tool": rng.choice("xyz")} if rng.random() < 0.5 else {}),
        )
        for _ in range(15)
    ]
    specs = [
        (
            f"h{i}",
            rng.randint(1, 4),
            rng.choice([4, 8, 16]),
            rng.choice([16, 64]),
            rng.choice("xyz"),
        )
        for i in range(6)
    ]
    pool = pool_of(*(host(i, s, c, m, tool=t) for i, s, c, m, t in specs))
    mirror = {i: host(i, s, c, m, tool=t) for i, s, c, m, t in specs}
    queue = PendingQueue()
    jobs: dict[str, tuple[int, int, ResourceRequest]] = {}
    seq = 0
    for _ in range(300):
        for _ in range(rng.randint(0, 8)):
            seq += 1
            job = (rng.randint(0, 3), seq, rng.choice(requests))
            jobs[f"j{seq}"] = job
            queue.push(f"j{seq}", *job)
        for job_id in rng.sample(sorted(jobs), min(len(jobs), rng.randint(0, 2))):
            del jobs[job_id]
            assert queue.remove(job_id)
        placed = queue.dispatch_pass(pool)
        assert placed == _naive_pass(jobs, mirror)
        assert not any(job_id in queue for job_id, _ in placed)
        for host_id, h in mirror.items():
            pool_host = pool.get(host_id)
            assert pool_host is not None
            assert (pool_host.used_slots, pool_host.used_cpu) == (h.used_slots, h.used_cpu)
        for host_id, h in mirror.items():
            if h.used_slots and rng.random() < 0.4:
                pool_host = pool.get(host_id)
                assert pool_host is not None
                give_back = req(slots=h.used_slots, cpu=h.used_cpu, memory_gb=h.used_memory_gb)
                pool.release(host_id, give_back)
                h.used_slots, h.used_cpu, h.used_memory_gb = 0, 0, 0.0
        assert len(queue) == len(jobs)


def _pass_seconds(pending: int) -> float:
    """Median time of a pass that places exactly one job from ``pending`` queued jobs."""
    pool = pool_of(host("h", slots=1, cpu=64, memory_gb=256))
    queue = PendingQueue()
    requests = [req(cpu=1 + i % 10) for i in range(10)]
    for i in range(pending):
        queue.push(f"job-{i}", i % 7, i, requests[i % 10])
    times = []
    for seq in range(pending, pending + 300):
        start = time.perf_counter()
        [(job_id, host_id)] = queue.dispatch_pass(pool)
        times.append(time.perf_counter() - start)
        r = requests[int(job_id.removeprefix("job-")) % 10]
        pool.release(host_id, r)
        queue.push(job_id, 0, seq, r)  # keep the queue as long as it was
    return statistics.median(times)


def test_decision_cost_does_not_grow_with_pending_jobs() -> None:
    small = min(_pass_seconds(100) for _ in range(3))
    large = _pass_seconds(100_000)
    assert large < 20 * small, (small, large)
