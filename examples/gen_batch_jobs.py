#!/usr/bin/env python3
"""Write a batch of APR-like example jobs for ``POST /scheduler/jobs/batch``.

    python3 gen_batch_jobs.py --count 100 --output batch_jobs_100.json [--seed 7]
    apr-sched submit-batch batch_jobs_100.json
    curl -X POST http://127.0.0.1:5000/scheduler/jobs/batch -H "Authorization: Bearer $TOKEN" \\
         -H "Content-Type: application/json" -d @batch_jobs_100.json

The jobs look like a team's place-and-route flow (projects, designs, stages, owners,
priorities, resources and tool labels), but each command is a harmless stand-in that echoes
and sleeps a few seconds. Each job is shaped for one of the five hosts of ``hosts.toml``
beside this script, so every job fits at least one of them. The same ``--seed`` always
gives the same bytes; ``batch_jobs.json`` is the output with the default seed.
Standard library only, so it runs anywhere.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from typing import Any

DEFAULT_COUNT = 100
DEFAULT_SEED = 1

HOSTS: dict[str, dict[str, Any]] = {
    # host_id: capacity and labels, as in hosts.toml
    "host-a": {"cpu": 32, "memory_gb": 128, "labels": {"tool": "innovus", "node": "A"}},
    "host-b": {"cpu": 32, "memory_gb": 128, "labels": {"tool": "innovus", "node": "B"}},
    "host-c": {"cpu": 24, "memory_gb": 96, "labels": {"tool": "icc2", "node": "C"}},
    "host-d": {"cpu": 64, "memory_gb": 512,
               "labels": {"tool": "icc2", "node": "D", "mem": "large"}},
    "host-e": {"cpu": 16, "memory_gb": 64, "labels": {"tool": "openroad", "node": "E"}},
}
"""Every host has at least 4 slots; a job takes 1 or 2."""

PROJECTS = {
    "P1": ["top", "cpu_core", "gpu_cluster"],
    "P2": ["ddr_phy", "serdes"],
    "P3": ["top", "pcie_ctrl", "usb_phy"],
    "P4": ["npu_core", "sram_wrapper", "serdes"],
}
OWNERS = ["cad_user", "alice", "bob", "chen", "priya"]
STAGES = ["floorplan", "place", "cts", "route", "opt_post_route", "signoff_sta"]
CPU_CHOICES = [1, 2, 4, 8, 16, 32]
MEMORY_CHOICES = [2, 4, 8, 16, 32, 64, 96]
TIMEOUTS = [600, 1800, 3600, 7200]


def make_job(rng: random.Random, index: int) -> dict[str, Any]:
    """One job shaped for a host picked at random: its tool label, sometimes its node or
    big-memory label, and cpu/memory/slots that host can give."""
    project = rng.choice(sorted(PROJECTS))
    design = rng.choice(PROJECTS[project])
    stage = rng.choice(STAGES)
    host = HOSTS[rng.choice(sorted(HOSTS))]
    labels = {"tool": host["labels"]["tool"]}
    if rng.random() < 0.15:
        labels["node"] = host["labels"]["node"]
    big = "mem" in host["labels"] and rng.random() < 0.5
    if big:
        labels["mem"] = host["labels"]["mem"]
        cpu = rng.choice([16, 32, 48])
        memory_gb = rng.choice([128, 192, 256, 384])
    else:
        cpu = rng.choice([c for c in CPU_CHOICES if c <= min(host["cpu"], 24)])
        memory_gb = rng.choice([m for m in MEMORY_CHOICES if m <= min(host["memory_gb"], 96)])
    slots = 2 if rng.random() < 0.1 else 1
    seconds = rng.randint(1, 8)
    return {
        "name": f"{project}_{design}_{stage}_{index:03d}",
        "project": project,
        "design": design,
        "owner": rng.choice(OWNERS),
        "priority": rng.randint(0, 9),
        "timeout_sec": rng.choice(TIMEOUTS),
        "retry_limit": rng.randint(0, 2),
        "workdir": "/tmp",
        "command": f'bash -lc "echo start {stage} {design} && sleep {seconds} && echo done"',
        "env": {"APR_STAGE": stage, "APR_DESIGN": design},
        "resource_request": {
            "cpu": cpu,
            "memory_gb": memory_gb,
            "slots": slots,
            "host_labels": labels,
        },
    }


def generate(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [make_job(rng, index) for index in range(1, count + 1)]


def render(jobs: list[dict[str, Any]]) -> str:
    return json.dumps({"jobs": jobs}, indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--count", type=int, default=DEFAULT_COUNT,
                        help=f"how many jobs (default {DEFAULT_COUNT})")
    parser.add_argument("--output", "-o", default="-", metavar="FILE",
                        help="write here (default: stdout)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"random seed: the same seed gives the same file (default "
                             f"{DEFAULT_SEED})")
    args = parser.parse_args(argv)
    if args.count < 0:
        parser.error("--count must be >= 0")
    text = render(generate(args.count, args.seed))
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
        print(f"wrote {args.count} jobs to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
