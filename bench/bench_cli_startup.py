"""Benchmark the start-up of client commands: `status`, `job`, `jobs --json`, `logs`,
`submit`, `submit --wait`, `wait` and `stop`, each against `python -c pass` in the same run.

Flows run the CLI once per step (a make recipe, a workflow engine's status poll), so what a
command costs from exec to exit is what they pay. Each command runs as a fresh process
against a running daemon, exactly as a script runs it: the `apr-sched` entry point of this
interpreter's environment, over the state dir's Unix socket.

Two ways Python can find our code, both measured in the same run:
- `source`: the environment as it is. In an editable install under
  PYTHONDONTWRITEBYTECODE=1 (this repo's CI and dev machines) no `.pyc` is ever written,
  so every start compiles each of our modules from source again;
- `bytecode`: compiled once, as `pip install` leaves a package (it byte-compiles on
  install) or a normal interpreter does on first import: a temporary PYTHONPYCACHEPREFIX,
  warmed by the first run. Its floor is `python -c pass` with the same settings.

The daemon is started by this benchmark: `apr-sched serve` on a temp state dir with one
local host, listening on 127.0.0.1 only (port 0), with one finished job to ask about and
pending jobs to stop. Commands are measured in `--rounds` interleaved rounds (each mode's
floor, then each command, the order rotating each round), so a burst of load on a shared
machine hits all of them alike; each line gives the median and p90 wall time, the median
CPU time (user + system of the child: less sensitive to other load), and the ratio of
medians to the floor of its mode.

Goal (issue 9): every client command starts in <= 150 ms and <= 4x the floor.
`submit --wait -- true` includes running the job (bench_wait compares it with curl).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
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
MODES = ("source", "bytecode")
LABELS = {"jobs_json": "apr-sched jobs --json", "status": "apr-sched status ID",
          "job": "apr-sched job ID", "logs": "apr-sched logs ID", "wait": "apr-sched wait ID",
          "submit": "apr-sched submit -- true",
          "submit_wait": "apr-sched submit --wait --quiet -- true",
          "stop": "apr-sched stop ID (a pending job)"}


def cli() -> list[str]:
    """The `apr-sched` script next to this interpreter (what users run), else `-m`."""
    script = Path(sys.executable).parent / "apr-sched"
    return [str(script)] if script.exists() else [sys.executable, "-m", "apr_sched"]


def client_env() -> dict[str, str]:
    """Our environment without anything that points a client elsewhere."""
    return {k: v for k, v in os.environ.items()
            if k not in ("APR_SCHED_URL", "APR_SCHED_TOKEN", "APR_SCHED_HOME")}


def mode_env(mode: str, pycache: Path) -> dict[str, str]:
    env = client_env()
    if mode == "bytecode":
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


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


def run_once(argv: list[str], env: dict[str, str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run; the command must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    result = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise RuntimeError(f"{argv[1:]} exited {result.returncode}: "
                           f"{result.stderr.decode(errors='replace')[:300]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def finished_job(state_dir: Path) -> str:
    """A finished job to ask about: `true`, submitted and waited for through `connect`."""
    from apr_sched import connect

    with connect(state_dir) as client:
        job = client.submit({"command": "true", "name": "bench", "workdir": "/tmp"})
        done = client.wait(job.job_id, timeout=60)
        if done.status != "SUCCEEDED":
            raise RuntimeError(f"the bench job ended {done.status}")
        return done.job_id


def pending_jobs(state_dir: Path, count: int) -> list[str]:
    """Jobs that stay pending (no host has their label): one for each `stop` run."""
    from apr_sched import connect

    spec = {"command": "true", "workdir": "/tmp", "allow_pending": True,
            "resource_request": {"host_labels": {"bench": "never"}}}
    with connect(state_dir) as client:
        return [job.job_id for job in client.submit_batch([spec] * count)]


Command = Callable[[], list[str]]
"""The argv of the command's next run (a stop needs another job each time)."""


def measure(commands: dict[str, Command], rounds: int, envs: dict[str, dict[str, str]]
            ) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    for env in envs.values():  # warm the page cache (and, for bytecode, the .pyc)
        for command in commands.values():
            run_once(command(), env)
    keys = [(mode, name) for name in commands for mode in envs]
    times: dict[tuple[str, str], tuple[list[float], list[float]]] = {k: ([], []) for k in keys}
    for r in range(rounds):
        shift = r % len(keys)
        for mode, name in keys[shift:] + keys[:shift]:
            wall, cpu = run_once(commands[name](), envs[mode])
            times[(mode, name)][0].append(wall)
            times[(mode, name)][1].append(cpu)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    emit(BENCH, "setup", None, cpus=os.cpu_count(), python=sys.version.split()[0],
         cli=" ".join(cli()), rounds=args.rounds, load_avg_1m=os.getloadavg()[0],
         source_mode_writes_bytecode=not os.environ.get("PYTHONDONTWRITEBYTECODE"))
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as tmp:
        state_dir = Path(tmp) / "state"
        daemon = start_daemon(state_dir)
        try:
            job_id = finished_job(state_dir)
            to_stop = iter(pending_jobs(state_dir, (args.rounds + 1) * len(MODES)))  # one a run
            where = ["--state-dir", str(state_dir)]
            fixed = {
                "floor": [sys.executable, "-c", "pass"],
                "status": [*cli(), "status", job_id, *where],
                "job": [*cli(), "job", job_id, *where],
                "jobs_json": [*cli(), "jobs", "--json", *where],
                "logs": [*cli(), "logs", job_id, *where],
                "wait": [*cli(), "wait", job_id, *where],
                "submit": [*cli(), "submit", *where, "--workdir", "/tmp", "--", "true"],
                "submit_wait": [*cli(), "submit", "--wait", "--quiet", *where,
                                "--workdir", "/tmp", "--", "true"],
            }
            commands: dict[str, Command] = {
                name: (lambda argv=argv: argv) for name, argv in fixed.items()}
            commands["stop"] = lambda: [*cli(), "stop", next(to_stop), *where]
            envs = {mode: mode_env(mode, Path(tmp) / "pycache") for mode in MODES}
            times = measure(commands, args.rounds, envs)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    for mode in MODES:
        walls, cpus = times[(mode, "floor")]
        floor = statistics.median(walls) * 1000
        suffix = "" if mode == "source" else f"_{mode}"
        emit(BENCH, f"floor{suffix}_ms", floor, mode=mode,
             median_cpu_ms=statistics.median(cpus) * 1000,
             p90_ms=percentile(walls, 0.9) * 1000, command="python -c pass")
        for name in itertools.islice(commands, 1, None):
            walls, cpus = times[(mode, name)]
            median = statistics.median(walls) * 1000
            emit(BENCH, f"{name}{suffix}_ms", median, mode=mode,
                 p90_ms=percentile(walls, 0.9) * 1000, min_ms=min(walls) * 1000,
                 median_cpu_ms=statistics.median(cpus) * 1000,
                 ratio_to_floor=median / floor, goal_ms=GOAL_MS, goal_ratio=GOAL_RATIO,
                 met=median <= GOAL_MS and median / floor <= GOAL_RATIO,
                 command=LABELS.get(name, f"apr-sched {name}"))
    emit(BENCH, "done", None, load_avg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
