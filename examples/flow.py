"""A three-stage APR flow (place -> cts -> route) driven from Python.

Each stage is a job on the scheduler; a stage starts only when the one before it has
SUCCEEDED, and reads what it wrote. The commands are stand-ins for real tool runs
(e.g. ``innovus -files place.tcl``). Runs on the embedded default host (this machine);
state goes to $APR_SCHED_HOME (or ~/.local/state/apr_sched).

    python examples/flow.py [--design top] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile

from apr_sched import JobStatus, Scheduler

STAGES = {
    "place": 'echo "placing $DESIGN"; echo placed > place.db',
    "cts": 'test -f place.db || exit 2; echo "clock tree for $DESIGN"; echo cts > cts.db',
    "route": 'test -f cts.db || exit 2; echo "routing $DESIGN"; echo routed > route.db',
}


async def run_flow(design: str, workdir: str) -> int:
    async with Scheduler() as scheduler:
        for stage, command in STAGES.items():
            job = await scheduler.submit({
                "name": f"{design}.{stage}", "project": "flow-demo", "design": design,
                "command": command, "workdir": workdir, "env": {"DESIGN": design},
                "resource_request": {"cpu": 1, "memory_gb": 0.1}, "retry_limit": 1,
            })
            done = await scheduler.wait(job.job_id)
            log = await scheduler.tail_log(job.job_id, 1)
            print(f"{stage:6} job {done.job_id:>4} {done.status.value:9} "
                  f"on {done.host_id}: {' '.join(log.lines)}")
            if done.status is not JobStatus.SUCCEEDED:
                print(f"flow stopped: {stage} ended {done.status.value}", file=sys.stderr)
                return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="top")
    parser.add_argument("--workdir", help="shared run directory (default: a new temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix=f"flow-{args.design}-")
    return asyncio.run(run_flow(args.design, workdir))


if __name__ == "__main__":
    sys.exit(main())
