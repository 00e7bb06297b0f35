"""A real daemon process on a state dir, that a test can stop and start again, and the
``apr-sched`` CLI run against it as real processes (found through the state dir alone)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from apr_sched.client import SchedulerClient
from apr_sched.errors import AprError
from apr_sched.models import Job, JobStatus
from apr_sched.statedir import read_owner
from tests.conftest import wait_until_sync

APR_SCHED = [sys.executable, "-m", "apr_sched"]

_SERVED = re.compile(r" DEBUG apr_sched\.http: (GET|POST|DELETE) (\S+) \d{3} ")

CONFIG = textwrap.dedent("""
    [scheduler]
    stop_grace_sec = 2

    [[hosts]]
    host_id = "local"
    total_slots = 4
    total_cpu = 8
    total_memory_gb = 16
""")


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("APR_SCHED_URL", "APR_SCHED_TOKEN", "APR_SCHED_HOME")}
    env["COLUMNS"] = "80"
    return {**env, **extra}


@dataclass
class Done:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class CliDaemon:
    root: Path
    state_dir: Path = field(init=False)
    proc: subprocess.Popen[bytes] | None = None
    spawned: list[subprocess.Popen[str]] = field(default_factory=list)
    """CLI processes started with ``popen``: ``reap`` kills those a failed test left."""

    def __post_init__(self) -> None:
        self.state_dir = self.root / "state"
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "hosts.toml").write_text(CONFIG)

    # the daemon -----------------------------------------------------------------------
    def start(self) -> None:
        with open(self.root / "daemon.log", "ab") as log:
            self.proc = subprocess.Popen(
                [*APR_SCHED, "serve", "--state-dir", str(self.state_dir), "--config",
                 str(self.root / "hosts.toml"), "--port", "0", "-v"],
                stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        proc = self.proc
        wait_until_sync(lambda: ((self.state_dir / "apr_sched.sock").exists()
                        and (read_owner(self.state_dir) or {}).get("pid") == proc.pid)
                        or proc.poll() is not None, timeout=20, interval=0.02)
        assert proc.poll() is None, (self.root / "daemon.log").read_text()
        wait_until_sync(self._answers, timeout=20, interval=0.02)

    def _answers(self) -> bool:
        try:
            with self.client() as c:
                c.health()
        except Exception:
            return False
        return True

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """End the daemon (its jobs keep running: they are found again at the next start)."""
        assert self.proc is not None
        self.proc.send_signal(signum)
        self.proc.wait(timeout=20)
        self.proc = None

    def requests_served(self) -> list[str]:
        """``METHOD target`` of each request the daemon has answered (it runs with -v)."""
        text = (self.root / "daemon.log").read_text(errors="replace")
        return [f"{m[1]} {m[2]}" for m in _SERVED.finditer(text)]

    def client(self) -> SchedulerClient:
        url = (read_owner(self.state_dir) or {})["url"]
        token = (self.state_dir / "token").read_text().strip()
        return SchedulerClient(url, token)

    def job(self, job_id: str) -> Job:
        with self.client() as c:
            return c.job(job_id)

    def wait_status(self, job_id: str, *statuses: JobStatus, timeout: float = 15.0) -> Job:
        with self.client() as c:
            job: Job = wait_until_sync(
                lambda: (job := c.job(job_id)).status in statuses and job,
                timeout=timeout, interval=0.02, message=f"job {job_id} to be {statuses}")
        return job

    # the CLI --------------------------------------------------------------------------
    def argv(self, command: str, *args: str) -> list[str]:
        return [*APR_SCHED, command, "--state-dir", str(self.state_dir), *args]

    def cli(self, command: str, *args: str, env: dict[str, str] | None = None,
            input: str | None = None, cwd: Path | None = None, timeout: float = 60,
            **options: Any) -> Done:
        done = subprocess.run(self.argv(command, *args), capture_output=True, text=True,
                              input=input, timeout=timeout, cwd=cwd or self.root,
                              env=env or clean_env(), **options)
        return Done(done.returncode, done.stdout, done.stderr)

    def popen(self, command: str, *args: str, env: dict[str, str] | None = None,
              **options: Any) -> subprocess.Popen[str]:
        proc = subprocess.Popen(self.argv(command, *args), stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, cwd=self.root,
                                env=env or clean_env(), **options)
        self.spawned.append(proc)
        return proc

    def reap(self) -> None:
        for proc in self.spawned:
            if proc.poll() is None:
                proc.kill()
            proc.communicate()
        self.spawned.clear()


@contextmanager
def running_cli_daemon(root: Path) -> Iterator[CliDaemon]:
    daemon = CliDaemon(root)
    daemon.start()
    try:
        yield daemon
    finally:
        daemon.reap()
        if daemon.proc is not None and daemon.proc.poll() is None:
            stop_everything(daemon)
            daemon.proc.send_signal(signal.SIGTERM)
            try:
                daemon.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.proc.kill()
                daemon.proc.wait()


UNFINISHED = ["PENDING", "HELD", "RUNNING", "PAUSED"]


def stop_everything(daemon: CliDaemon) -> None:
    """Stop every unfinished job and wait for them to end: none outlives the test."""
    with daemon.client() as c:
        for job in c.jobs(status=UNFINISHED, limit=5000).jobs:
            with suppress(AprError):
                c.stop(job.job_id)
        wait_until_sync(lambda: c.jobs(status=UNFINISHED, limit=1).total == 0, timeout=20,
                        interval=0.05, message="every job to end")


def submitted_id(stderr: str) -> str:
    """The id from ``submit --wait``'s note on stderr (stdout carries the job's output)."""
    for line in stderr.splitlines():
        if line.startswith("apr-sched: submitted job "):
            return line.split()[3]
    raise AssertionError(f"no 'submitted job' line in {stderr!r}")
