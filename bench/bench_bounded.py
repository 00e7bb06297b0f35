"""Bounded by design: memory, restart time and event-loop stalls do not grow with history.

Measured, one JSON line each:
- restart time and RSS of a fresh process starting a Scheduler on a state dir holding
  0 jobs, ``--history`` finished jobs (100,000; rows, attempts and events written directly,
  as a long-running daemon leaves them) and ``--unfinished`` pending jobs (10,000);
- the worst event-loop stall (lateness of a 5 ms ticker) in the scheduler's process while
  clients in other processes (curl) ask for the largest job page, a deep page, and submit
  batches of ``--batch`` jobs (5,000 and 10,000, the largest allowed), with the
  100,000-job history; for a batch also its submit throughput (jobs per second);
- RSS while ``--jobs`` real `true` jobs run through the scheduler (8 slots): its growth per
  finished job should be ~0.
Goals: restart < 1 s with 100,000 finished jobs; RSS flat, < 100 MB; stalls < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit

from apr_sched import HostSpec, JobSpec, Scheduler
from apr_sched.http.service import HttpService
from apr_sched.models import utcnow
from apr_sched.scheduler import DB_NAME
from apr_sched.store import Store

HOST = HostSpec(host_id="local", total_slots=8, total_cpu=8, total_memory_gb=16)

RESTART = """
import asyncio, json, resource, sys, time
from apr_sched import HostSpec, Scheduler
def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
async def main():
    before = rss_mb()
    began = time.perf_counter()
    s = Scheduler(sys.argv[1], hosts=[HostSpec(host_id="local", total_slots=8, total_cpu=8,
                                               total_memory_gb=16)])
    await s.start()
    took = time.perf_counter() - began
    print(json.dumps({"restart_sec": took, "rss_mb": rss_mb(), "rss_before_mb": before}))
    await s.close()
asyncio.run(main())
"""


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def populate(state_dir: Path, finished: int, unfinished: int) -> None:
    """Write jobs as a scheduler would have: finished ones with attempt and 3 events."""
    state_dir.mkdir(parents=True, exist_ok=True)
    store = Store(state_dir / DB_NAME)
    spec = JobSpec(command="true", project="P1", owner="ann").model_dump_json()
    now = utcnow().isoformat()
    jobs, attempts, events = [], [], []
    for seq in range(1, finished + unfinished + 1):
        done = seq <= finished
        jobs.append((seq, str(seq), spec, "SUCCEEDED" if done else "PENDING", 1,
                     "local" if done else None, now, now if done else None,
                     now if done else None, 0 if done else None, None, seq, 0, 0.01, None,
                     None, None, None, "ann", "P1", None))
        attempts.append((str(seq), 1, "SUCCEEDED" if done else "PENDING", now))
        for k, (frm, to) in enumerate([(None, "PENDING"), ("PENDING", "RUNNING"),
                                       ("RUNNING", "SUCCEEDED")][: 3 if done else 1]):
            events.append((seq * 3 + k, now, "job", str(seq), None, 1, frm, to, "bench"))
    with store.transaction():
        store.insert_jobs(jobs)
        store._db.executemany(
            "INSERT INTO attempts (job_id, attempt, status, queued_at) VALUES (?, ?, ?, ?)",
            attempts)
        store._db.executemany("INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", events)
    store.close()


def restart(label: str, state_dir: Path, jobs: int) -> None:
    out = subprocess.run([sys.executable, "-c", RESTART, str(state_dir)], capture_output=True,
                         text=True, check=True, timeout=600)
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    emit("bounded", "restart_sec", facts["restart_sec"], state=label, jobs=jobs)
    emit("bounded", "rss_mb_after_restart", facts["rss_mb"], state=label, jobs=jobs,
         rss_before_mb=facts["rss_before_mb"])


class StallMeter:
    """The worst lateness of a 5 ms ticker on this loop while ``measure`` runs, and the
    most CPU time one loop callback took: what our code held the loop for, whatever else
    the machine was doing (lateness also counts waiting for a CPU on a busy machine)."""

    def __init__(self) -> None:
        self.worst = 0.0
        self.worst_cpu = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _tick(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + 0.005
            await asyncio.sleep(0.005)
            self.worst = max(self.worst, loop.time() - due)

    async def measure(self, argv: list[str]) -> tuple[float, float]:
        self.worst = self.worst_cpu = 0.0
        run = asyncio.events.Handle._run

        def timed_run(handle: asyncio.Handle) -> None:  # each callback's CPU time
            began = time.thread_time()
            run(handle)
            self.worst_cpu = max(self.worst_cpu, time.thread_time() - began)

        asyncio.events.Handle._run = timed_run  # type: ignore[method-assign,assignment]
        self._task = asyncio.get_running_loop().create_task(self._tick())
        began = time.perf_counter()
        try:
            proc = await asyncio.create_subprocess_exec(*argv,
                                                        stdout=asyncio.subprocess.DEVNULL)
            await proc.wait()
        finally:
            asyncio.events.Handle._run = run  # type: ignore[method-assign]
        took = time.perf_counter() - began
        self._task.cancel()
        return self.worst, took


async def stalls(state_dir: Path, batches: list[int]) -> None:
    s = Scheduler(state_dir, hosts=[HOST.model_copy(update={"total_cpu": 1})])
    await s.start()
    async with HttpService(s, "127.0.0.1", 0) as service:
        token = (state_dir / "token").read_text().strip()
        bodies = {}
        for batch in batches:
            body = bodies[batch] = state_dir.parent / f"batch-{batch}.json"
            # cpu 2 on a 1-cpu host: the batch stays pending, so only the request is measured
            body.write_text(json.dumps({"jobs": [{"command": "true", "allow_pending": True,
                                                  "resource_request": {"cpu": 2}}] * batch}))
        curl = ["curl", "-sS", "-o", "/dev/null", "-H", f"Authorization: Bearer {token}"]
        meter = StallMeter()
        cases = {
            "idle (the machine's own noise)": ["sleep", "2"],
            "GET /jobs?limit=5000": [*curl, f"{service.url}/scheduler/jobs?limit=5000"],
            "GET /jobs deep page": [*curl, f"{service.url}/scheduler/jobs?status=SUCCEEDED"
                                           f"&offset=90000&limit=500"],
            "GET /jobs default page": [*curl, f"{service.url}/scheduler/jobs"],
            **{f"POST batch of {batch}": [*curl, "-H", "Content-Type: application/json",
                                          "--data-binary", f"@{body}",
                                          f"{service.url}/scheduler/jobs/batch"]
               for batch, body in bodies.items()},
        }
        for name, argv in cases.items():
            worst, took, cpu = [], [], []
            for _ in range(3):
                w, t = await meter.measure(argv)
                worst.append(w)
                took.append(t)
                cpu.append(meter.worst_cpu)
            extra = {}
            if name.startswith("POST batch of "):
                extra["jobs_per_sec"] = int(name.split()[-1]) / sorted(took)[1]
            emit("bounded", "worst_loop_stall_ms", max(worst) * 1000, request=name,
                 request_sec_median=sorted(took)[1], history=(await s.list_jobs(limit=0)).total,
                 worst_callback_cpu_ms=max(cpu) * 1000, **extra)
    await s.close()


async def rss_while_running(state_dir: Path, jobs: int) -> None:
    s = Scheduler(state_dir, hosts=[HOST])
    await s.start()
    chunk = 2000
    emit("bounded", "rss_mb_running", rss_mb(), finished=0)
    first = None
    done = 0
    while done < jobs:
        batch = await s.submit_batch([{"command": "true"}] * chunk)
        await s.wait(batch[-1].job_id, 600)
        for job in batch:
            await s.wait(job.job_id, 600)
        done += chunk
        now = rss_mb()
        if first is None:
            first = (done, now)
        emit("bounded", "rss_mb_running", now, finished=done)
    assert first is not None
    emit("bounded", "rss_growth_bytes_per_finished_job",
         (rss_mb() - first[1]) * 1024 * 1024 / max(1, done - first[0]),
         jobs=done, goal="~0 (flat)")
    await s.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--history", type=int, default=100_000)
    parser.add_argument("--unfinished", type=int, default=10_000)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch", default="5000,10000",
                        help="batch sizes to submit, comma-separated")
    parser.add_argument("--only", choices=("restart", "stalls", "rss"),
                        help="run one part only")
    args = parser.parse_args()
    batches = [int(size) for size in args.batch.split(",")]
    with tempfile.TemporaryDirectory(prefix="bench_bounded.") as tmp:
        root = Path(tmp)
        if args.only in (None, "restart", "stalls"):
            populate(root / "history", args.history, 0)
        if args.only in (None, "restart"):
            populate(root / "empty", 0, 0)
            populate(root / "unfinished", 0, args.unfinished)
            restart("empty", root / "empty", 0)
            restart("finished", root / "history", args.history)
            restart("unfinished", root / "unfinished", args.unfinished)
        if args.only in (None, "stalls"):
            asyncio.run(stalls(root / "history", batches))
        if args.only in (None, "rss"):
            asyncio.run(rss_while_running(root / "running", args.jobs))


if __name__ == "__main__":
    main()
