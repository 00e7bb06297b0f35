"""Benchmark the start-up of client commands: `apr-sched status ID`, `job ID`, `jobs --json`.

`logs ID` is measured beside them: a command that builds no models and prints no table,
i.e. the cost of the CLI itself (interpreter, argparse, http.client, our modules).

Flows run the CLI once per step (a make recipe, a workflow engine's status poll), so what a
command costs from exec to exit is what they pay. Each command runs as a fresh process
against a running daemon, exactly as a script runs it: the `apr-sched` entry point of this
interpreter's environment, over the state dir's Unix socket.

The daemon is started by this benchmark: `apr-sched serve` on a temp state dir with one
local host, listening on 127.0.0.1 only (port 0), with one finished job to ask about. The
floor is `python -c pass` (the interpreter alone) with the same interpreter, in the same
run. Commands are measured in `--rounds` interleaved rounds (floor, then each command, the
order rotating each round), so a burst of load on a shared machine hits all of them alike;
each line gives the median and p90 wall time, the median CPU time (user + system of the
child: less sensitive to other load), and the ratio of medians to the floor.

Goal (issue 9): `apr-sched job ID` and `apr-sched status ID` start in <= 150 ms and
<= 4x the floor. `status` is measured once the CLI has it (otherwise its line says so).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile

BENCH = "cli_startup"
GOAL_MS = 150.0
GOAL_RATIO = 4.0
HOSTS = """
[[hosts]]
host_id = "local"
total_slots = 2
total_cpu = 2
total_memory_gb = 1
"""


def cli() -> list[str]:
    """The `apr-sched` script next to this interpreter (what users run), else `-m`."""
    script = Path(sys.executable).parent / "apr-sched"
    return [str(script)] if script.exists() else [sys.executable, "-m", "apr_sched"]


def client_env() -> dict[str, str]:
    """Our environment without anything that points a client elsewhere."""
    return {k: v for k, v in os.environ.items()
            if k not in ("APR_SCHED_URL", "APR_SCHED_TOKEN", "APR_SCHED_HOME")}


def start_daemon(state_dir: Path) -> subprocess.Popen[bytes]:
    config = state_dir.parent / "hosts.toml"
    config.write_text(HOSTS)
    proc = subprocess.Popen(
        [*cli(), "serve", "--host", "127.0.0.1", "--port", "0", "--state-dir", str(state_dir),
         "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=client_env())
    owner_file = state_dir / "scheduler.json"
    deadline = time.monotonic() + 60
    while True:  # the daemon writes its url once it listens: a bounded wait for that file
        try:
            if json.loads(owner_file.read_text() or "{}").get("url"):
                return proc
        except (OSError, ValueError):
            pass
        if time.monotonic() > deadline or proc.poll() is not None:
            proc.kill()
            raise RuntimeError("the daemon did not start")
        time.sleep(0.02)


def run_once(argv: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run; the command must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=client_env())
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[1:]} exited {result.returncode}: "
                           f"{result.stderr.decode(errors='replace')[:300]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def has_command(name: str) -> bool:
    probe = subprocess.run([*cli(), name, "--help"], capture_output=True, env=client_env())
    return probe.returncode == 0


def finished_job(state_dir: Path) -> str:
    """A finished job to ask about: `true`, submitted and waited for through `connect`."""
    from apr_sched import connect

    with connect(state_dir) as client:
        job = client.submit({"command": "true", "name": "bench", "workdir": "/tmp"})
        done = client.wait(job.job_id, timeout=60)
        if done.status != "SUCCEEDED":
            raise RuntimeError(f"the bench job ended {done.status}")
        return done.job_id


def measure(commands: dict[str, list[str]], rounds: int) -> dict[str, tuple[list[float],
                                                                              list[float]]]:
    for argv in commands.values():  # warm the page cache and .pyc files once
        run_once(argv)
    times: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in commands}
    names = list(commands)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            wall, cpu = run_once(commands[name])
            times[name][0].append(wall)
            times[name][1].append(cpu)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    emit(BENCH, "setup", None, cpus=os.cpu_count(), python=sys.version.split()[0],
         cli=" ".join(cli()), rounds=args.rounds, load_avg_1m=os.getloadavg()[0])
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as tmp:
        state_dir = Path(tmp) / "state"
        daemon = start_daemon(state_dir)
        try:
            job_id = finished_job(state_dir)
            where = ["--state-dir", str(state_dir)]
            commands = {
                "floor": [sys.executable, "-c", "pass"],
                "job": [*cli(), "job", job_id, *where],
                "jobs_json": [*cli(), "jobs", "--json", *where],
                "logs": [*cli(), "logs", job_id, *where],
            }
            status = has_command("status")
            if status:
                commands["status"] = [*cli(), "status", job_id, *where]
            times = measure(commands, args.rounds)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    floor = statistics.median(times["floor"][0]) * 1000
    emit(BENCH, "floor_ms", floor, median_cpu_ms=statistics.median(times["floor"][1]) * 1000,
         p90_ms=percentile(times["floor"][0], 0.9) * 1000, command="python -c pass")
    for name, (walls, cpus) in times.items():
        if name == "floor":
            continue
        median = statistics.median(walls) * 1000
        emit(BENCH, f"{name}_ms", median, p90_ms=percentile(walls, 0.9) * 1000,
             min_ms=min(walls) * 1000, median_cpu_ms=statistics.median(cpus) * 1000,
             ratio_to_floor=median / floor, goal_ms=GOAL_MS, goal_ratio=GOAL_RATIO,
             met=median <= GOAL_MS and median / floor <= GOAL_RATIO,
             command=" ".join(["apr-sched", *commands[name][len(cli()):len(cli()) + 2]]))
    if not status:
        emit(BENCH, "status_ms", None, skipped="this apr-sched has no `status` command yet "
             "(the flowcli branch adds it); measured once it exists")
    emit(BENCH, "done", None, load_avg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
