"""The jobs table's columns: every column there is, how its cell and sort key are made, and
how a line's width is shared among the columns shown.

Headless. The chooser (``c``) picks which columns show and in what order; the choice is a
tuple of keys (``DEFAULT_COLUMNS`` until changed) kept in the settings file. Cells are built
only for the columns shown, so a hidden column costs nothing.

Widths: each column has a base width; narrow screens hide columns in ``drop`` order first.
Spare width goes to the columns whose longest value is cut (name, project, host, owner ...,
each up to its ``grow`` limit, in ``grow_rank`` order), and what is left to the ``fill``
column (REASON).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apr_sched.models import FINAL_STATUSES, Job, JobStatus
from apr_tui.rows import (
    STATUS_ORDER,
    STATUS_STYLE_PREFIX,
    Cell,
    CellValue,
    display_name,
    id_order,
    outcome,
    sort_time,
    status_label,
    time_cell,
)

Row = tuple[CellValue, ...]
CellOf = Callable[[Job, "datetime | None", "str | None"], CellValue]
"""(job, when it entered its state, reason of its latest event) -> the cell."""
SortOf = Callable[[Job, "datetime | None"], Any]


@dataclass(frozen=True, slots=True)
class ColumnSpec:
    key: str
    label: str
    width: int
    """Base width in cells: what the column gets before spare width is shared."""
    justify: str = "left"
    grow: int = 0
    """Up to this many cells when its longest value needs them and there is room (0: never
    wider than ``width``)."""
    grow_rank: int = 0
    """Who gets spare width first when there is not enough for all (lower first)."""
    fill: bool = False
    """Takes whatever width is left at the end (one column: REASON)."""
    drop: int = 0
    """When the screen is too narrow, columns are hidden in increasing ``drop`` order;
    0 means never hidden."""
    about: str = ""
    """One line for the chooser."""


@dataclass(frozen=True, slots=True)
class JobColumn:
    spec: ColumnSpec
    cell: CellOf
    sort: SortOf
    """Natural order: priority and durations sort largest first."""


def _exit_cell(job: Job, since: datetime | None, note: str | None) -> CellValue:
    if job.status not in FINAL_STATUSES:
        return Cell("-", "dim")
    if job.exit_code is not None:
        return Cell(str(job.exit_code), "" if job.exit_code == 0 else "bold")
    return Cell(job.signal or "-", "bold" if job.signal else "dim")


def _reason_cell(job: Job, since: datetime | None, note: str | None) -> CellValue:
    if job.status in (JobStatus.PENDING, JobStatus.HELD):
        return Cell(job.pending_reason or "", "dim" if job.status is JobStatus.HELD else "")
    return Cell(note or outcome(job), "dim")


def _exit_sort(job: Job, since: datetime | None) -> tuple[int, int, str]:
    if job.exit_code is not None:
        return (0, -abs(job.exit_code), "")
    return (1 if job.signal else 2, 0, job.signal or "")


def _column(key: str, label: str, width: int, cell: CellOf, sort: SortOf, about: str,
            **options: Any) -> tuple[str, JobColumn]:
    return key, JobColumn(ColumnSpec(key, label, width, about=about, **options), cell, sort)


COLUMN_CATALOG: dict[str, JobColumn] = dict([
    _column("id", "ID", 5, lambda j, s, n: Cell(j.job_id), lambda j, s: id_order(j.job_id),
            "job id", justify="right", grow=10, grow_rank=5),
    _column("name", "NAME/DESIGN", 12, lambda j, s, n: Cell(display_name(j)),
            lambda j, s: display_name(j).lower(), "name, else design", grow=40, grow_rank=0),
    _column("project", "PROJECT", 9, lambda j, s, n: Cell(j.project),
            lambda j, s: j.project.lower(), "project", grow=24, grow_rank=1, drop=2),
    _column("design", "DESIGN", 9, lambda j, s, n: Cell(j.design or "-", "" if j.design
                                                       else "dim"),
            lambda j, s: j.design.lower(), "design (block)", grow=24, grow_rank=4, drop=2),
    _column("owner", "OWNER", 9, lambda j, s, n: Cell(j.owner), lambda j, s: j.owner.lower(),
            "who submitted it", grow=16, grow_rank=3, drop=1),
    _column("priority", "PRI", 4, lambda j, s, n: Cell(str(j.priority)),
            lambda j, s: -j.priority, "priority (higher runs first)", justify="right",
            drop=3),
    _column("status", "STATUS", 11, lambda j, s, n: Cell(
        status_label(j.status), STATUS_STYLE_PREFIX + j.status.value),
            lambda j, s: STATUS_ORDER[j.status], "state, with its symbol"),
    _column("host", "HOST", 9, lambda j, s, n: Cell(j.host_id or "-", "" if j.host_id
                                                   else "dim"),
            lambda j, s: j.host_id or "\uffff", "where it runs (ran)", grow=20,
            grow_rank=2, drop=5),
    _column("attempt", "ATT", 3, lambda j, s, n: Cell(str(j.attempt)),
            lambda j, s: j.attempt, "attempt number", justify="right", drop=4),
    _column("time", "WAIT/RAN", 9, lambda j, s, n: time_cell(j, s), sort_time,
            "w waited, r ran (not paused)", justify="right",
            drop=6),
    _column("exit", "EXIT", 6, _exit_cell, _exit_sort, "exit code or signal", justify="right",
            drop=3),
    _column("resources", "RESOURCES", 14, lambda j, s, n: Cell(j.resource_request.describe()),
            lambda j, s: (j.resource_request.cpu, j.resource_request.memory_gb),
            "slots, cpu, memory, labels", grow=40, grow_rank=6, drop=2),
    _column("submitted", "SUBMITTED", 11, lambda j, s, n: Cell(
        f"{j.submitted_at:%m-%d %H:%M}"), lambda j, s: j.submitted_at,
            "when it was submitted (UTC)", drop=3),
    _column("workdir", "WORKDIR", 12, lambda j, s, n: Cell(j.workdir or "(home)"),
            lambda j, s: j.workdir or "", "working directory", grow=48, grow_rank=7, drop=2),
    _column("command", "COMMAND", 12, lambda j, s, n: Cell(j.command),
            lambda j, s: j.command, "the command line", grow=60, grow_rank=8, drop=2),
    _column("reason", "REASON", 16, _reason_cell,
            lambda j, s: (j.pending_reason or outcome(j)).lower(),
            "why it waits, or what happened", fill=True),
])
"""Every column, in the order the chooser lists them."""

DEFAULT_COLUMNS: tuple[str, ...] = ("id", "name", "project", "owner", "priority", "status",
                                    "host", "attempt", "time", "reason")
JOB_COLUMNS: tuple[ColumnSpec, ...] = tuple(COLUMN_CATALOG[k].spec for k in DEFAULT_COLUMNS)
"""The default columns' specs."""


def column_specs(keys: Sequence[str]) -> tuple[ColumnSpec, ...]:
    return tuple(COLUMN_CATALOG[key].spec for key in keys)


def cell_builder(keys: Sequence[str]) -> Callable[[Job, datetime | None, str | None], Row]:
    """A function making the row of a job for these columns (looked up once, not per job)."""
    cells = [COLUMN_CATALOG[key].cell for key in keys]

    def build(job: Job, since: datetime | None = None, note: str | None = None) -> Row:
        return tuple([cell(job, since, note) for cell in cells])

    return build


def job_cells(job: Job, since: datetime | None = None, note: str | None = None,
              keys: Sequence[str] = DEFAULT_COLUMNS) -> Row:
    """The row for ``job`` in ``keys`` order. ``note`` is the reason of its latest event
    when known (shown for running and finished jobs)."""
    return tuple(COLUMN_CATALOG[key].cell(job, since, note) for key in keys)


def sort_key(column: str, job: Job, since: datetime | None = None) -> tuple[Any, ...]:
    """Sort by ``column``, then by id so equal values keep submit order."""
    return (COLUMN_CATALOG[column].sort(job, since), id_order(job.job_id))


def layout_widths(columns: Sequence[ColumnSpec], width: int,
                  content: Sequence[int] | None = None, gutter: int = 2) -> list[int]:
    """Each column's width for a line of ``width`` cells (0 = hidden). Columns are separated
    by one space and preceded by ``gutter`` cells. ``content``: the longest value of each
    column (unknown: as long as it may grow)."""

    def needed(shown: list[bool]) -> int:
        return gutter + sum(c.width + 1 for c, keep in zip(columns, shown, strict=True) if keep)

    shown = [True] * len(columns)
    for index in sorted((i for i, c in enumerate(columns) if c.drop),
                        key=lambda i: columns[i].drop):
        if needed(shown) <= width:
            break
        shown[index] = False
    widths = [c.width if keep else 0 for c, keep in zip(columns, shown, strict=True)]
    spare = width - needed(shown)
    growing = sorted((i for i, c in enumerate(columns) if c.grow and shown[i]),
                     key=lambda i: columns[i].grow_rank)
    for index in growing:
        if spare <= 0:
            break
        column = columns[index]
        longest = column.grow if content is None else min(column.grow, content[index])
        extra = min(spare, max(0, longest - column.width))
        widths[index] += extra
        spare -= extra
    fill = next((i for i, c in enumerate(columns) if c.fill and shown[i]), None)
    if fill is not None and spare > 0:
        widths[fill] += spare
    return widths
