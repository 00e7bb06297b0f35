"""Helpers shared by the benchmarks: JSON-line output, percentiles, CPU-time snapshots."""

from __future__ import annotations

import contextlib
import json
import math
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


def emit(bench: str, metric: str, value: float | int | bool | None, **extra: Any) -> None:
    """Print one result as a JSON line (floats rounded to 3 decimals)."""
    if isinstance(value, float):
        value = round(value, 3)
    extra = {k: round(v, 3) if isinstance(v, float) else v for k, v in extra.items()}
    print(json.dumps({"bench": bench, "metric": metric, "value": value, **extra}), flush=True)


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (``fraction`` in 0..1) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    """Wall clock plus CPU seconds of this process and of its reaped descendants."""

    wall: float
    self_cpu: float
    children_cpu: float

    @classmethod
    def now(cls) -> CpuSnapshot:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        return cls(time.perf_counter(), own.ru_utime + own.ru_stime,
                   kids.ru_utime + kids.ru_stime)

    def since(self, start: CpuSnapshot) -> CpuSnapshot:
        return CpuSnapshot(self.wall - start.wall, self.self_cpu - start.self_cpu,
                           self.children_cpu - start.children_cpu)


LOCAL_HOST = """
[[hosts]]
host_id = "local"
total_slots = 8
total_cpu = 8
total_memory_gb = 16
"""


@contextlib.contextmanager
def cli_daemon(root: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """A real daemon on ``root/state`` with one 8-slot local host (loopback only), and the
    environment a user's shell would have to reach it: ``APR_SCHED_HOME`` set and this
    interpreter's ``apr-sched`` first on PATH. Stopped by SIGTERM at the end."""
    (root / "hosts.toml").write_text(LOCAL_HOST)
    state = root / "state"
    env = {k: v for k, v in os.environ.items() if k not in ("APR_SCHED_URL", "APR_SCHED_TOKEN")}
    env["APR_SCHED_HOME"] = str(state)
    env["PATH"] = f"{Path(sys.executable).parent}:{env['PATH']}"
    daemon = subprocess.Popen(
        [sys.executable, "-m", "apr_sched", "serve", "--state-dir", str(state),
         "--config", str(root / "hosts.toml"), "--port", "0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = time.monotonic() + 30
        owner = state / "scheduler.json"
        while not owner.exists() or '"url"' not in owner.read_text():
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit("the daemon did not start")
            time.sleep(0.05)
        yield state, env
    finally:
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=30)
