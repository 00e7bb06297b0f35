"""The pieces of identity on their own: peer credentials, tokens, the job environment, and
how a client picks the socket or HTTP."""

from __future__ import annotations

import os
import socket
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from apr_sched import HostSpec, JobStatus, Scheduler
from apr_sched.client import find_daemon
from apr_sched.errors import InvalidInput, NotFound
from apr_sched.executors.local import base_environment
from apr_sched.identity import (
    NO_AUTH,
    Identity,
    peer_credentials,
    redacted_env,
    socket_identity,
    user_name,
)
from apr_sched.store import Store
from apr_sched.tokens import add_token, identify_token, list_tokens, revoke_token, token_digest
from tests.conftest import host
from tests.identity_helpers import USER_A, as_user, local_user, open_dir


def test_peer_credentials_come_from_the_kernel() -> None:
    left, right = socket.socketpair(socket.AF_UNIX)
    with left, right:
        peer = peer_credentials(right)
        assert peer is not None and (peer.pid, peer.uid, peer.gid) == (
            os.getpid(), os.getuid(), os.getgid())
        me = socket_identity(peer)
        assert me.admin and me.via == "socket" and me.user == user_name(os.getuid())
    with socket.socket() as tcp:
        assert peer_credentials(tcp) is None
    assert peer_credentials(None) is None


def test_identity_rules() -> None:
    alice = Identity("alice", admin=False, via="token")
    assert alice.may_act_for("alice") and not alice.may_act_for("bob")
    assert Identity("root", admin=True, via="socket").may_act_for("bob")
    assert NO_AUTH.may_act_for("anyone")
    assert redacted_env({"A": "1", "B": "2"}) == {"A": "***", "B": "***"}
    assert user_name(2_000_000_123) == "2000000123"  # a uid with no account


def test_tokens_are_stored_hashed_replaced_and_revoked(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    try:
        token, replaced = add_token(store, "alice")
        assert not replaced and token.startswith("apr_")
        assert identify_token(store, token) == Identity("alice", admin=False, via="token")
        assert identify_token(store, token + "x") is None
        admin_token, _ = add_token(store, "ops", admin=True)
        assert identify_token(store, admin_token) == Identity("ops", admin=True, via="token")
        newer, replaced = add_token(store, "alice")
        assert replaced and identify_token(store, token) is None  # the old one is gone
        assert identify_token(store, newer) is not None
        assert [(t.user, t.admin) for t in list_tokens(store)] == [("alice", False),
                                                                   ("ops", True)]
        revoke_token(store, "alice")
        assert identify_token(store, newer) is None
        with pytest.raises(NotFound, match="'alice' has no token"):
            revoke_token(store, "alice")
        with pytest.raises(InvalidInput, match="not a valid user name"):
            add_token(store, "bad name")
    finally:
        store.close()
    with sqlite3.connect(tmp_path / "db") as db:
        digests = [row[0] for row in db.execute("SELECT digest FROM tokens")]
    assert digests == [token_digest(admin_token)]
    assert admin_token.encode() not in (tmp_path / "db").read_bytes()


def test_the_job_environment_is_an_allow_list() -> None:
    daemon_env = {"PATH": "/usr/bin", "HOME": "/root", "USER": "root", "LOGNAME": "root",
                  "SHELL": "/bin/bash", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
                  "TERM": "xterm", "TMPDIR": "/tmp", "APR_SCHED_TOKEN": "secret",
                  "FOO": "bar", "AWS_SECRET_ACCESS_KEY": "k", "SSH_AUTH_SOCK": "/s",
                  "LD_PRELOAD": "/evil.so", "PYTHONPATH": "/x"}
    kept = base_environment(daemon_env)
    assert set(kept) == {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LC_ALL", "TZ",
                         "TERM", "TMPDIR"}


def test_clients_use_the_socket_unless_told_otherwise(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APR_SCHED_URL", "APR_SCHED_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "token").write_text("file-token\n")
    assert find_daemon(None, None, None, tmp_path) == ("http://127.0.0.1:5000", "file-token")
    with socket.socket(socket.AF_UNIX) as listening:
        listening.bind(str(tmp_path / "apr_sched.sock"))
        sock_url = f"unix:{tmp_path / 'apr_sched.sock'}"
        assert find_daemon(None, None, None, tmp_path) == (sock_url, None)
        assert find_daemon("http://h:1", None, None, tmp_path) == ("http://h:1", "file-token")
        assert find_daemon(None, "t", None, tmp_path) == ("http://127.0.0.1:5000", "t")
        monkeypatch.setenv("APR_SCHED_TOKEN", "env-token")
        assert find_daemon(None, None, None, tmp_path) == ("http://127.0.0.1:5000",
                                                           "env-token")
        monkeypatch.delenv("APR_SCHED_TOKEN")
        monkeypatch.setenv("APR_SCHED_URL", "127.0.0.1:7")
        assert find_daemon(None, None, None, tmp_path)[0] == "http://127.0.0.1:7"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to become a test user")
def test_run_as_owner_needs_a_root_daemon() -> None:
    local_user(USER_A)
    with open_dir() as root:
        def try_it() -> str:
            Scheduler(root / "state", run_as_owner=True)
            return "started"

        refused = as_user(USER_A, try_it).refused("InvalidInput")
        assert refused.details == [{"field": "run_as_owner", "message": "needs root"}]


async def test_no_job_sees_the_daemons_environment(make_scheduler: Any,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """On a local host and on a prefix host whose prefix runs here (``sh -c``) alike."""
    monkeypatch.setenv("APR_SCHED_TOKEN", "daemon-secret")
    monkeypatch.setenv("FOO", "bar-of-the-daemon")
    monkeypatch.setenv("SSH_AUTH_SOCK", "/tmp/agent.sock")
    scheduler = await make_scheduler([host("plain"), HostSpec(
        host_id="prefixed", total_slots=1, total_cpu=1, total_memory_gb=1,
        executor_prefix="sh -c", labels={"via": "prefix"})])
    plain = await scheduler.submit({"command": "env", "env": {"MINE": "1"},
                                    "resource_request": {"cpu": 0}})
    prefixed = await scheduler.submit({"command": "env", "env": {"MINE": "2"},
                                       "resource_request": {"cpu": 0,
                                                            "host_labels": {"via": "prefix"}}})
    for job, mine in ((plain, "MINE=1"), (prefixed, "MINE=2")):
        done = await scheduler.wait(job.job_id, timeout=10)
        assert done.status is JobStatus.SUCCEEDED
        lines = (await scheduler.tail_log(job.job_id, 500)).lines
        assert mine in lines and f"APR_JOB_ID={job.job_id}" in lines
        assert any(line.startswith("PATH=") for line in lines)
        text = "\n".join(lines)
        assert "daemon-secret" not in text and "APR_SCHED_TOKEN" not in text
        assert "bar-of-the-daemon" not in text
    # the prefix command itself may authenticate (its ssh agent), the plain job may not
    assert "SSH_AUTH_SOCK=/tmp/agent.sock" not in (await scheduler.tail_log(plain.job_id,
                                                                           500)).lines
