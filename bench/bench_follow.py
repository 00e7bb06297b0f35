"""`apr-sched logs --follow`: how soon a written line is printed, and what idle followers
cost the daemon.

1. Latency: a job writes the wall-clock time as a line every ``--gap`` seconds; one
   `apr-sched logs --follow` prints them; each line's latency is the time it was read from
   the follower's stdout minus the time in it (same machine, same clock).
2. Idle cost: 8 jobs that write nothing, followed by 50 `apr-sched logs --follow`
   processes; once they have settled, the daemon's CPU time (user + system, from
   /proc/<pid>/stat) over ``--idle`` seconds, and the followers' together.

The daemon is a real subprocess on a temp state dir with one 8-slot local host (loopback
only). Run it with PYTHONPATH pointing at another checkout to measure that code instead.
"""

from __future__ import annotations

import argparse
import json
import os
import selectors
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cli_daemon, emit, percentile

FOLLOWERS = 50
SILENT_JOBS = 8
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def submit(env: dict[str, str], command: str) -> str:
    done = subprocess.run(["apr-sched", "submit", "--workdir", "/tmp", "--", command],
                          env=env, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def follow(env: dict[str, str], job_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(["apr-sched", "logs", "--follow", "--tail", "0", job_id],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                            text=True, bufsize=1)


def latencies(env: dict[str, str], lines: int, gap: float) -> list[float]:
    job_id = submit(env, f"for i in $(seq {lines}); do sleep {gap}; date +%s.%N; done")
    follower = follow(env, job_id)
    assert follower.stdout is not None
    found: list[float] = []
    selector = selectors.DefaultSelector()
    selector.register(follower.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + lines * gap + 60
    while len(found) < lines and time.monotonic() < deadline:
        if not selector.select(timeout=deadline - time.monotonic()):
            break
        line = follower.stdout.readline()
        if not line:
            break
        found.append(time.time() - float(line))
    follower.wait(timeout=60)
    return found


def settle(followers: list[subprocess.Popen[str]], most: float = 90.0) -> None:
    """Until the followers have started (50 interpreters on a small machine take a while):
    their CPU time grows by less than 20 ms in a second, or ``most`` seconds passed."""
    deadline = time.monotonic() + most
    last = sum(cpu_seconds(f.pid) for f in followers)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = sum(cpu_seconds(f.pid) for f in followers)
        if now - last < 0.02:
            return
        last = now


def idle_cost(env: dict[str, str], daemon_pid: int, seconds: float) -> tuple[float, float]:
    jobs = [submit(env, "sleep 600") for _ in range(SILENT_JOBS)]
    followers = [follow(env, jobs[i % SILENT_JOBS]) for i in range(FOLLOWERS)]
    try:
        settle(followers)
        before = cpu_seconds(daemon_pid), sum(cpu_seconds(f.pid) for f in followers)
        time.sleep(seconds)  # the measured idle window
        after = cpu_seconds(daemon_pid), sum(cpu_seconds(f.pid) for f in followers)
    finally:
        subprocess.run(["apr-sched", "stop", *jobs], env=env, capture_output=True)
        for follower in followers:
            try:
                follower.wait(timeout=30)
            except subprocess.TimeoutExpired:
                follower.kill()
    return after[0] - before[0], after[1] - before[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=15)
    parser.add_argument("--gap", type=float, default=0.7, help="seconds between lines")
    parser.add_argument("--idle", type=float, default=10.0, help="idle window, seconds")
    args = parser.parse_args()
    emit("follow", "setup", None, load_avg_1m=os.getloadavg()[0],
         code=os.environ.get("PYTHONPATH") or "this checkout")
    with tempfile.TemporaryDirectory() as tmp, cli_daemon(Path(tmp)) as (state, env):
        daemon_pid = int(json.loads((state / "scheduler.json").read_text())["pid"])
        found = latencies(env, args.lines, args.gap)
        emit("follow", "line_to_print_ms", statistics.median(found) * 1000,
             p90_ms=percentile(found, 0.9) * 1000, max_ms=max(found) * 1000,
             lines=len(found), gap_s=args.gap)
        daemon_cpu, followers_cpu = idle_cost(env, daemon_pid, args.idle)
        emit("follow", "idle_daemon_cpu_s", daemon_cpu, followers=FOLLOWERS,
             window_s=args.idle, followers_cpu_s=followers_cpu,
             load_avg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
