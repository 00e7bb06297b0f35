"""Hand an in-process scheduler's state dir to a background daemon, so jobs go on.

When the TUI that ran the scheduler quits with jobs running or pending, nothing would
dispatch, reap or time them out until the next start. ``DaemonHandoff`` starts
``python -m apr_sched serve`` on the same state dir and config, detached from the terminal
(own session, stdin ``/dev/null``, output appended to ``<state_dir>/daemon.log``, loopback
port picked by the kernel, auth as configured), and waits, bounded, until that daemon holds
the state-dir lock and answers ``/health``. The daemon adopts every job the way any restart
does: running ones are found again through the state dir, pending ones are dispatched.

Headless (no textual): the TUI calls it after closing its own scheduler, which releases the
lock the daemon needs.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apr_sched.client import find_token
from apr_sched.config import resolve_state_dir
from apr_sched.errors import AprError
from apr_sched.statedir import read_owner
from apr_tui.apiclient import ApiClient

__all__ = ["DAEMON_LOG", "DaemonHandoff", "Handover"]

DAEMON_LOG = "daemon.log"
READY_TIMEOUT_SEC = 30.0
"""Recovery of a large state dir takes seconds; past this the user is told to look."""
_POLL_SEC = 0.05
_LOG_TAIL_LINES = 5


@dataclass(slots=True)
class Handover:
    """How the hand-off went: the daemon's pid and URL, or the problem and where to look."""

    state_dir: Path
    log_path: Path
    pid: int | None = None
    url: str | None = None
    problem: str | None = None
    """None when the daemon is up and answering."""
    degraded: str | None = None
    """Why the daemon's health says ``degraded`` (e.g. disk full), if it does."""
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)
    """The daemon as our child (tests wait for it after stopping it)."""

    @property
    def ok(self) -> bool:
        return self.problem is None

    def farewell(self) -> str:
        """What the user reads on the terminal after the TUI has gone."""
        if self.ok:
            warning = f"\napr-tui: it reports degraded: {self.degraded}" if self.degraded else ""
            return (f"apr-tui: a background scheduler now runs the jobs of {self.state_dir} "
                    f"(pid {self.pid}, {self.url}; log {self.log_path}).\n"
                    f"apr-tui: run `{attach_command(self.state_dir)}` to attach to it again; "
                    f"`kill {self.pid}` stops it (running jobs go on).{warning}")
        return (f"apr-tui: {self.problem}\n"
                f"apr-tui: its log is {self.log_path}. Nothing is lost: every job is in "
                f"{self.state_dir}; `{attach_command(self.state_dir)}` schedules them again.")


def attach_command(state_dir: Path) -> str:
    """``apr-tui``, with ``--state-dir`` only when it is not the default one."""
    try:
        default = resolve_state_dir(None)
    except AprError:
        default = None
    if default == state_dir:
        return "apr-tui"
    return f"apr-tui --state-dir {shlex.quote(str(state_dir))}"


@dataclass(frozen=True, slots=True)
class DaemonHandoff:
    """Start a daemon on ``state_dir`` (with ``config``, if the TUI had one) and wait for it.

    ``timeout`` bounds the wait for the daemon to lock the state dir and answer health.
    """

    state_dir: Path
    config: Path | None = None
    timeout: float = READY_TIMEOUT_SEC

    @property
    def log_path(self) -> Path:
        return self.state_dir / DAEMON_LOG

    def argv(self) -> list[str]:
        argv = [sys.executable, "-m", "apr_sched", "serve", "--state-dir", str(self.state_dir)]
        if self.config is not None:
            argv += ["--config", str(self.config)]
        return [*argv, "--host", "127.0.0.1", "--port", "0"]

    async def start(self) -> Handover:
        """Spawn the daemon and wait until it owns the state dir; never raises for a daemon
        that fails: the ``Handover`` says what went wrong."""
        result = Handover(self.state_dir, self.log_path)
        try:
            process, log_start = self._spawn()
        except OSError as exc:
            result.problem = f"could not start the background scheduler: {exc}"
            return result
        result.process, result.pid = process, process.pid
        await self._wait_ready(process, log_start, result)
        return result

    def _spawn(self) -> tuple[subprocess.Popen[bytes], int]:
        """The daemon, and where its output starts in the log (earlier runs precede it)."""
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                         0o600)
        try:
            os.write(log_fd, f"--- started by apr-tui (pid {os.getpid()}) on detach: "
                             f"{shlex.join(self.argv())}\n".encode())
            log_start = os.fstat(log_fd).st_size
            process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log_fd,
                                       stderr=log_fd, start_new_session=True, close_fds=True)
            return process, log_start
        finally:
            os.close(log_fd)

    async def _wait_ready(self, process: subprocess.Popen[bytes], log_start: int,
                          result: Handover) -> None:
        """Fill in ``result.url`` once the daemon holds the lock and answers, or the problem."""
        deadline = time.monotonic() + self.timeout
        while True:
            code = process.poll()
            if code is not None:
                result.url, result.problem = None, self._exited_problem(process.pid, code,
                                                                        log_start)
                return
            owner = read_owner(self.state_dir) or {}
            if owner.get("pid") == process.pid and isinstance(owner.get("url"), str):
                result.url = owner["url"]
                health = await self._health(result.url)
                if health is not None:
                    reason = health.get("degraded_reason")
                    result.degraded = str(reason) if reason else None
                    return
            if time.monotonic() >= deadline:
                result.problem = (f"the background scheduler (pid {process.pid}) did not "
                                  f"answer within {self.timeout:g}s; it may still be starting")
                return
            await asyncio.sleep(_POLL_SEC)

    async def _health(self, url: str) -> dict[str, Any] | None:
        """The daemon's health reply, or None while it does not answer."""
        client = ApiClient(url, find_token(None, self.state_dir), timeout=5.0)
        try:
            reply = await client.request("GET", "/health")
        except AprError:
            return None
        finally:
            await client.close()
        return reply if isinstance(reply, dict) else {}

    def _exited_problem(self, pid: int, code: int, log_start: int) -> str:
        how = f"exit code {code}" if code >= 0 else f"signal {-code}"
        tail = _last_lines(self.log_path, log_start, _LOG_TAIL_LINES)
        said = f":\n  {tail}" if tail else ""
        return f"the background scheduler (pid {pid}) failed to start ({how}){said}"


def _last_lines(path: Path, start: int, count: int) -> str:
    """The daemon's last words (written after ``start``), shown without opening the log."""
    try:
        with path.open("rb") as f:
            f.seek(max(start, f.seek(0, os.SEEK_END) - 4096))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n  ".join([line for line in lines if line.strip()][-count:])
