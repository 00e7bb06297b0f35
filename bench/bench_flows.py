"""Flows through the scheduler vs the same flow without one.

A GNU make -j4 flow (3 stages x 4 designs, each recipe ``sleep S``) run three ways,
interleaved rounds, median wall time:
- ``plain``: make runs the recipes itself (the floor);
- ``bsub -K``: every recipe is ``bsub -K ...`` through the LSF shims;
- ``submit --wait``: every recipe is ``apr-sched submit --wait ...`` (when the command exists).
Reported: wall time each, and the scheduler's overhead per job ((wall - plain) / jobs).
Goal (issue 9): overhead <= 0.3 s per job.

The daemon is a real subprocess on a temp state dir with one local host (loopback only).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cli_daemon, emit

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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, cli_daemon(Path(tmp)) as (_, env):
        root = Path(tmp)
        subprocess.run([sys.executable, "-m", "apr_sched", "lsf-shims", str(root / "bin")],
                       check=True, stdout=subprocess.DEVNULL, env=env)
        env["PATH"] = f"{root / 'bin'}:{env['PATH']}"
        work = root / "work"
        work.mkdir()
        ways = {"plain": "", "bsub -K": "bsub -K "}
        has_wait = subprocess.run(["apr-sched", "submit", "--help"], capture_output=True,
                                  text=True, env=env).stdout
        if "--wait" in has_wait:
            ways["submit --wait"] = "apr-sched submit --wait --quiet -- "
        walls: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.rounds):
            for way, run in ways.items():
                walls[way].append(flow_wall(work, makefile(run, args.seconds), env))
        jobs = len(STAGES) * len(DESIGNS)
        plain = statistics.median(walls["plain"])
        for way, values in walls.items():
            wall = statistics.median(values)
            emit("flows", "make_flow_wall_s", wall, way=way, jobs=jobs,
                 recipe_s=args.seconds, rounds=args.rounds)
            if way != "plain":
                emit("flows", "overhead_per_job_s", (wall - plain) / jobs, way=way,
                     goal_s=0.3)


if __name__ == "__main__":
    main()
