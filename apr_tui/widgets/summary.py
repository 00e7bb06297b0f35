"""The header: where the jobs live, the clock, and the numbers a person scans first."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from apr_sched.models import JobStatus, MetricsSummary
from apr_tui.rows import status_style


@dataclass(frozen=True, slots=True)
class SummaryData:
    """Everything the header shows; the app sets a new one, the header re-renders."""

    where: str = ""
    mode: str = "in-process"
    http_url: str | None = None
    now: datetime | None = None
    counts: dict[JobStatus, int] = field(default_factory=dict)
    metrics: MetricsSummary | None = None
    connection: str = ""
    """Empty when all is well; else what is wrong (``disconnected: retrying``)."""
    stale: str = ""
    """Empty while the scheduler answers; else ``STALE: no answer for 12 s, ...``."""
    host_trouble: str = ""
    """The first host that is not ONLINE and why (``pnr-04 OFFLINE: missed heartbeats``)."""


def _gb(value: float) -> str:
    return f"{value:,.0f}" if value >= 10 else f"{value:g}"


def summary_text(data: SummaryData, *, dark: bool = True) -> Text:
    """Three lines: where and how (the clock before the location, which may be long),
    jobs per state, hosts (and the first in trouble) then capacity."""
    line = Text()
    line.append("apr_sched ", style="bold")
    line.append(f"{data.mode}  ", style="bold cyan")
    if data.connection:
        line.append(f"{data.connection}  ", style="bold red")
    elif data.stale:
        line.append(f"{data.stale}  ", style="bold reverse")
    if data.metrics is not None and data.metrics.degraded_reason:
        line.append(f"DEGRADED: {data.metrics.degraded_reason}  ", style="bold red")
    if data.now is not None:
        line.append(f"{data.now:%Y-%m-%d %H:%M:%S} UTC  ", style="dim")
    line.append(data.where, style="dim")
    if data.http_url:
        line.append(f"  serving {data.http_url}", style="dim")
    line.append("\n")
    shown = [s for s in JobStatus if data.counts.get(s, 0)]
    if not shown:
        line.append("no jobs", style="dim")
    for index, status in enumerate(shown):
        line.append(f"{data.counts[status]:,} ", style=status_style(status, dark=dark))
        line.append(status.value.lower() + (" " if index < len(shown) - 1 else ""))
    metrics = data.metrics
    if metrics is not None:
        line.append("\n")
        line.append("hosts ")
        line.append(f"{metrics.hosts_online} online", style="green")
        line.append(" ")
        line.append(f"{metrics.hosts_offline} offline",
                    style="bold red" if metrics.hosts_offline else "dim")
        if data.host_trouble:  # first: on a narrow screen the figures after it are cut
            line.append(f" ({data.host_trouble})", style="red")
        line.append(f"  slots {metrics.slots.used:g}/{metrics.slots.total:g}  "
                    f"cpu {metrics.cpu.used:g}/{metrics.cpu.total:g}  "
                    f"mem {_gb(metrics.memory_gb.used)}/{_gb(metrics.memory_gb.total)} GB"
                    f"  {metrics.finished_last_hour} finished (1h)")
    return line


class SummaryHeader(Widget):
    """Three lines; ``data`` is set from above ("attributes down")."""

    DEFAULT_CSS = """
    SummaryHeader {
        height: 3;
        padding: 0 1;
        background: $panel;
    }
    """

    data: reactive[SummaryData] = reactive(SummaryData, layout=False)

    def render(self) -> Text:
        text = summary_text(self.data, dark=self.app.current_theme.dark)
        text.no_wrap, text.overflow = True, "ellipsis"  # a line too long is cut, not wrapped
        return text
