"""Helpers shared by the benchmarks: JSON-line output, percentiles, CPU-time snapshots."""

from __future__ import annotations

import json
import math
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass
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
