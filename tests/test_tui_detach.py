"""Quitting the in-process TUI must not stop scheduling (issue 8, section 7).

Real parts throughout: the TUI built by ``apr-tui``'s own ``open_backend`` from a config
file, driven through Pilot; Detach starts a real ``python -m apr_sched serve`` process that
must take the state dir over and run the pending jobs; "Stop all" must leave nothing that
could start at the next open. Every daemon a test starts is stopped by its pid in a
``finally``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apr_sched import JobStatus, Scheduler
from apr_sched.client import find_token
from apr_sched.config import load_config
from apr_sched.statedir import read_owner
from apr_tui.app import AprTui
from apr_tui.backend import AttachedBackend, InProcessBackend
from apr_tui.cli import build_parser, open_backend
from apr_tui.handoff import DAEMON_LOG, DaemonHandoff, Handover
from apr_tui.screens.quit import QuitScreen, jobs_phrase
from tests.conftest import group_members, proc_state, wait_until, wait_until_sync
from tests.test_tui_support import open_tui, press_to_exit, wait_shown

SOLO = textwrap.dedent("""
    [scheduler]
    stop_grace_sec = 2

    [[hosts]]
    host_id = "solo"
    total_slots = 1
    total_cpu = 4
    total_memory_gb = 4
""")

UNFINISHED = {JobStatus.PENDING, JobStatus.HELD, JobStatus.RUNNING, JobStatus.PAUSED}


def gated_job(gate: Path, name: str) -> dict[str, Any]:
    """Runs until ``gate`` exists (at most 60 s, so a failed test leaves nothing behind)."""
    wait = f"i=0; while [ ! -e {gate} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done"
    return {"command": f"{wait}; echo {name} done", "workdir": str(gate.parent), "name": name}


def quick_job(workdir: Path, name: str) -> dict[str, Any]:
    return {"command": f"echo {name} ran", "workdir": str(workdir), "name": name}


@pytest.fixture
def solo_config(tmp_path: Path) -> Path:
    config = tmp_path / "solo.toml"
    config.write_text(SOLO)
    return config


@pytest.fixture
async def in_process(tmp_path: Path, solo_config: Path) -> AsyncIterator[InProcessBackend]:
    """The backend plain ``apr-tui --state-dir S --config solo.toml`` opens (one slot)."""
    args = build_parser().parse_args(
        ["--state-dir", str(tmp_path / "state"), "--config", str(solo_config)])
    backend, note = await open_backend(args)
    assert isinstance(backend, InProcessBackend) and note is None
    assert backend.hands_off
    try:
        yield backend
    finally:
        await backend.close(stop_jobs=True)  # no-op once the TUI closed it


async def started(scheduler: Scheduler, spec: dict[str, Any]) -> tuple[str, int]:
    """Submit ``spec``; (job id, pgid) once its process group exists."""
    job = await scheduler.submit(spec)

    async def pgid() -> int | None:
        return (await scheduler.get_job(job.job_id)).pgid

    return job.job_id, await wait_until(pgid, 10, message=f"{spec['name']} started")


def stop_daemon(state_dir: Path, handover: Handover | None) -> None:
    """SIGTERM the daemon that holds ``state_dir`` (ours, by pid) and wait for it to end."""
    process = handover.process if handover is not None else None
    pid = handover.pid if handover is not None else None
    if pid is None:
        pid = (read_owner(state_dir) or {}).get("pid")
    if not isinstance(pid, int) or pid == os.getpid():
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    if process is not None:
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    else:
        wait_until_sync(lambda: not Path(f"/proc/{pid}").exists(), 15, message="daemon gone")


def kill_groups(*pgids: int) -> None:
    for pgid in pgids:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pgid, signal.SIGKILL)


async def quit_with(app: AprTui, key: str, timeout: float = 40.0) -> None:
    """Press q, check the dialog is up, answer with ``key``, wait for the app to end."""
    await app.run_action("quit")
    await wait_until(lambda: isinstance(app.screen, QuitScreen), 5, message="quit dialog")
    press_to_exit(app, key)
    await wait_until(lambda: not app.is_running, timeout, message="TUI exited")


async def statuses(make_scheduler: Any, state_dir: Path,
                   job_ids: list[str]) -> dict[str, JobStatus]:
    """What the state dir says, read by a scheduler started on it again (adding no host)."""
    scheduler: Scheduler = await make_scheduler(hosts=[], state_dir=state_dir)
    try:
        return {job_id: (await scheduler.get_job(job_id)).status for job_id in job_ids}
    finally:
        await scheduler.close()


async def test_detach_hands_running_and_pending_jobs_to_a_background_daemon(
        in_process: InProcessBackend, tmp_path: Path) -> None:
    scheduler, state_dir, gate = in_process.scheduler, in_process.scheduler.state_dir, \
        tmp_path / "gate"
    handover: Handover | None = None
    running, pgid = await started(scheduler, gated_job(gate, "gated"))
    pending = [(await scheduler.submit(quick_job(tmp_path, f"q{i}"))).job_id for i in range(3)]
    try:
        async with open_tui(in_process) as (app, pilot, _seen):
            await wait_shown(app, pending[-1], "PENDING")
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)
            question = app.screen.question()
            assert "1 running and 3 pending jobs" in question
            assert "background scheduler" in question
            press_to_exit(app, "d")
            await wait_until(lambda: not app.is_running, 40, message="TUI exited")
        handover = app.handover
        assert app.return_value == "detach" and app.return_code == 0
        assert handover is not None and handover.ok, handover and handover.problem
        owner = read_owner(state_dir) or {}
        assert owner.get("pid") == handover.pid != os.getpid()
        assert owner.get("url") == handover.url
        assert handover.url is not None and handover.url.startswith("http://127.0.0.1:")
        assert not handover.url.endswith(":0")
        assert app.farewell is not None
        for fact in (str(handover.pid), handover.url, "apr-tui --state-dir", DAEMON_LOG):
            assert fact in app.farewell, (fact, app.farewell)

        peer = AttachedBackend(handover.url, find_token(None, state_dir), long_poll_sec=0.5)
        try:
            jobs = {job.job_id: job for job in await peer.get_jobs([running, *pending])}
            assert jobs[running].status is JobStatus.RUNNING  # found again, not lost
            assert all(jobs[job_id].status is JobStatus.PENDING for job_id in pending)

            # plain apr-tui now attaches to that daemon by itself; quitting it only detaches
            args = build_parser().parse_args(["--state-dir", str(state_dir)])
            again, note = await open_backend(args)
            assert isinstance(again, AttachedBackend)  # over its socket: it knows our uid
            assert again.description == f"unix:{state_dir / 'apr_sched.sock'}"
            assert note is not None and f"pid {handover.pid}" in note
            again.long_poll_sec = 0.5
            async with open_tui(again) as (attached, attached_pilot, _seen):
                await wait_shown(attached, pending[-1], "PENDING")
                await attached_pilot.press("q")  # the same question; detach disconnects
                assert isinstance(attached.screen, QuitScreen)
                press_to_exit(attached, "d")
                await wait_until(lambda: not attached.is_running, 10, message="TUI exited")
            assert attached.return_value == "disconnect" and attached.handover is None
            assert (read_owner(state_dir) or {}).get("pid") == handover.pid

            gate.touch()  # the running job ends; the daemon must start the pending ones

            async def all_succeeded() -> bool:
                got = await peer.get_jobs([running, *pending])
                return all(job.status is JobStatus.SUCCEEDED for job in got)

            await wait_until(all_succeeded, 30, 0.1, message="daemon ran the pending jobs")
            assert {(await peer.get_job(job_id)).host_id for job_id in pending} == {"solo"}
        finally:
            await peer.close()
    finally:
        stop_daemon(state_dir, handover)
        kill_groups(pgid)
    assert handover.process is not None and handover.process.returncode == 0
    assert read_owner(state_dir) is None


async def test_detach_that_cannot_start_the_daemon_says_why_and_loses_nothing(
        in_process: InProcessBackend, tmp_path: Path, solo_config: Path,
        make_scheduler: Any) -> None:
    scheduler, state_dir = in_process.scheduler, in_process.scheduler.state_dir
    handover: Handover | None = None
    held = await scheduler.submit(quick_job(tmp_path, "held"))
    await scheduler.pause(held.job_id)
    solo_config.write_text("[[hosts]]\nhost_id = 'solo'\ntotal_slots = 0\n")  # now invalid
    try:
        async with open_tui(in_process) as (app, _pilot, _seen):
            await wait_shown(app, held.job_id, "HELD")
            await quit_with(app, "d")
        handover = app.handover
        assert handover is not None and not handover.ok
        assert app.return_value == "detach" and app.return_code == 1
        assert handover.process is not None and handover.process.returncode == 2
        assert app.farewell is not None
        assert "failed to start (exit code 2)" in app.farewell
        assert "total_slots" in app.farewell  # the daemon's own reason, from its log
        assert str(state_dir / DAEMON_LOG) in app.farewell and "Nothing is lost" in app.farewell
        assert "total_slots" in (state_dir / DAEMON_LOG).read_text()
        assert (state_dir / DAEMON_LOG).stat().st_mode & 0o077 == 0
        assert read_owner(state_dir) is None
        assert await statuses(make_scheduler, state_dir, [held.job_id]) == {
            held.job_id: JobStatus.HELD}
    finally:
        stop_daemon(state_dir, handover)


async def test_stop_all_stops_running_pending_and_held_jobs(
        in_process: InProcessBackend, tmp_path: Path, make_scheduler: Any) -> None:
    scheduler, state_dir = in_process.scheduler, in_process.scheduler.state_dir
    running, pgid = await started(scheduler, gated_job(tmp_path / "gate", "gated"))
    pending = [(await scheduler.submit(quick_job(tmp_path, f"q{i}"))).job_id for i in range(3)]
    await scheduler.pause(pending[0])
    try:
        async with open_tui(in_process) as (app, pilot, _seen):
            await wait_shown(app, pending[0], "HELD")
            await wait_shown(app, pending[-1], "PENDING")
            await pilot.press("q")
            assert isinstance(app.screen, QuitScreen)
            assert "1 running and 3 pending jobs" in app.screen.question()
            press_to_exit(app, "s")
            await wait_until(lambda: not app.is_running, 20, message="TUI exited")
        assert app.return_value == "stop" and app.handover is None
        assert read_owner(state_dir) is None, "Stop all starts no daemon"
        assert not group_members(pgid)
        final = await statuses(make_scheduler, state_dir, [running, *pending])
        assert set(final.values()) == {JobStatus.STOPPED}, final
    finally:
        kill_groups(pgid)


async def test_quit_asks_when_jobs_are_only_pending(in_process: InProcessBackend,
                                                    tmp_path: Path, make_scheduler: Any) -> None:
    scheduler = in_process.scheduler
    too_big = await scheduler.submit({**quick_job(tmp_path, "big"), "allow_pending": True,
                                      "resource_request": {"cpu": 64}})  # never fits
    async with open_tui(in_process) as (app, pilot, _seen):
        await wait_shown(app, too_big.job_id, "PENDING")
        await pilot.press("q")
        assert isinstance(app.screen, QuitScreen)
        assert "still has 1 pending job." in app.screen.question()
        await pilot.press("c")
        assert app.is_running and not isinstance(app.screen, QuitScreen)
        await quit_with(app, "s")
    assert await statuses(make_scheduler, scheduler.state_dir, [too_big.job_id]) == {
        too_big.job_id: JobStatus.STOPPED}


async def test_quit_with_nothing_unfinished_starts_no_daemon(in_process: InProcessBackend,
                                                            tmp_path: Path) -> None:
    scheduler = in_process.scheduler
    done = await scheduler.submit(quick_job(tmp_path, "done"))
    async with open_tui(in_process) as (app, _pilot, _seen):
        await wait_shown(app, done.job_id, "SUCCEEDED")
        press_to_exit(app, "q")
        await wait_until(lambda: not app.is_running, 10, message="TUI exited")
    assert app.return_value == "detach" and app.handover is None and app.farewell is None
    assert read_owner(scheduler.state_dir) is None
    assert not (scheduler.state_dir / DAEMON_LOG).exists()


def test_jobs_phrase_names_both_counts() -> None:
    assert jobs_phrase(3, 34) == "3 running and 34 pending jobs"
    assert jobs_phrase(1, 0) == "1 running job"
    assert jobs_phrase(0, 2) == "2 pending jobs"
    assert jobs_phrase(0, 0) == "no jobs"


def test_the_daemon_is_asked_for_loopback_and_an_ephemeral_port(tmp_path: Path) -> None:
    argv = DaemonHandoff(tmp_path / "s", tmp_path / "c.toml").argv()
    assert argv[1:4] == ["-m", "apr_sched", "serve"]
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "0"
    assert argv[argv.index("--config") + 1] == str(tmp_path / "c.toml")
    assert "--no-auth" not in argv


ANSI = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-Za-z]|[=>78])")


class Terminal:
    """A real ``apr-tui`` process on a pseudo-terminal: keys in, screen text out."""

    def __init__(self, argv: list[str]) -> None:
        self.master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 36, 120, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "120", "LINES": "36"}
        self.process = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave,
                                        env=env, start_new_session=True, close_fds=True)
        os.close(slave)
        self.raw = b""

    @property
    def text(self) -> str:
        return ANSI.sub(b"", self.raw).decode(errors="replace")

    def read_until(self, predicate: Any, timeout: float, what: str) -> None:
        """Read the screen until ``predicate()``; select() bounds each read, not a sleep."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise AssertionError(f"{what}: not within {timeout}s; screen text ends: "
                                     f"{self.text[-600:]!r}")
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                with contextlib.suppress(OSError):  # EIO once the process has gone
                    self.raw += os.read(self.master, 1 << 16)

    def press(self, key: bytes) -> None:
        os.write(self.master, key)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        os.close(self.master)


def gone(pid: int) -> bool:
    return proc_state(pid) in (None, "Z")  # a zombie of whoever adopted it has ended


async def test_apr_tui_on_a_terminal_detaches_and_the_daemon_outlives_it(
        tmp_path: Path, solo_config: Path, make_scheduler: Any) -> None:
    state_dir, gate = tmp_path / "state", tmp_path / "gate"
    seeded: Scheduler = await make_scheduler(state_dir=state_dir,
                                             **_config_options(solo_config))
    running, pgid = await started(seeded, gated_job(gate, "gatedjob"))
    pending = [(await seeded.submit(quick_job(tmp_path, f"quick{i}"))).job_id
               for i in range(2)]
    await seeded.close()  # the running job goes on; nothing schedules the rest
    terminal = Terminal([sys.executable, "-m", "apr_tui", "--state-dir", str(state_dir),
                         "--config", str(solo_config)])
    daemon_pid: int | None = None
    try:
        terminal.read_until(lambda: "quick1" in terminal.text, 30, "jobs on screen")
        terminal.press(b"q")
        terminal.read_until(lambda: "background scheduler" in terminal.text, 10, "dialog")
        terminal.press(b"d")
        terminal.read_until(lambda: terminal.process.poll() is not None, 40, "apr-tui exited")
        assert terminal.process.returncode == 0, terminal.text[-600:]
        owner = read_owner(state_dir) or {}
        daemon_pid = owner.get("pid")
        assert isinstance(daemon_pid, int) and not gone(daemon_pid)
        said = " ".join(terminal.text.split())  # the farewell, unwrapped
        assert f"pid {daemon_pid}, {owner['url']}" in said, said[-600:]
        assert f"apr-tui --state-dir {state_dir}" in said
        session = int(Path(f"/proc/{daemon_pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
        assert session == daemon_pid  # its own session: the terminal closing cannot hang it up
        assert os.readlink(f"/proc/{daemon_pid}/fd/0") == "/dev/null"
        assert os.readlink(f"/proc/{daemon_pid}/fd/2") == str(state_dir / DAEMON_LOG)

        gate.touch()
        peer = AttachedBackend(owner["url"], find_token(None, state_dir))
        try:
            async def all_succeeded() -> bool:
                got = await peer.get_jobs([running, *pending])
                return all(job.status is JobStatus.SUCCEEDED for job in got)

            await wait_until(all_succeeded, 30, 0.1, message="the daemon ran every job")
        finally:
            await peer.close()
    finally:
        terminal.close()
        if daemon_pid is None:
            daemon_pid = (read_owner(state_dir) or {}).get("pid")
        if isinstance(daemon_pid, int) and daemon_pid != os.getpid():
            with contextlib.suppress(ProcessLookupError):
                os.kill(daemon_pid, signal.SIGTERM)
            await wait_until(lambda: gone(daemon_pid), 15, 0.05, message="daemon ended")
        kill_groups(pgid)
    assert read_owner(state_dir) is None


def _config_options(config: Path) -> dict[str, Any]:
    """The hosts and options of ``config``, as ``make_scheduler`` keywords."""
    loaded = load_config(config)
    return {"hosts": loaded.hosts, "stop_grace_sec": loaded.stop_grace_sec}


async def test_a_daemon_slower_than_the_bound_is_reported_and_left_to_start(
        tmp_path: Path, solo_config: Path) -> None:
    state_dir = tmp_path / "state"
    handover = await DaemonHandoff(state_dir, solo_config, timeout=0.0).start()
    try:
        assert not handover.ok and handover.pid is not None
        assert f"pid {handover.pid}) did not answer within 0s" in handover.farewell()
        assert str(state_dir / DAEMON_LOG) in handover.farewell()
        # not killed for being slow: it comes up, and apr-tui will attach to it
        await wait_until(lambda: (read_owner(state_dir) or {}).get("pid") == handover.pid,
                         30, 0.05, message="the slow daemon came up")
    finally:
        stop_daemon(state_dir, handover)


def test_farewell_passes_on_a_degraded_health(tmp_path: Path) -> None:
    handover = Handover(tmp_path, tmp_path / DAEMON_LOG, pid=7, url="http://127.0.0.1:9",
                        degraded="store unavailable: disk full")
    assert handover.ok
    assert "degraded: store unavailable: disk full" in handover.farewell()
