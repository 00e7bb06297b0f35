"""The TUI's headless parts (rows, book, forms) and the jobs table widget on its own."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.cells import cell_len
from rich.style import Style
from textual.app import App, ComposeResult
from textual.color import Color

from apr_sched.models import Job, JobEvent, JobStatus
from apr_tui.book import JobBook
from apr_tui.columns import JOB_COLUMNS, job_cells, layout_widths, sort_key
from apr_tui.forms import load_batch_file, parse_form, parse_pairs
from apr_tui.query import QueryError
from apr_tui.rows import (
    Cell,
    JobFilter,
    Since,
    StatusFilter,
    format_duration,
    status_label,
    status_style,
)
from apr_tui.widgets.jobs import JobsTable

T0 = datetime(2025, 3, 14, 9, 0, tzinfo=UTC)


def job(job_id: str, status: JobStatus = JobStatus.PENDING, **fields: Any) -> Job:
    values: dict[str, Any] = {"command": "true", "job_id": job_id, "status": status,
                              "submitted_at": T0, "owner": "cad", **fields}
    return Job(**values)


def event(seq: int, job_id: str, to: JobStatus, frm: JobStatus | None = None,
          attempt: int = 1, host: str | None = None, minutes: int = 0) -> JobEvent:
    return JobEvent(seq=seq, time=T0 + timedelta(minutes=minutes), job_id=job_id,
                    attempt=attempt, from_status=frm, to_status=to, reason=f"to {to}",
                    host_id=host)


# rows ----------------------------------------------------------------------------------
def test_durations_are_short() -> None:
    assert [format_duration(s) for s in (0, 42, 725, 11_100, 190_000, -3)] == [
        "0s", "42s", "12m05s", "3h05m", "2d04h", "0s"]


def test_columns_fit_80_and_use_160() -> None:
    narrow = layout_widths(JOB_COLUMNS, 76)
    shown = [c.key for c, w in zip(JOB_COLUMNS, narrow, strict=True) if w]
    assert shown == ["id", "name", "status", "host", "attempt", "time", "reason"]
    assert 2 + sum(w + 1 for w in narrow if w) <= 76
    wide = layout_widths(JOB_COLUMNS, 156)
    assert all(wide) and 2 + sum(w + 1 for w in wide) == 156


def test_cells_show_waiting_running_and_finished_jobs() -> None:
    waiting = job("1", pending_reason="no host has label tool=x")
    cells = job_cells(waiting)
    assert cells[5] == Cell("◦ PENDING", "status:PENDING")
    assert cells[-1].text == "no host has label tool=x"  # type: ignore[union-attr]
    assert isinstance(cells[8], Since) and cells[8].render(T0 + timedelta(seconds=90)).text \
        == "w 1m30s"
    finished = job("2", JobStatus.FAILED, host_id="h1", started_at=T0,
                   finished_at=T0 + timedelta(hours=2), exit_code=3)
    cells = job_cells(finished)
    assert cells[8] == Cell("r 2h00m") and cells[-1] == Cell("exit code 3", "dim")
    assert job_cells(finished, note="exit code 3 (after retry)")[-1].text \
        == "exit code 3 (after retry)"  # type: ignore[union-attr]


def test_filters_and_sort_keys() -> None:
    a = job("1", name="soc_route", project="P1", host_id=None)
    b = job("2", JobStatus.RUNNING, name="ddr_cts", project="P2", host_id="pnr-01",
            priority=5, started_at=T0)
    c = job("10", JobStatus.TIMEOUT, design="serdes", project="P2")
    assert [j.job_id for j in (a, b, c) if JobFilter(StatusFilter.RUNNING).matches(j)] == ["2"]
    assert [j.job_id for j in (a, b, c) if JobFilter(StatusFilter.FAILED).matches(j)] == ["10"]
    assert [j.job_id for j in (a, b, c) if JobFilter(text="PNR-01").matches(j)] == ["2"]
    assert [j.job_id for j in (a, b, c) if JobFilter(text="serdes").matches(j)] == ["10"]
    assert sorted(["10", "2", "1"], key=lambda k: sort_key("id", {"1": a, "2": b,
                                                                   "10": c}[k])) == [
        "1", "2", "10"]
    assert sort_key("priority", b) < sort_key("priority", a)  # larger priority first
    assert JobFilter(StatusFilter.PENDING, " route ").describe() == \
        "view pending · filter /route (esc clears)"
    assert JobFilter(StatusFilter.ALL, "route").describe() == \
        "view all · filter /route (esc clears)"
    assert JobFilter(StatusFilter.FAILED).describe() == "view failed"
    assert JobFilter().describe() == ""


# book ----------------------------------------------------------------------------------
def test_book_applies_events_in_place_and_reports_unknown_jobs() -> None:
    book = JobBook()
    book.replace_all([job("2"), job("1")])
    assert list(book.jobs) == ["1", "2"]  # submit order
    assert book.apply(event(5, "1", JobStatus.RUNNING, JobStatus.PENDING, host="h1",
                            minutes=3))
    one = book.jobs["1"]
    assert (one.status, one.host_id, one.started_at) == (
        JobStatus.RUNNING, "h1", T0 + timedelta(minutes=3))
    assert book.counts[JobStatus.RUNNING] == 1 and book.counts[JobStatus.PENDING] == 1
    assert not book.apply(event(6, "3", JobStatus.PENDING))
    book.upsert(job("3"))
    assert list(book.jobs) == ["1", "2", "3"] and book.counts[JobStatus.PENDING] == 2


def test_book_replays_events_to_the_same_state() -> None:
    """An old event replayed after a snapshot, followed by the newer ones, ends where the
    newest event says: events carry resulting states."""
    events = [event(1, "1", JobStatus.RUNNING, JobStatus.PENDING, host="h1"),
              event(2, "1", JobStatus.FAILED, JobStatus.RUNNING, host="h1", minutes=5),
              event(3, "1", JobStatus.PENDING, JobStatus.FAILED, attempt=2, minutes=5),
              event(4, "1", JobStatus.RUNNING, JobStatus.PENDING, attempt=2, host="h2",
                    minutes=6)]
    once, twice = JobBook(), JobBook()
    once.replace_all([job("1")])
    twice.replace_all([job("1")])
    for e in events:
        once.apply(e)
    for e in events + events[1:]:
        twice.apply(e)
    for book in (once, twice):
        final = book.jobs["1"]
        assert (final.status, final.attempt, final.host_id) == (JobStatus.RUNNING, 2, "h2")
        assert book.counts[JobStatus.RUNNING] == 1 and sum(book.counts.values()) == 1


# forms ---------------------------------------------------------------------------------
def test_form_reports_every_bad_field_at_once() -> None:
    spec, errors = parse_form({"command": "", "workdir": "rel", "priority": "x",
                               "cpu": "-1", "env": "A=1 broken"})
    assert spec is None
    assert set(errors) == {"command", "workdir", "priority", "cpu", "env"}
    assert errors["priority"] == "must be a whole number"
    assert errors["cpu"] == "must be >= 0"


def test_form_builds_a_full_spec() -> None:
    spec, errors = parse_form({
        "command": "innovus -init place.tcl", "workdir": "/proj/top", "name": "top_place",
        "project": "P1", "design": "top", "owner": "mei", "priority": "5",
        "timeout_sec": "3600", "retry_limit": "2", "cpu": "8", "memory_gb": "64.5",
        "slots": "1", "host_labels": "tool=innovus", "env": 'NOTE="two words" A=1'})
    assert errors == {} and spec is not None
    assert spec.resource_request.memory_gb == 64.5
    assert spec.resource_request.host_labels == {"tool": "innovus"}
    assert spec.env == {"NOTE": "two words", "A": "1"} and spec.timeout_sec == 3600
    assert parse_pairs("") == {}


def test_batch_files(tmp_path: Path) -> None:
    wrapped = tmp_path / "a.json"
    wrapped.write_text(json.dumps({"jobs": [{"command": "true"}]}))
    bare = tmp_path / "b.json"
    bare.write_text(json.dumps([{"command": "true"}, {"command": "false"}]))
    assert len(load_batch_file(str(wrapped))) == 1 and len(load_batch_file(str(bare))) == 2
    broken = tmp_path / "c.json"
    broken.write_text("{")
    for path, message in ((broken, "not valid JSON"), (tmp_path / "none.json", "no such"),
                          (tmp_path, "is a directory")):
        with pytest.raises(ValueError, match=message):
            load_batch_file(str(path))


# the jobs table ------------------------------------------------------------------------
class TableApp(App[None]):
    def __init__(self, jobs: dict[str, Job]) -> None:
        super().__init__()
        self.jobs = jobs

    def compose(self) -> ComposeResult:
        yield JobsTable(JOB_COLUMNS, sort_key=lambda key, column: sort_key(
            column, self.jobs[key]))


async def test_table_changes_only_rows_whose_cells_changed() -> None:
    jobs = {str(i): job(str(i), name=f"job{i:05d}") for i in range(1, 2001)}
    app = TableApp(jobs)
    async with app.run_test(size=(120, 30)) as pilot:
        table = app.query_one(JobsTable)
        table.set_rows((k, job_cells(j)) for k, j in jobs.items())
        await pilot.pause()
        assert table.row_count == 2000 and table.cursor_key == "1"
        table.upsert_rows([(k, job_cells(jobs[k])) for k in ("5", "6")])  # no change
        assert table.row_version("5") == 0
        jobs["6"] = job("6", JobStatus.HELD, name="job00006")
        table.upsert_rows([(k, job_cells(jobs[k])) for k in ("5", "6")])
        assert (table.row_version("5"), table.row_version("6")) == (0, 1)
        assert table.cell_text("6", "status") == "⊘ HELD"
        table.move_cursor_to_key("1500")
        table.sort_by("name", reverse=True)  # the cursor stays on its job
        assert table.cursor_key == "1500" and table.keys[0] == "2000"
        table.remove_rows(["1500", "2000"])
        assert table.row_count == 1998 and table.cursor_key is not None
        assert "1500" not in table.keys and table.keys[0] == "1999"
        await pilot.press("end")
        assert table.cursor_key == table.keys[-1] == "1"


def test_run_time_excludes_paused_time_as_the_timeout_does() -> None:
    """Dispatched at 0 min, paused at 1, resumed at 3, stopped at 4: it ran 2 minutes.
    Wall-clock since the start would say 4."""
    book = JobBook()
    book.replace_all([job("1")])
    R, P, S = JobStatus.RUNNING, JobStatus.PAUSED, JobStatus.STOPPED
    column = [c.key for c in JOB_COLUMNS].index("time")

    def shown(at_minutes: float) -> str:
        cell = job_cells(book.jobs["1"])[column]
        now = T0 + timedelta(minutes=at_minutes)
        return (cell.render(now) if isinstance(cell, Since) else cell).text

    book.apply(event(1, "1", R, JobStatus.PENDING, host="h1", minutes=0))
    assert shown(0.5) == "r 30s"
    book.apply(event(2, "1", P, R, minutes=1))
    assert shown(1) == shown(2.9) == "r 1m00s"  # stands still while paused
    book.apply(event(3, "1", R, P, minutes=3))
    assert shown(3.5) == "r 1m30s"
    book.apply(event(4, "1", S, R, minutes=4))
    assert shown(60) == "r 2m00s"
    assert book.jobs["1"].run_sec == 120.0


def test_run_time_cells_from_the_scheduler_fields() -> None:
    column = [c.key for c in JOB_COLUMNS].index("time")
    started = T0 + timedelta(minutes=1)
    running = job("1", JobStatus.RUNNING, started_at=started, run_sec=59.0,
                  resumed_at=T0 + timedelta(minutes=5))
    cell = job_cells(running)[column]
    assert isinstance(cell, Since)
    assert cell.render(T0 + timedelta(minutes=6)).text == "r 1m59s"
    paused = job("2", JobStatus.PAUSED, started_at=started, run_sec=59.0)
    assert job_cells(paused)[column] == Cell("r 59s")
    # an older daemon sends no run_sec: wall clock from the start, as before
    old = job("3", JobStatus.SUCCEEDED, started_at=started,
              finished_at=started + timedelta(seconds=75))
    assert job_cells(old)[column] == Cell("r 1m15s")


def _luminance(color: Color) -> float:
    def channel(value: int) -> float:
        v = value / 255
        return v / 12.92 if v <= 0.03928 else ((v + 0.055) / 1.055) ** 2.4

    return 0.2126 * channel(color.r) + 0.7152 * channel(color.g) + 0.0722 * channel(color.b)


def _contrast(a: Color, b: Color) -> float:
    high, low = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (high + 0.05) / (low + 0.05)


async def test_each_state_has_its_own_colour_and_symbol_readable_on_dark_and_light() -> None:
    """Eight states, eight colours per theme (not one red for HELD, FAILED and TIMEOUT),
    each with a symbol and its name, so it reads without colour; WCAG contrast >= 3 on
    the backgrounds a state is drawn on (table surface, header panel, screen) of Textual's
    dark and light themes."""
    symbols = {status_label(s).split()[0] for s in JobStatus}
    assert len(symbols) == len(JobStatus)
    for status in JobStatus:
        label = status_label(status)
        assert label.endswith(status.value) and cell_len(label) == len(status.value) + 2
    app: App[None] = App()
    async with app.run_test() as pilot:
        for theme, dark in (("textual-dark", True), ("textual-light", False)):
            app.theme = theme
            await pilot.pause()
            assert app.current_theme.dark is dark
            variables = app.get_css_variables()
            colours = {s: Style.parse(status_style(s, dark=dark)).color for s in JobStatus}
            assert len({c.triplet for c in colours.values() if c}) == len(JobStatus), theme
            for background in ("surface", "panel", "background"):
                behind = Color.parse(variables[background])
                for status, colour in colours.items():
                    assert colour is not None and colour.triplet is not None
                    ours = Color(*colour.triplet)
                    assert _contrast(ours, behind) >= 3.0, (theme, background, status)


def test_filter_language_fields_free_text_and_negation() -> None:
    jobs = {
        "1": job("1", JobStatus.FAILED, name="blk007_route", owner="alice", host_id="apr03",
                 project="P1", started_at=T0, exit_code=2),
        "2": job("2", JobStatus.RUNNING, name="blk008_cts", owner="bob", host_id="apr03",
                 project="P2", command="innovus -init cts.tcl", started_at=T0),
        "3": job("3", JobStatus.PENDING, name="blk007_place", owner="alicia", design="soc",
                 pending_reason="no host has label tool=icc2"),
        "4": job("4", JobStatus.TIMEOUT, name="blk009", owner="alice", host_id="apr031"),
    }

    def shown(text: str) -> list[str]:
        wanted = JobFilter(text=text)
        return [k for k, j in jobs.items() if wanted.matches(j)]

    assert shown("status:FAILED") == ["1"]
    assert shown("status:fail,time") == ["1", "4"]  # prefixes, comma separated
    assert shown("owner:alice") == ["1", "4"]  # whole value: not alicia
    assert shown("host:apr03") == ["1", "2"]  # not apr031
    assert shown("blk007") == ["1", "3"]
    assert shown("blk007 !status:pending") == ["1"]
    assert shown("!owner:alice !owner:bob") == ["3"]
    assert shown("innovus") == ["2"]  # the command
    assert shown("tool=icc2") == ["3"]  # the reason
    assert shown("cts innovus") == ["2"]  # each word somewhere (name, command)
    assert shown('"cts innovus"') == []  # quoted: one phrase, in one field
    assert shown('"exit code 2"') == ["1"]  # the outcome the REASON column shows
    assert JobFilter(StatusFilter.RUNNING, "apr03").matches(jobs["2"])
    assert not JobFilter(StatusFilter.PENDING, "apr03").matches(jobs["2"])
    for bad, says in (("stat:FAILED", "no filter field 'stat'"),
                      ("status:nope", "status:nope is no state"),
                      ("status:s", "matches SUCCEEDED and STOPPED"),
                      ("owner:", "owner: needs a value"), ("!", "! needs a word"),
                      ('"open', "cannot read")):
        with pytest.raises(QueryError, match=re.escape(says)):
            JobFilter(text=bad)
