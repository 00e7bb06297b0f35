"""Wait and run time samples, and the summary figures computed from them."""

from __future__ import annotations

from collections import deque


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class TimingSamples:
    """The latest wait and run times (the store counts finishes: no sample bounds that)."""

    def __init__(self, keep: int = 10_000) -> None:
        self.wait_sec: deque[float] = deque(maxlen=keep)
        self.run_sec: deque[float] = deque(maxlen=keep)

    def started(self, wait_sec: float) -> None:
        self.wait_sec.append(max(0.0, wait_sec))

    def finished(self, run_sec: float) -> None:
        self.run_sec.append(max(0.0, run_sec))

    def wait_stats(self) -> tuple[float | None, float | None]:
        values = sorted(self.wait_sec)
        return percentile(values, 0.5), percentile(values, 0.95)

    def run_stats(self) -> tuple[float | None, float | None]:
        values = sorted(self.run_sec)
        return percentile(values, 0.5), percentile(values, 0.95)
