"""Wait and run time samples, and the summary figures computed from them."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from typing import Any

from apr_sched.jobs import seconds_between
from apr_sched.models import JobStatus, MetricsSummary, Usage
from apr_sched.store import parse_time


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values) + 0.5) - 1))
    return sorted_values[rank]


class TimingSamples:
    """The latest wait and run times (the store counts finishes: no sample bounds that)."""

    def __init__(self, keep: int = 10_000) -> None:
        self.keep = keep
        self.wait_sec: deque[float] = deque(maxlen=keep)
        self.run_sec: deque[float] = deque(maxlen=keep)

    def restore(self, attempts: Iterable[Any]) -> None:
        """Seed the samples at restart from stored attempts (``queued_at``, ``started_at``,
        ``finished_at``, ``run_sec``), newest first as the store gives them."""
        for row in attempts:
            self.started(seconds_between(parse_time(row["queued_at"]),
                                         parse_time(row["started_at"])))
            if row["finished_at"] is not None:
                self.finished(row["run_sec"] or 0.0)

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


def summarize(by_status: dict[JobStatus, int], *, hosts_online: int, hosts_offline: int,
              hosts_total: int, usage: tuple[Usage, Usage, Usage], samples: TimingSamples,
              finished_last_hour: int, degraded_reason: str | None) -> MetricsSummary:
    """The figures of ``/metrics/summary`` from what the Scheduler counts as it goes."""
    wait_median, wait_p95 = samples.wait_stats()
    run_median, run_p95 = samples.run_stats()
    slots, cpu, memory_gb = usage
    return MetricsSummary(
        jobs_total=sum(by_status.values()),
        jobs_by_status=by_status,
        hosts_online=hosts_online,
        hosts_offline=hosts_offline,
        hosts_total=hosts_total,
        slots=slots, cpu=cpu, memory_gb=memory_gb,
        finished_last_hour=finished_last_hour,
        wait_sec_median=wait_median, wait_sec_p95=wait_p95,
        run_sec_median=run_median, run_sec_p95=run_p95,
        degraded_reason=degraded_reason,
    )
