"""Benchmark the pending queue and placement: cost per dispatch decision, memory per job.

Not a test: prints one JSON line per result. 100,000 pending jobs in about 1,000
autoclusters over 500 hosts of varied sizes and labels (seeded), drained by dispatch passes
with some running jobs finishing between passes. A *decision* is one head tried (placed, or
its cluster skipped); a pass without a limit tries every remaining cluster once, so its
decisions are ``placements + clusters left``. For comparison, a floor measured in the same
run: a bare ``heapq`` push + pop of the same ``(-priority, seq, job_id)`` tuples.

Run: ``.venv/bin/python bench/bench_queue.py [--seed N]``.
"""

from __future__ import annotations

import argparse
import gc
import heapq
import json
import os
import random
import statistics
import time
from typing import Any

from apr_sched.models import ResourceRequest
from apr_sched.placement import HostCapacity, HostPool
from apr_sched.queue import PendingQueue

PENDING = 100_000
CLUSTERS = 1_000
HOSTS = 500
TOOLS = ["innovus", "icc2", "openroad", "fusion", "tempus"]
NODES = ["n3", "n5", "n7", "n12", "n28"]


def emit(metric: str, value: float, **extra: Any) -> None:
    print(json.dumps({"bench": "queue", "metric": metric, "value": round(value, 3), **extra}))


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def make_hosts(rng: random.Random) -> list[HostCapacity]:
    hosts = []
    for i in range(HOSTS):
        labels = {"tool": rng.choice(TOOLS), "node": rng.choice(NODES)}
        if rng.random() < 0.2:
            labels["site"] = rng.choice(["sj", "hsinchu"])
        hosts.append(
            HostCapacity(
                host_id=f"host-{i:03d}",
                total_slots=rng.choice([4, 8, 16, 32]),
                total_cpu=rng.choice([16, 32, 64, 128]),
                total_memory_gb=float(rng.choice([64, 128, 256, 512, 1024])),
                labels=labels,
            )
        )
    return hosts


def make_requests(rng: random.Random) -> list[ResourceRequest]:
    """About CLUSTERS distinct requests; a few need more than any host has."""
    by_key: dict[object, ResourceRequest] = {}
    while len(by_key) < CLUSTERS:
        labels: dict[str, str] = {}
        if rng.random() < 0.7:
            labels["tool"] = rng.choice(TOOLS)
        if rng.random() < 0.4:
            labels["node"] = rng.choice(NODES)
        request = ResourceRequest(
            slots=rng.choice([1, 1, 1, 2, 4]),
            cpu=rng.choice([1, 2, 4, 8, 16, 32, 64]),
            memory_gb=float(rng.choice([0, 4, 8, 16, 32, 64, 128, 256, 2048])),
            host_labels=labels,
        )
        by_key.setdefault(request.cluster_key(), request)
    return list(by_key.values())


def heap_floor_us(entries: list[tuple[int, int, str]]) -> float:
    """Microseconds for one heappush plus one heappop of these tuples (median of 5 runs)."""
    runs = []
    for _ in range(5):
        heap: list[tuple[int, int, str]] = []
        start = time.perf_counter()
        for entry in entries:
            heapq.heappush(heap, entry)
        while heap:
            heapq.heappop(heap)
        runs.append((time.perf_counter() - start) / len(entries) * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20240601)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    pool = HostPool()
    for host in make_hosts(rng):
        pool.upsert(host)
    requests = make_requests(rng)
    # The scheduler owns job ids and requests; create them before measuring the queue.
    jobs = [(f"job-{i:06d}", rng.randint(0, 9), i, rng.choice(requests)) for i in range(PENDING)]
    request_of = {job_id: request for job_id, _, _, request in jobs}

    queue = PendingQueue()
    gc.collect()
    before = rss_bytes()
    start = time.perf_counter()
    for job_id, priority, seq, request in jobs:
        queue.push(job_id, priority, seq, request)
    push_us = (time.perf_counter() - start) / PENDING * 1e6
    gc.collect()
    after = rss_bytes()
    clusters = queue.cluster_count()
    shape = {"pending": PENDING, "clusters": clusters, "hosts": HOSTS}
    emit("rss_bytes_per_queued_job", (after - before) / PENDING, **shape)
    emit("push_us_mean", push_us, **shape)

    per_decision: list[float] = []
    running: list[tuple[str, str]] = []
    decisions = passes = 0
    first_pass_ms = 0.0
    drain_start = time.perf_counter()
    total_seconds = 0.0
    while len(queue) and time.perf_counter() - drain_start < 40:
        start = time.perf_counter()
        placed = queue.dispatch_pass(pool)
        elapsed = time.perf_counter() - start
        tried = len(placed) + queue.cluster_count()
        if passes == 0:
            first_pass_ms = elapsed * 1e3
        else:
            per_decision.append(elapsed / tried * 1e6)
            total_seconds += elapsed
            decisions += tried
        passes += 1
        running += placed
        if not running:
            break  # what is left can never run: it needs more than any host has
        for _ in range(max(1, len(running) // 10)):  # a tenth of what runs finishes
            if not running:
                break
            index = rng.randrange(len(running))
            running[index], running[-1] = running[-1], running[index]
            job_id, host_id = running.pop()
            pool.release(host_id, request_of[job_id])

    per_decision.sort()
    emit(
        "decision_us_median",
        statistics.median(per_decision),
        **shape,
        p95=round(per_decision[int(len(per_decision) * 0.95)], 3),
        passes=passes,
        left_pending=len(queue),
        left_unplaceable=sum(
            1
            for job_id, request in request_of.items()
            if job_id in queue and pool.unplaceable_reason(request) is not None
        ),
        method="per pass: time / decisions; median over passes after the first",
    )
    emit("decision_us_mean", total_seconds / decisions * 1e6, **shape, decisions=decisions)
    emit("first_pass_ms", first_pass_ms, **shape, note="builds eligibility caches")
    floor_entries = [(-priority, seq, job_id) for job_id, priority, seq, _ in jobs]
    emit("floor_heap_push_pop_us", heap_floor_us(floor_entries), **shape)


if __name__ == "__main__":
    main()
