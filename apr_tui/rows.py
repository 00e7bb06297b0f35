"""What a job looks like as a table row: cells, colours, durations and filters.

Headless (no textual import): the jobs table renders these cells, tests check them directly
(``apr_tui.columns`` says which cells make a row).
A cell is a plain ``Cell`` (text + one style) or a ``Since`` (a live duration the table
formats against its clock at render time, so ticking clocks never rewrite rows).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple

from apr_sched.models import FINAL_STATUSES, Job, JobStatus
from apr_tui.query import Term, parse_query
from apr_tui.query import matches as query_matches


class Cell(NamedTuple):
    text: str
    style: str = ""


@dataclass(frozen=True, slots=True)
class Since:
    """A duration that grows with the clock: ``prefix`` + (now - start)."""

    start: datetime
    prefix: str = ""
    style: str = ""

    def render(self, now: datetime) -> Cell:
        return Cell(self.prefix + format_duration((now - self.start).total_seconds()),
                    self.style)


CellValue = Cell | Since


@dataclass(frozen=True, slots=True)
class StatusLook:
    """How a state is drawn: a symbol (so it reads without colour, beside its name) and a
    colour for dark and one for light themes (WCAG contrast >= 3 on both; checked by
    tests/test_tui_units.py)."""

    symbol: str
    dark: str
    light: str
    bold: bool = False


STATUS_LOOK: dict[JobStatus, StatusLook] = {
    JobStatus.PENDING: StatusLook("◦", "#5fb3f0", "#1f5fa8"),  # blue: waiting
    JobStatus.HELD: StatusLook("⊘", "#c49bf2", "#7b3fb8"),  # violet: held back
    JobStatus.RUNNING: StatusLook("►", "#5ad16a", "#1e7a2e", bold=True),  # green
    JobStatus.PAUSED: StatusLook("‖", "#f0b429", "#8a5a00", bold=True),  # amber
    JobStatus.SUCCEEDED: StatusLook("✓", "#4fd1c5", "#0e6e6a"),  # teal: done, fine
    JobStatus.FAILED: StatusLook("✗", "#ff6b6b", "#b3261e", bold=True),  # red
    JobStatus.TIMEOUT: StatusLook("!", "#ff79c6", "#a3246a", bold=True),  # magenta
    JobStatus.STOPPED: StatusLook("■", "#a8a8a8", "#5c5c5c"),  # grey: ended by request
    JobStatus.CANCELLED: StatusLook("∅", "#d7875f", "#87471f"),  # orange: never ran
}
STATUS_STYLE_PREFIX = "status:"
"""A cell style ``status:RUNNING`` is resolved when drawn, for the theme of the moment."""


def status_style(status: JobStatus, *, dark: bool = True) -> str:
    """The Rich style of ``status`` on a dark (or light) theme."""
    look = STATUS_LOOK[status]
    return f"{'bold ' if look.bold else ''}{look.dark if dark else look.light}"


def status_label(status: JobStatus) -> str:
    """``✓ SUCCEEDED``: symbol and name."""
    return f"{STATUS_LOOK[status].symbol} {status.value}"


def resolve_style(spec: str, *, dark: bool) -> str:
    """A cell's style for drawing: ``status:...`` becomes that state's colour."""
    if spec.startswith(STATUS_STYLE_PREFIX):
        return status_style(JobStatus(spec[len(STATUS_STYLE_PREFIX):]), dark=dark)
    return spec


STATUS_ORDER = {status: index for index, status in enumerate(JobStatus)}


class StatusFilter(StrEnum):
    """The status views behind keys 1-5."""

    ALL = "all"
    PENDING = "pending"
    RUNNING = "running"
    FAILED = "failed"
    DONE = "done"

    @property
    def statuses(self) -> frozenset[JobStatus] | None:
        return _FILTER_STATUSES[self]


_FILTER_STATUSES: dict[StatusFilter, frozenset[JobStatus] | None] = {
    StatusFilter.ALL: None,
    StatusFilter.PENDING: frozenset({JobStatus.PENDING, JobStatus.HELD}),
    StatusFilter.RUNNING: frozenset({JobStatus.RUNNING, JobStatus.PAUSED}),
    StatusFilter.FAILED: frozenset({JobStatus.FAILED, JobStatus.TIMEOUT}),
    StatusFilter.DONE: frozenset({JobStatus.SUCCEEDED, JobStatus.STOPPED}),
}


def format_duration(seconds: float) -> str:
    """``42s``, ``12m05s``, ``3h05m``, ``2d04h``: short enough for a table cell."""
    total = max(0, int(seconds))
    if total < 60:
        return f"{total}s"
    minutes, secs = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


def display_name(job: Job) -> str:
    if job.name:
        return job.name
    if job.design:
        return job.design
    return job.command.split(None, 1)[0] if job.command.strip() else ""


def outcome(job: Job) -> str:
    """Why a job is where it is, for jobs that are not waiting."""
    if job.status is JobStatus.SUCCEEDED:
        return "exit code 0"
    if job.status is JobStatus.STOPPED:
        return "stopped by request"
    if job.status is JobStatus.TIMEOUT:
        return f"exceeded timeout_sec={job.timeout_sec:g}" if job.timeout_sec else "timed out"
    if job.status in FINAL_STATUSES:
        if job.exit_code is not None:
            text = f"exit code {job.exit_code}"
            return f"{text} ({job.signal})" if job.signal else text
        if job.signal:
            return f"killed by {job.signal}"
        return job.status.value.lower()
    if job.status.is_active and job.host_id:
        return f"on {job.host_id}"
    return ""


def run_seconds(job: Job, now: datetime) -> float:
    """The current attempt's running time as the scheduler's timeout counts it: paused
    time excluded (``Job.run_sec`` + time since ``resumed_at``)."""
    if job.resumed_at is None:
        return job.run_sec
    return job.run_sec + max(0.0, (now - job.resumed_at).total_seconds())


def time_cell(job: Job, since: datetime | None) -> CellValue:
    """Waiting jobs count up from when they (re)entered the queue; running ones count their
    running time; paused and finished ones show it, standing still (paused time is not
    running time, as for the timeout)."""
    if job.status in (JobStatus.PENDING, JobStatus.HELD):
        return Since(since or job.submitted_at, "w ", "dim")
    if job.status is JobStatus.RUNNING:
        if job.resumed_at is not None:
            return Since(job.resumed_at - timedelta(seconds=job.run_sec), "r ")
        return Since(job.started_at or since or job.submitted_at, "r ")  # an older daemon
    if job.started_at is None:
        return Cell("-", "dim")
    return Cell("r " + format_duration(_still_run_sec(job)))


def _still_run_sec(job: Job) -> float:
    """Running time of a paused or finished attempt (an older daemon sends no ``run_sec``:
    then finish - start)."""
    if job.run_sec or job.status is JobStatus.PAUSED or not (job.finished_at and
                                                             job.started_at):
        return job.run_sec
    return (job.finished_at - job.started_at).total_seconds()


def reason_text(job: Job, note: str | None = None) -> str:
    """What the REASON column says: why a job waits, else its latest event or outcome."""
    if job.status in (JobStatus.PENDING, JobStatus.HELD):
        return job.pending_reason or ""
    return note or outcome(job)


def id_order(job_id: str) -> tuple[int, int, str]:
    """Submit order from the id alone (ids are increasing numbers)."""
    return (0, int(job_id), "") if job_id.isdigit() else (1, 0, job_id)


def sort_time(job: Job, since: datetime | None) -> float:
    """WAIT/RAN order: longer durations first, waiting ones before finished ones."""
    cell = time_cell(job, since)
    if isinstance(cell, Since):
        return -cell.start.timestamp()  # earlier start = longer duration
    if job.started_at is None:
        return 1e13
    return -_still_run_sec(job) - 1e12


@dataclass(frozen=True, slots=True)
class JobFilter:
    """Which jobs the table shows: a status view (keys 1-5) and the ``/`` filter text
    (``apr_tui.query``: ``status:FAILED owner:alice !blk007 route``). Building one from
    text that cannot be read raises ``QueryError``."""

    status: StatusFilter = StatusFilter.ALL
    text: str = ""
    terms: tuple[Term, ...] = field(init=False, repr=False, compare=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "terms", parse_query(self.text.strip()))

    def matches(self, job: Job, note: str | None = None) -> bool:
        """``note``: the reason of the job's latest event, as its REASON cell shows it."""
        statuses = self.status.statuses
        if statuses is not None and job.status not in statuses:
            return False
        return not self.terms or query_matches(self.terms, job, reason_text(job, note))

    def describe(self) -> str:
        """For the jobs title: ``view running · filter /route (esc clears)``; empty when
        every job is shown. Both parts are named, so a view key (1-5) never looks as if it
        had dropped the filter."""
        text = self.text.strip()
        if not text:
            return "" if self.status is StatusFilter.ALL else f"view {self.status.value}"
        return f"view {self.status.value} · filter /{text} (esc clears)"


def count_by_status(jobs: Iterable[Job]) -> dict[JobStatus, int]:
    counts = dict.fromkeys(JobStatus, 0)
    for job in jobs:
        counts[job.status] += 1
    return counts
