"""Pilot tests: every key and screen of the TUI against a real in-process scheduler
running real jobs (``sleep``), checked in the scheduler and in /proc, not only on screen."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from textual.widgets import DataTable, Footer

from apr_sched import JobStatus, Scheduler
from apr_sched.models import Host, utcnow
from apr_tui.app import make_app
from apr_tui.backend import InProcessBackend
from apr_tui.demo import StaticBackend, demo_clock, demo_hosts
from apr_tui.rows import format_duration
from apr_tui.screens.batch import BatchScreen
from apr_tui.screens.confirm import ConfirmScreen
from apr_tui.screens.detail import JobDetailScreen
from apr_tui.screens.help import HelpScreen
from apr_tui.screens.main import MainScreen
from apr_tui.screens.new_job import NewJobScreen
from apr_tui.screens.quit import QuitScreen
from apr_tui.widgets.hosts import HostsPane
from apr_tui.widgets.jobs import JobsTable
from tests.conftest import group_members, host, proc_state, wait_until
from tests.test_tui_support import (
    open_tui,
    press_to_exit,
    select,
    sleep_job,
    start_scheduler,
    type_at_once,
    wait_shown,
)


async def running_job(scheduler: Scheduler, tmp_path: Path, name: str = "job",
                      **extra: Any) -> tuple[str, int]:
    """Submit a ``sleep`` job and wait until its process group exists; (job id, pgid)."""
    job = await scheduler.submit(sleep_job(tmp_path, name, **extra))

    async def pgid() -> int | None:
        return (await scheduler.get_job(job.job_id)).pgid

    return job.job_id, await wait_until(pgid, 10, message=f"{name} started")


async def test_main_screen_shows_summary_hosts_jobs_and_log(make_scheduler: Any,
                                                            tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job_id, _ = await running_job(scheduler, tmp_path, "alpha")
    waiting = await scheduler.submit({"command": "true", "name": "needs-gpu",
                                      "resource_request": {"host_labels": {"gpu": "a100"}},
                                      "allow_pending": True})
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await wait_shown(app, job_id, "RUNNING")
        await wait_shown(app, waiting.job_id, "PENDING")
        table = app.main.jobs
        assert table.cell_text(job_id, "name") == "alpha"
        assert table.cell_text(job_id, "host") == "h1"
        assert table.cell_text(waiting.job_id, "reason") == "no host has label gpu=a100"
        hosts = app.main.query_one(HostsPane)
        assert hosts.row_count == 1 and str(hosts.get_cell("h1", "state")) == "ONLINE"
        assert app.book.counts[JobStatus.RUNNING] == 1
        assert app.book.counts[JobStatus.PENDING] == 1
        await select(app, pilot, job_id)
        await wait_until(lambda: "started alpha" in app.main.log_pane.lines, 5)
        # a job submitted while the app runs arrives through the event feed
        later = await scheduler.submit({"command": "true", "name": "later"})
        await wait_shown(app, later.job_id, "SUCCEEDED")


async def test_p_really_stops_the_process_and_r_resumes_it(make_scheduler: Any,
                                                          tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job_id, pgid = await running_job(scheduler, tmp_path)
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, seen):
        await select(app, pilot, job_id)
        await pilot.press("p")
        await wait_shown(app, job_id, "PAUSED")
        await wait_until(lambda: proc_state(pgid) == "T", 5, message="SIGSTOP reached the job")
        assert (await scheduler.get_job(job_id)).status is JobStatus.PAUSED
        assert app.main.check_action("control", ("pause",)) is None  # greyed out now
        await pilot.press("r")
        await wait_shown(app, job_id, "RUNNING")
        await wait_until(lambda: proc_state(pgid) in ("S", "R"), 5, message="SIGCONT")
        assert any("paused job" in note for note in seen.notes)


async def test_s_asks_first_then_stops_the_job(make_scheduler: Any, tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job_id, pgid = await running_job(scheduler, tmp_path)
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await select(app, pilot, job_id)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert isinstance(app.screen, MainScreen)
        assert (await scheduler.get_job(job_id)).status is JobStatus.RUNNING
        await pilot.press("s", "y")
        await wait_shown(app, job_id, "STOPPED")
        await wait_until(lambda: not group_members(pgid), 5, message="process group gone")


async def test_R_reruns_a_finished_job_and_earlier_attempts_stay_reachable(
        make_scheduler: Any, tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job = await scheduler.submit({"command": 'echo "this is attempt $APR_ATTEMPT"',
                                  "workdir": str(tmp_path)})
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await wait_shown(app, job.job_id, "SUCCEEDED")
        await select(app, pilot, job.job_id)
        main = app.main
        assert main.check_action("control", ("pause",)) is None
        assert main.check_action("control", ("rerun",)) is True
        await pilot.press("R")
        await wait_until(lambda: app.book.jobs[job.job_id].attempt == 2, 5)
        await wait_shown(app, job.job_id, "SUCCEEDED")
        log = main.log_pane
        await wait_until(lambda: log.attempt == 2 and "this is attempt 2" in log.lines, 5)
        await pilot.press("left_square_bracket")
        await wait_until(lambda: log.attempt == 1 and "this is attempt 1" in log.lines, 5)
        await pilot.press("right_square_bracket")
        await wait_until(lambda: log.attempt == 2 and "this is attempt 2" in log.lines, 5)


async def test_space_marks_several_jobs_and_p_pauses_all_marked(make_scheduler: Any,
                                                                tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    jobs = [await running_job(scheduler, tmp_path, f"j{i}") for i in range(3)]
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await select(app, pilot, jobs[0][0])
        await pilot.press("space", "space")  # marks j0 and j1, cursor moves down each time
        assert app.main.jobs.marked == {jobs[0][0], jobs[1][0]}
        assert "2 marked" in str(app.main.jobs.border_title)
        await pilot.press("escape")  # esc clears marks
        assert app.main.jobs.marked == set()
        await select(app, pilot, jobs[0][0])
        await pilot.press("space", "space", "p")
        for job_id, _ in jobs[:2]:
            await wait_shown(app, job_id, "PAUSED")
        await wait_until(lambda: all(proc_state(pgid) == "T" for _, pgid in jobs[:2]), 5)
        assert proc_state(jobs[2][1]) in ("S", "R")
        assert app.main.jobs.marked == set()  # an action on marked jobs clears the marks


async def test_refusals_become_notifications_not_crashes(make_scheduler: Any,
                                                         tmp_path: Path) -> None:
    """Pausing a job that is being stopped is refused by the scheduler; with another job
    marked, one succeeds and one is refused."""
    scheduler = await start_scheduler(make_scheduler, hosts=[host("h1")], stop_grace_sec=60)
    stopping = await scheduler.submit({"command": "trap '' TERM; echo armed; sleep 300"})
    remote_id = stopping.job_id

    async def armed() -> bool:
        return (await scheduler.tail_log(remote_id)).lines == ["armed"]

    await wait_until(armed, 10)
    await scheduler.stop(remote_id)  # it ignores SIGTERM: RUNNING until the SIGKILL
    local_id, local_pgid = await running_job(scheduler, tmp_path, "local")
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, seen):
        await wait_shown(app, remote_id, "RUNNING")
        await select(app, pilot, remote_id)
        await pilot.press("p")
        await wait_until(lambda: seen.errors, 5, message="a refusal notification")
        assert "pause refused" in seen.errors[0] and "being stopped" in seen.errors[0]
        assert (await scheduler.get_job(remote_id)).status is JobStatus.RUNNING
        await pilot.press("space")
        await select(app, pilot, local_id)
        await pilot.press("space", "p")
        await wait_shown(app, local_id, "PAUSED")
        await wait_until(lambda: len(seen.errors) == 2, 5)
        await wait_until(lambda: proc_state(local_pgid) == "T", 5)
        assert app.is_running


async def test_status_views_text_filter_and_sort(make_scheduler: Any, tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    run_id, _ = await running_job(scheduler, tmp_path, "alpha-route", project="P1")
    ok = await scheduler.submit({"command": "true", "name": "beta-cts", "project": "P2"})
    bad = await scheduler.submit({"command": "exit 3", "name": "gamma-place", "project": "P2"})
    held = await scheduler.submit({"command": "true", "name": "delta", "project": "P1",
                                   "resource_request": {"host_labels": {"no": "such"}},
                                   "allow_pending": True})
    await scheduler.pause(held.job_id)
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        table = app.main.jobs
        await wait_shown(app, bad.job_id, "FAILED")
        await wait_shown(app, ok.job_id, "SUCCEEDED")
        views = {"2": {held.job_id}, "3": {run_id}, "4": {bad.job_id}, "5": {ok.job_id},
                 "1": {run_id, ok.job_id, bad.job_id, held.job_id}}
        for key, shown in views.items():
            await pilot.press(key)
            assert set(table.keys) == shown, key
        await pilot.press("slash")
        await pilot.press(*"p2")
        await wait_until(lambda: set(table.keys) == {ok.job_id, bad.job_id}, 3)
        await pilot.press("enter")  # keep the filter, back to the table
        assert table.has_focus and "/p2" in str(table.border_title)
        await pilot.press("slash", "escape")
        await wait_until(lambda: table.row_count == 4, 3)
        await pilot.press("o", "o")  # sort by id, then by name
        assert table.sort_column == "name"
        assert [app.book.jobs[k].name for k in table.keys] == [
            "alpha-route", "beta-cts", "delta", "gamma-place"]
        await pilot.press("O")
        assert table.keys[0] == bad.job_id


async def test_status_change_moves_a_job_out_of_its_view(make_scheduler: Any,
                                                         tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job_id, _ = await running_job(scheduler, tmp_path)
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await pilot.press("3")
        await wait_until(lambda: app.main.jobs.keys == [job_id], 5)
        await scheduler.stop(job_id)
        await wait_until(lambda: app.main.jobs.row_count == 0, 5)
        await pilot.press("5")
        await wait_until(lambda: app.main.jobs.keys == [job_id], 5)


async def test_enter_opens_detail_with_spec_attempts_and_timeline(make_scheduler: Any,
                                                                  tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job_id, _ = await running_job(scheduler, tmp_path, "detailed", priority=7)
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await select(app, pilot, job_id)
        await pilot.press("enter")
        assert isinstance(app.screen, JobDetailScreen)
        screen = app.screen
        await wait_until(lambda: screen.job is not None, 5)
        spec = str(screen.query_one("#detail-spec").render())
        assert "detailed" in spec and "sleep 30" in spec
        events = screen.query_one("#detail-events", DataTable)
        assert events.row_count >= 2  # submitted, dispatched
        await scheduler.pause(job_id)  # the screen follows changes while open
        await wait_until(lambda: screen.job is not None
                         and screen.job.status is JobStatus.PAUSED, 5)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_n_form_shows_errors_beside_fields_then_submits(make_scheduler: Any,
                                                             tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await pilot.press("n")
        form = app.screen
        assert isinstance(form, NewJobScreen)
        await pilot.press("enter")  # empty command
        assert "command" in form.errors
        await pilot.press(*"sleep 30")
        form.query_one("#field-workdir").value = "relative/dir"  # type: ignore[attr-defined]
        form.query_one("#field-priority").value = "high"  # type: ignore[attr-defined]
        form.query_one("#field-cpu").value = "-1"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        assert form.errors["priority"] == "must be a whole number"
        form.query_one("#field-priority").value = "3"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        assert set(form.errors) == {"workdir", "cpu"}
        assert "absolute" in str(form.query_one("#error-workdir").render())
        assert str(form.query_one("#error-cpu").render()) == "must be >= 0"
        form.query_one("#field-workdir").value = str(tmp_path)  # type: ignore[attr-defined]
        form.query_one("#field-cpu").value = "2"  # type: ignore[attr-defined]
        form.query_one("#field-env").value = "STAGE=route"  # type: ignore[attr-defined]
        await pilot.press("ctrl+s")
        await wait_until(lambda: isinstance(app.screen, MainScreen), 5)
        page = await scheduler.list_jobs()
        assert len(page.jobs) == 1
        job = page.jobs[0]
        assert (job.command, job.priority, job.resource_request.cpu, job.env) == (
            "sleep 30", 3, 2, {"STAGE": "route"})
        assert app.main.jobs.cursor_key == job.job_id


async def test_b_submits_a_batch_file_all_or_nothing(make_scheduler: Any,
                                                     tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"jobs": [{"command": "true", "name": f"b{i}"}
                                         for i in range(3)]}))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"command": "true"}, {"command": "true", "retry_limt": 1}]))
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, seen):
        await pilot.press("b")
        dialog = app.screen
        assert isinstance(dialog, BatchScreen)
        dialog.query_one("#batch-path").value = str(bad)  # type: ignore[attr-defined]
        await pilot.press("enter")
        error = dialog.query_one("#batch-error")
        await wait_until(lambda: "jobs[1].retry_limt: unknown field" in str(error.render()), 5)
        assert (await scheduler.list_jobs()).total == 0
        dialog.query_one("#batch-path").value = str(good)  # type: ignore[attr-defined]
        await pilot.press("enter")
        await wait_until(lambda: isinstance(app.screen, MainScreen), 5)
        await wait_until(lambda: app.main.jobs.row_count == 3, 5)
        assert any("queued 3 job(s)" in note for note in seen.notes)


async def test_f_toggles_following_the_log(make_scheduler: Any, tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job = await scheduler.submit({"command": "for i in 1 2 3; do echo line$i; sleep 0.1; done;"
                                             " sleep 30", "workdir": str(tmp_path)})
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await select(app, pilot, job.job_id)
        pane = app.main.log_pane
        await wait_until(lambda: "line3" in pane.lines, 5, message="live log")
        assert pane.follow and "following" in str(pane.border_title)
        await pilot.press("f")
        assert not pane.follow and "paused" in str(pane.border_title)
        await pilot.press("f")
        assert pane.follow


async def test_question_mark_lists_every_key(make_scheduler: Any) -> None:
    scheduler = await start_scheduler(make_scheduler)
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        table = app.screen.query_one("#help-keys", DataTable)
        keys = {str(table.get_row_at(i)[0]) for i in range(table.row_count)}
        for key in ("p", "r", "s", "R", "space", "n", "b", "/", "enter", "f", "?", "q",
                    "1", "2", "3", "4", "5", "o", "O", "[", "]", "esc"):
            assert any(key in shown.split(" / ") for shown in keys), (key, keys)
        await pilot.press("escape")
        assert isinstance(app.screen, MainScreen)


async def test_q_with_running_jobs_asks_and_detach_leaves_them_running(
        make_scheduler: Any, tmp_path: Path, state_dir: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job_id, pgid = await running_job(scheduler, tmp_path)
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        await pilot.press("c")  # cancel: still here
        assert isinstance(app.screen, MainScreen) and app.is_running
        await pilot.press("q")
        assert app.focused is not None and app.focused.id == "detach"  # the default
        press_to_exit(app, "enter")
        await wait_until(lambda: not app.is_running, 10, message="app exited")
    assert app.return_value == "detach"
    assert proc_state(pgid) in ("S", "R"), "a detached job keeps running"
    again = await start_scheduler(make_scheduler, state_dir=state_dir)
    assert (await again.get_job(job_id)).status is JobStatus.RUNNING  # found again
    await again.stop(job_id)


async def test_q_stop_all_stops_running_jobs_before_quitting(make_scheduler: Any,
                                                             tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    jobs = [await running_job(scheduler, tmp_path, f"j{i}") for i in range(2)]
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await wait_shown(app, jobs[1][0], "RUNNING")
        await pilot.press("q")
        press_to_exit(app, "s")
        await wait_until(lambda: not app.is_running, 15, message="app exited")
    assert app.return_value == "stop"
    for _, pgid in jobs:
        assert not group_members(pgid)


async def test_q_without_running_jobs_quits_at_once(make_scheduler: Any) -> None:
    scheduler = await start_scheduler(make_scheduler)
    async with open_tui(InProcessBackend(scheduler)) as (app, _pilot, _):
        press_to_exit(app, "q")
        await wait_until(lambda: not app.is_running, 5)
    assert app.return_value == "detach"


async def test_cursor_keys_and_footer_follow_the_selection(make_scheduler: Any,
                                                           tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job_id, _ = await running_job(scheduler, tmp_path, "runs")
    done = await scheduler.submit({"command": "true", "name": "done"})
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await wait_shown(app, done.job_id, "SUCCEEDED")
        table = app.main.query_one(JobsTable)
        await pilot.press("home")
        assert table.cursor_key == job_id
        assert app.main.check_action("control", ("pause",)) is True
        assert app.main.check_action("control", ("rerun",)) is None
        await pilot.press("down")
        assert table.cursor_key == done.job_id
        assert app.main.check_action("control", ("pause",)) is None
        assert app.main.check_action("stop", ()) is None
        assert app.main.check_action("control", ("rerun",)) is True



async def test_the_app_starts_an_unstarted_scheduler_itself(state_dir: Path) -> None:
    scheduler = Scheduler(state_dir, hosts=[host("h1")], stop_grace_sec=2.0)
    try:
        async with open_tui(InProcessBackend(scheduler)) as (app, _pilot, _):
            job = await scheduler.submit({"command": "true", "name": "first"})
            await wait_shown(app, job.job_id, "SUCCEEDED")
    finally:
        await scheduler.close(stop_jobs=True)


async def test_a_scheduler_that_cannot_start_ends_the_app_with_its_reason(
        make_scheduler: Any, state_dir: Path) -> None:
    await start_scheduler(make_scheduler)  # holds the state dir
    second = InProcessBackend(Scheduler(state_dir, hosts=[host("h1")]))
    app = make_app(second)
    async with app.run_test(size=(80, 24)):
        await wait_until(lambda: not app.is_running, 10)
    assert app.return_code == 2


async def test_n_form_typed_in_one_burst_lands_in_the_right_fields(make_scheduler: Any,
                                                                   tmp_path: Path) -> None:
    """``n``, three fields with Tab between them and enter, all queued before the app handles
    the first key (as ``tmux send-keys`` delivers them): each key goes where the focus is
    when it is its turn, not where it was when the burst arrived."""
    scheduler = await start_scheduler(make_scheduler)
    async with open_tui(InProcessBackend(scheduler)) as (app, _pilot, _):
        command = "echo from-form $APR_HOST; sleep 20"
        type_at_once(app, "n", *command, "tab", *str(tmp_path), "tab", *"burst-job", "enter")

        async def submitted() -> Any:
            return (await scheduler.list_jobs()).jobs

        jobs = await wait_until(submitted, 10, message="the form was submitted")
        assert (jobs[0].command, jobs[0].workdir, jobs[0].name) == (
            command, str(tmp_path), "burst-job")
        await wait_until(lambda: isinstance(app.screen, MainScreen), 5)
        assert app.main.jobs.sort_column is None  # no letter reached the jobs table ("o")


async def test_followed_log_keeps_following_after_a_resize(make_scheduler: Any,
                                                           tmp_path: Path) -> None:
    """160x48 -> 80x24 shortens the log pane: it must still show the newest lines as they
    come, without pressing f (it used to stay where it was)."""
    scheduler = await start_scheduler(make_scheduler)
    job = await scheduler.submit({"command": "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); "
                                             "echo tick $i; sleep 0.02; done",
                                  "workdir": str(tmp_path)})
    async with open_tui(InProcessBackend(scheduler), size=(160, 48)) as (app, pilot, _):
        await select(app, pilot, job.job_id)
        view = app.main.log_pane.view

        def at_end() -> bool:
            return view.line_count > 0 and view.scroll_offset.y == view.max_scroll_y

        await wait_until(lambda: view.line_count >= 30 and at_end(), 10, message="30 lines")
        for size in ((80, 24), (160, 48), (80, 24)):
            await pilot.resize_terminal(*size)
            count = view.line_count
            await wait_until(lambda count=count: view.line_count >= count + 10, 10,
                             message="more lines after the resize")
            await wait_until(at_end, 2, message=f"the newest line in view at {size}")
            assert app.main.log_pane.follow


async def test_a_batch_submitted_meanwhile_appears_in_submit_order(make_scheduler: Any) -> None:
    scheduler = await start_scheduler(make_scheduler)
    first = await scheduler.submit({"command": "true", "name": "before"})
    async with open_tui(InProcessBackend(scheduler)) as (app, _pilot, _):
        await wait_shown(app, first.job_id, "SUCCEEDED")
        table = app.main.jobs
        for size in (100, 20):  # paged in (a batch), and fetched by id (a few)
            batch = await scheduler.submit_batch(
                [{"command": "true", "name": f"blk{i:03d}", "allow_pending": True,
                  "resource_request": {"host_labels": {"no": "such"}}} for i in range(size)])
            ids = [job.job_id for job in batch]
            await wait_until(lambda ids=ids: all(table.has_row(i) for i in ids), 10)
            assert table.keys == sorted(table.keys, key=int), table.keys[:20]


async def test_views_and_the_text_filter_compose_visibly_and_esc_clears_the_filter(
        make_scheduler: Any, tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    run_id, _ = await running_job(scheduler, tmp_path, "blk007-route")
    done = await scheduler.submit({"command": "true", "name": "blk007-cts"})
    other = await scheduler.submit({"command": "true", "name": "blk008-cts"})
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, seen):
        table = app.main.jobs
        await wait_shown(app, other.job_id, "SUCCEEDED")
        await wait_shown(app, done.job_id, "SUCCEEDED")
        await pilot.press("slash", *"blk007", "enter")
        await wait_until(lambda: set(table.keys) == {run_id, done.job_id}, 3)
        await pilot.press("3")
        assert set(table.keys) == {run_id}
        title = str(table.border_title)
        assert "view running" in title and "filter /blk007 (esc clears)" in title, title
        await pilot.press("1")  # all states, the filter still applies, and says so
        assert set(table.keys) == {run_id, done.job_id}
        title = str(table.border_title)
        assert "view all" in title and "filter /blk007 (esc clears)" in title, title
        assert any("filter /blk007 still applies" in note for note in seen.notes)
        await pilot.press("escape")  # one key: the filter is gone
        assert set(table.keys) == {run_id, done.job_id, other.job_id}
        assert "filter" not in str(table.border_title)
        assert not app.main.filter_bar.has_class("-active") and app.main.filter_bar.value == ""
        await pilot.press("space", "escape")  # with marks, esc clears the marks first
        assert table.marked == set()


async def test_paused_run_time_stands_still_and_matches_the_scheduler(
        make_scheduler: Any, tmp_path: Path) -> None:
    """The TUI's clock is moved on by hand (75 s while paused): the paused run time stands
    still at the scheduler's ``run_sec``; running again, it is the scheduler's ``run_sec``
    + time since ``resumed_at`` (paused time left out, as the timeout counts it)."""
    scheduler = await start_scheduler(make_scheduler)
    job_id, _ = await running_job(scheduler, tmp_path)
    ahead = [timedelta(0)]

    def clock() -> datetime:
        return utcnow() + ahead[0]

    async with open_tui(InProcessBackend(scheduler), clock=clock) as (app, pilot, _):
        table = app.main.jobs
        await select(app, pilot, job_id)
        await pilot.press("p")
        await wait_shown(app, job_id, "PAUSED")
        paused = await scheduler.get_job(job_id)
        assert paused.resumed_at is None and paused.run_sec > 0
        shown = "r " + format_duration(paused.run_sec)
        await wait_until(lambda: table.cell_text(job_id, "time") == shown, 5)
        ahead[0] = timedelta(seconds=75)
        app.main.tick(app.clock())
        assert table.cell_text(job_id, "time") == shown  # not r 1m15s
        await pilot.press("r")
        await wait_shown(app, job_id, "RUNNING")
        resumed = await scheduler.get_job(job_id)
        assert resumed.resumed_at is not None and resumed.run_sec == paused.run_sec
        ahead[0] = timedelta(seconds=150)
        now = app.clock()
        app.main.tick(now)
        ran = resumed.run_sec + (now - resumed.resumed_at).total_seconds()
        assert table.cell_text(job_id, "time") == "r " + format_duration(ran)


async def test_a_mouse_sort_on_a_header_is_named_in_the_title(make_scheduler: Any) -> None:
    scheduler = await start_scheduler(make_scheduler)
    for name in ("b-job", "a-job"):
        await scheduler.submit({"command": "true", "name": name})
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        table = app.main.jobs
        await wait_until(lambda: table.row_count == 2, 5)
        await pilot.press("o")  # sort by id from the keyboard first
        assert "sort id" in str(table.border_title)
        name = (1 + 2 + 6 + 2, 1)  # header line: border, gutter, ID and a space, into NAME
        await pilot.click(JobsTable, offset=name)
        assert table.sort_column == "name"
        assert "sort name" in str(table.border_title) and "sort id" not in str(
            table.border_title)
        await pilot.click(JobsTable, offset=name)
        assert table.sort_reverse and "sort name desc" in str(table.border_title)


def seven_hosts() -> list[Host]:
    """The demo's four hosts and three more; pnr-04 is OFFLINE with its reason."""
    hosts = demo_hosts()
    for index in range(5, 8):
        extra = hosts[0].model_copy()
        extra.host_id = f"pnr-{index:02d}"
        hosts.append(extra)
    hosts[3].state_reason = "missed heartbeats: last seen 95 s ago"  # not the demo's own
    return hosts


async def test_hosts_pane_fits_its_hosts_and_shows_why_one_is_offline() -> None:
    for size in ((160, 48), (250, 60)):
        backend = StaticBackend(hosts=seven_hosts())
        async with open_tui(backend, size=size, clock=demo_clock) as (app, pilot, _):
            pane = app.main.query_one(HostsPane)
            await wait_until(lambda pane=pane: pane.row_count == 7, 5)
            await pilot.pause()
            assert pane.max_scroll_y == 0, f"a host hides behind the scrollbar at {size}"
            assert str(pane.get_cell("pnr-04", "reason")) == \
                "missed heartbeats: last seen 95 s ago"
            assert "pnr-04 OFFLINE: missed heartbeats" in str(pane.border_subtitle)
            assert "7 hosts" in str(pane.border_title) and "1 offline" in str(
                pane.border_title)


async def test_at_80x24_every_key_shows_and_jobs_and_log_get_the_room() -> None:
    """The footer keeps every key (two lines when one is too narrow), the hosts pane
    folds away (h brings it back; the summary still counts hosts and names trouble), at
    least 9 job rows and 6 log lines fit, and a cut pending reason is shown whole in the
    log pane."""
    backend = StaticBackend(hosts=seven_hosts())
    async with open_tui(backend, size=(80, 24), clock=demo_clock) as (app, pilot, _):
        main = app.main
        await wait_until(lambda: main.log_pane.lines, 5)
        await pilot.pause()
        footer = main.query_one(Footer)
        shown = {key.key_display: key.description  # type: ignore[attr-defined]
                 for key in footer.query("FooterKey")
                 if key.region.width and footer.region.contains_region(key.region)}
        for key, description in (("p", "Pause"), ("s", "Stop"), ("n", "New"),
                                 ("b", "Batch"), ("q", "Quit"), ("?", "Help"),
                                 ("h", "Hosts"), ("/", "Filter")):
            assert shown.get(key) == description, (key, shown)
        hosts = main.query_one(HostsPane)
        assert not hosts.display
        summary = str(main.summary.render())
        assert "1 offline" in summary and "pnr-04" in summary
        assert main.jobs.size.height - 1 >= 9, main.jobs.size
        assert main.log_pane.view.size.height >= 6, main.log_pane.view.size
        await select(app, pilot, "16")  # its reason does not fit the REASON column
        reason = app.book.jobs["16"].pending_reason
        assert reason is not None and len(reason) > main.jobs.column_width("reason")
        await wait_until(lambda: " ".join(main.log_pane.lines).endswith(reason), 5)
        await pilot.press("h")
        assert hosts.display and hosts.size.height >= 2
        await pilot.press("h")
        assert not hosts.display


async def test_filter_fields_negation_errors_and_a_filter_that_matches_nothing() -> None:
    async with open_tui(StaticBackend(), clock=demo_clock) as (app, pilot, _):
        main, table = app.main, app.main.jobs
        await wait_until(lambda: table.row_count == 16, 5)

        async def filter_by(text: str, bad: bool = False) -> None:
            main.filter_bar.value = text
            await wait_until(lambda: bool(main.filter_error) if bad
                             else main.job_filter.text == text and not main.filter_error, 3)
            await pilot.pause()

        await pilot.press("slash")
        await filter_by("status:fail,time owner:mei")
        assert table.keys == ["7"]
        await filter_by("owner:arjun !status:pending")
        assert table.keys == ["3", "11", "12", "15"]
        await filter_by("stat:FAILED", bad=True)  # a typo: says so, and keeps the last good filter
        assert table.keys == ["3", "11", "12", "15"]
        assert "filter error: no filter field 'stat'" in str(table.border_title)
        assert main.filter_bar.has_class("-invalid")
        await filter_by("nosuchthing")
        assert table.row_count == 0 and "filter error" not in str(table.border_title)
        assert table.empty_message == "no job matches /nosuchthing (esc clears the filter)"
        rendered = "".join(segment.text for segment in table.render_line(1))
        assert "no job matches /nosuchthing" in rendered
        await pilot.press("escape")
        assert table.row_count == 16
