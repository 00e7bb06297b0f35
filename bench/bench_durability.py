"""What ``synchronous=FULL`` (durability = "full", the default) costs against NORMAL.

FULL fsyncs every commit, so an OS crash cannot roll back a committed RUNNING (a job that
really started would run twice) or a submit a client was told about. Measured in
interleaved rounds in the same run, state dir on ``--tmpdir`` (default: the system temp
dir; use a real disk, tmpfs ignores fsync):
- ``submit_ms``: one ``submit`` (one commit each) of a job that stays pending, median;
- ``jobs_per_sec``: ``--count`` ``true`` jobs dispatched, run and finished on 8 slots (one
  commit per dispatch pass and per finish);
and ``normal_over_full`` ratios of the round medians.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit

from apr_sched import HostSpec, Scheduler

HOST = HostSpec(host_id="local", total_slots=8, total_cpu=8, total_memory_gb=16)


async def submit_ms(root: Path, durability: str, count: int) -> float:
    s = Scheduler(root / f"submit-{durability}", hosts=[HOST], durability=durability)
    await s.start()
    times = []
    for _ in range(count):
        began = time.perf_counter()
        await s.submit({"command": "true", "resource_request": {"cpu": 99}})
        times.append(time.perf_counter() - began)
    await s.close()
    return statistics.median(times) * 1000


async def jobs_per_sec(root: Path, durability: str, count: int) -> float:
    s = Scheduler(root / f"run-{durability}", hosts=[HOST], durability=durability)
    await s.start()
    began = time.perf_counter()
    jobs = await s.submit_batch([{"command": "true"}] * count)
    for job in jobs:
        await s.wait(job.job_id, 600)
    rate = count / (time.perf_counter() - began)
    await s.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--submits", type=int, default=300)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--tmpdir", default=None)
    args = parser.parse_args()
    results: dict[tuple[str, str], list[float]] = {}
    for round_ in range(args.rounds):
        for durability in ("full", "normal") if round_ % 2 == 0 else ("normal", "full"):
            with tempfile.TemporaryDirectory(dir=args.tmpdir, prefix="bench_dur.") as tmp:
                root = Path(tmp)
                ms = asyncio.run(submit_ms(root, durability, args.submits))
                rate = asyncio.run(jobs_per_sec(root, durability, args.count))
            results.setdefault(("submit_ms", durability), []).append(ms)
            results.setdefault(("jobs_per_sec", durability), []).append(rate)
            emit("durability", "submit_ms", ms, durability=durability, round=round_)
            emit("durability", "jobs_per_sec", rate, durability=durability, round=round_)
    for metric in ("submit_ms", "jobs_per_sec"):
        full = statistics.median(results[(metric, "full")])
        normal = statistics.median(results[(metric, "normal")])
        emit("durability", f"{metric}_median", full, durability="full")
        emit("durability", f"{metric}_median", normal, durability="normal")
        emit("durability", f"{metric}_normal_over_full", normal / full)


if __name__ == "__main__":
    main()
