"""A three-stage APR flow (place -> cts -> route) driven from Python.

Each stage is a job on the scheduler; a stage starts only when the one before it has
SUCCEEDED, and reads what it wrote. The commands are stand-ins for real tool runs
(e.g. ``innovus -files place.tcl``). ``apr_sched.connect()`` gives the flow the scheduler:
the daemon (or TUI) that owns the state dir ($APR_SCHED_HOME or ~/.local/state/apr_sched)
if one runs, else one started inside this script on this machine. The flow is the same
code either way.

    python examples/flow.py [--design top] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from typing import Any

import apr_sched
from apr_sched import Job, JobStatus
from apr_sched.connection import Client

STAGES = {
    "place": 'echo "placing $DESIGN"; echo placed > place.db',
    "cts": 'test -f place.db || exit 2; echo "clock tree for $DESIGN"; echo cts > cts.db',
    "route": 'test -f cts.db || exit 2; echo "routing $DESIGN"; echo routed > route.db',
}


def stage_spec(design: str, stage: str, command: str, workdir: str) -> dict[str, Any]:
    return {"name": f"{design}.{stage}", "project": "flow-demo", "design": design,
            "command": command, "workdir": workdir, "env": {"DESIGN": design},
            "resource_request": {"cpu": 1, "memory_gb": 0.1}, "retry_limit": 1}


def report(stage: str, done: Job, lines: list[str]) -> bool:
    print(f"{stage:6} job {done.job_id:>4} {done.status.value:9} on {done.host_id}: "
          f"{' '.join(lines)}")
    if done.status is not JobStatus.SUCCEEDED:
        print(f"flow stopped: {stage} ended {done.status.value}", file=sys.stderr)
        return False
    return True


def run_flow(client: Client, design: str, workdir: str) -> int:
    """The flow itself: the same calls in-process and against a daemon."""
    for stage, command in STAGES.items():
        handle = client.submit_handle(stage_spec(design, stage, command, workdir))
        done = handle.result()
        if not report(stage, done, client.tail_log(done.job_id, 1).lines):
            return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="top")
    parser.add_argument("--workdir", help="shared run directory (default: a new temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix=f"flow-{args.design}-")
    with apr_sched.connect() as client:
        print(f"using {client!r}")
        return run_flow(client, args.design, workdir)


if __name__ == "__main__":
    sys.exit(main())
