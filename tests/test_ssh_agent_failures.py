"""The agent on a native SSH host fails: it cannot start (python3 missing or broken in the
login environment, a spool it cannot create), or it stops answering (SIGSTOP). The host
goes OFFLINE with a reason that says so, nothing crashes, and it comes back once fixed."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from apr_sched import HostState, JobStatus, Scheduler
from apr_sched.executors import ssh
from apr_sched.executors.ssh import HostUnavailable
from tests.conftest import proc_state, wait_until
from tests.sshd import SshHost
from tests.test_ssh_hosts import online, running, ssh_spec


async def reason_with(s: Scheduler, host: SshHost, text: str) -> str:
    """The host's state_reason once it contains ``text`` (the host being OFFLINE)."""
    def found() -> str | None:
        h = s._hosts[host.name]
        reason = h.state_reason or ""
        return reason if h.state is HostState.OFFLINE and text in reason else None

    return await wait_until(found, timeout=20, message=f"{host.name} offline, {text!r}")


async def offline_reason(s: Scheduler, text: str) -> str | None:
    """The reason of a recorded host OFFLINE event containing ``text``, if any."""
    for event in await s.events_since(0):
        if event.kind == "host" and event.to_state is HostState.OFFLINE \
                and text in event.reason:
            return event.reason
    return None


@pytest.mark.parametrize(("login_env", "expected"), [
    ({"PATH": "/nonexistent"}, "python3: not found"),
    ({"PYTHONHOME": "/nonexistent"}, "No module named 'encodings'"),
], ids=["python3-missing", "python3-broken"])
async def test_an_agent_that_cannot_start_keeps_the_host_offline_with_the_reason(
        ssh_hosts, make_scheduler, login_env, expected):
    (host,) = ssh_hosts(1)
    host.login_env = login_env
    host.restart()
    s = await make_scheduler(hosts=[ssh_spec(host)])
    reason = await reason_with(s, host, expected)
    assert "did not start" in reason and host.target in reason
    job = await s.submit({"command": "echo ran"})
    assert s._jobs[job.job_id].status is JobStatus.PENDING
    assert (await s.get_host(host.name)).state is HostState.OFFLINE  # still serving
    host.login_env = {}
    host.restart()
    await online(s, host.name, timeout=30)
    assert (await s.wait(job.job_id, 20)).status is JobStatus.SUCCEEDED


async def test_an_agent_that_crashes_at_start_names_its_error(ssh_hosts, make_scheduler,
                                                               tmp_path):
    (host,) = ssh_hosts(1)
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    s = await make_scheduler(hosts=[ssh_spec(host, remote_spool=str(blocker / "spool"))])
    reason = await reason_with(s, host, "NotADirectoryError")
    assert "did not start" in reason and "exit status 1" in reason
    await s.register_host(ssh_spec(host))  # a spool that can be made: it comes back
    await online(s, host.name, timeout=30)


def agents(host: SshHost) -> set[int]:
    """Live agent processes started through this host's sshd."""
    found = set()
    for pid in host.user_pids():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].startswith(b"python3") and b"exec(base64.b64decode" in b" ".join(argv):
            found.add(pid)
    return found


@pytest.mark.parametrize("request_kind", ["signal", "probe"])
async def test_an_agent_that_stops_answering_is_replaced(ssh_hosts, make_scheduler,
                                                          monkeypatch, request_kind):
    """SIGSTOP the agent: the next request (a user's pause, or the periodic probe) times
    out, the host goes OFFLINE saying so, a new agent takes over, the job is untouched."""
    monkeypatch.setattr(ssh, "REPLY_TIMEOUT_SEC", 2.0)
    monkeypatch.setattr(ssh, "PROBE_INTERVAL_SEC", 0.2 if request_kind == "probe" else 60)
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    job = await s.submit({"command": "sleep 300"})
    pgid = await running(s, job.job_id)
    (stuck,) = agents(host)
    os.kill(stuck, signal.SIGSTOP)
    try:
        if request_kind == "signal":
            t0 = time.monotonic()
            with pytest.raises(HostUnavailable, match="did not answer a signal request"):
                await s.pause(job.job_id)
            assert time.monotonic() - t0 >= 2.0
        reason = await wait_until(lambda: offline_reason(s, "did not answer"), timeout=15)
        assert f"did not answer a {request_kind} request within 2s" in reason
        assert host.target in reason
        await wait_until(lambda: s._hosts[host.name].state is HostState.ONLINE
                         and agents(host) - {stuck}, timeout=30, message="a new agent")
        assert s._jobs[job.job_id].status is JobStatus.RUNNING
        assert proc_state(pgid) not in (None, "Z"), "the job must not be touched"
        await s.stop(job.job_id)
        assert (await s.wait(job.job_id, 15)).status is JobStatus.STOPPED
    finally:
        os.kill(stuck, signal.SIGCONT)
    # continued, the old agent finds its channel gone and exits
    await wait_until(lambda: proc_state(stuck) in (None, "Z"), timeout=10)


async def test_a_start_whose_reply_is_lost_never_runs_unseen(ssh_hosts, make_scheduler,
                                                              monkeypatch, tmp_path):
    """The agent is stopped while a start is on its way: the start fails for the scheduler,
    so the job must not run there later, when the old agent wakes up and reads it."""
    monkeypatch.setattr(ssh, "REPLY_TIMEOUT_SEC", 2.0)
    monkeypatch.setattr(ssh, "PROBE_INTERVAL_SEC", 60)
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    (stuck,) = agents(host)
    os.kill(stuck, signal.SIGSTOP)
    ledger = tmp_path / "ledger"
    try:
        job = await s.submit({"command": f"echo ran >> {ledger}; sleep 300"})
        done = await s.wait(job.job_id, 20)
        assert done.status is JobStatus.FAILED
        reason = (await s.get_job(job.job_id)).attempts[-1].reason or ""
        assert "did not answer a start request" in reason and "killed" in reason
        await wait_until(lambda: s._hosts[host.name].state is HostState.ONLINE
                         and agents(host) - {stuck}, timeout=30, message="a new agent")
    finally:
        os.kill(stuck, signal.SIGCONT)
    await wait_until(lambda: proc_state(stuck) in (None, "Z"), timeout=10)
    await wait_until(lambda: not host.user_pids() - agents(host), timeout=5,
                     message="nothing but the new agent runs there")
    assert not ledger.exists(), "the abandoned start ran"
