"""Containment on native SSH hosts: a child that leaves the job's process group with
``setsid`` is still reached by pause, stop and the final SIGKILL, through the
``APR_SCHED_RUN=<rc file>`` marker the agent puts in every job process's environment."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import pytest

from apr_sched import JobStatus, Scheduler
from apr_sched.executors.base import RunHandle
from apr_sched.logs import attempt_files
from tests.conftest import proc_state, wait_until
from tests.sshd import SshHost
from tests.test_ssh_hosts import online, running, ssh_spec

ESCAPEE = "setsid sh -c 'trap \"\" TERM; while :; do echo x; sleep 0.1; done' &"


def marked(host: SshHost, job_id: str, attempt: int = 1) -> set[int]:
    """Live processes on the host carrying this attempt's marker."""
    marker = f"APR_SCHED_RUN={host.spool / job_id / f'{attempt}.rc'}".encode()
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if marker in environ.split(b"\0") and proc_state(int(entry.name)) not in (None, "Z"):
            found.add(int(entry.name))
    return found


def escaped(host: SshHost, job_id: str, pgid: int) -> set[int]:
    """Marked processes outside the job's process group (and session)."""
    escapees = set()
    for pid in marked(host, job_id):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) != pgid:
            escapees.add(pid)
    return escapees


def remote_log_size(host: SshHost, job_id: str) -> int:
    return (host.spool / job_id / "1.log").stat().st_size


async def grows(host: SshHost, job_id: str) -> None:
    size = remote_log_size(host, job_id)
    await wait_until(lambda: remote_log_size(host, job_id) > size, timeout=10,
                     message="the escapee writes")


async def stays_still(host: SshHost, job_id: str) -> None:
    size = remote_log_size(host, job_id)
    await asyncio.sleep(0.3)  # an observation window: nothing may write any more
    assert remote_log_size(host, job_id) == size


async def escapee_job(s: Scheduler, host: SshHost, main: str) -> tuple[str, int]:
    job = await s.submit({"command": f"{ESCAPEE} {main}"})
    pgid = await running(s, job.job_id)
    await wait_until(lambda: escaped(host, job.job_id, pgid), timeout=10,
                     message="the setsid child runs")
    await grows(host, job.job_id)
    return job.job_id, pgid


async def test_pause_resume_and_stop_reach_a_setsid_child(ssh_hosts, make_scheduler):
    """The job ignores SIGTERM, so the stop ends with the SIGKILL after the grace."""
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)], stop_grace_sec=0.3)
    await online(s, host.name)
    job_id, pgid = await escapee_job(s, host, "trap '' TERM; sleep 300")
    (escapee,) = {p for p in escaped(host, job_id, pgid)
                  if Path(f"/proc/{p}/comm").read_text().strip() == "sh"}
    assert (await s.pause(job_id)).status is JobStatus.PAUSED
    await wait_until(lambda: proc_state(escapee) == "T", timeout=5)
    await stays_still(host, job_id)
    assert (await s.resume(job_id)).status is JobStatus.RUNNING
    await grows(host, job_id)
    await s.stop(job_id)
    assert (await s.wait(job_id, 15)).status is JobStatus.STOPPED
    await wait_until(lambda: not marked(host, job_id), timeout=5,
                     message="every marked process ended")
    await stays_still(host, job_id)


async def test_a_sigkill_after_the_group_is_gone_still_ends_the_setsid_child(
        ssh_hosts, make_scheduler):
    """The job dies of SIGTERM at once (STOPPED before the grace), its setsid child lives
    on; the sweep the scheduler sends afterwards (one SIGKILL) must still reach it."""
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)], stop_grace_sec=0.3)
    await online(s, host.name)
    job_id, pgid = await escapee_job(s, host, "sleep 300")
    await s.stop(job_id)
    assert (await s.wait(job_id, 15)).status is JobStatus.STOPPED
    handle = RunHandle(job_id, 1, pgid, attempt_files(s.state_dir, job_id, 1))
    executor = s._executors[host.name]
    await executor.signal(handle, signal.SIGKILL)
    await wait_until(lambda: not marked(host, job_id), timeout=5,
                     message="every marked process ended")
    await stays_still(host, job_id)


@pytest.mark.parametrize("value", ["/elsewhere/1.rc", ""])
async def test_a_job_cannot_choose_its_own_marker(ssh_hosts, make_scheduler, value):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    job = await s.submit({"command": 'echo "$APR_SCHED_RUN"',
                          "env": {"APR_SCHED_RUN": value}})
    assert (await s.wait(job.job_id, 15)).status is JobStatus.SUCCEEDED
    assert (await s.tail_log(job.job_id, 10)).lines == [str(host.spool / job.job_id / "1.rc")]
