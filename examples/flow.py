"""A three-stage APR flow (place -> cts -> route) driven from Python.

Each stage is a job on the scheduler; a stage starts only when the one before it has
SUCCEEDED, and reads what it wrote. The commands are stand-ins for real tool runs
(e.g. ``innovus -files place.tcl``). Runs on the embedded default host (this machine),
in-process; when a daemon or the TUI already owns the state dir ($APR_SCHED_HOME or
~/.local/state/apr_sched), the same stages go to it over HTTP instead.

    python examples/flow.py [--design top] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from typing import Any

from apr_sched import Job, JobStatus, Scheduler, resolve_state_dir
from apr_sched.client import SchedulerClient, find_token
from apr_sched.statedir import read_owner

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


async def run_in_process(design: str, workdir: str) -> int:
    """No daemon: run the scheduler inside this script."""
    async with Scheduler() as scheduler:
        for stage, command in STAGES.items():
            job = await scheduler.submit(stage_spec(design, stage, command, workdir))
            done = await scheduler.wait(job.job_id)
            if not report(stage, done, (await scheduler.tail_log(job.job_id, 1)).lines):
                return 1
    return 0


def run_on_daemon(url: str, token: str | None, design: str, workdir: str) -> int:
    """A daemon (or the TUI) owns the state dir: submit to it over HTTP instead."""
    with SchedulerClient(url, token) as client:
        for stage, command in STAGES.items():
            job = client.submit(stage_spec(design, stage, command, workdir))
            done = client.wait(job.job_id)
            if not report(stage, done, client.logs(job.job_id, tail=1)["lines"]):
                return 1
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--design", default="top")
    parser.add_argument("--workdir", help="shared run directory (default: a new temp dir)")
    args = parser.parse_args()
    workdir = args.workdir or tempfile.mkdtemp(prefix=f"flow-{args.design}-")
    state_dir = resolve_state_dir()
    owner = read_owner(state_dir)
    if owner and owner.get("url"):
        print(f"using the scheduler at {owner['url']} (pid {owner.get('pid')})")
        return run_on_daemon(owner["url"], find_token(None, state_dir), args.design, workdir)
    return asyncio.run(run_in_process(args.design, workdir))


if __name__ == "__main__":
    sys.exit(main())
