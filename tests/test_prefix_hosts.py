"""Generic executor_prefix hosts (``ssh -T ...``, which is not taken over natively) against a
real sshd on 127.0.0.11: stop, timeout, pause and resume reach the remote processes through
a second invocation of the prefix, and nothing of an ended attempt keeps running there."""

from __future__ import annotations

import asyncio
import shlex
from pathlib import Path

import pytest

from apr_sched import HostSpec, JobStatus, Scheduler
from apr_sched.executors.base import Launch
from apr_sched.executors.prefix import PrefixExecutor
from apr_sched.executors.ssh import HostUnavailable
from apr_sched.executors.ssh_target import parse_ssh_prefix
from apr_sched.logs import attempt_files
from tests.conftest import proc_state, wait_until
from tests.sshd import SshHost


def generic_prefix(host: SshHost) -> str:
    """The test host's ssh line with ``-T``: a prefix apr_sched must run as it is."""
    argv = host.ssh_argv()
    prefix = shlex.join([argv[0], "-T", *argv[1:]])
    assert parse_ssh_prefix(prefix) is None
    return prefix


def prefix_spec(host: SshHost, **fields: object) -> HostSpec:
    return HostSpec.model_validate({
        "host_id": "viaprefix", "total_slots": 4, "total_cpu": 4, "total_memory_gb": 8,
        "executor_prefix": generic_prefix(host), "remote_spool": str(host.spool), **fields})


def marked(entry: str) -> set[int]:
    """Live processes whose environment holds exactly ``entry`` (read here, independently)."""
    wanted = entry.encode()
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            variables = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in variables and proc_state(int(proc.name)) not in (None, "Z"):
            found.add(int(proc.name))
    return found


def remote_entry(host: SshHost, job_id: str, attempt: int = 1) -> str:
    return f"APR_SCHED_RUN={host.spool}/{job_id}/{attempt}.rc"


async def log_lines(s: Scheduler, job_id: str) -> list[str]:
    return (await s.tail_log(job_id, 1000)).lines


async def nothing_left(host: SshHost, job_id: str) -> None:
    """No process of the attempt on the far side, and nothing sshd started still alive."""
    await wait_until(lambda: not marked(remote_entry(host, job_id)) and not host.user_pids(),
                     timeout=10, message=f"remote processes of job {job_id} gone")


async def test_timeout_ends_the_remote_job(ssh_hosts, make_scheduler):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[prefix_spec(host)], stop_grace_sec=1.0)
    job = await s.submit({"command": "echo started; sleep 31", "timeout_sec": 1.0})
    await wait_until(lambda: marked(remote_entry(host, job.job_id)), timeout=10)
    done = await s.wait(job.job_id, 15)
    assert done.status is JobStatus.TIMEOUT
    assert done.signal == "SIGTERM"  # the remote job's own end, relayed by the prefix
    await nothing_left(host, job.job_id)
    assert (await log_lines(s, job.job_id))[0] == "started"  # (then maybe sh's "Terminated")


async def test_stop_escalates_to_sigkill_on_the_remote_side(ssh_hosts, make_scheduler):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[prefix_spec(host)], stop_grace_sec=0.5)
    job = await s.submit({"command": "trap '' TERM; echo armed; while :; do sleep 0.2; done"})

    async def armed() -> bool:
        return await log_lines(s, job.job_id) == ["armed"]

    await wait_until(armed, timeout=10)
    await s.stop(job.job_id)
    done = await s.wait(job.job_id, 15)
    assert done.status is JobStatus.STOPPED and done.signal == "SIGKILL"
    await nothing_left(host, job.job_id)


async def test_pause_and_resume_reach_every_remote_process(ssh_hosts, make_scheduler,
                                                            tmp_path):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[prefix_spec(host)])
    counter = tmp_path / "counter"
    job = await s.submit({"command": f"sleep 300 & while :; do echo x >> {counter}; "
                                     f"sleep 0.02; done"})
    entry = remote_entry(host, job.job_id)
    await wait_until(lambda: counter.exists() and counter.stat().st_size > 10, timeout=10)
    remote = marked(entry)
    assert len(remote) >= 3  # wrapper, its subshell, the background sleep (and a sleep 0.02)
    assert (await s.pause(job.job_id)).status is JobStatus.PAUSED
    await wait_until(lambda: all(proc_state(p) in ("T", None) for p in marked(entry)))
    size = counter.stat().st_size
    await asyncio.sleep(0.3)  # an observation window: a paused job must not write
    assert counter.stat().st_size == size
    assert (await s.resume(job.job_id)).status is JobStatus.RUNNING
    await wait_until(lambda: counter.stat().st_size > size + 10)
    assert not any(proc_state(p) == "T" for p in marked(entry))
    await s.stop(job.job_id)
    assert (await s.wait(job.job_id, 15)).status is JobStatus.STOPPED
    await nothing_left(host, job.job_id)


async def test_a_paused_job_acts_on_the_stop_at_once(ssh_hosts, make_scheduler):
    """SIGTERM goes out with a SIGCONT in the same invocation of the prefix, so a paused job
    ends by the SIGTERM, long before the SIGKILL after the (long) grace."""
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[prefix_spec(host)], stop_grace_sec=60)
    job = await s.submit({"command": "sleep 300"})
    entry = remote_entry(host, job.job_id)
    await wait_until(lambda: marked(entry), timeout=10)
    assert (await s.pause(job.job_id)).status is JobStatus.PAUSED
    await wait_until(lambda: all(proc_state(p) == "T" for p in marked(entry)))
    await s.stop(job.job_id)
    done = await s.wait(job.job_id, 15)
    assert done.status is JobStatus.STOPPED and done.signal == "SIGTERM"
    await nothing_left(host, job.job_id)


async def test_output_exit_code_env_and_workdir_cross_the_prefix(ssh_hosts, make_scheduler,
                                                                 tmp_path):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[prefix_spec(host)])
    job = await s.submit({"command": 'echo "out $SECRET" "$(pwd)"; echo err >&2; exit 7',
                          "workdir": str(tmp_path), "env": {"SECRET": "a 'b' $c"}})
    done = await s.wait(job.job_id, 15)
    assert done.status is JobStatus.FAILED and done.exit_code == 7
    assert sorted(await log_lines(s, job.job_id)) == ["err", f"out a 'b' $c {tmp_path}"]
    assert not (host.spool / job.job_id).exists()  # the remote rc file was relayed, then removed


async def test_setsid_escape_on_the_remote_side_is_contained(ssh_hosts, make_scheduler):
    """A child that left the job's session and ignores SIGTERM still holds the job's output,
    so the attempt runs on until the SIGKILL after the grace, which finds it by its marker."""
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[prefix_spec(host)], stop_grace_sec=0.5)
    job = await s.submit({"command": "setsid sh -c 'trap \"\" TERM; while :; do sleep 0.1; "
                                     "done' & sleep 300"})
    entry = remote_entry(host, job.job_id)
    await wait_until(lambda: len({_session(p) for p in marked(entry)}) == 2, timeout=10)
    await s.stop(job.job_id)
    assert (await s.wait(job.job_id, 15)).status is JobStatus.STOPPED
    reasons = [e.reason for e in (await s.get_job(job.job_id)).events]
    assert "stop requested: SIGTERM sent, SIGKILL in 0.5s" in reasons
    await nothing_left(host, job.job_id)


async def test_a_dropped_connection_does_not_leave_the_job_running(ssh_hosts, make_scheduler):
    """sshd dies with the job running: the local ssh fails (255, FAILED), the remote job
    keeps running; once the host answers again, the sweep ends it."""
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[prefix_spec(host)])
    job = await s.submit({"command": "sleep 300"})
    entry = remote_entry(host, job.job_id)
    await wait_until(lambda: marked(entry), timeout=10)
    host.kill()
    done = await s.wait(job.job_id, 15)
    assert done.status is JobStatus.FAILED and done.exit_code == 255
    assert marked(entry)
    host.restart()
    await wait_until(lambda: not marked(entry), timeout=15, message="swept after reconnect")


async def test_a_prefix_that_does_not_run_the_control_script_is_an_error(tmp_path):
    executor = PrefixExecutor("mute", "true", str(tmp_path / "spool"))
    files = attempt_files(tmp_path / "state", "j1", 1)
    handle = await executor.start(Launch("j1", 1, "mute", "sleep 30", None, {}, files))
    assert (await executor.wait(handle)).exit_code == 0
    with pytest.raises(HostUnavailable, match=r"'true' did not run the control script"):
        await executor.signal(handle, 19)
    await executor.close()


def _session(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None
