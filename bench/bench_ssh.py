"""Benchmark native SSH hosts: jobs/s end to end over three loopback sshd servers.

Starts three real sshd servers (127.0.0.11-13, as the tests do; needs openssh-server) and a
Scheduler with three SSH hosts of 8 slots each. Measured, one JSON line each:
- apr_sched: 500 trivial jobs (`true`), from submit until all are SUCCEEDED: jobs/s;
- the reference, in the same run: 500 `true` commands, one exec channel each, over one
  asyncssh connection per host, 24 in flight (the cost of "an ssh channel per job");
- the ratio of the two;
- latency: one remote `true` from submit to SUCCEEDED on an idle scheduler, median and p95.
Targets: >= 200 jobs/s, >= 5x the reference, <= 100 ms for one job.

The machine's login shell startup (root's ~/.bashrc here) is paid once per channel: the
reference pays it per job, apr_sched once per host.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import asyncssh  # noqa: E402
from _common import emit, percentile  # noqa: E402

from apr_sched import HostSpec, HostState, JobStatus, Scheduler  # noqa: E402
from tests.sshd import SshHost, make_host, require_sshd  # noqa: E402


def spec(host: SshHost, slots: int) -> HostSpec:
    return HostSpec(host_id=host.name, total_slots=slots, total_cpu=slots, total_memory_gb=8,
                    ssh=host.target, ssh_identity_file=str(host.client_key),
                    ssh_known_hosts=str(host.known_hosts), remote_spool=str(host.spool))


async def reference(hosts: list[SshHost], count: int, in_flight: int) -> float:
    conns = [await asyncssh.connect(h.address, h.port, username=h.user,
                                    client_keys=[str(h.client_key)],
                                    known_hosts=str(h.known_hosts)) for h in hosts]
    limit = asyncio.Semaphore(in_flight)

    async def one(i: int) -> None:
        async with limit:
            result = await conns[i % len(conns)].run("true", check=True)
            assert result.exit_status == 0

    start = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    elapsed = time.perf_counter() - start
    for conn in conns:
        conn.close()
    return count / elapsed


async def ours(hosts: list[SshHost], count: int, slots: int, reps: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench_ssh_") as state:
        async with Scheduler(state, hosts=[spec(h, slots) for h in hosts]) as s:
            deadline = time.monotonic() + 30
            while not all(h.state is HostState.ONLINE for h in await s.list_hosts()):
                if time.monotonic() > deadline:
                    raise RuntimeError("hosts did not come online")
                await asyncio.sleep(0.05)
            latencies = []
            for _ in range(reps):
                t0 = time.perf_counter()
                job = await s.submit({"command": "true"})
                done = await s.wait(job.job_id, 30)
                latencies.append((time.perf_counter() - t0) * 1000)
                assert done.status is JobStatus.SUCCEEDED
            emit("ssh", "latency_ms_median", statistics.median(latencies), reps=reps,
                 p95=percentile(latencies, 0.95), target_ms=100,
                 met=statistics.median(latencies) <= 100)
            start = time.perf_counter()
            jobs = await s.submit_batch([{"command": "true"}] * count)
            for job in jobs:
                done = await s.wait(job.job_id, 120)
                assert done.status is JobStatus.SUCCEEDED, done
            rate = count / (time.perf_counter() - start)
    return rate


async def run(args: argparse.Namespace) -> None:
    require_sshd()
    with tempfile.TemporaryDirectory(prefix="bench_sshd_") as root:
        hosts = [make_host(i, Path(root) / f"h{i}", quiet_login=False) for i in range(3)]
        try:
            for host in hosts:
                host.start()
            ref = await reference(hosts, args.count, args.in_flight)
            emit("ssh", "reference_channels_per_sec", ref, count=args.count,
                 in_flight=args.in_flight, method="one asyncssh exec channel per `true`")
            rate = await ours(hosts, args.count, args.slots, args.latency_reps)
            emit("ssh", "jobs_per_sec", rate, count=args.count, hosts=3, slots=args.slots,
                 target=200, met=rate >= 200)
            emit("ssh", "ratio_to_reference", rate / ref, target=5, met=rate / ref >= 5)
        finally:
            for host in hosts:
                host.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--in-flight", type=int, default=24)
    parser.add_argument("--latency-reps", type=int, default=30)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
