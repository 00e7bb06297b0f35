"""Benchmark apr_sched on the local host: throughput of tiny jobs, single-job latency, floors.

Not a test: prints one JSON line per result. All measurements are taken in the same run, so
the ratios compare like with like on whatever machine this runs on.

1. ``local/jobs_per_sec``: apr_sched end to end. ``--count`` jobs running ``true`` are
   submitted as one batch to a fresh Scheduler (state dir in a TemporaryDirectory) with one
   local host of ``--slots`` slots; the clock runs from just before ``submit_batch`` until
   ``wait`` has returned for every job, and every job must be SUCCEEDED.
2. ``floor/runs_per_sec``: the same count of ``asyncio.create_subprocess_exec("true")`` with
   ``--slots`` in flight (a semaphore), awaiting each ``proc.wait()``. ``local/ratio_to_floor``
   is ours / floor (target >= 0.5).
3. ``local/latency_ms_median`` and ``_p95``: on an idle fresh Scheduler, one ``true`` from
   ``submit`` to the return of ``wait`` (SUCCEEDED), ``--latency-reps`` times one after the
   other, after a few unmeasured warm-up jobs (target: median <= 20 ms). For context, the
   same for a bare ``create_subprocess_exec("true")`` + ``wait`` (``floor/latency_ms_*``).
4. ``tsp/runs_per_sec`` (only if ``tsp``, Debian's task-spooler, is on PATH): a private tsp
   server (``TS_SOCKET`` and ``TMPDIR`` in a temp dir, ``TS_MAXFINISHED`` above the count so
   every result can be checked) with ``tsp -S <slots>``, started before the clock. Measured
   end to end: the clock runs from the first of ``--count`` sequential ``tsp true`` client
   calls (each a separate process, as a shell loop would do it; tsp keeps each job's output
   in a file, as apr_sched keeps a log) until the server lists no job other than finished:
   ``tsp -w`` on the last id, then ``tsp -l``, and ``tsp -w`` again on any job not yet
   finished, until none is left. Every job must be finished with E-Level 0.
   ``local/ratio_to_tsp`` is ours / tsp. The server is killed (``tsp -K``) afterwards.

CPU figures (``cpu_ms_per_job``) are this Python process's user+system time per job; when
it is close to the wall time per job, the single asyncio loop is the bottleneck, not the
machine. ``children_cpu_ms_per_job`` is the CPU of reaped child processes per job.

Run: ``.venv/bin/python bench/bench_local.py [--count 2000] [--slots 8]``. Takes < 60 s.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from _common import CpuSnapshot, emit, percentile

from apr_sched import HostSpec, JobStatus, Scheduler

BENCH = "local"
WARMUP_JOBS = 5


def host_spec(slots: int) -> HostSpec:
    return HostSpec(host_id="local", total_slots=slots, total_cpu=slots, total_memory_gb=16)


async def run_ours(count: int, slots: int) -> float:
    """apr_sched end to end; returns jobs per second."""
    with tempfile.TemporaryDirectory(prefix="apr-bench-") as state_dir:
        async with Scheduler(state_dir, hosts=[host_spec(slots)]) as sched:
            specs = [{"command": "true"}] * count
            start = CpuSnapshot.now()
            jobs = await sched.submit_batch(specs)
            submitted = CpuSnapshot.now().since(start)
            done = await asyncio.gather(*(sched.wait(job.job_id, timeout=300) for job in jobs))
            used = CpuSnapshot.now().since(start)
        bad = [job.job_id for job in done if job.status is not JobStatus.SUCCEEDED]
        if bad:
            raise SystemExit(f"{len(bad)} of {count} jobs did not succeed, e.g. {bad[:5]}")
    rate = count / used.wall
    emit(BENCH, "jobs_per_sec", rate, count=count, slots=slots, wall_sec=used.wall,
         submit_batch_ms=submitted.wall * 1e3,
         cpu_ms_per_job=used.self_cpu / count * 1e3,
         children_cpu_ms_per_job=used.children_cpu / count * 1e3,
         wall_ms_per_job=used.wall / count * 1e3, all_succeeded=True)
    return rate


async def run_floor(count: int, slots: int) -> float:
    """Bare asyncio subprocesses, ``slots`` in flight; returns runs per second."""
    gate = asyncio.Semaphore(slots)
    codes: list[int] = []

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec("true")
            codes.append(await proc.wait())

    start = CpuSnapshot.now()
    await asyncio.gather(*(one() for _ in range(count)))
    used = CpuSnapshot.now().since(start)
    if codes.count(0) != count:
        raise SystemExit(f"floor: {count - codes.count(0)} of {count} runs of true failed")
    rate = count / used.wall
    emit("floor", "runs_per_sec", rate, count=count, slots=slots, wall_sec=used.wall,
         cpu_ms_per_job=used.self_cpu / count * 1e3,
         children_cpu_ms_per_job=used.children_cpu / count * 1e3,
         method="asyncio.create_subprocess_exec('true') + proc.wait(), semaphore of slots")
    return rate


def emit_latency(bench: str, samples_ms: list[float], **extra: object) -> float:
    median = statistics.median(samples_ms)
    emit(bench, "latency_ms_median", median, reps=len(samples_ms), **extra)
    emit(bench, "latency_ms_p95", percentile(samples_ms, 0.95), reps=len(samples_ms),
         min=min(samples_ms), max=max(samples_ms), **extra)
    return median


async def run_latency(reps: int, slots: int) -> float:
    """Submit-to-SUCCEEDED of one job at a time on an idle scheduler; returns the median."""
    samples: list[float] = []
    with tempfile.TemporaryDirectory(prefix="apr-bench-") as state_dir:
        async with Scheduler(state_dir, hosts=[host_spec(slots)]) as sched:
            for i in range(WARMUP_JOBS + reps):
                start = time.perf_counter()
                job = await sched.submit({"command": "true"})
                done = await sched.wait(job.job_id, timeout=30)
                elapsed = time.perf_counter() - start
                if done.status is not JobStatus.SUCCEEDED:
                    raise SystemExit(f"latency job {job.job_id} ended {done.status}")
                if i >= WARMUP_JOBS:
                    samples.append(elapsed * 1e3)
                await asyncio.sleep(0.002)  # let stray callbacks run: the next submit is idle
    median = emit_latency(BENCH, samples, method="submit() to wait() returning SUCCEEDED")

    floor: list[float] = []
    for i in range(WARMUP_JOBS + reps):
        start = time.perf_counter()
        proc = await asyncio.create_subprocess_exec("true")
        await proc.wait()
        if i >= WARMUP_JOBS:
            floor.append((time.perf_counter() - start) * 1e3)
    emit_latency("floor", floor, method="create_subprocess_exec('true') + wait()")
    return median


def run_tsp(tsp: str, count: int, slots: int) -> float | None:
    """The same jobs through a private task-spooler server; returns runs per second."""
    with tempfile.TemporaryDirectory(prefix="apr-bench-tsp-") as tmp:
        env = dict(os.environ, TS_SOCKET=str(Path(tmp) / "tsp.sock"), TMPDIR=tmp,
                   TS_SLOTS=str(slots), TS_MAXFINISHED=str(count + 100))
        env.pop("TS_ONFINISH", None)
        env.pop("TS_ENV", None)

        def tsp_call(*args: str, check: bool = True) -> str:
            return subprocess.run([tsp, *args], env=env, check=check, capture_output=True,
                                  text=True).stdout

        def job_table() -> dict[int, tuple[str, str]]:
            """id -> (state, E-Level) for every job the server lists."""
            table = {}
            for line in tsp_call("-l").splitlines()[1:]:
                cols = line.split()
                if cols and cols[0].isdigit():
                    level = cols[3] if cols[1] == "finished" else ""
                    table[int(cols[0])] = (cols[1], level)
            return table

        tsp_call("-S", str(slots))  # starts the server; not timed
        try:
            start = time.perf_counter()
            ids = [int(tsp_call("true")) for _ in range(count)]
            enqueued = time.perf_counter() - start
            tsp_call("-w", str(ids[-1]), check=False)
            while True:
                table = job_table()
                unfinished = [i for i in ids if table.get(i, ("?", ""))[0] != "finished"]
                if not unfinished:
                    break
                tsp_call("-w", str(unfinished[0]), check=False)
            elapsed = time.perf_counter() - start
        finally:
            tsp_call("-K", check=False)
        failed = [i for i in ids if table[i] != ("finished", "0")]
        if failed:
            raise SystemExit(f"tsp: {len(failed)} of {count} jobs did not end with 0")
    rate = count / elapsed
    emit("tsp", "runs_per_sec", rate, count=count, slots=slots, wall_sec=elapsed,
         enqueue_sec=enqueued, all_succeeded=True,
         method="N sequential 'tsp true' calls until tsp -l lists all finished")
    return rate


async def main_async(args: argparse.Namespace) -> None:
    begin = time.perf_counter()
    # Warm up process spawning and the imports used below, unmeasured.
    await run_floor_quiet(50, args.slots)
    floor = await run_floor(args.count, args.slots)
    ours = await run_ours(args.count, args.slots)
    emit(BENCH, "ratio_to_floor", ours / floor, target=0.5, met=ours / floor >= 0.5)
    median = await run_latency(args.latency_reps, args.slots)
    emit(BENCH, "latency_target_met", median <= 20.0, target_ms=20.0, median_ms=median)
    tsp = shutil.which("tsp") or shutil.which("ts")
    if args.no_tsp or tsp is None:
        emit("tsp", "skipped", None, reason="--no-tsp" if args.no_tsp else "tsp not on PATH")
    else:
        tsp_rate = run_tsp(tsp, args.count, args.slots)
        if tsp_rate:
            emit(BENCH, "ratio_to_tsp", ours / tsp_rate, tsp_binary=tsp)
    emit(BENCH, "total_sec", time.perf_counter() - begin, cpus=os.cpu_count())


async def run_floor_quiet(count: int, slots: int) -> None:
    gate = asyncio.Semaphore(slots)

    async def one() -> None:
        async with gate:
            proc = await asyncio.create_subprocess_exec("true")
            await proc.wait()

    await asyncio.gather(*(one() for _ in range(count)))


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--count", type=int, default=2000, help="jobs per throughput run")
    parser.add_argument("--slots", type=int, default=8, help="slots of the local host")
    parser.add_argument("--latency-reps", type=int, default=50, help="sequential latency jobs")
    parser.add_argument("--no-tsp", action="store_true", help="skip the task-spooler run")
    args = parser.parse_args()
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
