"""The remote agent's protocol, driven over pipes exactly as the SSH channel drives it
(the same command line, run by a local sh instead of sshd)."""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from apr_sched.executors.ssh import SshExecutor
from apr_sched.executors.ssh_target import SshTarget, parse_ssh_prefix, ssh_target
from apr_sched.models import HostSpec
from tests.conftest import group_members, proc_state, wait_until_sync


class AgentPipe:
    def __init__(self, spool: Path) -> None:
        executor = SshExecutor("h", SshTarget("127.0.0.1"), str(spool),
                               on_reachable=lambda *a: None, on_load=lambda *a: None)
        self.proc = subprocess.Popen(["sh", "-c", executor.agent_command()],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.req = 0
        self.hello = self.read()
        self.notices: list[dict[str, Any]] = []

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line, "agent closed its output"
        return json.loads(line)

    def call(self, **command: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.req += 1
        self.proc.stdin.write(json.dumps({**command, "req": self.req}).encode() + b"\n")
        self.proc.stdin.flush()
        while True:
            message = self.read()
            if message.get("req") == self.req:
                return message
            self.notices.append(message)

    def until(self, op: str, job_id: str, timeout: float = 10.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            for message in self.notices:
                if message["op"] == op and message.get("job_id") == job_id:
                    self.notices.remove(message)
                    return message
            assert time.monotonic() < deadline, f"no {op} for {job_id}"
            self.notices.append(self.read())

    def log_of(self, job_id: str) -> bytes:
        parts = sorted((m["offset"], base64.b64decode(m["data"])) for m in self.notices
                       if m["op"] == "log" and m["job_id"] == job_id)
        return b"".join(data for _, data in parts)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


@pytest.fixture
def agent(tmp_path):
    pipe = AgentPipe(tmp_path / "spool")
    yield pipe
    if pipe.proc.poll() is None:
        pipe.close()


def test_start_streams_the_log_and_reports_the_exit(agent, tmp_path):
    assert agent.hello["op"] == "hello" and agent.hello["spool"] == str(tmp_path / "spool")
    started = agent.call(op="start", job_id="7", attempt=1, command='echo "hi $X"; exit 3',
                         workdir=str(tmp_path), env={"X": "there"})
    assert started["op"] == "started" and started["pgid"] > 1
    exit_notice = agent.until("exit", "7")
    assert exit_notice["rc"] == 3
    assert agent.log_of("7") == b"hi there\n"
    assert (tmp_path / "spool" / "7" / "1.rc").read_text() == "3\n"


def test_signal_pause_and_kill_the_group(agent):
    started = agent.call(op="start", job_id="8", attempt=1, command="sleep 300 & wait",
                         workdir=None, env={})
    pgid = started["pgid"]
    wait_until_sync(lambda: len(group_members(pgid)) >= 2)
    assert agent.call(op="signal", pgid=pgid, signal=int(signal.SIGSTOP))["op"] == "ok"
    wait_until_sync(lambda: all(proc_state(p) in ("T", None) for p in group_members(pgid)))
    agent.call(op="signal", pgid=pgid, signal=int(signal.SIGCONT))
    agent.call(op="signal", pgid=pgid, signal=int(signal.SIGTERM))
    assert agent.until("exit", "8")["rc"] == 143
    assert agent.call(op="signal", pgid=1, signal=0)["op"] == "error"


def test_a_new_agent_finds_running_and_finished_jobs(tmp_path):
    first = AgentPipe(tmp_path / "spool")
    gate = tmp_path / "gate"
    running = first.call(op="start", job_id="1", attempt=1, workdir=None, env={},
                         command=f"echo a; while [ ! -e {gate} ]; do sleep 0.02; done; echo b")
    first.call(op="start", job_id="2", attempt=1, command="echo done", workdir=None, env={})
    first.until("exit", "2")
    first.close()  # the connection drops: jobs keep running
    assert proc_state(running["pgid"]) not in (None, "Z")

    second = AgentPipe(tmp_path / "spool")
    reply = second.call(op="watch", job_id="1", attempt=1, offset=2, pgid=running["pgid"])
    assert reply["state"] == "running"
    assert second.call(op="watch", job_id="2", attempt=1, offset=0)["state"] == "exited"
    assert second.call(op="watch", job_id="3", attempt=1, offset=0)["state"] == "lost"
    gate.touch()
    assert second.until("exit", "1")["rc"] == 0
    assert second.until("exit", "2")["rc"] == 0
    assert second.log_of("1") == b"b\n"  # from offset 2: nothing sent twice
    assert second.log_of("2") == b"done\n"
    second.close()


def test_abandon_kills_a_job_found_by_its_rc_path(agent, tmp_path):
    started = agent.call(op="start", job_id="9", attempt=1, command="sleep 300",
                         workdir=None, env={})
    reply = agent.call(op="abandon", job_id="9", attempt=1, pgid=None)
    assert reply["killed"] is True
    wait_until_sync(lambda: group_members(started["pgid"]) == [])


def test_signal_reaches_marked_processes_and_no_others(agent, tmp_path):
    """A KILL reaches the group and the setsid child carrying the attempt's exact marker,
    also once the group is gone; a near-miss marker and another attempt's are spared."""
    started = agent.call(op="start", job_id="10", attempt=2, workdir=None, env={},
                         command="setsid sh -c \"trap '' TERM; exec sleep 301\" & sleep 302")
    rc = str(tmp_path / "spool" / "10" / "2.rc")

    def carrying(marker: str) -> list[int]:
        return [pid for pid in map(int, filter(str.isdigit, os.listdir("/proc")))
                if _environ_has(pid, f"APR_SCHED_RUN={marker}")
                and proc_state(pid) not in (None, "Z")]

    def escapee() -> list[int]:
        return [pid for pid in carrying(rc) if os.getsid(pid) != started["pgid"]]

    wait_until_sync(escapee)
    decoys = [subprocess.Popen(["sleep", "303"], env={"APR_SCHED_RUN": marker})
              for marker in (rc + ".other", rc.replace("2.rc", "1.rc"))]
    try:
        agent.call(op="signal", pgid=started["pgid"], signal=int(signal.SIGTERM),
                   job_id="10", attempt=2)
        assert agent.until("exit", "10")["rc"] == 143
        wait_until_sync(lambda: carrying(rc) == escapee())  # the group is gone, not it
        assert escapee(), "the setsid child ignores TERM"
        reply = agent.call(op="signal", pgid=started["pgid"], signal=int(signal.SIGKILL),
                           job_id="10", attempt=2)
        assert reply["op"] == "ok"
        wait_until_sync(lambda: carrying(rc) == [])
        assert all(decoy.poll() is None for decoy in decoys)
        again = agent.call(op="signal", pgid=started["pgid"], signal=int(signal.SIGKILL),
                           job_id="10", attempt=2)
        assert again["op"] == "ok"  # nothing left to signal is not an error
    finally:
        for pid in carrying(rc):
            os.kill(pid, signal.SIGKILL)
        for decoy in decoys:
            decoy.kill()
            decoy.wait()


def _environ_has(pid: int, entry: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return entry.encode() in f.read().split(b"\0")
    except OSError:
        return False


def test_signal_refuses_the_agents_own_group_and_a_missing_target(agent):
    for command in ({"pgid": os.getpgrp()}, {"pgid": 1}, {"pgid": None}):
        reply = agent.call(op="signal", signal=0, **command)
        assert reply["op"] == "error", command


def test_start_empties_a_stale_log_and_never_restarts_a_running_attempt(agent, tmp_path):
    job_dir = tmp_path / "spool" / "11"
    job_dir.mkdir(parents=True)
    (job_dir / "1.log").write_bytes(b"left by another state dir\n")
    gate = tmp_path / "gate"
    command = f"echo new; while [ ! -e {gate} ]; do sleep 0.01; done"
    agent.call(op="start", job_id="11", attempt=1, workdir=None, env={}, command=command)
    try:
        wait_until_sync(lambda: (job_dir / "1.log").read_bytes() == b"new\n")
        clash = agent.call(op="start", job_id="11", attempt=1, workdir=None, env={},
                           command="echo twice")
        assert clash["op"] == "error" and "already runs" in clash["message"]
    finally:
        gate.touch()
    exit_notice = agent.until("exit", "11")
    assert exit_notice["rc"] == 0 and exit_notice["size"] == 4
    assert agent.log_of("11") == b"new\n"
    assert (job_dir / "1.log").stat().st_mode & 0o077 == 0


def test_a_start_abandoned_before_it_was_read_is_refused(agent):
    """A start whose reply was lost is abandoned with its token: should that start still
    arrive (read late by a stalled agent), it is refused; a new start of it is not."""
    assert agent.call(op="abandon", job_id="12", attempt=1, pgid=None,
                      token="t1")["killed"] is False
    late = agent.call(op="start", job_id="12", attempt=1, workdir=None, env={},
                      command="echo late", token="t1")
    assert late["op"] == "error" and "given up" in late["message"]
    again = agent.call(op="start", job_id="12", attempt=1, workdir=None, env={},
                       command="echo again", token="t2")
    assert again["op"] == "started"
    assert agent.until("exit", "12")["rc"] == 0
    assert agent.log_of("12") == b"again\n"


def test_probe_reports_load_memory_and_disk(agent):
    probe = agent.call(op="probe")
    assert probe["load_avg_1m"] >= 0 and probe["free_memory_gb"] > 0
    assert probe["free_disk_gb"] > 0


def test_agent_exits_when_its_channel_closes(agent):
    agent.close()
    assert agent.proc.returncode == 0
    assert os.path.isdir(agent.hello["spool"])


@pytest.mark.parametrize(("prefix", "expected"), [
    ("ssh -o BatchMode=yes cad@10.0.0.11", ("10.0.0.11", 22, "cad", None)),
    ("ssh -p 2222 -i ~/.ssh/k -o UserKnownHostsFile=/x/kh root@127.0.0.11",
     ("127.0.0.11", 2222, "root", "~/.ssh/k")),
    ("/usr/bin/ssh -l bob -o Port=23 host-b", ("host-b", 23, "bob", None)),
    ("ssh cad@[::1]:2200", ("::1", 2200, "cad", None)),
])
def test_plain_ssh_prefixes_are_recognised(prefix, expected):
    target = parse_ssh_prefix(prefix)
    assert target is not None
    assert (target.host, target.port, target.user, target.identity_file) == expected


@pytest.mark.parametrize("prefix", [
    "ssh -J jump cad@10.0.0.11", "ssh -t cad@10.0.0.11", "ssh cad@10.0.0.11 nice",
    "ssh -o ProxyCommand=x cad@h", "sudo -u cad", "ssh", "ssh -p", "sh -c",
])
def test_other_prefixes_stay_generic(prefix):
    assert parse_ssh_prefix(prefix) is None


def test_ssh_fields_make_a_target():
    spec = HostSpec(host_id="r", total_slots=1, total_cpu=1, total_memory_gb=1,
                    ssh="cad@127.0.0.12:2200", ssh_known_hosts="/kh", ssh_identity_file="/k")
    target = ssh_target(spec)
    assert target is not None and target.describe() == "cad@127.0.0.12:2200"
    assert target.known_hosts == "/kh" and target.check_host_key
