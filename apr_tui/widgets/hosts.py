"""The hosts pane: one keyed row per host, cells updated in place when they change.

Why a host is not ONLINE (bad host key, unreachable, missed heartbeats) is its REASON
cell, and the pane's bottom border names it too, so it shows even where the table is cut.
Selected (``tab``, or ``h`` when it was hidden), a row is a host to act on: ``enter`` shows
its jobs (the jobs table filtered by ``host:ID``), ``d`` describes it (state reason, probe
figures), and the bottom border names the highlighted host's figures. Drain, close and open
keys come with the host policy; until then they are absent.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import DataTable

from apr_sched.models import Host, HostState, utcnow
from apr_tui.rows import format_duration

HOST_STATE_STYLE: dict[HostState, str] = {
    HostState.ONLINE: "bold green",
    HostState.OFFLINE: "bold red",
    HostState.DRAINING: "yellow",
    HostState.CLOSED: "dim",
}
HOST_COLUMNS = (
    ("host", "HOST"), ("state", "STATE"), ("slots", "SLOTS"), ("cpu", "CPU"),
    ("memory", "MEM GB"), ("load", "LOAD"), ("jobs", "JOBS"), ("labels", "LABELS"),
    ("reason", "REASON"),
)
BAR_WIDTH = 8


def usage_bar(used: float, total: float, width: int = BAR_WIDTH) -> Text:
    """``█████░░░ 5/8``, green, yellow past 75 %, red when full."""
    fraction = 0.0 if total <= 0 else min(1.0, used / total)
    filled = round(fraction * width)
    style = "red" if fraction >= 1 else "yellow" if fraction > 0.75 else "green"
    text = Text("█" * filled, style=style)
    text.append("░" * (width - filled), style="dim")
    text.append(f" {used:g}/{total:g}")
    return text


def host_load(host: Host) -> float:
    """The fullest dimension, as the scheduler's placement defines load."""
    parts = [host.used_slots / host.total_slots, host.used_cpu / host.total_cpu]
    if host.total_memory_gb:
        parts.append(host.used_memory_gb / host.total_memory_gb)
    return max(parts)


def host_cells(host: Host) -> tuple[Text | str, ...]:
    load = f"{host_load(host):.0%}"
    if host.load is not None and host.load.load_avg_1m is not None:
        load += f" la {host.load.load_avg_1m:.2f}"
    labels = " ".join(f"{k}={v}" for k, v in sorted(host.labels.items()))
    return (
        host.host_id,
        Text(host.state.value, style=HOST_STATE_STYLE[host.state]),
        usage_bar(host.used_slots, host.total_slots),
        f"{host.used_cpu}/{host.total_cpu}",
        f"{host.used_memory_gb:g}/{host.total_memory_gb:g}",
        load,
        str(host.running_jobs),
        labels or "-",
        host_reason(host),
    )


def host_reason(host: Host) -> str:
    """Why the host is in its state; nothing for an ONLINE host."""
    return "" if host.state is HostState.ONLINE else host.state_reason or ""


def hosts_title(hosts: Sequence[Host]) -> str:
    """``hosts · 7 hosts · 6 online · 1 offline``."""
    parts = ["hosts", f"{len(hosts)} host{'' if len(hosts) == 1 else 's'}"]
    counts = {state: count for state in HostState
              if (count := sum(1 for host in hosts if host.state is state))}
    if set(counts) != {HostState.ONLINE}:  # all online needs no saying
        parts += [f"{count} {state.value.lower()}" for state, count in counts.items()]
    return " · ".join(parts)


def hosts_trouble(hosts: Sequence[Host]) -> str:
    """``pnr-04 OFFLINE: missed heartbeats (+1 more)``: the first host that is not ONLINE."""
    troubled = [host for host in hosts if host.state is not HostState.ONLINE]
    if not troubled:
        return ""
    first = troubled[0]
    text = f"{first.host_id} {first.state.value}"
    if reason := host_reason(first):
        text += f": {reason}"
    if len(troubled) > 1:
        text += f" (+{len(troubled) - 1} more)"
    return text


def host_figures(host: Host, now: datetime) -> str:
    """``load 38.50 · 120 GB memory free · spool 812 GB free · heartbeat 4s ago``: what the
    host last reported (figures it did not report are left out)."""
    parts = []
    load = host.load
    if load is not None and load.load_avg_1m is not None:
        parts.append(f"load {load.load_avg_1m:.2f}")
    if load is not None and load.free_memory_gb is not None:
        parts.append(f"{load.free_memory_gb:.1f} GB memory free")
    if load is not None and load.free_disk_gb is not None:
        parts.append(f"spool {load.free_disk_gb:.1f} GB free")
    if host.last_heartbeat is not None:
        age = format_duration((now - host.last_heartbeat).total_seconds())
        parts.append(f"heartbeat {age} ago")
    return " · ".join(parts)


def host_line(host: Host, now: datetime) -> str:
    """The highlighted host in one line: state, why, and its figures."""
    text = f"{host.host_id} {host.state.value}"
    if reason := host_reason(host):
        text += f": {reason}"
    if figures := host_figures(host, now):
        text += f" · {figures}"
    return text


class HostsPane(DataTable[Text | str]):
    """Hosts, as the summary of what runs where; ``update_hosts`` touches changed cells only."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "show_jobs", "Jobs on the selected host (filter host:ID)",
                show=False),
        Binding("d", "describe", "Describe the selected host (state reason, probe figures)",
                show=False),
    ]

    class ShowJobs(Message):
        """Show the jobs of this host."""

        def __init__(self, host_id: str) -> None:
            super().__init__()
            self.host_id = host_id

    class Describe(Message):
        """Show everything known about this host."""

        def __init__(self, host_id: str) -> None:
            super().__init__()
            self.host_id = host_id

    def __init__(self, *, id: str | None = None, classes: str | None = None) -> None:
        super().__init__(id=id, classes=classes, cursor_type="row", zebra_stripes=False)
        self._cells: dict[str, tuple[Text | str, ...]] = {}
        self.hosts: dict[str, Host] = {}

    @property
    def cursor_host(self) -> Host | None:
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return self.hosts.get(key) if key is not None else None

    def action_show_jobs(self) -> None:
        if (host := self.cursor_host) is not None:
            self.post_message(self.ShowJobs(host.host_id))

    def action_describe(self) -> None:
        if (host := self.cursor_host) is not None:
            self.post_message(self.Describe(host.host_id))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.row_key.value is not None:  # a click on the highlighted row
            self.post_message(self.ShowJobs(event.row_key.value))

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        event.stop()
        self._update_subtitle()

    def on_focus(self, event: events.Focus) -> None:
        self._update_subtitle()

    def on_blur(self, event: events.Blur) -> None:
        self._update_subtitle()

    def _now(self) -> datetime:
        clock = getattr(self.app, "clock", None)
        return clock() if callable(clock) else utcnow()

    def _update_subtitle(self) -> None:
        """Focused: the highlighted host's figures; else the first host in trouble."""
        host = self.cursor_host if self.has_focus else None
        self.border_subtitle = host_line(host, self._now()) if host is not None \
            else hosts_trouble(list(self.hosts.values()))

    def on_mount(self) -> None:
        for key, label in HOST_COLUMNS:
            self.add_column(label, key=key)

    def update_hosts(self, hosts: Sequence[Host]) -> None:
        seen = set()
        self.hosts = {host.host_id: host for host in hosts}
        for host in hosts:
            seen.add(host.host_id)
            cells = host_cells(host)
            old = self._cells.get(host.host_id)
            if old is None:
                self.add_row(*cells, key=host.host_id)
            else:
                for (key, _), before, after in zip(HOST_COLUMNS, old, cells, strict=True):
                    if before != after:
                        self.update_cell(host.host_id, key, after, update_width=True)
            self._cells[host.host_id] = cells
        for host_id in set(self._cells) - seen:
            self.remove_row(host_id)
            del self._cells[host_id]
        self.border_title = hosts_title(hosts)
        self._update_subtitle()
