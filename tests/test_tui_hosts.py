"""Hosts as rows: select one in the hosts pane, show its jobs (``enter``: the jobs table
filtered by ``host:ID``), describe it (``d``: state reason and the figures its heartbeat
reported). A real in-process scheduler; figures come through ``Scheduler.heartbeat``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apr_sched import HostState
from apr_tui.backend import InProcessBackend
from apr_tui.screens.host_detail import HostDetailScreen
from apr_tui.screens.main import MainScreen
from apr_tui.widgets.hosts import HostsPane
from tests.conftest import host, wait_until
from tests.test_tui_support import open_tui, sleep_job, start_scheduler, wait_shown

SIZE = (120, 40)
"""Tall enough that the hosts pane shows from the start."""


def host_fields(screen: HostDetailScreen) -> str:
    return str(screen.query_one("#host-fields").render())


async def test_a_host_row_shows_its_jobs_and_its_figures(make_scheduler: Any,
                                                         tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler, hosts=[host("h1", tool="a"),
                                                             host("h2", tool="b")])
    on = {}
    for name, tool in (("on-h1", "a"), ("on-h2", "b")):
        job = await scheduler.submit(sleep_job(tmp_path, name,
                                               resource_request={"host_labels": {"tool": tool}}))
        on[name] = job.job_id
    await scheduler.heartbeat("h2", {"load_avg_1m": 3.25, "free_memory_gb": 20.5,
                                     "free_disk_gb": 300})
    async with open_tui(InProcessBackend(scheduler), size=SIZE) as (app, pilot, _):
        main, table = app.main, app.main.jobs
        for job_id in on.values():
            await wait_shown(app, job_id, "RUNNING")
        pane = main.query_one(HostsPane)
        await wait_until(lambda: pane.row_count == 2 and pane.display, 5)
        await pilot.press("shift+tab")  # from the jobs table back to the hosts pane
        assert app.focused is pane
        await pilot.press("down")
        assert pane.cursor_host is not None and pane.cursor_host.host_id == "h2"
        subtitle = str(pane.border_subtitle)
        assert subtitle.startswith("h2 ONLINE · load 3.25 · 20.5 GB memory free · spool "
                                   "300.0 GB free · heartbeat"), subtitle
        await pilot.press("enter")  # its jobs
        assert app.focused is table
        assert table.keys == [on["on-h2"]]
        assert "filter /host:h2 (esc clears)" in str(table.border_title)
        await pilot.press("escape")
        assert set(table.keys) == set(on.values())
        await pilot.press("shift+tab", "up", "d")  # describe h1
        screen = app.screen
        assert isinstance(screen, HostDetailScreen) and screen.host_id == "h1"
        fields = host_fields(screen)
        assert "running jobs  1" in fields and "labels  tool=a" in fields
        assert "load average  not reported" in fields  # a local host sends no figures
        await pilot.press("escape", "down", "d")
        screen = app.screen
        assert isinstance(screen, HostDetailScreen) and screen.host_id == "h2"
        fields = host_fields(screen)
        for line in ("state  ONLINE", "load average  3.25 (1 minute)",
                     "free memory  20.5 GB", "spool free  300.0 GB", "slots  1 of 4 used",
                     "reached by  this machine"):
            assert line in fields, (line, fields)
        await pilot.press("j")  # its jobs, from the detail
        assert isinstance(app.screen, MainScreen)
        await wait_until(lambda: table.keys == [on["on-h2"]], 5)
        # no drain/close/open keys until the host policy brings them
        actions = {binding.action for binding in HostsPane.BINDINGS}  # type: ignore[union-attr]
        assert actions == {"show_jobs", "describe"}


async def test_a_host_that_went_offline_says_why_when_selected(make_scheduler: Any) -> None:
    scheduler = await start_scheduler(make_scheduler, hosts=[host("h1"), host("beat")],
                                      heartbeat_timeout_sec=0.3)
    await scheduler.heartbeat("beat", {"load_avg_1m": 0.5})  # then silence: OFFLINE
    async with open_tui(InProcessBackend(scheduler), size=SIZE, hosts_interval=0.2) as (
            app, pilot, _):
        pane = app.main.query_one(HostsPane)

        def beat_offline() -> bool:
            found = pane.hosts.get("beat")
            return found is not None and found.state is HostState.OFFLINE

        await wait_until(beat_offline, 10, message="the host went OFFLINE on screen")
        await pilot.press("shift+tab")
        if pane.cursor_host is not None and pane.cursor_host.host_id != "beat":
            await pilot.press("down")
        assert pane.cursor_host is not None and pane.cursor_host.host_id == "beat"
        assert str(pane.border_subtitle).startswith("beat OFFLINE: no heartbeat for 0.3s")
        await pilot.press("d")
        screen = app.screen
        assert isinstance(screen, HostDetailScreen)
        assert "state  OFFLINE  no heartbeat for 0.3s" in host_fields(screen)
        assert "load average  0.50" in host_fields(screen)


async def test_h_shows_and_selects_the_hosts_pane_on_a_short_screen(make_scheduler: Any) -> None:
    scheduler = await start_scheduler(make_scheduler)
    async with open_tui(InProcessBackend(scheduler), size=(80, 24)) as (app, pilot, _):
        pane = app.main.query_one(HostsPane)
        assert not pane.display
        await pilot.press("h")
        await wait_until(lambda: app.focused is pane, 5)
        await pilot.press("h")
        assert not pane.display and app.focused is app.main.jobs
