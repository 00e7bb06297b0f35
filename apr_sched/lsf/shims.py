"""Writing the LSF shims: one small ``sh`` script per command that runs
``python -m apr_sched.lsf NAME "$@"`` with the interpreter apr_sched is installed in.

A state dir or daemon url given when writing is baked in as a default the environment can
still override, so a tool that resets PATH but keeps its environment finds the same daemon.
"""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

from apr_sched.lsf import COMMAND_NAMES

__all__ = ["write_shims"]


def write_shims(directory: Path, *, state_dir: Path | None = None,
                url: str | None = None) -> list[Path]:
    """Write (or overwrite) the shims into ``directory`` (created 0755 when missing)."""
    directory.mkdir(mode=0o755, parents=True, exist_ok=True)
    python = shlex.quote(sys.executable)
    defaults = []
    if state_dir is not None:
        value = shlex.quote(str(state_dir.expanduser().resolve()))
        defaults.append(f'APR_SCHED_HOME="${{APR_SCHED_HOME:-{value}}}"; export APR_SCHED_HOME')
    if url is not None:
        value = shlex.quote(url)
        defaults.append(f'APR_SCHED_URL="${{APR_SCHED_URL:-{value}}}"; export APR_SCHED_URL')
    written = []
    for name in COMMAND_NAMES:
        path = directory / name
        body = "\n".join(["#!/bin/sh",
                          f"# {name} for apr_sched (written by apr-sched lsf-shims)",
                          *defaults,
                          f'exec {python} -m apr_sched.lsf {name} "$@"', ""])
        temporary = path.with_name(f".{name}.tmp")
        temporary.write_text(body, encoding="utf-8")
        os.chmod(temporary, 0o755)
        os.replace(temporary, path)
        written.append(path)
    return written
