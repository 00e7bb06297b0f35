"""Users are told apart, against a real daemon run as root with ``run_as_owner``.

Two real local users (``apr-test-a``, ``apr-test-b``) talk to it over its Unix socket from
forked children running as them (the kernel tells the daemon who they are), and over HTTP
with per-user tokens made by ``apr-sched token add``. The daemon was started with
``APR_SCHED_TOKEN`` and ``FOO`` in its environment, which no job may see.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from apr_sched.client import SchedulerClient
from apr_sched.errors import AuthFailed, Forbidden, InvalidInput
from apr_sched.models import Job, JobStatus
from apr_sched.statedir import read_owner
from tests.conftest import wait_until_sync
from tests.identity_helpers import (
    USER_A,
    USER_B,
    as_user,
    cli_as_user,
    local_user,
    open_dir,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0,
                                reason="needs root: test users, run_as_owner, setuid")

APR_SCHED = [sys.executable, "-m", "apr_sched"]
DAEMON_SECRET = "daemon-secret-token-f00"
CONFIG = textwrap.dedent("""
    [scheduler]
    stop_grace_sec = 1
    run_as_owner = true

    [[hosts]]
    host_id = "local"
    total_slots = 16
    total_cpu = 16
    total_memory_gb = 16
""")


@dataclass
class Daemon:
    proc: subprocess.Popen[bytes]
    root: Path
    state_dir: Path
    url: str
    admin_token: str

    @property
    def socket(self) -> str:
        return f"unix:{self.state_dir / 'apr_sched.sock'}"

    def admin(self) -> SchedulerClient:
        """Root over the socket: an admin by uid."""
        return SchedulerClient(self.socket)

    def http(self, token: str | None) -> SchedulerClient:
        return SchedulerClient(self.url, token)

    def apr(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*APR_SCHED, *args, "--state-dir", str(self.state_dir)],
                              capture_output=True, text=True, timeout=30, env=_env())

    def job(self, job_id: str) -> Job:
        with self.admin() as client:
            return client.job(job_id)

    def wait_status(self, job_id: str, *statuses: JobStatus) -> Job:
        job: Job = wait_until_sync(lambda: (job := self.job(job_id)).status in statuses
                                   and job, timeout=15, interval=0.05,
                                   message=f"job {job_id} to be {statuses}")
        return job


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("APR_SCHED_URL", "APR_SCHED_TOKEN", "APR_SCHED_HOME")}
    return {**env, "COLUMNS": "200", **extra}


@pytest.fixture(scope="module")
def daemon() -> Iterator[Daemon]:
    local_user(USER_A)
    local_user(USER_B)
    with open_dir() as root:
        config = root / "hosts.toml"
        config.write_text(CONFIG)
        state_dir = root / "state"
        with open(root / "daemon.log", "wb") as log:
            proc = subprocess.Popen(
                [*APR_SCHED, "serve", "--state-dir", str(state_dir), "--config", str(config),
                 "--port", "0", "--stop-jobs-on-exit"],
                stdout=log, stderr=subprocess.STDOUT,
                env=_env(APR_SCHED_TOKEN=DAEMON_SECRET, FOO="bar-from-the-daemon"))
        try:
            wait_until_sync(lambda: ((read_owner(state_dir) or {}).get("url")
                                     and (state_dir / "apr_sched.sock").exists())
                            or proc.poll() is not None, timeout=15)
            assert proc.poll() is None, (root / "daemon.log").read_text()
            url = (read_owner(state_dir) or {})["url"]
            token = (state_dir / "token").read_text().strip()
            yield Daemon(proc, root, state_dir, url, token)
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def sleeper(**extra: Any) -> dict[str, Any]:
    return {"command": "sleep 30", "workdir": "/tmp", **extra}


def submit_as(user: str, daemon: Daemon, spec: dict[str, Any]) -> Job:
    def submit() -> Any:
        with SchedulerClient(daemon.socket) as client:
            return client.submit(spec).model_dump(mode="json")

    outcome = as_user(user, submit)
    assert outcome.error is None, outcome
    return Job.model_validate(outcome.value)


def act_as(user: str, daemon: Daemon, action: str, job_id: str) -> Any:
    def act() -> Any:
        with SchedulerClient(daemon.socket) as client:
            return getattr(client, action)(job_id).model_dump(mode="json")

    return as_user(user, act)


def timeline(daemon: Daemon, job_id: str) -> list[str]:
    return [e.reason for e in daemon.job(job_id).events]


# the socket ---------------------------------------------------------------------------------
def test_the_socket_is_open_to_local_users_when_jobs_run_as_their_owners(daemon: Daemon
                                                                         ) -> None:
    sock = daemon.state_dir / "apr_sched.sock"
    assert stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o666
    assert stat.S_IMODE(daemon.state_dir.stat().st_mode) == 0o711  # search, never list
    for name in ("apr_sched.db", "token", "scheduler.json", "scheduler.lock"):
        assert stat.S_IMODE((daemon.state_dir / name).stat().st_mode) == 0o600, name
    with daemon.admin() as client:
        assert client.health()["status"] == "ok"


def test_one_user_cannot_control_anothers_job_over_the_socket(daemon: Daemon) -> None:
    job = submit_as(USER_A, daemon, sleeper(name="a-run"))
    assert job.owner == USER_A  # the caller, though the spec named no owner
    daemon.wait_status(job.job_id, JobStatus.RUNNING)
    before = timeline(daemon, job.job_id)
    for action in ("pause", "resume", "stop", "rerun"):
        refused = act_as(USER_B, daemon, action, job.job_id).refused("Forbidden")
        assert refused.message == (
            f"user {USER_B!r} may not {action} job {job.job_id}: it belongs to {USER_A!r}, "
            "and only its owner or an admin may")
        assert refused.details["owner"] == USER_A
    assert daemon.job(job.job_id).status is JobStatus.RUNNING
    assert timeline(daemon, job.job_id) == before  # nothing changed, nothing recorded

    # the same through the CLI, as a user types it
    code, out, err = cli_as_user(USER_B, ["stop", job.job_id, "--state-dir",
                                          str(daemon.state_dir)])
    assert (code, out) == (1, "")
    assert f"may not stop job {job.job_id}: it belongs to {USER_A!r}" in err
    assert daemon.job(job.job_id).status is JobStatus.RUNNING

    paused = act_as(USER_A, daemon, "pause", job.job_id)
    assert paused.error is None and paused.value["status"] == "PAUSED"
    code, out, err = cli_as_user(USER_A, ["stop", job.job_id, "--state-dir",
                                          str(daemon.state_dir)])
    assert code == 0, err
    daemon.wait_status(job.job_id, JobStatus.STOPPED)


def test_an_admin_controls_anyones_job(daemon: Daemon) -> None:
    job = submit_as(USER_B, daemon, sleeper())
    daemon.wait_status(job.job_id, JobStatus.RUNNING)
    with daemon.admin() as root_on_socket:
        root_on_socket.stop(job.job_id)
    daemon.wait_status(job.job_id, JobStatus.STOPPED)
    with daemon.http(daemon.admin_token) as admin_token:  # the state dir's token: admin too
        assert admin_token.rerun(job.job_id).status is JobStatus.PENDING
        daemon.wait_status(job.job_id, JobStatus.RUNNING)
        admin_token.stop(job.job_id)
    daemon.wait_status(job.job_id, JobStatus.STOPPED)


def test_the_caller_owns_what_it_submits(daemon: Daemon) -> None:
    def count() -> int:
        with daemon.admin() as client:
            return client.jobs(limit=0).total

    before = count()
    refused = as_user(USER_A, lambda: _submit_raw(daemon, {**sleeper(), "owner": USER_B}))
    refused.refused("Forbidden")
    assert refused.details == [{"field": "owner", "message": "only an admin may submit for "
                                f"another user than {USER_A!r}"}]

    def batch() -> Any:
        with SchedulerClient(daemon.socket) as client:
            return client.submit_batch([sleeper(), {**sleeper(), "owner": USER_B}])

    in_batch = as_user(USER_A, batch).refused("Forbidden")
    assert [d["field"] for d in in_batch.details] == ["jobs[1].owner"]
    assert count() == before  # all or nothing: the batch created no job

    mine = as_user(USER_A, lambda: _submit_raw(daemon, {"command": "true", "workdir": "/tmp",
                                                       "owner": USER_A}))
    assert mine.error is None and mine.value["owner"] == USER_A
    with daemon.admin() as admin:
        for_b = admin.submit({"command": "true", "workdir": "/tmp", "owner": USER_B})
        assert for_b.owner == USER_B  # an admin may submit for someone else
        assert admin.submit({"command": "true", "workdir": "/tmp"}).owner == "root"
    daemon.wait_status(for_b.job_id, JobStatus.SUCCEEDED)


def _submit_raw(daemon: Daemon, spec: dict[str, Any]) -> Any:
    with SchedulerClient(daemon.socket) as client:
        return client.submit(spec).model_dump(mode="json")


def test_other_users_see_env_values_redacted(daemon: Daemon) -> None:
    job = submit_as(USER_A, daemon, {"command": "true", "workdir": "/tmp",
                                     "env": {"DB_PASSWORD": "hunter2", "STAGE": "place"}})

    def seen(view: str) -> Any:
        def read() -> Any:
            with SchedulerClient(daemon.socket) as client:
                if view == "job":
                    return client.job(job.job_id).env
                page = client.jobs()
                return next(j.env for j in page.jobs if j.job_id == job.job_id)
        return read

    for view in ("job", "list"):
        assert as_user(USER_B, seen(view)).value == {"DB_PASSWORD": "***", "STAGE": "***"}
        assert as_user(USER_A, seen(view)).value == {"DB_PASSWORD": "hunter2",
                                                     "STAGE": "place"}
    with daemon.admin() as admin:
        assert admin.job(job.job_id).env["DB_PASSWORD"] == "hunter2"


def test_hosts_and_purge_are_for_admins(daemon: Daemon) -> None:
    spec = {"host_id": "b-host", "total_slots": 1, "total_cpu": 1, "total_memory_gb": 1,
            "labels": {"pool": "none"}}

    def attempt(action: str) -> Any:
        def run() -> Any:
            with SchedulerClient(daemon.socket) as client:
                if action == "register":
                    return client.register_host(spec)[0].host_id
                if action == "heartbeat":
                    return client.heartbeat("local")
                if action == "unregister":
                    return client.unregister_host("local").host_id
                if action == "purge":
                    from datetime import UTC, datetime
                    return client.purge(datetime(2000, 1, 1, tzinfo=UTC)).jobs_purged
                return [h.host_id for h in client.hosts()]
        return run

    for action in ("register", "heartbeat", "unregister", "purge"):
        refused = as_user(USER_B, attempt(action)).refused("Forbidden")
        assert "only an admin may" in refused.message
    assert as_user(USER_B, attempt("list")).value == ["local"]  # reading is for everyone
    with daemon.admin() as admin:
        assert [h.host_id for h in admin.hosts()] == ["local"]  # nothing was registered
        admin.register_host(spec)
        assert admin.unregister_host("b-host").host_id == "b-host"


# HTTP with per-user tokens ---------------------------------------------------------------
def test_per_user_tokens_over_http(daemon: Daemon) -> None:
    made = {}
    for user in (USER_A, USER_B):
        done = daemon.apr("token", "add", user)
        assert done.returncode == 0, done.stderr
        made[user] = done.stdout.strip()
        assert made[user].startswith("apr_") and len(made[user]) > 40
        assert f"token for {user} saved (shown only now)" in done.stderr
    listing = daemon.apr("token", "list")
    assert USER_A in listing.stdout and USER_B in listing.stdout
    assert made[USER_A] not in listing.stdout
    # stored hashed: the token itself is nowhere in the database
    with sqlite3.connect(f"file:{daemon.state_dir / 'apr_sched.db'}?mode=ro", uri=True) as db:
        rows = db.execute("SELECT user, digest FROM tokens").fetchall()
    assert {user for user, _ in rows} >= {USER_A, USER_B}
    assert all(made[USER_A] not in digest for _, digest in rows)

    with daemon.http(made[USER_A]) as a, daemon.http(made[USER_B]) as b:
        job = a.submit(sleeper(env={"SECRET": "s3"}))
        assert job.owner == USER_A
        daemon.wait_status(job.job_id, JobStatus.RUNNING)
        with pytest.raises(Forbidden, match=f"may not stop job {job.job_id}"):
            b.stop(job.job_id)
        assert b.job(job.job_id).env == {"SECRET": "***"}
        assert a.job(job.job_id).env == {"SECRET": "s3"}
        assert daemon.job(job.job_id).status is JobStatus.RUNNING
        assert a.stop(job.job_id).job_id == job.job_id
        daemon.wait_status(job.job_id, JobStatus.STOPPED)

        revoked = daemon.apr("token", "revoke", USER_B)
        assert revoked.returncode == 0, revoked.stderr
        with pytest.raises(AuthFailed, match="wrong bearer token"):
            b.jobs()  # at once: the daemon reads the table on every request
        again = daemon.apr("token", "revoke", USER_B)
        assert again.returncode == 1 and "has no token" in again.stderr
        assert a.health()["status"] == "ok"


def test_a_token_user_without_a_local_account_is_refused_at_submit(daemon: Daemon) -> None:
    done = daemon.apr("token", "add", "carol-no-account")
    assert done.returncode == 0, done.stderr
    with daemon.http(done.stdout.strip()) as carol:
        with pytest.raises(InvalidInput, match="'carol-no-account' has no local account") as info:
            carol.submit({"command": "true"})
        assert info.value.details == [{
            "field": "owner", "message": "'carol-no-account' has no local account, and jobs "
                                         "here run as their owner (run_as_owner)"}]
    bad = daemon.apr("token", "add", "../etc")
    assert bad.returncode == 2 and "not a valid user name" in bad.stderr


# what jobs get ----------------------------------------------------------------------------
PRINT_ENV = "env; echo uid=$(id -u) gid=$(id -g) groups=$(id -G)"


def test_jobs_run_as_their_owner_with_a_clean_environment(daemon: Daemon) -> None:
    job = submit_as(USER_A, daemon, {"command": PRINT_ENV, "workdir": "/tmp",
                                     "env": {"MINE": "yes"}})
    daemon.wait_status(job.job_id, JobStatus.SUCCEEDED)
    with daemon.admin() as admin:
        lines = admin.logs(job.job_id, tail=1000)["lines"]
    env = dict(line.split("=", 1) for line in lines if "=" in line and " " not in line[:1])
    account = local_user(USER_A)
    assert f"uid={account.pw_uid} gid={account.pw_gid} groups={account.pw_gid}" in lines
    assert env["USER"] == env["LOGNAME"] == USER_A and env["HOME"] == account.pw_dir
    assert env["MINE"] == "yes" and env["APR_JOB_ID"] == job.job_id
    text = "\n".join(lines)
    assert DAEMON_SECRET not in text and "APR_SCHED_TOKEN" not in text
    assert "FOO" not in env and "bar-from-the-daemon" not in text
    assert "PATH" in env
    log = daemon.state_dir / "logs" / job.job_id / "1.log"
    assert (log.stat().st_uid, stat.S_IMODE(log.stat().st_mode)) == (account.pw_uid, 0o600)


def test_an_admins_job_runs_as_the_daemon_with_a_clean_environment(daemon: Daemon) -> None:
    with daemon.admin() as admin:
        job = admin.submit({"command": PRINT_ENV, "workdir": "/tmp", "env": {"MINE": "root"}})
    daemon.wait_status(job.job_id, JobStatus.SUCCEEDED)
    with daemon.admin() as admin:
        lines = admin.logs(job.job_id, tail=1000)["lines"]
    text = "\n".join(lines)
    assert "uid=0 gid=0" in text and "MINE=root" in text
    assert DAEMON_SECRET not in text and "APR_SCHED_TOKEN" not in text
    assert "FOO=" not in text and "bar-from-the-daemon" not in text
