"""The make flow (``Makefile`` beside this) as one batch the scheduler runs by itself.

Each design's synth -> place -> route is three entries of one batch, each stage depending on
the one before by its entry ``name`` (``depends_on``): submitted in one all-or-nothing
request, the whole graph then runs in the scheduler, with no client left alive (make must
stay up for its flow; this script exits at once). A failing stage cancels what is below it
(``route-c`` ends CANCELLED: ``dependency 7 FAILED``) instead of leaving it pending; fix it
and ``apr-sched rerun --with-dependents ID`` runs the cancelled part again.

    python examples/flows/batch_flow.py --fail c > flow.json
    apr-sched submit-batch flow.json
    apr-sched graph <the id of route-a>

FAIL makes that design fail in place with exit 3, as ``make FAIL=c`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from typing import Any

STAGES = {
    "synth": "echo synth {design}",
    "place": 'test "{design}" != "{fail}" || exit 3; echo place {design}',
    "route": "echo route {design}",
}


def flow_batch(designs: list[str], fail: str, workdir: str) -> list[dict[str, Any]]:
    """The batch: one entry per stage and design, each after the stage before it."""
    jobs: list[dict[str, Any]] = []
    for design in designs:
        before: str | None = None
        for stage, command in STAGES.items():
            name = f"{stage}-{design}"
            run = command.format(design=design, fail=fail)
            jobs.append({
                "name": name, "design": design, "project": "make-flow", "workdir": workdir,
                "command": f"{run} && touch {shlex.quote(name)}",
                "resource_request": {"cpu": 1},
                **({"depends_on": {"after_ok": [before]}} if before else {}),
            })
            before = name
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--designs", nargs="+", default=["a", "b", "c", "d"])
    parser.add_argument("--fail", default="", help="the design whose place stage fails")
    parser.add_argument("--workdir", default=os.getcwd(), help="where the stages run")
    args = parser.parse_args(argv)
    json.dump({"jobs": flow_batch(args.designs, args.fail, os.path.abspath(args.workdir))},
              sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
