"""Flows through the scheduler vs the same flow without one.

A GNU make -j4 flow (3 stages x 4 designs, each recipe ``sleep S``) run three ways,
interleaved rounds, median wall time:
- ``plain``: make runs the recipes itself (the floor);
- ``bsub -K``: every recipe is ``bsub -K ...`` through the LSF shims;
- ``submit --wait``: every recipe is ``apr-sched submit --wait ...`` (when the command exists).
Reported: wall time each, and the scheduler's overhead per job ((wall - plain) / jobs).
Goal (issue 9): overhead <= 0.3 s per job.

The scheduler's ways run in each of ``--modes`` (``_modes``): ``source`` and ``bytecode``,
the dev venv (an editable install) without and with compiled modules, and ``installed``, a
plain ``pip install`` of this repo in a venv of its own, as users get it (each mode's
``bsub`` shims are written by its own interpreter). Also reported, from the
jobs' own records: how long a job waited for dispatch and how much longer than its recipe
it ran (the scheduler's share), so the rest of the overhead is the CLI's (start-up, and
make starting the next recipe).

The daemon is a real subprocess on a temp state dir with one local host (loopback only).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cli_daemon, emit
from _modes import MODES, build_modes, mode_names

STAGES = ("synth", "place", "route")
DESIGNS = ("a", "b", "c", "d")


def makefile(run: str, seconds: float) -> str:
    """The flow, with ``run`` put before each recipe's command (empty: make runs it)."""
    rules = [".SECONDARY:", f"all: {' '.join(f'route-{d}' for d in DESIGNS)}"]
    previous = ""
    for stage in STAGES:
        rules.append(f"{stage}-%: {previous}".rstrip())
        rules.append(f"\t{run}sleep {seconds} > /dev/null\n\ttouch $@")
        previous = f"{stage}-%"
    return "\n".join(rules) + "\n"


def scheduler_share(env: dict[str, str], seconds: float) -> tuple[float, float]:
    """Median dispatch wait and median run time beyond the recipe, over the jobs so far."""
    from datetime import datetime

    reply = subprocess.run(["apr-sched", "jobs", "--json", "--limit", "5000"], env=env,
                           capture_output=True, text=True, check=True).stdout
    waits, extra = [], []
    for job in json.loads(reply)["jobs"]:
        if job.get("started_at") and job.get("finished_at"):
            submitted, started, finished = (datetime.fromisoformat(job[k]).timestamp() for k
                                            in ("submitted_at", "started_at", "finished_at"))
            waits.append(started - submitted)
            extra.append(finished - started - seconds)
    return statistics.median(waits), statistics.median(extra)


def flow_wall(work: Path, text: str, env: dict[str, str]) -> float:
    for old in work.glob("*-*"):
        old.unlink()
    (work / "Makefile").write_text(text)
    start = time.perf_counter()
    subprocess.run(["make", "-s", "-j4"], cwd=work, env=env, check=True,
                   stdout=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=0.5, help="each recipe's sleep")
    parser.add_argument("--modes", type=mode_names, default=list(MODES),
                        help=f"comma-separated, of {','.join(MODES)} (default: all)")
    parser.add_argument("--installed-venv", type=Path, metavar="DIR",
                        help="where installed mode's venv is built and kept")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, cli_daemon(Path(tmp)) as (_, env):
        root = Path(tmp)
        work = root / "work"
        work.mkdir()
        modes = build_modes(args.modes, env, root / "pycache", args.installed_venv)
        recipes = {"bsub -K": "bsub -K ", "submit --wait": "apr-sched submit --wait --quiet -- "}
        ways: dict[str, tuple[str, dict[str, str]]] = {"plain": ("", env)}
        for mode in modes.values():
            shims = root / f"bin-{mode.name}"  # bsub of this mode's interpreter, first on PATH
            subprocess.run([mode.python, "-m", "apr_sched", "lsf-shims", str(shims)],
                           check=True, stdout=subprocess.DEVNULL, env=mode.env)
            mode_env = {**mode.env, "PATH": f"{shims}:{mode.env['PATH']}"}
            for name, run in recipes.items():
                label = name if mode.name == "source" else f"{name} ({mode.name})"
                ways[label] = (run, mode_env)
        walls: dict[str, list[float]] = {way: [] for way in ways}
        for run, way_env in ways.values():  # warm up (and write the bytecode once)
            flow_wall(work, makefile(run, 0.0), way_env)
        for _ in range(args.rounds):
            for way, (run, way_env) in ways.items():
                walls[way].append(flow_wall(work, makefile(run, args.seconds), way_env))
        jobs = len(STAGES) * len(DESIGNS)
        plain = statistics.median(walls["plain"])
        for way, values in walls.items():
            wall = statistics.median(values)
            emit("flows", "make_flow_wall_s", wall, way=way, jobs=jobs,
                 recipe_s=args.seconds, rounds=args.rounds)
            if way != "plain":
                emit("flows", "overhead_per_job_s", (wall - plain) / jobs, way=way,
                     goal_s=0.3, met=(wall - plain) / jobs <= 0.3)
        wait, extra = scheduler_share(env, args.seconds)
        emit("flows", "scheduler_share_s", wait + extra, dispatch_wait_median_s=wait,
             run_beyond_recipe_median_s=extra, load_avg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
