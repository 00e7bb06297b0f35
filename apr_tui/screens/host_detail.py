"""One host in full (``d`` on a hosts pane row): its state and why, what it has and what is
used, the figures its last probe or heartbeat reported, and how it is reached.

It follows the app's host list (re-read every few seconds), so a host going OFFLINE while
you look shows here too. ``j`` shows the host's jobs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from apr_sched.models import Host
from apr_tui.rows import format_duration
from apr_tui.widgets.hosts import HOST_STATE_STYLE, host_load

if TYPE_CHECKING:
    from apr_tui.app import AprTui

POLL_SEC = 0.5


def _gb(value: float | None) -> str:
    return "not reported" if value is None else f"{value:.1f} GB"


def host_fields(host: Host, tui: AprTui) -> list[tuple[str, Text | str]]:
    """``(field, value)`` rows, everything the Host model carries."""
    now = tui.clock()
    state = Text(host.state.value, style=HOST_STATE_STYLE[host.state])
    if host.state_reason:
        state.append(f"  {host.state_reason}")
    load = host.load
    heartbeat = "never" if host.last_heartbeat is None else (
        f"{host.last_heartbeat:%Y-%m-%d %H:%M:%S} UTC "
        f"({format_duration((now - host.last_heartbeat).total_seconds())} ago)")
    reached = "this machine" if host.ssh is None else f"ssh {host.ssh}"
    if host.executor_prefix:
        reached += f" through {host.executor_prefix}"
    rows: list[tuple[str, Text | str]] = [
        ("host", host.host_id), ("state", state),
        ("slots", f"{host.used_slots} of {host.total_slots} used"),
        ("cpu", f"{host.used_cpu} of {host.total_cpu} used"),
        ("memory", f"{host.used_memory_gb:g} of {host.total_memory_gb:g} GB used"),
        ("placement load", f"{host_load(host):.0%} (the fullest of slots, cpu, memory)"),
        ("running jobs", str(host.running_jobs)),
        ("load average", "not reported" if load is None or load.load_avg_1m is None
         else f"{load.load_avg_1m:.2f} (1 minute)"),
        ("free memory", _gb(None if load is None else load.free_memory_gb)),
        ("spool free", _gb(None if load is None else load.free_disk_gb)),
        ("heartbeat", heartbeat),
        ("registered", f"{host.registered_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("labels", " ".join(f"{k}={v}" for k, v in sorted(host.labels.items())) or "-"),
        ("reached by", reached),
    ]
    if host.ssh is not None:
        rows += [("remote spool", host.remote_spool),
                 ("ssh timeout", f"{host.ssh_connect_timeout_sec:g} s")]
    return rows


class HostDetailScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,d", "dismiss", "Close"),
        Binding("j", "show_jobs", "Jobs on this host"),
    ]

    def __init__(self, host_id: str) -> None:
        super().__init__(classes="dialog-screen")
        self.host_id = host_id
        self.shown: Host | None = None

    @property
    def tui(self) -> AprTui:
        return cast("AprTui", self.app)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog host-detail"):
            with VerticalScroll():
                yield Static("", id="host-fields")
            yield Static("j: its jobs · esc closes", classes="hint")

    def on_mount(self) -> None:
        self._refresh_fields()
        self.set_interval(POLL_SEC, self._refresh_fields)

    def _refresh_fields(self) -> None:
        host = next((h for h in self.tui.hosts if h.host_id == self.host_id), None)
        text = Text()
        if host is None:
            text.append(f"host {self.host_id} is no longer registered")
        else:
            for index, (name, value) in enumerate(host_fields(host, self.tui)):
                if index:
                    text.append("\n")
                text.append(f"{name:>15}  ", style="bold")
                text.append(value)
        self.shown = host
        self.query_one("#host-fields", Static).update(text)

    def action_show_jobs(self) -> None:
        self.dismiss()
        self.tui.main.post_message(self.tui.main.hosts.ShowJobs(self.host_id))
