"""``apr-sched lsf-shims DIR``: write the LSF command shims."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from apr_sched.lsf import COMMAND_NAMES

__all__ = ["add_lsf_commands", "run_lsf_command"]


def add_lsf_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "lsf-shims", help="write bsub, bjobs, bkill ... shims into a directory",
        description=f"Write {', '.join(COMMAND_NAMES)} into DIR. With DIR first on PATH, "
                    "flows and EDA tools written for LSF submit to apr_sched unchanged: "
                    "`export PATH=DIR:$PATH`.", allow_abbrev=False)
    p.add_argument("directory", metavar="DIR", help="where to write them (created if missing)")
    p.add_argument("--state-dir", metavar="DIR",
                   help="bake in this state dir as the default ($APR_SCHED_HOME still wins)")
    p.add_argument("--url", metavar="URL",
                   help="bake in this daemon url as the default ($APR_SCHED_URL still wins)")


def run_lsf_command(args: argparse.Namespace) -> int:
    from apr_sched.lsf.shims import write_shims

    state_dir = Path(args.state_dir) if args.state_dir else None
    written = write_shims(Path(args.directory), state_dir=state_dir, url=args.url)
    directory = os.path.abspath(args.directory)
    print(f"wrote {' '.join(p.name for p in written)} into {directory}; "
          f"use them with: export PATH={directory}:$PATH")
    return 0
