"""The long crash campaign: a real daemon killed by SIGKILL ``--kills`` times at random
moments while ``--jobs`` jobs run (each appends to a ledger and prints numbered lines).

One JSON line: jobs, kills, lost, ran twice, log lines lost or doubled, event problems,
wall seconds. Goal: every count 0. (tests/test_crash_campaign.py runs a short form.)
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from _common import emit

from tests.crash_campaign import run_campaign


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--lines", type=int, default=30)
    parser.add_argument("--slots", type=int, default=8)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_crash.") as tmp:
        result = run_campaign(Path(tmp), jobs=args.jobs, kills=args.kills, lines=args.lines,
                              pause=0.02, slots=args.slots, seed=args.seed, gap=(0.3, 1.5),
                              finish_timeout=900)
    emit("crash", "kill9_campaign", result.clean, jobs=result.jobs, kills=result.kills,
         log_lines=result.jobs * result.lines_expected, lost=len(result.lost),
         ran_twice=len(result.ran_twice), log_mismatches=len(result.log_mismatches),
         event_problems=len(result.event_problems), wall_sec=result.seconds,
         examples=(result.lost + result.ran_twice + result.log_mismatches
                   + result.event_problems)[:5])


if __name__ == "__main__":
    main()
