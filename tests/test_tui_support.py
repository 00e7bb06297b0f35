"""Helpers for the TUI tests: open the app on a backend, wait on what the screen shows.

No tests here; the TUI test modules import these. Waits are bounded polls
(``tests.conftest.wait_until``), never bare sleeps.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from textual import events
from textual.keys import _character_to_key
from textual.message import Message
from textual.notifications import Notify
from textual.pilot import Pilot

from apr_sched import HostSpec, JobStatus, Scheduler
from apr_sched.client import SchedulerClient
from apr_sched.statedir import read_owner
from apr_tui.app import AprTui, make_app
from apr_tui.backend import Backend
from tests.conftest import host, wait_until, wait_until_sync

SIZE = (120, 36)


@dataclass
class Seen:
    """Messages the app received, from ``run_test(message_hook=...)``."""

    notes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def hook(self, message: Message) -> None:
        if isinstance(message, Notify):
            note = message.notification
            (self.errors if note.severity == "error" else self.notes).append(
                f"{note.title}: {note.message}" if note.title else note.message)


@asynccontextmanager
async def open_tui(backend: Backend, size: tuple[int, int] = SIZE,
                   **options: Any) -> AsyncIterator[tuple[AprTui, Pilot[Any], Seen]]:
    app = make_app(backend, **options)
    seen = Seen()
    try:
        async with app.run_test(size=size, message_hook=seen.hook) as pilot:
            await wait_until(app.loaded.is_set, 10, message="TUI loaded its first snapshot")
            yield app, pilot, seen
    finally:
        if backend.attached:
            await backend.close()


def press_to_exit(app: AprTui, key: str) -> None:
    """Send a key that makes the app exit. ``pilot.press`` waits for the screen to settle
    after the key, which never happens once the app has shut its message pumps."""
    driver = app._driver
    assert driver is not None
    character = "\r" if key == "enter" else key if len(key) == 1 else None
    driver.send_message(events.Key(key, character))


def status_of(app: AprTui, job_id: str) -> str | None:
    """The status the jobs table shows for a job, without its symbol (None when the row is
    not shown)."""
    table = app.main.jobs
    return table.cell_text(job_id, "status").split()[-1] if table.has_row(job_id) else None


async def wait_shown(app: AprTui, job_id: str, status: JobStatus | str,
                     timeout: float = 10.0) -> None:
    want = JobStatus(status).value
    await wait_until(lambda: status_of(app, job_id) == want, timeout,
                     message=f"job {job_id} shown as {want} (shown: {status_of(app, job_id)})")


async def select(app: AprTui, pilot: Pilot[Any], job_id: str) -> None:
    await wait_until(lambda: app.main.jobs.has_row(job_id), 10, message=f"row {job_id}")
    assert app.main.jobs.move_cursor_to_key(job_id)
    await pilot.pause()


def sleep_job(workdir: Path, name: str = "job", seconds: int = 30, **extra: Any) -> dict[str, Any]:
    return {"command": f"echo started {name}; sleep {seconds}", "workdir": str(workdir),
            "name": name, **extra}


async def start_scheduler(make_scheduler: Any, hosts: list[HostSpec] | None = None,
                          **options: Any) -> Scheduler:
    scheduler: Scheduler = await make_scheduler(
        hosts=[host("h1", slots=8, cpu=16, memory=64)] if hosts is None else hosts, **options)
    return scheduler


def type_at_once(app: AprTui, *keys: str) -> None:
    """Queue keys the way a terminal delivers a burst (``tmux send-keys``, a paste-fast
    typist): all before the app handles the first. ``pilot.press`` waits between keys and
    so hides ordering bugs. Single characters are typed as themselves."""
    driver = app._driver
    assert driver is not None
    for key in keys:
        if len(key) == 1:
            driver.send_message(events.Key(_character_to_key(key), key))
        else:
            character = {"enter": "\r", "tab": "\t", "escape": "\x1b"}.get(key)
            driver.send_message(events.Key(key, character))


DAEMON_CONFIG = textwrap.dedent("""
    [scheduler]
    stop_grace_sec = 2

    [[hosts]]
    host_id = "local"
    total_slots = 4
    total_cpu = 8
    total_memory_gb = 16
""")


@dataclass
class Daemon:
    """A daemon process (``python -m apr_sched serve``) on a temporary state dir."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    url: str
    token: str

    def client(self) -> SchedulerClient:
        return SchedulerClient(self.url, self.token)


def clean_env() -> dict[str, str]:
    """This environment without anything that would point a client at another daemon."""
    return {k: v for k, v in os.environ.items()
            if k not in ("APR_SCHED_URL", "APR_SCHED_TOKEN", "APR_SCHED_HOME", "TMUX")}


@contextmanager
def daemon_process(root: Path) -> Iterator[Daemon]:
    """A daemon with one local host, serving HTTP on 127.0.0.1 (a free port) and its Unix
    socket; stopped (SIGCONT first, in case a test stopped it) on the way out."""
    config = root / "hosts.toml"
    config.write_text(DAEMON_CONFIG)
    state_dir = root / "state"
    with open(root / "daemon.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apr_sched", "serve", "--state-dir", str(state_dir),
             "--config", str(config), "--port", "0", "--stop-jobs-on-exit"],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env())
    try:
        wait_until_sync(lambda: (read_owner(state_dir) or {}).get("url")
                        or proc.poll() is not None, timeout=20)
        assert proc.poll() is None, (root / "daemon.log").read_text()
        url = str((read_owner(state_dir) or {})["url"])
        yield Daemon(proc, state_dir, url, (state_dir / "token").read_text().strip())
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
