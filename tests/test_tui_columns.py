"""The jobs table's columns: the chooser (``c``), the settings file that remembers it (real
files, owner-only; corrupt or unwritable ones), how spare width is shared at 250 columns,
and every key reachable at 80x24."""

from __future__ import annotations

import stat
import tomllib
from pathlib import Path
from typing import Any

import pytest

from apr_sched.models import Host
from apr_tui.backend import InProcessBackend
from apr_tui.columns import COLUMN_CATALOG, DEFAULT_COLUMNS, JOB_COLUMNS, layout_widths
from apr_tui.demo import StaticBackend, demo_clock, demo_hosts
from apr_tui.screens.columns import ColumnsScreen
from apr_tui.screens.help import HelpScreen
from apr_tui.screens.main import MainScreen
from apr_tui.settings import DEFAULT_ERROR_PATTERNS, Settings, SettingsFile
from tests.conftest import wait_until
from tests.test_tui_support import open_tui, start_scheduler, wait_shown


def shown_columns(app: Any) -> list[str]:
    return [column.key for column in app.main.jobs.columns]


# the settings file ---------------------------------------------------------------------
def test_settings_are_written_owner_only_and_read_back(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "apr_tui" / "settings.toml"
    first = SettingsFile.load(path)
    assert first.settings == Settings() and first.notice is None
    assert not path.exists()  # nothing is written until something changes
    chosen = first.settings.with_columns(("id", "status", "exit", "reason")).with_wrap(True)
    assert first.update(chosen) is None
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    again = SettingsFile.load(path)
    assert again.notice is None and again.settings == chosen
    assert again.settings.log.error_patterns == DEFAULT_ERROR_PATTERNS
    assert not [p for p in path.parent.iterdir() if p.name != "settings.toml"]  # no temp left


@pytest.mark.parametrize(("content", "named"), [
    ("[jobs\ncolumns = 3", "not valid TOML"),
    ('[jobs]\ncolumns = ["id", "nosuch"]', "jobs.columns: unknown column 'nosuch'"),
    ("[jobs]\ncolumns = []", "jobs.columns: needs at least one column"),
    ('[jobs]\ncolumn = ["id"]', "jobs.column: unknown field"),
    ("[colours]\nx = 1", "colours: unknown section"),
    ('[log]\nwrap = "yes"', "log.wrap: must be true or false"),
    ("[log]\nerror_patterns = ['^ok', '(unclosed']", "log.error_patterns[1]: not a regular "
     "expression"),
    ("\xff\xfe", "not UTF-8"),
])
def test_a_corrupt_settings_file_gives_the_defaults_a_notice_and_is_kept(
        tmp_path: Path, content: str, named: str) -> None:
    path = tmp_path / "settings.toml"
    path.write_bytes(content.encode("latin-1"))
    loaded = SettingsFile.load(path)
    assert loaded.settings == Settings()
    assert loaded.notice is not None and named in loaded.notice and str(path) in loaded.notice
    problem = loaded.update(loaded.settings.with_wrap(True))
    assert problem is not None and "not saved" in problem
    assert path.read_bytes() == content.encode("latin-1")  # what the user wrote stays
    assert loaded.settings.log.wrap  # the change applies until the app quits


def test_a_settings_file_that_cannot_be_read_or_written_says_so(tmp_path: Path) -> None:
    directory = tmp_path / "is-a-directory.toml"
    directory.mkdir()
    unreadable = SettingsFile.load(directory)
    assert unreadable.notice is not None and "cannot read" in unreadable.notice
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    unwritable = SettingsFile.load(blocker / "apr_tui" / "settings.toml")  # parent is a file
    assert unwritable.notice is None
    problem = unwritable.update(Settings().with_wrap(True))
    assert problem is not None and "cannot write" in problem and "until you quit" in problem


# the chooser -----------------------------------------------------------------------------
async def test_c_chooses_and_orders_columns_and_a_new_app_remembers_them(
        make_scheduler: Any, tmp_path: Path) -> None:
    settings = tmp_path / "xdg" / "apr_tui" / "settings.toml"
    scheduler = await start_scheduler(make_scheduler)
    job = await scheduler.submit({"command": "exit 3", "name": "route", "design": "soc_top"})
    async with open_tui(InProcessBackend(scheduler), settings_path=settings) as (app, pilot, _):
        await wait_shown(app, job.job_id, "FAILED")
        await pilot.press("c")
        chooser = app.screen
        assert isinstance(chooser, ColumnsScreen)
        assert chooser.order[:len(DEFAULT_COLUMNS)] == list(DEFAULT_COLUMNS)
        await pilot.press("down", "down", "down", "space")  # hide OWNER
        design = chooser.order.index("design")
        await pilot.press(*["down"] * (design - 3), "space")  # show DESIGN
        await pilot.press(*["K"] * (design - 2))  # ... and move it up, after NAME/DESIGN
        exit_at = chooser.order.index("exit")
        await pilot.press(*["down"] * (exit_at - 2), "space", "enter")  # show EXIT, keep
        assert isinstance(app.screen, MainScreen)
        wanted = ["id", "name", "design", "project", "priority", "status", "host", "attempt",
                  "time", "reason", "exit"]
        assert shown_columns(app) == wanted
        table = app.main.jobs
        assert table.cell_text(job.job_id, "design") == "soc_top"
        assert table.cell_text(job.job_id, "exit") == "3"
        assert "owner" not in table._column_index
        assert tomllib.loads(settings.read_text())["jobs"]["columns"] == wanted
        await pilot.press("c", "space", "escape")  # cancelled: nothing changes
        assert shown_columns(app) == wanted
        await pilot.press("o")  # sorting follows the columns shown
        assert table.sort_column == "id"
    async with open_tui(InProcessBackend(scheduler), settings_path=settings) as (app, pilot, _):
        assert shown_columns(app) == wanted
        await pilot.press("c", "d", "enter")  # back to the defaults
        assert shown_columns(app) == list(DEFAULT_COLUMNS)


async def test_the_last_column_cannot_be_hidden(make_scheduler: Any) -> None:
    scheduler = await start_scheduler(make_scheduler)
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await pilot.press("c")
        chooser = app.screen
        assert isinstance(chooser, ColumnsScreen)
        for _ in DEFAULT_COLUMNS:  # hide them all, one by one: the last one stays
            await pilot.press("space", "down")
        assert chooser.choice == ("reason",)
        assert chooser.problem == "at least one column stays shown"
        await pilot.press("enter")
        assert shown_columns(app) == ["reason"]


async def test_a_corrupt_settings_file_is_a_notice_not_a_crash(make_scheduler: Any,
                                                               tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text('[jobs]\ncolumns = ["id", "colour"]\n')
    scheduler = await start_scheduler(make_scheduler)
    async with open_tui(InProcessBackend(scheduler), settings_path=settings) as (app, pilot,
                                                                                  seen):
        assert any("jobs.columns: unknown column 'colour'" in note for note in seen.notes)
        assert shown_columns(app) == list(DEFAULT_COLUMNS)
        await pilot.press("c", "space", "enter")  # hide ID: applies, but is not saved
        assert shown_columns(app) == list(DEFAULT_COLUMNS[1:])
        await wait_until(lambda: any("settings not saved" in n for n in seen.notes), 5)
        assert "colour" in settings.read_text()
        assert app.is_running


# widths ----------------------------------------------------------------------------------
def long_names_backend() -> StaticBackend:
    """Jobs whose project and host names are longer than those columns' base widths."""
    backend = StaticBackend()
    jobs = [job.model_copy() for job in backend._jobs.values()]
    for job in jobs:
        job.project = "soc_top_fullchip_p1"
        if job.host_id:
            job.host_id = "pnr-compute-0042"
    hosts: list[Host] = demo_hosts()
    hosts[0].host_id = "pnr-compute-0042"
    return StaticBackend(jobs=jobs, hosts=hosts)


async def test_at_250_columns_spare_width_goes_to_cut_project_and_host_then_reason() -> None:
    async with open_tui(long_names_backend(), size=(250, 60),
                        clock=demo_clock) as (app, pilot, _):
        table = app.main.jobs
        await wait_until(lambda: table.row_count == 16, 5)
        await pilot.pause()
        assert table.column_width("project") == len("soc_top_fullchip_p1")
        assert table.column_width("host") == len("pnr-compute-0042")
        assert table.column_width("name") == len("noc_fabric_place")  # its longest value
        line = "".join(segment.text for segment in table.render_line(2))
        assert "soc_top_fullchip_p1 " in line and "pnr-compute-0042 " in line
        used = 2 + sum(width + 1 for width in table._widths if width)
        assert used == table.scrollable_content_region.width  # REASON takes the rest
        assert table.column_width("reason") > 100
        await pilot.resize_terminal(120, 40)  # not enough for all: NAME first, then PROJECT
        await pilot.pause()
        assert table.column_width("name") == len("noc_fabric_place")
        assert table.column_width("reason") >= COLUMN_CATALOG["reason"].spec.width


def test_spare_width_is_shared_by_rank_up_to_each_limit() -> None:
    content = [0] * len(JOB_COLUMNS)
    keys = [c.key for c in JOB_COLUMNS]
    content[keys.index("name")] = 100  # longer than its limit (40)
    content[keys.index("project")] = 30  # longer than its limit (24)
    content[keys.index("host")] = 12
    widths = dict(zip(keys, layout_widths(JOB_COLUMNS, 246, content), strict=True))
    assert (widths["name"], widths["project"], widths["host"]) == (40, 24, 12)
    assert widths["owner"] == 9  # its values fit: it keeps its base width
    assert 2 + sum(w + 1 for w in widths.values()) == 246
    tight = dict(zip(keys, layout_widths(JOB_COLUMNS, 110, content), strict=True))
    assert tight["name"] == 12 + (110 - 99)  # all the spare to the first in rank
    assert tight["project"] == 9 and tight["reason"] == 16


# every key at 80x24 --------------------------------------------------------------------
async def test_at_80x24_help_lists_every_key_of_every_pane() -> None:
    async with open_tui(StaticBackend(), size=(80, 24), clock=demo_clock) as (app, pilot, _):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one("#help-keys")
        keys = {str(table.get_row_at(i)[0]) for i in range(table.row_count)}  # type: ignore
        every = {key for shown in keys for key in shown.split(" / ")}
        for key in ("c", "*", "v", "l", "tab", "shift+tab", "/", "n", "N", "e", "E", "w", "y",
                    "d", "enter", "space", "h", "p", "r", "s", "R", "f", "[", "]", "esc",
                    "1", "5", "o", "O", "q", "?", "ctrl+q"):
            assert key in every, (key, sorted(every))
        assert table.size.height >= 10  # it scrolls: the rest is a key press away
