"""The HTTP client and the ``apr-sched`` client commands against a real daemon process.

One daemon (``python -m apr_sched serve --port 0``) serves the module; commands run as
subprocesses with only ``--state-dir``, so the url (``scheduler.json``) and the token
(``<state_dir>/token``) are found the way a user's shell finds them.
"""

from __future__ import annotations

import argparse
import http.server
import io
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from apr_sched.cli_client import (
    _HANDLERS,
    CLIENT_COMMANDS,
    add_client_commands,
    run_client_command,
)
from apr_sched.client import (
    AuthFailed,
    DaemonUnreachable,
    SchedulerClient,
    find_token,
    find_url,
)
from apr_sched.config import HttpConfig, SchedulerConfig
from apr_sched.errors import AprError, HostBusy, IllegalTransition, InvalidInput, NotFound
from apr_sched.models import Job, JobSpec, JobStatus, current_user
from apr_sched.statedir import StateDirLock, read_owner
from tests.conftest import read_line, wait_until_sync

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
APR_SCHED = [sys.executable, "-m", "apr_sched"]


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
    env["COLUMNS"] = "200"  # rich tables: no folding of cells in the assertions
    return {**env, **extra}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    state_dir: Path
    url: str
    token: str
    cwd: Path

    def cli(self, command: str, *args: str, input: str | None = None,
            env: dict[str, str] | None = None) -> Result:
        """``python -m apr_sched COMMAND --state-dir DIR ARGS...`` in a real process:
        url and token are found from the state dir alone."""
        done = subprocess.run(
            [*APR_SCHED, command, "--state-dir", str(self.state_dir), *args],
            capture_output=True, text=True, timeout=30, input=input, cwd=self.cwd,
            env=env or clean_env(),
        )
        return Result(done.returncode, done.stdout, done.stderr)

    def client(self) -> SchedulerClient:
        return SchedulerClient(self.url, self.token)

    def log_text(self) -> str:
        """The daemon's output so far; it runs with -v, so it names every request served."""
        return (self.cwd / "daemon.log").read_text(errors="replace")

    def wait_status(self, job_id: str, *statuses: JobStatus, timeout: float = 10.0) -> Job:
        with self.client() as c:
            job: Job = wait_until_sync(
                lambda: (job := c.job(job_id)).status in statuses and job,
                timeout=timeout, interval=0.05, message=f"job {job_id} to be {statuses}")
        return job


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("daemon")
    config = root / "hosts.toml"
    config.write_text(CONFIG)
    state_dir = root / "state"
    with open(root / "daemon.log", "wb") as log:
        proc = subprocess.Popen(
            [*APR_SCHED, "serve", "--state-dir", str(state_dir), "--config", str(config),
             "--port", "0", "--stop-jobs-on-exit", "-v"],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env(),
        )
    try:
        wait_until_sync(lambda: (read_owner(state_dir) or {}).get("url")
                        or proc.poll() is not None, timeout=15)
        assert proc.poll() is None, (root / "daemon.log").read_text()
        url = (read_owner(state_dir) or {})["url"]
        assert url.startswith("http://127.0.0.1:")
        token = (state_dir / "token").read_text().strip()
        yield Daemon(proc, state_dir, url, token, root)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def client_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apr-sched")
    add_client_commands(parser.add_subparsers(dest="command"))
    return parser


Run = Callable[..., Result]


@pytest.fixture
def apr(daemon: Daemon, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> Run:
    """The same commands in-process (fast): ``apr("jobs", "--json", stdin=...)``; discovery
    still goes through the state dir and the environment."""
    for name, value in clean_env().items():
        monkeypatch.setenv(name, value)
    for name in ("APR_SCHED_URL", "APR_SCHED_TOKEN", "APR_SCHED_HOME"):
        monkeypatch.delenv(name, raising=False)
    parser = client_parser()

    def run(command: str, *args: str, stdin: str | None = None,
            state_dir: Path | None = None) -> Result:
        capsys.readouterr()
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
        argv = [command, "--state-dir", str(state_dir or daemon.state_dir), *args]
        try:
            code = run_client_command(parser.parse_args(argv))
        except SystemExit as exc:  # argparse refusing the arguments
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert "Traceback" not in text
    return lines[0]


def submitted_id(result: Result) -> str:
    assert result.returncode == 0, result.stderr
    job_id = result.stdout.strip()
    assert job_id.isdigit(), result.stdout
    assert f"submitted job {job_id}" in result.stderr
    return job_id


# submit ------------------------------------------------------------------------------------
def test_submit_with_flags_runs_the_command_as_typed(daemon: Daemon) -> None:
    words = ["sh", "-c", 'echo "$GREETING a  b"; printf "%s|\\n" "x y" \'q"uote\'']
    result = daemon.cli("submit", "--name", "quoted", "--project", "QT", "--design", "top",
                        "--priority", "3", "--timeout-sec", "60", "--retry-limit", "1",
                        "--memory-gb", "0.5", "--cpu", "2", "--slots", "1",
                        "--env-mode", "none", "--env", "GREETING=hi there", "--", *words)
    job_id = submitted_id(result)
    job = daemon.wait_status(job_id, JobStatus.SUCCEEDED)
    assert job.command == shlex.join(words)
    assert (job.name, job.project, job.design, job.priority) == ("quoted", "QT", "top", 3)
    assert (job.timeout_sec, job.retry_limit, job.env) == (60, 1, {"GREETING": "hi there"})
    assert (job.resource_request.cpu, job.resource_request.memory_gb) == (2, 0.5)
    assert job.workdir == str(daemon.cwd)  # the submitter's current directory
    assert job.owner == current_user()  # the submitter, not the daemon's account
    logs = daemon.cli("logs", job_id)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout.splitlines() == ["hi there a  b", "x y|", 'q"uote|']


def test_submit_single_word_is_a_shell_line_and_labels_are_required(apr: Run,
                                                                     daemon: Daemon) -> None:
    job_id = submitted_id(apr("submit", "--project", "SW", "--label", "pool=nowhere",
                              "--label", "tool=x", "--allow-pending", "echo one && echo two"))
    with daemon.client() as c:
        job = c.job(job_id)
    assert job.command == "echo one && echo two"
    assert job.workdir == os.getcwd()
    assert job.resource_request.host_labels == {"pool": "nowhere", "tool": "x"}
    assert job.status is JobStatus.PENDING
    bad = apr("submit", "--label", "novalue", "--", "true")
    assert bad.returncode == 2 and "expected KEY=VALUE" in bad.stderr
    nothing = apr("submit", "--project", "SW")
    assert nothing.returncode == 2
    assert one_line(nothing.stderr).startswith("apr-sched: nothing to run")


def test_submit_json_file_stdin_and_invalid_spec(apr: Run, daemon: Daemon,
                                                 tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text(json.dumps({"command": "true", "project": "JS", "priority": 5}))
    job_id = submitted_id(apr("submit", "--json", str(spec), "--priority", "6"))
    with daemon.client() as c:
        job = c.job(job_id)
    assert (job.project, job.priority, job.command) == ("JS", 6, "true")
    assert job.workdir is None  # a spec file is taken as written

    raw = apr("submit", "--json", "-", "--json",
              stdin=json.dumps({"command": "true", "project": "JS"}))
    assert raw.returncode == 0, raw.stderr
    reply = json.loads(raw.stdout)
    assert reply["project"] == "JS" and reply["status"] == "PENDING" and reply["job_id"]

    typo = apr("submit", "--json", "-", stdin='{"command": "true", "retry_limt": 1}')
    assert typo.returncode == 2
    assert "retry_limt" in one_line(typo.stderr)
    garbage = apr("submit", "--json", "-", stdin="{nope")
    assert garbage.returncode == 2 and "not valid JSON" in one_line(garbage.stderr)
    missing = apr("submit", "--json", str(tmp_path / "nope.json"))
    assert missing.returncode == 2 and "No such file" in one_line(missing.stderr)


def test_submit_batch_of_the_examples_file(apr: Run) -> None:
    result = apr("submit-batch", "--allow-pending", str(EXAMPLES / "batch_jobs.json"))
    assert result.returncode == 0, result.stderr
    first, last = result.stdout.strip().removeprefix("submitted 100 jobs: ").split("..")
    assert int(last) - int(first) == 99
    # Every example job asks for a tool label the test host lacks: all stay PENDING.
    p1 = [j for j in json.loads((EXAMPLES / "batch_jobs.json").read_text())["jobs"]
          if j["project"] == "P1"]
    page = json.loads(apr("jobs", "--project", "P1", "--status", "PENDING", "--json").stdout)
    assert page["total"] == len(p1) == len(page["jobs"])
    assert {j["name"] for j in page["jobs"]} == {j["name"] for j in p1}
    table = apr("jobs", "--project", "P2", "--limit", "3")
    assert "no host has" in table.stdout
    assert len(table.stdout.splitlines()) == 4  # piped: the header and 3 rows, the note
    assert table.stderr.startswith("3 of ")  # on stderr

    bad = apr("submit-batch", "-", stdin=json.dumps([{"command": "true"}, {}]))
    assert bad.returncode == 2
    assert "jobs[1].command" in one_line(bad.stderr)


# listing -----------------------------------------------------------------------------------
def test_jobs_table_and_status_filter(apr: Run, daemon: Daemon) -> None:
    done = submitted_id(apr("submit", "--project", "JT", "--owner", "ann", "true"))
    waiting = submitted_id(apr("submit", "--project", "JT", "--priority", "4",
                               "--label", "pool=nowhere", "--allow-pending", "--", "true"))
    daemon.wait_status(done, JobStatus.SUCCEEDED)
    only_done = json.loads(apr("jobs", "--project", "JT", "--status", "SUCCEEDED",
                               "--json").stdout)
    assert [j["job_id"] for j in only_done["jobs"]] == [done]
    assert "events" not in only_done["jobs"][0]
    table = apr("jobs", "--project", "JT", "--status", "pending", "held,succeeded")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "PROJECT", "OWNER", "PRIO", "STATUS", "HOST",
                                "ATT", "WAIT/RAN", "REASON"]
    rows = {line.split()[0]: line for line in lines[1:]}
    assert set(rows) == {done, waiting}
    assert rows[done].split()[2:8] == ["JT", "ann", "0", "SUCCEEDED", "local", "1"]
    assert "PENDING" in rows[waiting] and "no host has" in rows[waiting]
    bogus = apr("jobs", "--status", "bogus")
    assert bogus.returncode == 2 and "unknown status" in one_line(bogus.stderr)


def test_job_detail_shows_attempts_and_timeline(apr: Run, daemon: Daemon) -> None:
    job_id = submitted_id(apr("submit", "--name", "detail", "--", "sh", "-c", "exit 3"))
    daemon.wait_status(job_id, JobStatus.FAILED)
    result = apr("job", job_id)
    assert result.returncode == 0, result.stderr
    for text in ("detail", "FAILED", "sh -c 'exit 3'", "attempts", "events",
                 "PENDING -> RUNNING", "RUNNING -> FAILED", "exit code 3"):
        assert text in result.stdout, text
    detail = json.loads(apr("job", job_id, "--json").stdout)
    assert detail["exit_code"] == 3 and len(detail["events"]) >= 3
    missing = apr("job", "999999")
    assert missing.returncode == 1 and "no job" in one_line(missing.stderr)
    invalid = apr("job", "../etc")
    assert invalid.returncode == 2 and "not a valid id" in one_line(invalid.stderr)


def test_logs_tail_and_follow(apr: Run, daemon: Daemon) -> None:
    script = "for i in 1 2 3 4 5 6 7 8; do echo line $i; sleep 0.15; done"
    job_id = submitted_id(apr("submit", "--", "sh", "-c", script))
    follow = apr("logs", job_id, "--follow")
    assert follow.returncode == 0, follow.stderr
    assert follow.stdout.splitlines() == [f"line {i}" for i in range(1, 9)]  # each once
    with daemon.client() as c:
        assert c.job(job_id).status is JobStatus.SUCCEEDED
    tail = apr("logs", job_id, "--tail", "3")
    assert tail.stdout.splitlines() == ["line 6", "line 7", "line 8"]
    reply = json.loads(apr("logs", job_id, "--tail", "2", "--json").stdout)
    assert reply["lines"] == ["line 7", "line 8"] and reply["attempt"] == 1
    assert reply["offset"] > 0


def start_follow(daemon: Daemon, job_id: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*APR_SCHED, "logs", "--state-dir", str(daemon.state_dir), job_id, "--follow"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=clean_env())


def test_follow_moves_on_to_the_retry(apr: Run, daemon: Daemon, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    script = f"echo try; while [ ! -e {shlex.quote(str(gate))} ]; do sleep 0.05; done; exit 1"
    job_id = submitted_id(apr("submit", "--retry-limit", "1", "--", "sh", "-c", script))
    daemon.wait_status(job_id, JobStatus.RUNNING)
    follow = start_follow(daemon, job_id)
    try:
        assert follow.stdout is not None
        assert read_line(follow.stdout) == "try\n"  # attempt 1 is still running
        gate.touch()
        out, err = follow.communicate(timeout=20)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert follow.returncode == 0, err
    assert out.splitlines() == ["try"]  # attempt 2's line
    assert one_line(err) == f"apr-sched: job {job_id} attempt 2"
    first = apr("logs", job_id, "--attempt", "1", "--follow")
    assert (first.returncode, first.stdout) == (0, "try\n")


def test_follow_prints_a_partial_line_once_complete(apr: Run, daemon: Daemon,
                                                   tmp_path: Path) -> None:
    """``abc``, then later ``def\\n``: the follower prints ``abcdef`` once, never split or lost."""
    gate = tmp_path / "gate"
    script = (f"echo start; printf abc; while [ ! -e {shlex.quote(str(gate))} ]; "
              f"do sleep 0.05; done; printf 'def\\n'")
    job_id = submitted_id(apr("submit", "--", "sh", "-c", script))
    log = daemon.state_dir / "logs" / job_id / "1.log"
    wait_until_sync(lambda: log.exists() and log.read_bytes() == b"start\nabc", timeout=10)
    follow = start_follow(daemon, job_id)
    held = re.compile(rf"job {job_id} attempt 1: log request held at offset 6\b")
    try:
        assert follow.stdout is not None
        assert read_line(follow.stdout) == "start\n"
        # The follower's long poll waits past "start\n" while "abc" has no newline yet:
        wait_until_sync(lambda: held.search(daemon.log_text()), timeout=10,
                        message="a follow read held on the partial line")
        gate.touch()
        out, err = follow.communicate(timeout=20)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
    assert (follow.returncode, out, err) == (0, "abcdef\n", "")


def test_follow_ends_quietly_on_ctrl_c(apr: Run, daemon: Daemon) -> None:
    job_id = submitted_id(apr("submit", "--", "sh", "-c", "echo started; exec sleep 30"))
    daemon.wait_status(job_id, JobStatus.RUNNING)
    follow = start_follow(daemon, job_id)
    try:
        assert follow.stdout is not None
        assert read_line(follow.stdout) == "started\n"
        follow.send_signal(signal.SIGINT)
        out, err = follow.communicate(timeout=10)
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.communicate()
        with daemon.client() as c:
            c.stop(job_id)
    assert (follow.returncode, out, err) == (130, "", "")


# control -----------------------------------------------------------------------------------
def test_pause_resume_stop_rerun_and_refusals(apr: Run, daemon: Daemon) -> None:
    job_id = submitted_id(apr("submit", "--project", "CT", "--", "sleep", "30"))
    daemon.wait_status(job_id, JobStatus.RUNNING)
    paused = apr("pause", job_id)
    assert (paused.returncode, paused.stdout.strip()) == (0, f"{job_id}: PAUSED")
    resumed = apr("resume", job_id)
    assert (resumed.returncode, resumed.stdout.strip()) == (0, f"{job_id}: RUNNING")
    stopped = apr("stop", job_id)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"{job_id}: ")
    daemon.wait_status(job_id, JobStatus.STOPPED)

    refused = apr("pause", job_id)
    assert refused.returncode == 1 and refused.stdout == ""
    assert one_line(refused.stderr) == f"apr-sched: cannot pause job {job_id}: it is STOPPED"

    other = submitted_id(apr("submit", "--label", "pool=nowhere", "--allow-pending", "--",
                             "true"))
    mixed = apr("pause", other, job_id, "999999")
    assert mixed.returncode == 1
    assert mixed.stdout.strip() == f"{other}: HELD"
    assert mixed.stderr.strip().splitlines() == [
        f"apr-sched: cannot pause job {job_id}: it is STOPPED",
        "apr-sched: cannot pause job 999999: no job '999999'",
    ]
    as_json = json.loads(apr("resume", other, "--json").stdout)
    assert as_json["status"] == "PENDING"

    rerun = apr("rerun", job_id)
    assert (rerun.returncode, rerun.stdout.strip()) == (0, f"{job_id}: PENDING")
    with daemon.client() as c:
        assert c.job(job_id).attempt == 2
    assert apr("stop", job_id, other).returncode == 0
    daemon.wait_status(job_id, JobStatus.STOPPED)


# hosts and metrics -------------------------------------------------------------------------
def test_register_and_hosts(apr: Run, tmp_path: Path) -> None:
    args = ["--host-id", "extra-1", "--slots", "2", "--cpu", "4", "--memory-gb", "8.5",
            "--label", "pool=extra"]
    created = apr("register", *args)
    assert created.returncode == 0, created.stderr
    assert created.stdout.startswith("extra-1: registered (ONLINE, 2 slots, 4 cpu, 8.5 GB)")
    updated = apr("register", *args, "--slots", "3")
    assert updated.stdout.startswith("extra-1: updated (ONLINE, 3 slots")
    spec = tmp_path / "host.json"
    spec.write_text(json.dumps({"host_id": "extra-2", "total_slots": 1, "total_cpu": 1,
                                "total_memory_gb": 1, "labels": {"pool": "extra"}}))
    from_file = apr("register", "--json", str(spec), "--json")
    assert json.loads(from_file.stdout)["host_id"] == "extra-2"
    missing = apr("register", "--host-id", "extra-3")
    assert missing.returncode == 2
    assert one_line(missing.stderr) == ("apr-sched: register needs --slots, --cpu and "
                                        "--memory-gb (or --json FILE)")
    invalid = apr("register", *args, "--cpu", "0")
    assert invalid.returncode == 2 and "total_cpu" in one_line(invalid.stderr)

    table = apr("hosts")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["ID", "STATE", "SLOTS"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["extra-1"][:7] == ["extra-1", "ONLINE", "0/3", "0/4", "0/8.5", "0",
                                   "pool=extra"]
    assert {"local", "extra-1", "extra-2"} <= set(rows)
    listed = json.loads(apr("hosts", "--json").stdout)
    assert listed["total"] == len(listed["hosts"]) >= 3


def test_metrics(apr: Run) -> None:
    human = apr("metrics")
    assert human.returncode == 0, human.stderr
    for text in ("jobs", "hosts", "slots", "cpu", "memory GB", "finished last hour"):
        assert text in human.stdout
    data = json.loads(apr("metrics", "--json").stdout)
    assert data["jobs_total"] >= 1 and data["hosts_online"] >= 1
    assert set(data["jobs_by_status"]) == {s.value for s in JobStatus}


# failures ----------------------------------------------------------------------------------
def test_unreachable_daemon_is_one_line_exit_2(apr: Run, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    expected = (f"apr-sched: cannot reach apr_sched at http://127.0.0.1:{port}: connection "
                "refused (is `apr-sched serve` running?)")
    explicit = apr("jobs", "--url", f"http://127.0.0.1:{port}", state_dir=tmp_path)
    assert (explicit.returncode, one_line(explicit.stderr)) == (2, expected)
    monkeypatch.setenv("APR_SCHED_URL", f"127.0.0.1:{port}")
    from_env = apr("submit", "true", state_dir=tmp_path)
    assert (from_env.returncode, one_line(from_env.stderr)) == (2, expected)


def test_wrong_or_missing_token_is_one_line_exit_2(apr: Run, daemon: Daemon, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    wrong = apr("jobs", "--token", "wrong")
    assert wrong.returncode == 2
    assert one_line(wrong.stderr) == (
        f"apr-sched: {daemon.url} refused the token (wrong bearer token); pass --token, set "
        f"$APR_SCHED_TOKEN, or check {daemon.state_dir / 'token'}")
    # Elsewhere (no token file) with only the url: refused; with --token: accepted.
    missing = apr("metrics", "--url", daemon.url, state_dir=tmp_path)
    assert missing.returncode == 2 and "missing bearer token" in one_line(missing.stderr)
    given = apr("metrics", "--url", daemon.url, "--token", daemon.token, state_dir=tmp_path)
    assert given.returncode == 0, given.stderr
    monkeypatch.setenv("APR_SCHED_TOKEN", "wrong")
    from_env = apr("metrics")
    assert from_env.returncode == 2 and "refused the token" in one_line(from_env.stderr)


def test_the_shell_sees_one_line_and_the_exit_code(daemon: Daemon, apr: Run,
                                                   tmp_path: Path) -> None:
    """The same failures through ``python -m apr_sched``: no traceback, no logging noise."""
    port = free_port()
    unreachable = daemon.cli("jobs", "--url", f"http://127.0.0.1:{port}")
    assert unreachable.returncode == 2
    assert one_line(unreachable.stderr).startswith(
        f"apr-sched: cannot reach apr_sched at http://127.0.0.1:{port}: connection refused")
    wrong = daemon.cli("metrics", "--token", "wrong")
    assert wrong.returncode == 2 and "refused the token" in one_line(wrong.stderr)
    job_id = submitted_id(apr("submit", "--label", "pool=nowhere", "--allow-pending", "--",
                              "true"))
    assert apr("stop", job_id).returncode == 0
    refused = daemon.cli("pause", job_id)
    assert (refused.returncode, refused.stdout) == (1, "")
    assert one_line(refused.stderr) == f"apr-sched: cannot pause job {job_id}: it is STOPPED"
    usage = daemon.cli("submit", "--cpu", "many", "--", "true")
    assert usage.returncode == 2 and "invalid int value" in usage.stderr


# the client in-process -----------------------------------------------------------------------
def test_client_against_the_daemon(daemon: Daemon) -> None:
    with daemon.client() as c:
        health = c.health()
        assert health["status"] == "ok" and health["hosts_online"] >= 1
        host, created = c.register_host({"host_id": "hb-1", "total_slots": 1, "total_cpu": 1,
                                         "total_memory_gb": 1, "labels": {"pool": "hb"}})
        assert created and host.host_id == "hb-1"
        beat = c.heartbeat("hb-1", {"load_avg_1m": 0.5})
        assert beat.host_id == "hb-1" and beat.state == "ONLINE" and beat.load is not None
        job = c.submit({"command": "sleep 30", "project": "CL",
                        "resource_request": {"host_labels": {"pool": "hb"}}})
        model = c.submit(JobSpec(command="true", project="CL", owner="zoe"))
        assert (model.owner, model.project) == ("zoe", "CL")
        ids = c.submit_batch_ids([{"command": "true", "project": "CL"}] * 3)
        assert len(ids) == 3 and ids[0] == str(int(model.job_id) + 1)
        wait_until_sync(lambda: c.host("hb-1").running_jobs, timeout=10)
        with pytest.raises(HostBusy):
            c.unregister_host("hb-1")
        assert c.stop(job.job_id).job_id == job.job_id
        daemon.wait_status(job.job_id, JobStatus.STOPPED)
        assert c.unregister_host("hb-1").host_id == "hb-1"
        with pytest.raises(NotFound):
            c.host("hb-1")
        page = c.jobs(status=["SUCCEEDED", "PENDING"], project="CL", limit=2)
        assert page.total >= 1 and len(page.jobs) <= 2
        events = c.events(since=0, limit=5)
        assert len(events["events"]) == 5 and events["last_seq"] == events["events"][-1]["seq"]
        later = c.events(since=events["last_seq"] + 10**9, wait=0.2)
        assert later["events"] == []
        with pytest.raises(IllegalTransition) as refused:
            c.pause(job.job_id)
        assert refused.value.details["status"] == "STOPPED"
        with pytest.raises(InvalidInput) as invalid:
            c.submit({"command": "true", "priority": "2"})
        assert invalid.value.details[0]["field"] == "priority"
        with pytest.raises(InvalidInput, match="not a valid id"):
            c.job("a/b")
    with pytest.raises(AuthFailed), SchedulerClient(daemon.url, "wrong") as bad:
        bad.metrics()


class _OneRequestPerConnection(http.server.BaseHTTPRequestHandler):
    """Answers one request per connection, then hangs up without saying so first,
    like a server whose keep-alive timer fired while the client was idle."""

    protocol_version = "HTTP/1.1"
    replies: ClassVar[dict[str, tuple[int, Any]]] = {}
    connections: ClassVar[int] = 0

    def setup(self) -> None:
        type(self).connections += 1
        super().setup()

    def do_GET(self) -> None:
        status, body = self.replies.get(self.path.split("?")[0], (200, {"ok": True}))
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        self.close_connection = True

    do_POST = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def fake_server() -> Iterator[tuple[str, type[_OneRequestPerConnection]]]:
    handler = type("Handler", (_OneRequestPerConnection,), {"replies": {}, "connections": 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler
    finally:
        server.shutdown()
        server.server_close()


def test_client_reconnects_once_when_the_idle_connection_was_dropped(fake_server: Any) -> None:
    url, handler = fake_server
    with SchedulerClient(url) as c:
        for _ in range(3):
            assert c.health() == {"ok": True}
    assert handler.connections == 3


def test_client_maps_error_replies(fake_server: Any) -> None:
    url, handler = fake_server

    def error(code: str, message: str, details: Any = None) -> dict[str, Any]:
        return {"error": {"code": code, "message": message, "details": details}}

    handler.replies.update({
        "/scheduler/jobs/1": (404, error("not_found", "no job '1'", {"job_id": "1"})),
        "/scheduler/jobs/2/pause": (409, error("illegal_transition", "cannot pause job 2",
                                               {"status": "SUCCEEDED"})),
        "/scheduler/hosts/h": (409, error("host_busy", "host h runs 2 jobs")),
        "/scheduler/jobs": (400, error("invalid_input", "bad", [{"field": "x",
                                                               "message": "y"}])),
        "/scheduler/metrics/summary": (401, error("unauthorized", "wrong bearer token")),
        "/scheduler/health": (502, b"<html>bad gateway</html>"),
        "/scheduler/events": (503, error("unavailable", "shutting down")),
    })
    with SchedulerClient(url + "/") as c:
        with pytest.raises(NotFound) as not_found:
            c.job("1")
        assert not_found.value.message == "no job '1'"
        assert not_found.value.details == {"job_id": "1"}
        with pytest.raises(IllegalTransition) as illegal:
            c.pause("2")
        assert illegal.value.details == {"status": "SUCCEEDED"}
        with pytest.raises(HostBusy):
            c.request("POST", "/hosts/h")
        with pytest.raises(InvalidInput) as invalid:
            c.jobs(status="PENDING")
        assert invalid.value.details == [{"field": "x", "message": "y"}]
        with pytest.raises(AuthFailed, match="wrong bearer token"):
            c.metrics()
        with pytest.raises(AprError, match="HTTP 502: <html>bad gateway"):
            c.health()
        with pytest.raises(AprError, match="shutting down") as other:
            c.events()
        assert type(other.value) is AprError


def test_client_refuses_bad_ids_and_urls_without_sending() -> None:
    c = SchedulerClient(f"http://127.0.0.1:{free_port()}")
    for bad in ("", "../x", "a b", "-x", "x" * 65):
        with pytest.raises(InvalidInput):
            c.stop(bad)
    with pytest.raises(DaemonUnreachable, match="connection refused"):
        c.health()
    with pytest.raises(InvalidInput):
        SchedulerClient("ftp://example.com")


def test_find_url_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APR_SCHED_URL", raising=False)
    state_dir = tmp_path / "state"
    config = SchedulerConfig(http=HttpConfig(host="0.0.0.0", port=6123))
    assert find_url(None, None, state_dir) == "http://127.0.0.1:5000"
    assert find_url(None, config, state_dir) == "http://127.0.0.1:6123"
    with StateDirLock(state_dir) as lock:
        lock.update(url="http://127.0.0.1:7001")
        assert find_url(None, config, state_dir) == "http://127.0.0.1:7001"
        monkeypatch.setenv("APR_SCHED_URL", "http://127.0.0.1:7002/")
        assert find_url(None, config, state_dir) == "http://127.0.0.1:7002"
        assert find_url("127.0.0.1:7003", config, state_dir) == "http://127.0.0.1:7003"
    monkeypatch.delenv("APR_SCHED_URL")
    assert find_url(None, None, state_dir) == "http://127.0.0.1:5000"  # owner gone


def test_find_token_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APR_SCHED_TOKEN", raising=False)
    assert find_token(None, tmp_path) is None
    (tmp_path / "token").write_text("from-file\n")
    assert find_token(None, tmp_path) == "from-file"
    monkeypatch.setenv("APR_SCHED_TOKEN", "from-env")
    assert find_token(None, tmp_path) == "from-env"
    assert find_token("explicit", tmp_path) == "explicit"


def test_every_client_command_has_a_handler() -> None:
    assert set(_HANDLERS) == CLIENT_COMMANDS
