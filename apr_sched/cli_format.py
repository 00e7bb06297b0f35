"""Tables for the client commands: rich on a terminal, plain columns for pipes.

On a terminal a table fits the window: only the free-text columns (NAME, REASON) give way.
When stdout is not a terminal nothing is wrapped or cut: one line per row, columns padded
to their widest cell and separated by two spaces, no colour and no trailing spaces, so
``apr-sched jobs | wc -l`` counts jobs plus the header and ``awk``/``cut`` see whole cells.

``apr-sched jobs`` builds its parser from ``JOB_COLUMNS`` (even ``jobs --json`` does), so
this module loads no more than it must to start: rich when it draws, datetime when it
prints a time, typing never.
"""

from __future__ import annotations

import argparse
import sys

from apr_sched.durations import format_duration
from apr_sched.states import HostState, JobStatus

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from datetime import datetime
    from typing import Any, Literal, TextIO, TypeAlias

    from apr_sched.models import Host
    from apr_sched.models import Job as JobModel
    from apr_sched.views import JobView

    Job: TypeAlias = JobModel | JobView
    """A job as a model or as a view of the raw reply: both print alike."""
    _JobCell = Callable[[Job, datetime], "Cell"]

__all__ = [
    "DEFAULT_JOB_COLUMNS",
    "JOB_COLUMNS",
    "Cell",
    "Column",
    "is_terminal",
    "job_columns",
    "local_time",
    "print_table",
    "reason",
]

STATUS_STYLE = {
    JobStatus.PENDING: "yellow",
    JobStatus.HELD: "magenta",
    JobStatus.RUNNING: "cyan",
    JobStatus.PAUSED: "magenta",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.TIMEOUT: "red",
    JobStatus.STOPPED: "dim",
    JobStatus.CANCELLED: "dim red",
}
HOST_STYLE = {
    HostState.ONLINE: "green",
    HostState.OFFLINE: "bold red",
    HostState.DRAINING: "yellow",
    HostState.CLOSED: "dim",
}
SHORT_TIME = "%m-%d %H:%M:%S"

Cell = str | tuple[str, str]
"""A cell's text, or (text, rich style) for a terminal."""


class Column:
    __slots__ = ("flexible", "header", "justify", "max_width", "min_width", "overflow")

    def __init__(self, header: str, justify: Literal["left", "right"] = "left", *,
                 flexible: bool = False, max_width: int | None = None,
                 min_width: int | None = None,
                 overflow: Literal["fold", "ellipsis"] = "fold") -> None:
        self.header = header
        self.justify: Literal["left", "right"] = justify
        self.flexible = flexible
        """May wrap (``fold``) on a terminal; the others stay whole."""
        self.max_width = max_width
        """On a terminal, cut with an ellipsis beyond this."""
        self.min_width = min_width
        self.overflow: Literal["fold", "ellipsis"] = overflow
        """How a flexible cell gives way on a terminal: wrap it, or cut it with an ellipsis."""

    def __repr__(self) -> str:
        return f"Column({self.header!r}, {self.justify!r})"


def _now() -> datetime:
    from datetime import UTC, datetime  # only to print a time (see the module docstring)

    return datetime.now(UTC)


def is_terminal(stream: TextIO | None = None) -> bool:
    stream = sys.stdout if stream is None else stream
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def print_table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], *,
                header: bool = True, title: str | None = None,
                out: TextIO | None = None) -> None:
    """One table, for a terminal (rich) or for a pipe (plain, never wrapped)."""
    out = sys.stdout if out is None else out
    if is_terminal(out):
        _print_rich(columns, rows, header=header, title=title, out=out)
    else:
        if title:
            out.write(f"{title}\n")
        out.write(plain_table(columns, rows, header=header))


def plain_table(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], *,
                header: bool = True) -> str:
    """Whole cells in padded columns, one line per row (what pipes get)."""
    texts = [[_one_line(_text(cell)) for cell in row] for row in rows]
    if header:
        texts.insert(0, [column.header for column in columns])
    if not texts:
        return ""
    widths = [max(len(row[i]) for row in texts) for i in range(len(columns))]
    lines = []
    for row in texts:
        cells = [cell.rjust(width) if column.justify == "right" else cell.ljust(width)
                 for cell, width, column in zip(row, widths, columns, strict=True)]
        lines.append("  ".join(cells).rstrip() + "\n")
    return "".join(lines)


def _print_rich(columns: Sequence[Column], rows: Sequence[Sequence[Cell]], *, header: bool,
                title: str | None, out: TextIO) -> None:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    table = Table(box=None, header_style="bold", pad_edge=False, show_header=header,
                  title=title, title_justify="left")
    for column in columns:
        table.add_column(column.header, justify=column.justify, no_wrap=not column.flexible,
                         max_width=column.max_width, min_width=column.min_width,
                         overflow=column.overflow if column.flexible else "ellipsis")
    for row in rows:
        table.add_row(*(Text(cell) if isinstance(cell, str) else Text(cell[0], style=cell[1])
                        for cell in row))
    Console(file=out, highlight=False).print(table)


def _text(cell: Cell) -> str:
    return cell if isinstance(cell, str) else cell[0]


def _one_line(text: str) -> str:
    return text.replace("\r", " ").replace("\n", " ").replace("\t", " ")


# job fields as cells -----------------------------------------------------------------------
def status_cell(status: JobStatus) -> Cell:
    return status.value, STATUS_STYLE.get(status, "")


def reason(job: Job) -> str:
    """Why it waits, or how it ended: what the REASON column shows."""
    if job.pending_reason and job.status in (JobStatus.PENDING, JobStatus.HELD):
        return job.pending_reason
    if job.status is JobStatus.CANCELLED:
        if job.events:
            return job.events[-1].reason
        told = [attempt.reason for attempt in job.attempts if attempt.reason]
        return told[-1] if told else "cancelled: a dependency can never hold"
    if job.status in (JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.STOPPED):
        if job.signal:
            return f"signal {job.signal}"
        if job.exit_code is not None:
            return f"exit {job.exit_code}"
    return ""


def waited(job: Job, now: datetime) -> str:
    if job.started_at is not None:
        return format_duration((job.started_at - job.submitted_at).total_seconds())
    if job.status.is_final:
        return "-"
    return format_duration((now - job.submitted_at).total_seconds())


def ran(job: Job, now: datetime) -> str:
    if job.started_at is None:
        return "-"
    return format_duration(((job.finished_at or now) - job.started_at).total_seconds())


def local_time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Local time, as people read clocks; ``--json`` keeps the UTC ISO 8601 values."""
    return "-" if value is None else value.astimezone().strftime(fmt)


def _exit(job: Job) -> str:
    if job.signal and job.exit_code is None:
        return job.signal
    return "-" if job.exit_code is None else str(job.exit_code)


JOB_COLUMNS: dict[str, tuple[Column, _JobCell]] = {
    "id": (Column("ID", "right"), lambda j, now: j.job_id),
    "name": (Column("NAME", flexible=True, max_width=32, overflow="ellipsis"),
             lambda j, now: j.name or j.design or "-"),
    "project": (Column("PROJECT"), lambda j, now: j.project),
    "design": (Column("DESIGN"), lambda j, now: j.design or "-"),
    "owner": (Column("OWNER"), lambda j, now: j.owner),
    "priority": (Column("PRIO", "right"), lambda j, now: str(j.priority)),
    "status": (Column("STATUS"), lambda j, now: status_cell(j.status)),
    "host": (Column("HOST"), lambda j, now: j.host_id or "-"),
    "attempt": (Column("ATT", "right"), lambda j, now: str(j.attempt)),
    "wait/ran": (Column("WAIT/RAN", "right"), lambda j, now: f"{waited(j, now)}/{ran(j, now)}"),
    "waited": (Column("WAITED", "right"), waited),
    "ran": (Column("RAN", "right"), ran),
    "reason": (Column("REASON", flexible=True), lambda j, now: reason(j)),
    "exit": (Column("EXIT", "right"), lambda j, now: _exit(j)),
    "submitted": (Column("SUBMITTED"), lambda j, now: local_time(j.submitted_at)),
    "started": (Column("STARTED"), lambda j, now: local_time(j.started_at)),
    "finished": (Column("FINISHED"), lambda j, now: local_time(j.finished_at)),
    "resources": (Column("RESOURCES", flexible=True),
                  lambda j, now: j.resource_request.describe()),
    "workdir": (Column("WORKDIR", flexible=True), lambda j, now: j.workdir or "-"),
    "command": (Column("COMMAND", flexible=True), lambda j, now: j.command),
}
"""What ``apr-sched jobs -o NAME,...`` can show, in the order help lists them."""

DEFAULT_JOB_COLUMNS = ("id", "name", "project", "owner", "priority", "status", "host",
                       "attempt", "wait/ran", "reason")


def job_columns(text: str) -> list[str]:
    """Column names from ``-o id,status,...`` (argparse type): known names only."""
    names = [part.strip().lower() for part in text.split(",") if part.strip()]
    unknown = [name for name in names if name not in JOB_COLUMNS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown column {', '.join(unknown) or text!r}; choose from "
            f"{','.join(JOB_COLUMNS)}")
    return names


def print_jobs(jobs: Sequence[Job], names: Sequence[str], *, header: bool = True,
               out: TextIO | None = None) -> None:
    now = _now()
    columns = [JOB_COLUMNS[name][0] for name in names]
    cells = [JOB_COLUMNS[name][1] for name in names]
    print_table(columns, [[cell(job, now) for cell in cells] for job in jobs],
                header=header, out=out)


# hosts, one job, metrics -------------------------------------------------------------------
def print_hosts(hosts: Sequence[Host], *, header: bool = True,
                out: TextIO | None = None) -> None:
    now = _now()
    columns = [Column("ID"), Column("STATE"), Column("SLOTS", "right"),
               Column("CPU", "right"), Column("MEMORY GB", "right"), Column("JOBS", "right"),
               Column("LABELS", flexible=True, min_width=6), Column("HEARTBEAT", "right")]
    rows: list[list[Cell]] = [[
        h.host_id, (h.state.value, HOST_STYLE.get(h.state, "")),
        f"{h.used_slots}/{h.total_slots}", f"{h.used_cpu}/{h.total_cpu}",
        f"{h.used_memory_gb:g}/{h.total_memory_gb:g}", str(h.running_jobs),
        ",".join(f"{k}={v}" for k, v in sorted(h.labels.items())) or "-",
        _heartbeat(h, now),
    ] for h in hosts]
    print_table(columns, rows, header=header, out=out)


def _heartbeat(host: Host, now: datetime) -> str:
    if host.last_heartbeat is None:
        return "-"
    return f"{format_duration((now - host.last_heartbeat).total_seconds())} ago"


def print_job(job: Job, out: TextIO | None = None) -> None:
    """Fields, attempts and the event timeline of one job."""
    out = sys.stdout if out is None else out
    now = _now()
    status: Cell = status_cell(job.status)
    if reason(job):
        status = (f"{job.status.value}  {reason(job)}", STATUS_STYLE.get(job.status, ""))
    rows: list[tuple[str, Cell]] = [
        ("job", job.job_id), ("name", job.name or "-"), ("status", status),
        ("project", job.project), ("design", job.design or "-"), ("owner", job.owner),
        ("priority", str(job.priority)), ("command", job.command),
        ("workdir", job.workdir or "(the executing account's home)"),
        ("resources", job.resource_request.describe()),
        ("timeout", "-" if job.timeout_sec is None else format_duration(job.timeout_sec)),
        ("retry limit", str(job.retry_limit)),
        ("env", " ".join(f"{k}={v}" for k, v in sorted(job.env.items())) or "-"),
        ("umask", job.umask or "-"),
        ("host", job.host_id or "-"), ("attempt", str(job.attempt)),
        ("submitted", local_time(job.submitted_at)),
        ("started", local_time(job.started_at)), ("finished", local_time(job.finished_at)),
        ("waited/ran", f"{waited(job, now)}/{ran(job, now)}"),
    ]
    if job.exit_code is not None or job.signal:
        rows.append(("exit", f"signal {job.signal}" if job.signal else str(job.exit_code)))
    if job.depends_on:  # a model's Dependencies, or a view's dict
        after = job.depends_on if isinstance(job.depends_on, dict) else (
            job.depends_on.as_mapping())
        rows.append(("after", "  ".join(f"{condition} {','.join(ids)}"
                                        for condition, ids in after.items() if ids)))
    if job.begin_at is not None:
        rows.append(("begin", local_time(job.begin_at)))
    fields = [Column("FIELD"), Column("VALUE", flexible=True)]
    print_table(fields, [[(key, "bold"), value] for key, value in rows], header=False,
                out=out)
    if job.attempts:
        columns = [Column("#"), Column("HOST"), Column("STATUS"), Column("STARTED"),
                   Column("FINISHED"), Column("EXIT"), Column("REASON", flexible=True,
                                                              min_width=10)]
        attempts: list[list[Cell]] = [[
            str(a.attempt), a.host_id or "-", status_cell(a.status),
            local_time(a.started_at, SHORT_TIME), local_time(a.finished_at, SHORT_TIME),
            f"signal {a.signal}" if a.signal else ("-" if a.exit_code is None
                                                   else str(a.exit_code)),
            a.reason or "",
        ] for a in job.attempts]
        out.write("\n")
        print_table(columns, attempts, title="attempts", out=out)
    if job.events:
        columns = [Column("TIME"), Column("ATT"), Column("CHANGE"), Column("HOST"),
                   Column("REASON", flexible=True, min_width=10)]
        events: list[list[Cell]] = [[
            local_time(e.time, SHORT_TIME), str(e.attempt),
            (f"{e.from_status.value} -> " if e.from_status else "") + e.to_status.value,
            e.host_id or "-", e.reason,
        ] for e in job.events]
        out.write("\n")
        print_table(columns, events, title="events", out=out)


def print_fields(rows: Sequence[tuple[str, Cell]], out: TextIO | None = None) -> None:
    """``key  value`` lines (metrics)."""
    print_table([Column("FIELD"), Column("VALUE", flexible=True)],
                [[(key, "bold"), value] for key, value in rows], header=False, out=out)


def describe_metrics(m: Any) -> list[tuple[str, Cell]]:
    """The metrics summary as ``print_fields`` rows."""
    by_status = "  ".join(f"{status.value} {m.jobs_by_status[status]}" for status in JobStatus
                          if m.jobs_by_status.get(status, 0))
    rows: list[tuple[str, Cell]] = [
        ("jobs", f"{m.jobs_total}  {by_status}".rstrip()),
        ("hosts", f"{m.hosts_online} online, {m.hosts_offline} offline, {m.hosts_total} total"),
    ]
    for name, usage in (("slots", m.slots), ("cpu", m.cpu), ("memory GB", m.memory_gb)):
        pct = f" ({usage.used / usage.total:.0%})" if usage.total else ""
        rows.append((name, f"{usage.used:g} / {usage.total:g} used{pct}"))
    rows += [
        ("finished last hour", str(m.finished_last_hour)),
        ("wait median / p95", f"{_maybe(m.wait_sec_median)} / {_maybe(m.wait_sec_p95)}"),
        ("run median / p95", f"{_maybe(m.run_sec_median)} / {_maybe(m.run_sec_p95)}"),
    ]
    return rows


def _maybe(seconds: float | None) -> str:
    return "-" if seconds is None else format_duration(seconds)
