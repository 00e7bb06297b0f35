"""Benchmark the start-up of client commands: `status`, `job`, `jobs --json`, `logs`,
`submit`, `submit --wait`, `wait` and `stop`, each against `python -c pass` in the same run.

Flows run the CLI once per step (a make recipe, a workflow engine's status poll), so what a
command costs from exec to exit is what they pay. Each command runs as a fresh process
against a running daemon, exactly as a script runs it: the `apr-sched` entry point of the
mode's environment, over the state dir's Unix socket.

Three ways Python can find our code, all measured in the same run (``_modes``):
``source`` and ``bytecode``, the dev venv (an editable install, whose import hook every
Python start pays, ``python -c pass`` too) without and with compiled modules; and
``installed``, a venv of its own with a plain ``pip install`` of this repo, as users get
it. Each mode's ratio is to its own floor, ``python -c pass`` of its interpreter.

The daemon is started by this benchmark: `apr-sched serve` on a temp state dir with one
local host, listening on 127.0.0.1 only (port 0), with one finished job to ask about and
pending jobs to stop (the daemon runs from the dev venv in every mode). Commands are
measured in `--rounds` interleaved rounds (each mode's floor, then each command, the order
rotating each round), so a burst of load on a shared machine hits all of them alike; each
line gives the median and p90 wall time, the median CPU time (user + system of the child:
less sensitive to other load), and the ratio of medians to the floor of its mode. `--modes`
picks modes (installed mode's venv is built on first use, which takes a minute, and kept
for the next runs).

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
from _modes import MODES, Mode, build_modes, is_editable, mode_names

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


Command = Callable[[Mode], list[str]]
"""The argv of the command's next run in a mode (a stop needs another job each time)."""


def measure(commands: dict[str, Command], rounds: int, modes: dict[str, Mode]
            ) -> dict[tuple[str, str], tuple[list[float], list[float]]]:
    for mode in modes.values():  # warm the page cache (and, for bytecode, the .pyc)
        for command in commands.values():
            run_once(command(mode), mode.env)
    keys = [(mode, name) for name in commands for mode in modes]
    times: dict[tuple[str, str], tuple[list[float], list[float]]] = {k: ([], []) for k in keys}
    for r in range(rounds):
        shift = r % len(keys)
        for mode, name in keys[shift:] + keys[:shift]:
            wall, cpu = run_once(commands[name](modes[mode]), modes[mode].env)
            times[(mode, name)][0].append(wall)
            times[(mode, name)][1].append(cpu)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--modes", type=mode_names, default=list(MODES),
                        help=f"comma-separated, of {','.join(MODES)} (default: all)")
    parser.add_argument("--installed-venv", type=Path, metavar="DIR",
                        help="where installed mode's venv is built and kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_cli_") as tmp:
        modes = build_modes(args.modes, client_env(), Path(tmp) / "pycache",
                            args.installed_venv)
        emit(BENCH, "setup", None, cpus=os.cpu_count(), python=sys.version.split()[0],
             rounds=args.rounds, load_avg_1m=os.getloadavg()[0],
             modes={name: str(mode.bin) for name, mode in modes.items()},
             dev_venv_editable=is_editable(sys.executable),
             source_mode_writes_bytecode=not os.environ.get("PYTHONDONTWRITEBYTECODE"))
        state_dir = Path(tmp) / "state"
        daemon = start_daemon(state_dir)
        try:
            job_id = finished_job(state_dir)
            stops = (args.rounds + 1) * len(modes)  # one job for each stop run
            to_stop = iter(pending_jobs(state_dir, stops))
            where = ["--state-dir", str(state_dir)]
            fixed = {
                "status": ["status", job_id, *where],
                "job": ["job", job_id, *where],
                "jobs_json": ["jobs", "--json", *where],
                "logs": ["logs", job_id, *where],
                "wait": ["wait", job_id, *where],
                "submit": ["submit", *where, "--workdir", "/tmp", "--", "true"],
                "submit_wait": ["submit", "--wait", "--quiet", *where,
                                "--workdir", "/tmp", "--", "true"],
            }
            commands: dict[str, Command] = {"floor": lambda mode: [mode.python, "-c", "pass"]}
            commands.update({name: (lambda mode, argv=argv: [*mode.apr_sched(), *argv])
                             for name, argv in fixed.items()})
            commands["stop"] = lambda mode: [*mode.apr_sched(), "stop", next(to_stop), *where]
            times = measure(commands, args.rounds, modes)
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=30)
    for mode in modes.values():
        walls, cpus = times[(mode.name, "floor")]
        floor = statistics.median(walls) * 1000
        emit(BENCH, f"floor{mode.suffix()}_ms", floor, mode=mode.name,
             median_cpu_ms=statistics.median(cpus) * 1000,
             p90_ms=percentile(walls, 0.9) * 1000, command="python -c pass")
        for name in itertools.islice(commands, 1, None):
            walls, cpus = times[(mode.name, name)]
            median = statistics.median(walls) * 1000
            emit(BENCH, f"{name}{mode.suffix()}_ms", median, mode=mode.name,
                 p90_ms=percentile(walls, 0.9) * 1000, min_ms=min(walls) * 1000,
                 median_cpu_ms=statistics.median(cpus) * 1000,
                 ratio_to_floor=median / floor, goal_ms=GOAL_MS, goal_ratio=GOAL_RATIO,
                 met=median <= GOAL_MS and median / floor <= GOAL_RATIO,
                 command=LABELS.get(name, f"apr-sched {name}"))
    emit(BENCH, "done", None, load_avg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
