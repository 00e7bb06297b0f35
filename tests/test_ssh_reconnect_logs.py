"""A native SSH host's sshd dies at every moment of a job: before its first output, in the
middle of it, while the scheduler is logging in again, and as the job ends. The local log
must come out byte for byte what the job wrote on the host (whose own log file is the
ground truth), and the job's processes must not notice (no ``Terminated``)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

from apr_sched import HostState, JobStatus, Scheduler
from apr_sched.executors.ssh import SshExecutor, _Watch
from apr_sched.executors.ssh_target import SshTarget
from apr_sched.logs import attempt_files
from tests.conftest import group_members, wait_until
from tests.sshd import SshHost
from tests.test_ssh_hosts import online, running, ssh_spec


def remote_log(host: SshHost, job_id: str, attempt: int = 1) -> bytes:
    try:
        return (host.spool / job_id / f"{attempt}.log").read_bytes()
    except FileNotFoundError:
        return b""


def local_log(s: Scheduler, job_id: str, attempt: int = 1) -> bytes:
    try:
        return attempt_files(s.state_dir, job_id, attempt).log.read_bytes()
    except FileNotFoundError:
        return b""


def numbered(last: int, tail: bytes = b"") -> bytes:
    return b"".join(b"line-%d\n" % i for i in range(1, last + 1)) + tail


def last_number(log: bytes) -> int:
    lines = [line for line in log.split(b"\n") if line.startswith(b"line-")]
    return int(lines[-1][5:]) if lines else 0


def logins(host: SshHost) -> int:
    return host.log_text.count("Accepted publickey")


def job_shells(pgid: int) -> set[int]:
    """The long-lived ``sh`` processes of a job (not its short ``sleep`` children)."""
    shells = set()
    for pid in group_members(pgid):
        try:
            if Path(f"/proc/{pid}/comm").read_text().strip() == "sh":
                shells.add(pid)
        except OSError:
            continue  # a sleep that just ended
    return shells


async def offline(s: Scheduler, host: SshHost) -> None:
    await wait_until(lambda: s._hosts[host.name].state is HostState.OFFLINE, timeout=20,
                     message=f"{host.name} offline")


async def test_sshd_killed_at_every_moment_of_a_job_keeps_its_log_exact(
        ssh_hosts, make_scheduler, tmp_path):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    gates = tmp_path / "gates"
    gates.mkdir()
    job = await s.submit({"command": (
        f"while [ ! -e {gates}/output ]; do sleep 0.01; done; i=0; "
        f"while [ ! -e {gates}/end ]; do i=$((i+1)); echo line-$i; sleep 0.005; done; "
        f"echo the-end")})
    job_id = job.job_id
    pgid = await running(s, job_id)
    shells = job_shells(pgid)
    assert len(shells) == 2  # the wrapper and the subshell running the command

    # 1. before the first output; the output starts while the host is away
    host.kill()
    await offline(s, host)
    (gates / "output").touch()
    await wait_until(lambda: last_number(remote_log(host, job_id)) >= 5)
    host.restart()
    await online(s, host.name, timeout=30)
    await wait_until(lambda: last_number(local_log(s, job_id)) >= 20, timeout=15)

    # 2. in the middle of the output, which goes on while the host is away
    host.kill()
    await offline(s, host)
    seen = last_number(remote_log(host, job_id))
    await wait_until(lambda: last_number(remote_log(host, job_id)) >= seen + 5)
    host.restart()
    await online(s, host.name, timeout=30)
    await wait_until(lambda: last_number(local_log(s, job_id)) >= seen + 20, timeout=15)

    # 3. while the scheduler logs in again and re-attaches
    host.kill()
    await offline(s, host)
    before = logins(host)
    host.restart()
    await wait_until(lambda: logins(host) > before, timeout=30, message="a new login")
    host.kill()
    host.restart()
    await online(s, host.name, timeout=30)
    seen = last_number(remote_log(host, job_id))
    await wait_until(lambda: last_number(local_log(s, job_id)) >= seen + 5, timeout=15)
    assert s._jobs[job_id].status is JobStatus.RUNNING
    assert job_shells(pgid) == shells, "the job's processes were disturbed"

    # 4. as the job ends: its last lines and its exit happen while the host is away
    (gates / "end").touch()
    host.kill()
    await wait_until(lambda: (host.spool / job_id / "1.rc").exists(), timeout=10)
    host.restart()
    done = await s.wait(job_id, 30)

    assert done.status is JobStatus.SUCCEEDED and done.attempt == 1
    truth = remote_log(host, job_id)
    assert truth == numbered(last_number(truth), b"the-end\n"), "the job's own log is odd"
    assert local_log(s, job_id) == truth


async def test_sshd_killed_while_a_large_log_streams_resumes_byte_for_byte(
        ssh_hosts, make_scheduler, tmp_path):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    gate = tmp_path / "gate"
    job = await s.submit({"command": f"seq 1 400000; while [ ! -e {gate} ]; do sleep 0.01; "
                                     f"done; seq 400001 400100"})
    await running(s, job.job_id)
    expected_first = b"".join(b"%d\n" % i for i in range(1, 400001))
    await wait_until(lambda: remote_log(host, job.job_id) == expected_first, timeout=15)
    await wait_until(lambda: len(local_log(s, job.job_id)) > 300_000, timeout=15)
    assert len(local_log(s, job.job_id)) < len(expected_first), "streamed before the kill"
    host.kill()
    await offline(s, host)
    host.restart()
    await online(s, host.name, timeout=30)
    await wait_until(lambda: local_log(s, job.job_id) == expected_first, timeout=20)
    gate.touch()
    done = await s.wait(job.job_id, 30)
    assert done.status is JobStatus.SUCCEEDED
    expected = expected_first + b"".join(b"%d\n" % i for i in range(400001, 400101))
    assert remote_log(host, job.job_id) == expected
    assert local_log(s, job.job_id) == expected


async def test_a_stale_remote_log_of_the_same_job_id_is_not_streamed(
        ssh_hosts, make_scheduler, tmp_path):
    """Job ids start at 1 in every state dir: a second scheduler sharing the host's spool
    (or the same one after its state dir was wiped) must not inherit the old bytes."""
    (host,) = ssh_hosts(1)
    for run in ("first", "second"):
        s = await make_scheduler(hosts=[ssh_spec(host)], state_dir=tmp_path / run)
        await online(s, host.name)
        job = await s.submit({"command": f"echo {run}-run"})
        assert (await s.wait(job.job_id, 20)).status is JobStatus.SUCCEEDED
        assert local_log(s, job.job_id) == f"{run}-run\n".encode()
        assert remote_log(host, job.job_id) == f"{run}-run\n".encode()
        await s.close()


async def test_an_attempt_already_running_on_the_host_is_not_started_over(
        ssh_hosts, make_scheduler, tmp_path):
    """Two state dirs sharing a spool: the second scheduler's job 1 must not truncate the
    log or remove the rc file of the first one's job 1 while it runs."""
    (host,) = ssh_hosts(1)
    first = await make_scheduler(hosts=[ssh_spec(host)], state_dir=tmp_path / "first")
    await online(first, host.name)
    gate = tmp_path / "gate"
    job = await first.submit({"command": f"echo first; while [ ! -e {gate} ]; "
                                         f"do sleep 0.01; done"})
    await running(first, job.job_id)
    await wait_until(lambda: local_log(first, job.job_id) == b"first\n")
    second = await make_scheduler(hosts=[ssh_spec(host)], state_dir=tmp_path / "second")
    await online(second, host.name)
    clash = await second.submit({"command": "echo second"})
    assert clash.job_id == job.job_id
    refused = await second.wait(clash.job_id, 20)
    assert refused.status is JobStatus.FAILED
    reason = (await second.get_job(clash.job_id)).attempts[-1].reason or ""
    assert "already runs" in reason
    gate.touch()
    assert (await first.wait(job.job_id, 20)).status is JobStatus.SUCCEEDED
    assert local_log(first, job.job_id) == b"first\n" == remote_log(host, job.job_id)


async def test_a_local_log_that_falls_behind_is_filled_in_from_the_host(
        ssh_hosts, make_scheduler, tmp_path):
    """The local log loses its bytes (removed under a running job): the next bytes leave a
    gap, and the stream is resumed from the local size; an exit reported before the local
    log is whole waits for the missing bytes."""
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    gate = tmp_path / "gate"
    job = await s.submit({"command": f"seq 1 1000; while [ ! -e {gate}1 ]; do sleep 0.01; "
                                     f"done; seq 1001 2000; while [ ! -e {gate}2 ]; "
                                     f"do sleep 0.01; done"})
    await running(s, job.job_id)
    first = b"".join(b"%d\n" % i for i in range(1, 1001))
    await wait_until(lambda: local_log(s, job.job_id) == first, timeout=15)
    local = attempt_files(s.state_dir, job.job_id, 1).log
    local.unlink()
    gate.with_name("gate1").touch()  # bytes from offset 3893 come to an empty file: a gap
    whole = first + b"".join(b"%d\n" % i for i in range(1001, 2001))
    await wait_until(lambda: local_log(s, job.job_id) == whole, timeout=15)
    local.unlink()
    gate.with_name("gate2").touch()  # an exit with no new bytes, reported to an empty log
    done = await s.wait(job.job_id, 20)
    assert done.status is JobStatus.SUCCEEDED
    assert local_log(s, job.job_id) == whole == remote_log(host, job.job_id)


def watch_on(path: Path) -> _Watch:
    files = attempt_files(path, "1", 1)
    files.dir.mkdir(parents=True)
    files.log.touch()
    return _Watch("1", 1, files, None, None)  # type: ignore[arg-type]


def test_log_bytes_already_held_are_trimmed_and_gaps_are_refused(tmp_path):
    """The dedup rule on its own, on a real file: the local size decides."""
    watch = watch_on(tmp_path)
    assert watch.append(0, b"abc")
    assert watch.append(0, b"abcdef")        # a re-sent stream: only "def" is new
    assert watch.append(2, b"cdefgh")        # an overlap in the middle
    assert watch.append(8, b"")
    assert not watch.append(10, b"kl")       # a gap: bytes 8-9 are missing
    assert watch.append(8, b"ij")
    assert watch.append(3, b"def")           # entirely old
    assert watch.files.log.read_bytes() == b"abcdefghij"
    os.truncate(watch.files.log, 4)          # the local file is the truth, whatever its size
    assert watch.append(0, b"abcdefghij")
    assert watch.files.log.read_bytes() == b"abcdefghij"


def test_a_second_watch_of_a_running_attempt_streams_an_overlap_that_is_trimmed(tmp_path):
    """Two watch requests for one attempt (a re-attach racing a resync) make the agent send
    bytes we have again; appended as they come, the local log stays exact."""
    spool = tmp_path / "spool"
    executor = SshExecutor("h", SshTarget("127.0.0.1"), str(spool),
                           on_reachable=lambda *a: None, on_load=lambda *a: None)
    agent = subprocess.Popen(["sh", "-c", executor.agent_command()], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE)
    assert agent.stdin is not None and agent.stdout is not None
    watch = watch_on(tmp_path / "state")
    gate = tmp_path / "gate"

    def send(**command: object) -> None:
        assert agent.stdin is not None
        agent.stdin.write(json.dumps({"req": 0, **command}).encode() + b"\n")
        agent.stdin.flush()

    send(op="start", job_id="1", attempt=1, workdir=None, env={},
         command=f"seq 1 1000; while [ ! -e {gate} ]; do sleep 0.01; done; seq 1001 1010")
    overlaps = 0
    rewound = False
    try:
        while True:
            message = json.loads(agent.stdout.readline())
            if message["op"] == "log":
                data = base64.b64decode(message["data"])
                overlaps += message["offset"] < watch.files.log.stat().st_size
                assert watch.append(message["offset"], data)
                if not rewound and watch.files.log.stat().st_size >= 3000:
                    rewound = True
                    send(op="watch", job_id="1", attempt=1, offset=100)
                    gate.touch()
            elif message["op"] == "exit":
                break
    finally:
        gate.touch()  # the job ends whatever happened
        agent.stdin.close()
        agent.wait(10)
    assert overlaps >= 1
    assert watch.files.log.read_bytes() == b"".join(b"%d\n" % i for i in range(1, 1011))
    assert watch.files.log.read_bytes() == (spool / "1" / "1.log").read_bytes()

