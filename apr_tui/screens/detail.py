"""Job detail (enter): everything ``apr-sched job ID`` shows (the spec as submitted, where
and how it runs, why it waits in full, every attempt with its host and exit, the event
timeline) and the same actions as the main screen (``p`` ``r`` ``s`` ``R``; stop asks the
same question).

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
from apr_tui.actions import APPLIES
from apr_tui.rows import (
    display_name,
    format_duration,
    outcome,
    run_seconds,
    status_label,
    status_style,
)

if TYPE_CHECKING:
    from apr_tui.app import AprTui

POLL_SEC = 0.5


def _time(value: datetime | None) -> str:
    return "-" if value is None else f"{value:%Y-%m-%d %H:%M:%S}"


def _waited(job: Job, now: datetime) -> str:
    if job.started_at is not None:
        return format_duration((job.started_at - job.submitted_at).total_seconds())
    if job.status.is_final:
        return "-"
    return format_duration((now - job.submitted_at).total_seconds())


def _ran(job: Job, now: datetime) -> str:
    if job.started_at is None:
        return "-"
    if job.status is JobStatus.RUNNING or job.status is JobStatus.PAUSED:
        return format_duration(run_seconds(job, now))
    if job.run_sec:
        return format_duration(job.run_sec)
    return format_duration(((job.finished_at or now) - job.started_at).total_seconds())


def job_fields(job: Job, now: datetime, log_path: str | None = None) -> list[tuple[str, str]]:
    """``(field, value)`` for every field ``apr-sched job ID`` shows, and the log's path."""
    resources = job.resource_request
    why = job.pending_reason if job.status in (JobStatus.PENDING, JobStatus.HELD) \
        else outcome(job)
    values: list[tuple[str, str]] = [
        ("status", job.status.value + (f": {why}" if why else "")),
        ("name", job.name or "-"), ("project", job.project), ("design", job.design or "-"),
        ("owner", job.owner), ("priority", str(job.priority)),
        ("command", job.command),
        ("workdir", job.workdir or "(the executing account's home)"),
        ("resources", resources.describe()),
        ("timeout", "-" if job.timeout_sec is None else
         f"{format_duration(job.timeout_sec)} ({job.timeout_sec:g} s)"),
        ("retry limit", str(job.retry_limit)),
        ("env", " ".join(f"{k}={v}" for k, v in sorted(job.env.items())) or "-"),
        ("umask", job.umask or "-"),
        ("output", job.output_path or "-"),
        ("error output", job.error_path or ("-" if job.output_path is None
                                            else "(with the output)")),
        ("host", job.host_id or "-"), ("attempt", str(job.attempt)),
        ("submitted", _time(job.submitted_at)), ("started", _time(job.started_at)),
        ("finished", _time(job.finished_at)),
        ("waited/ran", f"{_waited(job, now)}/{_ran(job, now)}"),
    ]
    if job.exit_code is not None or job.signal:
        values.append(("exit", f"signal {job.signal}" if job.signal else str(job.exit_code)))
    if log_path:
        values.append(("log", log_path))
    return values


def spec_text(job: Job, now: datetime | None = None, log_path: str | None = None) -> Text:
    """``field  value`` lines, long values wrapped by the widget (never cut)."""
    text = Text()
    rows = job_fields(job, now or job.submitted_at, log_path)
    for index, (name, value) in enumerate(rows):
        text.append(f"{name:>12}  ", style="bold")
        text.append(value + ("\n" if index < len(rows) - 1 else ""))
    return text


class JobDetailScreen(Screen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q", "app.pop_screen", "Back"),
        Binding("p", "control('pause')", "Pause"),
        Binding("r", "control('resume')", "Resume"),
        Binding("s", "control('stop')", "Stop"),
        Binding("R", "control('rerun')", "Rerun"),
        Binding("y", "copy_log_path", "Copy log path"),
    ]

    def __init__(self, job_id: str) -> None:
        super().__init__(id="detail")
        self.job_id = job_id
        self.job: Job | None = None
        self.log_path: str | None = None
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
        self.log_path = await self.tui.backend.log_location(job.job_id, job.attempt)
        self._render_job(job)
        self.refresh_bindings()

    def _current(self) -> Job | None:
        """The job as the app knows it now (events arrive there first), else as read."""
        return self.tui.book.get(self.job_id) or self.job

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "control":
            job = self._current()
            return True if job is not None and job.status in APPLIES[str(parameters[0])] \
                else None
        return True

    def action_control(self, action: str) -> None:
        job = self._current()
        if job is not None:
            self.tui.request_action(action, [job], from_marks=False)

    def action_copy_log_path(self) -> None:
        if self.log_path:
            self.app.copy_to_clipboard(self.log_path)
            self.notify(f"copied: {self.log_path}", timeout=6)

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
        self.query_one("#detail-spec", Static).update(
            spec_text(job, self.tui.clock(), self.log_path))
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
