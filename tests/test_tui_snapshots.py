"""Snapshot tests on frozen demo data with a frozen clock (``apr_tui.demo``): the main
screen, job detail, a selected and described host and a log search at 80x24, 160x48 and
250x60; the new-job form with errors, help, the column chooser and the stop dialog with
counts by state at 80x24 and 160x48.

Plain ``def`` tests (pytest-textual-snapshot runs the app itself). After an intended change
of the look, review the report, then ``pytest tests/test_tui_snapshots.py --snapshot-update``.
"""

from __future__ import annotations

from typing import Any

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from apr_tui.app import AprTui, make_app
from apr_tui.demo import DEMO_OWNER, StaticBackend, demo_clock
from apr_tui.screens.detail import JobDetailScreen
from tests.conftest import wait_until

SIZES = [pytest.param((80, 24), id="80x24"), pytest.param((160, 48), id="160x48")]
MAIN_SIZES = [*SIZES, pytest.param((250, 60), id="250x60")]


def demo_app() -> AprTui:
    return make_app(StaticBackend(), clock=demo_clock, owner=DEMO_OWNER)


async def loaded(pilot: Pilot[Any]) -> None:
    app = pilot.app
    assert isinstance(app, AprTui)
    await wait_until(app.loaded.is_set, 10)
    await wait_until(lambda: app.main.log_pane.lines, 5)
    await pilot.pause()


@pytest.mark.parametrize("size", MAIN_SIZES)
def test_main_screen(snap_compare: Any, size: tuple[int, int]) -> None:
    assert snap_compare(demo_app(), terminal_size=size, run_before=loaded)


@pytest.mark.parametrize("size", MAIN_SIZES)
def test_job_detail(snap_compare: Any, size: tuple[int, int]) -> None:
    async def open_detail(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("enter")
        screen = pilot.app.screen
        assert isinstance(screen, JobDetailScreen)
        await wait_until(lambda: screen.job is not None, 5)
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=size, run_before=open_detail)


@pytest.mark.parametrize("size", SIZES)
def test_new_job_form_with_errors(snap_compare: Any, size: tuple[int, int]) -> None:
    async def fill_badly(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("n")
        form = pilot.app.screen
        for field in form.query(Input):
            field.cursor_blink = False
        values = {"command": "innovus -init place.tcl", "workdir": "runs/place",
                  "priority": "high", "cpu": "-4", "host_labels": "tool"}
        for name, value in values.items():
            form.query_one(f"#field-{name}", Input).value = value
        await pilot.press("ctrl+s")
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=size, run_before=fill_badly)


@pytest.mark.parametrize("size", SIZES)
def test_help(snap_compare: Any, size: tuple[int, int]) -> None:
    async def open_help(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=size, run_before=open_help)


@pytest.mark.parametrize("size", SIZES)
def test_column_chooser(snap_compare: Any, size: tuple[int, int]) -> None:
    async def open_chooser(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("c", "down", "space", "J")  # NAME hidden, moved below PROJECT
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=size, run_before=open_chooser)


@pytest.mark.parametrize("size", MAIN_SIZES)
def test_host_selected_and_described(snap_compare: Any, size: tuple[int, int]) -> None:
    async def describe(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        app = pilot.app
        assert isinstance(app, AprTui)
        if not app.main.hosts.display:
            await pilot.press("h")
        else:
            await pilot.press("shift+tab")
        await wait_until(lambda: app.focused is app.main.hosts, 5)
        await pilot.press("down", "d")
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=size, run_before=describe)


@pytest.mark.parametrize("size", MAIN_SIZES)
def test_log_search_highlights_the_match(snap_compare: Any, size: tuple[int, int]) -> None:
    async def search(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        app = pilot.app
        assert isinstance(app, AprTui)
        pane = app.main.log_pane
        pane.search_bar.cursor_blink = False
        await pilot.press("l", "slash", *"violations", "enter")
        await wait_until(lambda: pane.hit is not None and not pane.searching, 5)
        if size[0] == 80:
            await pilot.press("w")  # and wrapped, where lines are cut
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=size, run_before=search)


@pytest.mark.parametrize("size", SIZES)
def test_stop_dialog_counts_marked_jobs_by_state(snap_compare: Any,
                                                 size: tuple[int, int]) -> None:
    async def ask(pilot: Pilot[Any]) -> None:
        await loaded(pilot)
        await pilot.press("asterisk", "s")
        await pilot.pause()

    assert snap_compare(demo_app(), terminal_size=size, run_before=ask)
