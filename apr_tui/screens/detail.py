"""Job detail (enter): the spec as submitted, every attempt, and the event timeline.

Re-read whenever the app's book says the job changed, so a job finishing while you look
at it shows up here too.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Static

from apr_sched.errors import AprError
from apr_sched.models import Job, JobStatus
from apr_tui.rows import display_name, format_duration, status_label, status_style

if TYPE_CHECKING:
    from apr_tui.app import AprTui

POLL_SEC = 0.5


def _time(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def spec_text(job: Job) -> Text:
    """``field  value`` lines for every JobSpec field, in the model's order."""
    text = Text()
    resources = job.resource_request
    values: list[tuple[str, str]] = [
        ("name", job.name or "-"), ("project", job.project), ("design", job.design or "-"),
        ("owner", job.owner), ("priority", str(job.priority)),
        ("timeout_sec", "-" if job.timeout_sec is None else f"{job.timeout_sec:g}"),
        ("retry_limit", str(job.retry_limit)), ("workdir", job.workdir or "(home)"),
        ("command", job.command),
        ("env", " ".join(f"{k}={v}" for k, v in sorted(job.env.items())) or "-"),
        ("resources", resources.describe()),
        ("submitted", _time(job.submitted_at)),
    ]
    if job.pending_reason:
        values.append(("waiting", job.pending_reason))
    for index, (name, value) in enumerate(values):
        text.append(f"{name:>12}  ", style="bold")
        text.append(value + ("\n" if index < len(values) - 1 else ""))
    return text


class JobDetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back"),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__(id="detail")
        self.job_id = job_id
        self.job: Job | None = None
        self._seen_version = -1

    @property
    def tui(self) -> AprTui:
        return cast("AprTui", self.app)

    def compose(self) -> ComposeResult:
        yield Static(f"job {self.job_id}", id="detail-title")
        with VerticalScroll(id="detail-body"):
            yield Static("loading…", id="detail-spec")
            yield Static("attempts", classes="section")
            yield DataTable(id="detail-attempts", cursor_type="none")
            yield Static("events", classes="section")
            yield DataTable(id="detail-events", cursor_type="none")
        yield Footer(show_command_palette=False)

    def on_mount(self) -> None:
        attempts = self.query_one("#detail-attempts", DataTable)
        attempts.add_columns("#", "host", "status", "started", "finished", "ran", "exit",
                             "reason")
        events = self.query_one("#detail-events", DataTable)
        events.add_columns("seq", "time", "att", "from", "to", "host", "reason")
        self.set_interval(POLL_SEC, self._maybe_reload)
        self._maybe_reload()

    def _maybe_reload(self) -> None:
        version = self.tui.book.version(self.job_id)
        if version != self._seen_version:
            self._seen_version = version
            self._load()

    @work(group="detail", exclusive=True, exit_on_error=False)
    async def _load(self) -> None:
        try:
            job = await self.tui.backend.get_job(self.job_id)
        except AprError as exc:
            self.query_one("#detail-spec", Static).update(f"cannot read job: {exc.message}")
            return
        self.job = job
        self._render_job(job)

    def _state(self, status: JobStatus) -> Text:
        return Text(status_label(status), style=status_style(
            status, dark=self.app.current_theme.dark))

    def _render_job(self, job: Job) -> None:
        title = Text(f"job {job.job_id}  ", style="bold")
        title.append(display_name(job) + "  ")
        title.append(self._state(job.status))
        if job.host_id:
            title.append(f" on {job.host_id}")
        title.append(f"  attempt {job.attempt}")
        self.query_one("#detail-title", Static).update(title)
        self.query_one("#detail-spec", Static).update(spec_text(job))
        attempts = self.query_one("#detail-attempts", DataTable)
        attempts.clear()
        for attempt in job.attempts:
            ran = "-"
            if attempt.started_at and attempt.finished_at:
                ran = format_duration((attempt.finished_at - attempt.started_at).total_seconds())
            exit_text = "-" if attempt.exit_code is None else str(attempt.exit_code)
            if attempt.signal:
                exit_text += f" {attempt.signal}"
            attempts.add_row(str(attempt.attempt), attempt.host_id or "-",
                             self._state(attempt.status),
                             _time(attempt.started_at), _time(attempt.finished_at), ran,
                             exit_text, attempt.reason or "")
        events = self.query_one("#detail-events", DataTable)
        events.clear()
        for event in job.events:
            events.add_row(str(event.seq), _time(event.time), str(event.attempt),
                           event.from_status.value if event.from_status else "-",
                           self._state(event.to_status),
                           event.host_id or "-", event.reason)
