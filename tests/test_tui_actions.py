"""Marking many jobs (``*`` all shown, ``v`` invert), the stop dialog's counts by state, and
the job detail screen: everything ``apr-sched job ID`` shows, and its actions. A real
in-process scheduler running real ``sleep`` jobs, checked in the scheduler and in /proc."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from textual.widgets import DataTable

from apr_sched import JobStatus, Scheduler
from apr_sched.logs import attempt_files
from apr_tui.backend import InProcessBackend
from apr_tui.screens.confirm import ConfirmScreen
from apr_tui.screens.detail import JobDetailScreen
from apr_tui.screens.main import MainScreen
from tests.conftest import group_members, proc_state, wait_until
from tests.test_tui_support import open_tui, select, sleep_job, start_scheduler, wait_shown

NO_HOST = {"resource_request": {"host_labels": {"no": "such"}}, "allow_pending": True}


async def started(scheduler: Scheduler, job_id: str) -> int:
    async def pgid() -> int | None:
        return (await scheduler.get_job(job_id)).pgid

    value: int = await wait_until(pgid, 10, message=f"job {job_id} started")
    return value


async def test_star_marks_every_job_shown_and_stop_asks_with_counts_by_state(
        make_scheduler: Any, tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    running = [(await scheduler.submit(sleep_job(tmp_path, f"run{i}"))).job_id
               for i in range(3)]
    pgids = [await started(scheduler, job_id) for job_id in running]
    waiting = [(await scheduler.submit({"command": "true", "name": f"wait{i}", **NO_HOST})
                ).job_id for i in range(2)]
    done = (await scheduler.submit({"command": "true", "name": "done"})).job_id
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, seen):
        table = app.main.jobs
        await wait_shown(app, done, "SUCCEEDED")
        await pilot.press("asterisk")
        assert table.marked == set(running + waiting + [done])
        assert "6 marked" in str(table.border_title)
        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)
        assert dialog.question.startswith("Stop 5 jobs: 3 RUNNING, 2 PENDING?")
        assert "1 job (1 SUCCEEDED) is left as it is." in dialog.question
        assert ", ".join(running + waiting) in dialog.question
        await pilot.press("y")
        for job_id in running + waiting:
            await wait_shown(app, job_id, "STOPPED")
        await wait_until(lambda: not any(group_members(pgid) for pgid in pgids), 10)
        assert (await scheduler.get_job(done)).status is JobStatus.SUCCEEDED
        assert table.marked == set()
        assert any("stop sent to 5 jobs; 1 job (1 SUCCEEDED) left as it is" in note
                   for note in seen.notes)


async def test_star_and_v_work_on_the_jobs_shown_only(make_scheduler: Any,
                                                      tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    ids = {name: (await scheduler.submit(sleep_job(tmp_path, name))).job_id
           for name in ("blk-a1", "blk-a2", "blk-a3", "blk-b1")}
    pgids = {name: await started(scheduler, job_id) for name, job_id in ids.items()}
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        table = app.main.jobs
        await pilot.press("slash", *"blk-a", "enter")
        await wait_until(lambda: table.row_count == 3, 5)
        await select(app, pilot, ids["blk-a1"])
        await pilot.press("space")  # a1 marked, the cursor moves to a2
        await pilot.press("v")  # inverted among the jobs shown: a2, a3 (never b1)
        assert table.marked == {ids["blk-a2"], ids["blk-a3"]}
        await pilot.press("p")
        for name in ("blk-a2", "blk-a3"):
            await wait_shown(app, ids[name], "PAUSED")
        await wait_until(lambda: proc_state(pgids["blk-a2"]) == "T"
                         and proc_state(pgids["blk-a3"]) == "T", 5)
        assert proc_state(pgids["blk-a1"]) in ("S", "R")
        assert proc_state(pgids["blk-b1"]) in ("S", "R")
        await pilot.press("asterisk", "r")  # all shown: r applies to the two paused ones
        for name in ("blk-a2", "blk-a3"):
            await wait_shown(app, ids[name], "RUNNING")
        await wait_until(lambda: proc_state(pgids["blk-a2"]) in ("S", "R"), 5)
        await pilot.press("asterisk", "v")  # all, then none
        assert table.marked == set()


async def test_an_action_that_applies_to_none_of_the_marked_jobs_says_why(
        make_scheduler: Any) -> None:
    scheduler = await start_scheduler(make_scheduler)
    done = (await scheduler.submit({"command": "true", "name": "done"})).job_id
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, seen):
        await wait_shown(app, done, "SUCCEEDED")
        await pilot.press("asterisk")
        app.main.action_control("pause")  # the footer greys it out; asked anyway
        await wait_until(lambda: seen.notes, 5)
        assert f"cannot pause job {done}: it is SUCCEEDED" in seen.notes[-1]
        assert isinstance(app.screen, MainScreen)


# job detail ------------------------------------------------------------------------------
def detail_text(screen: JobDetailScreen) -> str:
    return str(screen.query_one("#detail-spec").render())


async def test_detail_shows_what_apr_sched_job_shows(make_scheduler: Any, tmp_path: Path,
                                                     state_dir: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job = await scheduler.submit({
        "command": "echo attempt $APR_ATTEMPT; exit 3", "name": "cts", "project": "P7",
        "design": "soc_top", "priority": 4, "timeout_sec": 3600, "retry_limit": 1,
        "workdir": str(tmp_path), "env": {"STAGE": "cts"}, "umask": "027",
        "output_path": "cts.%J.out", "resource_request": {"cpu": 2, "memory_gb": 1}})
    waiting = await scheduler.submit({"command": "true", "name": "starved", **NO_HOST})

    async def failed_twice() -> bool:
        found = await scheduler.get_job(job.job_id)
        return found.status is JobStatus.FAILED and found.attempt == 2

    await wait_until(failed_twice, 15, message="two attempts failed")
    async with open_tui(InProcessBackend(scheduler), size=(160, 48)) as (app, pilot, _):
        await select(app, pilot, job.job_id)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, JobDetailScreen)
        await wait_until(lambda: screen.job is not None and screen.log_path, 5)
        text = detail_text(screen)
        log = str(attempt_files(state_dir, job.job_id, 2).log)
        for name, value in [
                ("status", "FAILED: exit code 3"), ("name", "cts"), ("project", "P7"),
                ("design", "soc_top"), ("owner", job.owner), ("priority", "4"),
                ("command", "echo attempt $APR_ATTEMPT; exit 3"), ("workdir", str(tmp_path)),
                ("resources", job.resource_request.describe()), ("timeout", "1h00m (3600 s)"),
                ("retry limit", "1"), ("env", "STAGE=cts"), ("umask", "027"),
                ("output", "cts.%J.out"), ("host", "h1"), ("attempt", "2"),
                ("submitted", f"{job.submitted_at:%Y-%m-%d %H:%M:%S}"), ("started", ""),
                ("finished", ""), ("waited/ran", ""), ("exit", "3"), ("log", log)]:
            assert f"{name:>12}  {value}" in text, (name, value, text)
        attempts = screen.query_one("#detail-attempts", DataTable)
        assert attempts.row_count == 2
        rows = [[str(cell) for cell in attempts.get_row_at(i)] for i in range(2)]
        assert [(row[0], row[1], row[6]) for row in rows] == [("1", "h1", "3"), ("2", "h1", "3")]
        events = screen.query_one("#detail-events", DataTable)
        reasons = [str(events.get_row_at(i)[-1]) for i in range(events.row_count)]
        assert any("retry" in reason for reason in reasons), reasons
        await pilot.press("escape")
        await select(app, pilot, waiting.job_id)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, JobDetailScreen)
        await wait_until(lambda: screen.job is not None, 5)
        reason = (await scheduler.get_job(waiting.job_id)).pending_reason
        assert reason and f"{'status':>12}  PENDING: {reason}" in detail_text(screen)


async def test_detail_pauses_resumes_stops_and_reruns(make_scheduler: Any,
                                                      tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job = await scheduler.submit(sleep_job(tmp_path, "steered"))
    pgid = await started(scheduler, job.job_id)
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        await select(app, pilot, job.job_id)
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, JobDetailScreen)
        await wait_until(lambda: screen.job is not None, 5)
        assert screen.check_action("control", ("rerun",)) is None  # running: greyed out
        await pilot.press("p")
        await wait_until(lambda: proc_state(pgid) == "T", 5, message="SIGSTOP from detail")
        await wait_until(lambda: screen.job is not None
                         and screen.job.status is JobStatus.PAUSED, 5)
        assert screen.check_action("control", ("pause",)) is None
        await pilot.press("r")
        await wait_until(lambda: proc_state(pgid) in ("S", "R"), 5)
        await pilot.press("s")
        dialog = app.screen
        assert isinstance(dialog, ConfirmScreen)  # the same dialog as on the main screen
        assert dialog.question.startswith(f"Stop job {job.job_id} (steered, RUNNING)?")
        await pilot.press("y")
        await wait_until(lambda: not group_members(pgid), 10, message="process group gone")
        assert app.screen is screen  # back on the detail, which follows the job
        await wait_until(lambda: screen.job is not None
                         and screen.job.status is JobStatus.STOPPED, 5)
        await pilot.press("R")
        await wait_until(lambda: screen.job is not None and screen.job.attempt == 2, 10)
        await pilot.press("y")  # the log path, on the clipboard
        await wait_until(lambda: app.clipboard.endswith(f"/{job.job_id}/2.log"), 5)
