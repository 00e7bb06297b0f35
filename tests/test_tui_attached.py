"""The attached TUI against a live daemon endpoint (HttpService on 127.0.0.1, port 0):
same screens and keys, events through the long-poll; and how ``apr-tui`` picks a backend."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apr_sched import JobStatus, Scheduler
from apr_sched.client import AuthFailed, find_token
from apr_sched.http.service import HttpService
from apr_tui.backend import AttachedBackend, InProcessBackend
from apr_tui.cli import build_parser, open_backend, parse_http
from apr_tui.screens.confirm import ConfirmScreen
from apr_tui.screens.main import MainScreen
from apr_tui.screens.quit import QuitScreen
from tests.conftest import group_members, proc_state, wait_until
from tests.test_tui_support import (
    daemon_process,
    open_tui,
    press_to_exit,
    select,
    sleep_job,
    start_scheduler,
    wait_shown,
)


@pytest.fixture
async def daemon(make_scheduler: Any) -> AsyncIterator[tuple[Scheduler, HttpService]]:
    scheduler = await start_scheduler(make_scheduler)
    service = HttpService(scheduler, "127.0.0.1", 0)
    await service.start()
    yield scheduler, service
    await service.close()


def attached(scheduler: Scheduler, service: HttpService) -> AttachedBackend:
    """Short long-polls: the daemon's close waits for requests in flight."""
    return AttachedBackend(service.url, find_token(None, scheduler.state_dir),
                           long_poll_sec=0.5)


async def pgid_of(scheduler: Scheduler, job_id: str) -> int:
    async def pgid() -> int | None:
        return (await scheduler.get_job(job_id)).pgid

    value: int = await wait_until(pgid, 10, message=f"job {job_id} started")
    return value


async def test_attached_shows_state_and_follows_events(daemon: Any, tmp_path: Path) -> None:
    scheduler, service = daemon
    first = await scheduler.submit(sleep_job(tmp_path, "first"))
    await pgid_of(scheduler, first.job_id)
    async with open_tui(attached(scheduler, service)) as (app, pilot, _):
        assert app.backend.attached
        assert "attached" in str(app.main.query_one("#summary").render())
        await wait_shown(app, first.job_id, "RUNNING")
        await select(app, pilot, first.job_id)
        await wait_until(lambda: "started first" in app.main.log_pane.lines, 5)
        later = await scheduler.submit({"command": "true", "name": "later"})
        await wait_shown(app, later.job_id, "SUCCEEDED")  # via GET /events long-poll


async def test_attached_keys_act_on_the_real_processes(daemon: Any, tmp_path: Path) -> None:
    scheduler, service = daemon
    job = await scheduler.submit(sleep_job(tmp_path))
    pgid = await pgid_of(scheduler, job.job_id)
    async with open_tui(attached(scheduler, service)) as (app, pilot, seen):
        await select(app, pilot, job.job_id)
        await pilot.press("p")
        await wait_shown(app, job.job_id, "PAUSED")
        await wait_until(lambda: proc_state(pgid) == "T", 5, message="SIGSTOP over HTTP")
        await pilot.press("r")
        await wait_shown(app, job.job_id, "RUNNING")
        await wait_until(lambda: proc_state(pgid) in ("S", "R"), 5)
        await pilot.press("s")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_shown(app, job.job_id, "STOPPED")
        assert not group_members(pgid)
        await pilot.press("R")
        await wait_until(lambda: app.book.jobs[job.job_id].attempt == 2, 5)
        await pilot.press("p")  # pause or hold: whichever state the rerun is in now
        await wait_until(lambda: seen.notes and app.book.jobs[job.job_id].status in (
            JobStatus.PAUSED, JobStatus.HELD), 5)


async def test_attached_new_job_and_refusal_notification(make_scheduler: Any,
                                                         tmp_path: Path) -> None:
    """A marked job p does not apply to is left out (and said so); a job the daemon refuses
    to pause (it is being stopped: it ignores SIGTERM) is a 409, shown with its reason."""
    scheduler = await start_scheduler(make_scheduler, stop_grace_sec=60)
    service = HttpService(scheduler, "127.0.0.1", 0)
    await service.start()
    try:
        running = await scheduler.submit(sleep_job(tmp_path, "runner"))
        pgid = await pgid_of(scheduler, running.job_id)
        stopping = await scheduler.submit({"command": "trap '' TERM; echo armed; sleep 300",
                                           "name": "stubborn"})

        async def armed() -> bool:
            return (await scheduler.tail_log(stopping.job_id)).lines == ["armed"]

        await wait_until(armed, 10)
        async with open_tui(attached(scheduler, service)) as (app, pilot, seen):
            await pilot.press("n")
            form = app.screen
            form.query_one("#field-command").value = "true"  # type: ignore[attr-defined]
            form.query_one("#field-name").value = "over-http"  # type: ignore[attr-defined]
            await pilot.press("ctrl+s")
            await wait_until(lambda: app.main.jobs.row_count == 3, 5)
            done = next(j for j in (await scheduler.list_jobs()).jobs if j.name == "over-http")
            await wait_shown(app, done.job_id, "SUCCEEDED")
            # mark both: p applies to the running one; the finished one is left out
            await select(app, pilot, running.job_id)
            await pilot.press("space")
            await select(app, pilot, done.job_id)
            await pilot.press("space", "p")
            await wait_shown(app, running.job_id, "PAUSED")
            await wait_until(lambda: proc_state(pgid) == "T", 5)
            await wait_until(lambda: any("1 job (1 SUCCEEDED) left as it is" in note
                                         for note in seen.notes), 5)
            await scheduler.stop(stopping.job_id)  # RUNNING until the SIGKILL, 60 s away
            await select(app, pilot, stopping.job_id)
            await pilot.press("p")
            await wait_until(lambda: seen.errors, 5, message="the daemon's refusal")
            assert "pause refused" in seen.errors[-1] and "being stopped" in seen.errors[-1]
    finally:
        await service.close()


async def test_attached_quit_asks_like_in_process_and_detach_only_disconnects(
        daemon: Any, tmp_path: Path) -> None:
    scheduler, service = daemon
    job = await scheduler.submit(sleep_job(tmp_path))
    pgid = await pgid_of(scheduler, job.job_id)
    async with open_tui(attached(scheduler, service)) as (app, pilot, _):
        await wait_shown(app, job.job_id, "RUNNING")
        await pilot.press("q")
        dialog = app.screen
        assert isinstance(dialog, QuitScreen)  # the same question as in-process
        question = dialog.question()
        assert f"The scheduler at {service.url} still has 1 running job" in question
        assert "Detach: they go on" in question and "Stop mine: stop your 1 running job" \
            in question
        await pilot.press("c")
        assert isinstance(app.screen, MainScreen) and app.is_running
        await pilot.press("q")
        assert app.focused is not None and app.focused.id == "detach"  # the default
        press_to_exit(app, "d")
        await wait_until(lambda: not app.is_running, 5)
    assert app.return_value == "disconnect"
    assert proc_state(pgid) in ("S", "R")
    assert (await scheduler.get_job(job.job_id)).status is JobStatus.RUNNING


async def test_attached_stop_mine_stops_only_my_jobs(daemon: Any, tmp_path: Path) -> None:
    scheduler, service = daemon
    mine = await scheduler.submit(sleep_job(tmp_path, "mine"))
    theirs = await scheduler.submit(sleep_job(tmp_path, "theirs", owner="somebody-else"))
    waiting = await scheduler.submit({"command": "true", "name": "never",
                                      "resource_request": {"host_labels": {"no": "such"}},
                                      "allow_pending": True})
    pgid = await pgid_of(scheduler, mine.job_id)
    await pgid_of(scheduler, theirs.job_id)
    async with open_tui(attached(scheduler, service)) as (app, pilot, _):
        await wait_shown(app, theirs.job_id, "RUNNING")
        await wait_shown(app, waiting.job_id, "PENDING")
        await pilot.press("q")
        dialog = app.screen
        assert isinstance(dialog, QuitScreen)
        assert "Stop mine: stop your 1 running and 1 pending jobs" in dialog.question()
        press_to_exit(app, "s")
        await wait_until(lambda: not app.is_running, 10)
    assert app.return_value == "stop"

    async def status(job_id: str) -> JobStatus:
        return (await scheduler.get_job(job_id)).status

    async def mine_stopped() -> bool:
        return await status(mine.job_id) is JobStatus.STOPPED

    await wait_until(mine_stopped, 10, message="my running job stopped")
    await wait_until(lambda: not group_members(pgid), 10)
    assert await status(waiting.job_id) is JobStatus.STOPPED
    assert await status(theirs.job_id) is JobStatus.RUNNING
    await scheduler.stop(theirs.job_id)


async def test_attached_survives_the_daemon_going_away(daemon: Any, tmp_path: Path) -> None:
    scheduler, service = daemon
    port = int(service.url.rsplit(":", 1)[1])
    async with open_tui(attached(scheduler, service)) as (app, _pilot, _):
        await service.close()
        await wait_until(lambda: app.connection.startswith("disconnected"), 10)
        job = await scheduler.submit({"command": "true", "name": "while-away"})
        again = HttpService(scheduler, "127.0.0.1", port)
        await again.start()
        try:
            await wait_until(lambda: app.connection == "", 15, message="reconnected")
            await wait_shown(app, job.job_id, "SUCCEEDED")
        finally:
            await again.close()


async def test_wrong_token_is_refused_before_the_app_starts(daemon: Any) -> None:
    _, service = daemon
    backend = AttachedBackend(service.url, "not-the-token")
    with pytest.raises(AuthFailed):
        await backend.snapshot()
    await backend.close()


async def test_plain_apr_tui_attaches_when_a_daemon_holds_the_state_dir(daemon: Any) -> None:
    scheduler, service = daemon
    args = build_parser().parse_args(["--state-dir", str(scheduler.state_dir)])
    backend, note = await open_backend(args)
    try:
        # over the daemon's Unix socket, which knows us by uid: no token needed
        assert isinstance(backend, AttachedBackend)
        assert backend.description == service.socket_url
        assert note is not None and "already owns" in note and service.socket_url in note
        assert len((await backend.snapshot()).hosts) == 1
    finally:
        await backend.close()
    with_token = build_parser().parse_args(["--state-dir", str(scheduler.state_dir),
                                            "--token", service_token(scheduler)])
    backend, note = await open_backend(with_token)
    try:  # a token given: HTTP at the url the daemon recorded
        assert isinstance(backend, AttachedBackend) and backend.description == service.url
        assert len((await backend.snapshot()).hosts) == 1
    finally:
        await backend.close()


def service_token(scheduler: Any) -> str:
    return str(find_token(None, scheduler.state_dir))


async def test_apr_tui_runs_in_process_and_serves_http(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--state-dir", str(tmp_path / "s"), "--http", "0"])
    backend, note = await open_backend(args)
    try:
        assert isinstance(backend, InProcessBackend) and note is None
        assert backend.http_url is not None
        peer = AttachedBackend(backend.http_url, find_token(None, tmp_path / "s"))
        assert [h.host_id for h in (await peer.snapshot()).hosts] == ["local"]
        await peer.close()
    finally:
        await backend.close()


def test_http_option_forms() -> None:
    assert parse_http("5000") == ("127.0.0.1", 5000)
    assert parse_http("0.0.0.0:8080") == ("0.0.0.0", 8080)
    assert parse_http("[::1]:0") == ("::1", 0)
    with pytest.raises(Exception, match="bad port"):
        parse_http("host:http")


def test_python_dash_m_apr_tui_help() -> None:
    result = subprocess.run([sys.executable, "-m", "apr_tui", "--help"], capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode == 0
    for option in ("--state-dir", "--config", "--http", "--connect", "--token"):
        assert option in result.stdout


async def test_a_daemon_that_stops_answering_is_marked_stale_then_reconnected(
        tmp_path: Path) -> None:
    """The daemon process is frozen (SIGSTOP): connections are accepted, nothing answers.
    The header says STALE within stale_after, the app stays responsive, and once the
    daemon runs again (SIGCONT) the marker goes and new jobs show up by themselves."""
    with daemon_process(tmp_path) as daemon:
        backend = AttachedBackend(daemon.url, daemon.token, long_poll_sec=0.5,
                                  probe_timeout=0.5)
        options = {"hosts_interval": 0.3, "tick_interval": 0.2, "stale_after": 1.5}
        async with open_tui(backend, **options) as (app, pilot, _):
            summary = app.main.summary
            daemon.proc.send_signal(signal.SIGSTOP)
            try:
                await wait_until(lambda: "STALE: no answer for" in str(summary.render()), 10,
                                 message="the stale marker")
                await pilot.press("o")  # the screen still takes keys
                assert app.main.jobs.sort_column == "id"
            finally:
                daemon.proc.send_signal(signal.SIGCONT)
            await wait_until(lambda: not app.stale and not app.connection, 20,
                             message="reconnected")
            assert "STALE" not in str(summary.render())
            with daemon.client() as client:
                job = client.submit({"command": "true", "name": "after-the-freeze"})
            await wait_shown(app, job.job_id, "SUCCEEDED", timeout=15)
