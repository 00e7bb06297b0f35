"""Benchmark job graphs: what a dependency adds per job, and what waiting dependents cost a
dispatch decision.

Not a test: prints one JSON line per result, with the load average.

1. ``chain`` vs ``independent``, same run, alternated: 1,000 ``true`` jobs on one 1-slot
   host (so both run one after another and differ only in what releases the next job), in
   a real in-process Scheduler with real processes and the default durability. ``added
   per job`` = (chain - independent) / 1,000; the release latency is, per job, the time
   from its predecessor's final event to its own RUNNING event.
2. ``dispatch``: the pure dispatch path (``Eligibility`` + ``PendingQueue`` + ``HostPool``)
   draining 5,000 queued jobs in 50 autoclusters over 50 hosts, with 100,000 dependents
   waiting on 1,000 running upstreams, and with none: the cost per decision should be the
   same (waiting dependents are not in the queue).
3. ``cascade``: the head of a 1,000-job chain stopped: time until all 1,000 are CANCELLED,
   and the transactions it took.

Run: ``.venv/bin/python bench/bench_graphs.py [--jobs 1000] [--rounds 2]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import itertools

from apr_sched import HostSpec, Scheduler
from apr_sched.dependencies import Condition, Edge
from apr_sched.eligibility import Eligibility
from apr_sched.models import JobSpec, JobStatus, ResourceRequest, new_pending_job, utcnow
from apr_sched.placement import HostCapacity, HostPool
from apr_sched.queue import PendingQueue
from bench._common import emit as _emit
from bench._common import percentile


def emit(metric: str, value: float | int | None, **extra: Any) -> None:
    _emit("graphs", metric, value, load_avg_1m=round(os.getloadavg()[0], 2), **extra)


# 1. chain vs independent -------------------------------------------------------------------
async def run_batch(count: int, chained: bool) -> tuple[float, list[float]]:
    """Seconds from submit to the last job's end, and each job's release latency (ms)."""
    with tempfile.TemporaryDirectory() as root:
        host = HostSpec(host_id="solo", total_slots=1, total_cpu=1, total_memory_gb=1)
        async with Scheduler(Path(root) / "state", hosts=[host]) as s:
            specs: list[dict[str, Any]] = [
                {"name": f"j{i}", "command": "true", "resource_request": {"cpu": 1},
                 **({"depends_on": {"after_ok": [f"j{i - 1}"]}} if chained and i else {})}
                for i in range(count)]
            start = time.perf_counter()
            jobs = await s.submit_batch(specs)
            await s.wait(jobs[-1].job_id, timeout=600)
            elapsed = time.perf_counter() - start
            for job in (jobs[0], jobs[-1]):
                if (await s.get_job(job.job_id)).status is not JobStatus.SUCCEEDED:
                    raise SystemExit(f"benchmark job {job.job_id} did not succeed")
            ended: dict[str, float] = {}
            started: dict[str, float] = {}
            seq = 0
            while page := await s.events_since(seq, limit=10_000):
                for event in page:
                    if event.kind != "job":
                        continue
                    if event.to_status is JobStatus.RUNNING:
                        started[event.job_id] = event.time.timestamp()
                    elif event.to_status is JobStatus.SUCCEEDED:
                        ended[event.job_id] = event.time.timestamp()
                seq = page[-1].seq
            ids = [job.job_id for job in jobs]
            latency = [(started[b] - ended[a]) * 1e3 for a, b in itertools.pairwise(ids)]
            return elapsed, latency


async def chain_vs_independent(count: int, rounds: int) -> None:
    results: dict[bool, list[float]] = {False: [], True: []}
    latencies: dict[bool, list[float]] = {False: [], True: []}
    for round_no in range(rounds):
        for chained in ((False, True) if round_no % 2 == 0 else (True, False)):
            elapsed, latency = await run_batch(count, chained)
            results[chained].append(elapsed)
            latencies[chained] += latency
            emit("chain_round_s" if chained else "independent_round_s", elapsed,
                 jobs=count, round=round_no + 1)
    chain, independent = statistics.median(results[True]), statistics.median(results[False])
    emit("independent_s", independent, jobs=count, rounds=rounds, slots=1)
    emit("chain_s", chain, jobs=count, rounds=rounds, slots=1)
    emit("added_ms_per_job", (chain - independent) / count * 1e3, jobs=count,
         goal="<= 1 ms")
    for chained in (False, True):
        values = latencies[chained]
        emit(f"{'chain' if chained else 'independent'}_release_ms_median",
             statistics.median(values), p95=round(percentile(values, 0.95), 3),
             note="predecessor's final event to this job's RUNNING event")


# 2. dispatch decision cost -----------------------------------------------------------------
def dispatch_cost(waiting: int, queued: int = 20_000, seed: int = 7
                  ) -> tuple[float, float, int]:
    """Mean and median microseconds per dispatch decision while draining ``queued`` jobs,
    with ``waiting`` dependents tracked by eligibility; and how many were admitted."""
    rng = random.Random(seed)
    statuses: dict[str, JobStatus] = {f"u{i}": JobStatus.RUNNING for i in range(1_000)}
    rules = Eligibility(statuses.get)
    now = utcnow()
    for i in range(waiting):
        upstreams = rng.sample(range(1_000), k=rng.randint(1, 3))
        job = new_pending_job(JobSpec(command="true"), f"d{i}", now)
        rules.dependencies.add(job.job_id, [Edge(Condition.AFTER_OK, f"u{u}")
                                            for u in upstreams])
    pool = HostPool()
    for h in range(50):
        pool.upsert(HostCapacity(host_id=f"h{h}", total_slots=16, total_cpu=64,
                                 total_memory_gb=256.0, labels={"pool": str(h % 5)}))
    requests = [ResourceRequest(cpu=1 + c % 8, memory_gb=float(c // 8 % 4 * 4),
                                host_labels={"pool": str(c % 5)}) for c in range(200)]
    queue = PendingQueue()
    request_of: dict[str, ResourceRequest] = {}
    admitted = 0
    for i in range(queued):
        job = new_pending_job(JobSpec(command="true"), f"q{i}", now)
        if rules.admits(job):  # what Scheduler._enqueue asks
            request = requests[i % len(requests)]
            queue.push(job.job_id, rng.randint(0, 9), i, request)
            request_of[job.job_id] = request
            admitted += 1
    per_decision: list[float] = []
    running: list[tuple[str, str]] = []
    total, decisions = 0.0, 0
    while len(queue):
        start = time.perf_counter()
        placed = queue.dispatch_pass(pool)
        elapsed = time.perf_counter() - start
        tried = len(placed) + queue.cluster_count()
        per_decision.append(elapsed / max(1, tried) * 1e6)
        total, decisions = total + elapsed, decisions + tried
        running += placed
        for _ in range(max(1, len(running) // 10)):
            if not running:
                break
            index = rng.randrange(len(running))
            running[index], running[-1] = running[-1], running[index]
            job_id, host_id = running.pop()
            pool.release(host_id, request_of[job_id])
    return total / decisions * 1e6, statistics.median(per_decision), admitted


def dispatch_with_and_without(waiting: int) -> None:
    means: dict[int, list[float]] = {0: [], waiting: []}
    for count in (0, waiting, 0, waiting, 0, waiting):
        mean_us, median_us, admitted = dispatch_cost(count)
        means[count].append(mean_us)
        emit("decision_us_round", mean_us, median_per_pass=round(median_us, 3),
             waiting_dependents=count, queued=admitted)
    for count, values in means.items():
        emit("decision_us_mean", statistics.median(values), waiting_dependents=count,
             rounds=len(values), method="drain time / decisions, median of rounds")


# 3. cascade ----------------------------------------------------------------------------------
async def cascade(count: int) -> None:
    with tempfile.TemporaryDirectory() as root:
        async with Scheduler(Path(root) / "state", hosts=[]) as s:
            head = await s.submit({"command": "true", "allow_pending": True})
            specs = [{"name": f"c{i}", "command": "true", "allow_pending": True,
                      "depends_on": {"after_ok": [f"c{i - 1}" if i else head.job_id]}}
                     for i in range(count)]
            jobs = await s.submit_batch(specs)
            begins: list[str] = []
            s.store._db.set_trace_callback(
                lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None)
            start = time.perf_counter()
            await s.stop(head.job_id)
            while s._cascade or (await s.get_job(jobs[-1].job_id)).status is not (
                    JobStatus.CANCELLED):
                await asyncio.sleep(0)
            elapsed = time.perf_counter() - start
            s.store._db.set_trace_callback(None)
            emit("cascade_ms", elapsed * 1e3, chain=count, transactions=len(begins),
                 note="stop of the head to the last of the chain CANCELLED (fsynced)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--waiting", type=int, default=100_000)
    parser.add_argument("--only", choices=["chain", "dispatch", "cascade"])
    args = parser.parse_args()
    if args.only in (None, "dispatch"):
        dispatch_with_and_without(args.waiting)
    if args.only in (None, "cascade"):
        asyncio.run(cascade(1000))
        asyncio.run(cascade(10_000))
    if args.only in (None, "chain"):
        asyncio.run(chain_vs_independent(args.jobs, args.rounds))


if __name__ == "__main__":
    main()
