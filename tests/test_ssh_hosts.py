"""Native SSH hosts against real sshd servers on 127.0.0.11, .12, ...: placement, remote
pause/resume/stop, timeouts, live logs, lost connections, lost hosts, restarts, host keys."""

from __future__ import annotations

import asyncio

from apr_sched import HostSpec, HostState, JobStatus, Scheduler
from tests.conftest import group_members, proc_state, wait_until
from tests.sshd import SshHost, wrong_known_hosts


def ssh_spec(host: SshHost, host_id: str | None = None, slots: int = 4,
             **overrides: object) -> HostSpec:
    fields: dict[str, object] = dict(
        host_id=host_id or host.name, total_slots=slots, total_cpu=slots,
        total_memory_gb=8, ssh=host.target, ssh_identity_file=str(host.client_key),
        ssh_known_hosts=str(host.known_hosts), remote_spool=str(host.spool))
    fields.update(overrides)
    return HostSpec.model_validate(fields)


async def online(s: Scheduler, *host_ids: str, timeout: float = 15) -> None:
    await wait_until(lambda: all(s._hosts[h].state is HostState.ONLINE for h in host_ids),
                     timeout=timeout, message=f"hosts {host_ids} online")


async def running(s: Scheduler, job_id: str) -> int:
    return await wait_until(lambda: s._jobs[job_id].status is JobStatus.RUNNING
                            and s._jobs[job_id].pgid, message=f"job {job_id} running")


async def log_lines(s: Scheduler, job_id: str) -> list[str]:
    return (await s.tail_log(job_id, 1000)).lines


async def test_jobs_spread_over_three_hosts_by_load(ssh_hosts, make_scheduler):
    hosts = ssh_hosts(3)
    s = await make_scheduler(hosts=[ssh_spec(h, slots=2) for h in hosts])
    await online(s, *(h.name for h in hosts))
    jobs = await s.submit_batch([{"command": "sleep 30"} for _ in range(6)])
    for job in jobs:
        await running(s, job.job_id)
    placed = sorted(s._jobs[j.job_id].host_id for j in jobs)
    assert placed == ["ssh1", "ssh1", "ssh2", "ssh2", "ssh3", "ssh3"]
    host = await s.get_host("ssh1")
    assert host.running_jobs == 2 and host.load is not None


async def test_remote_pause_resume_and_stop_reach_the_process_group(ssh_hosts, make_scheduler,
                                                                     tmp_path):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    counter = tmp_path / "counter"
    job = await s.submit({"command": f"sleep 300 & while :; do echo x >> {counter}; "
                                     f"sleep 0.02; done"})
    pgid = await running(s, job.job_id)
    await wait_until(lambda: counter.exists() and counter.stat().st_size > 10)
    members = group_members(pgid)
    assert len(members) >= 3
    assert (await s.pause(job.job_id)).status is JobStatus.PAUSED
    # a sleep that exited just before the stop stays a zombie while its parent is stopped
    await wait_until(lambda: all(proc_state(p) in ("T", "Z", None) for p in members))
    size = counter.stat().st_size
    await asyncio.sleep(0.3)  # an observation window: a paused job must not write
    assert counter.stat().st_size == size
    assert (await s.resume(job.job_id)).status is JobStatus.RUNNING
    await wait_until(lambda: counter.stat().st_size > size + 10)
    await s.stop(job.job_id)
    assert (await s.wait(job.job_id, 15)).status is JobStatus.STOPPED
    await wait_until(lambda: group_members(pgid) == [], timeout=5)


async def test_remote_timeout_and_exit_codes(ssh_hosts, make_scheduler):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)], stop_grace_sec=0.5)
    await online(s, host.name)
    slow = await s.submit({"command": "sleep 30", "timeout_sec": 0.5})
    failing = await s.submit({"command": "echo oops >&2; exit 7"})
    assert (await s.wait(slow.job_id, 15)).status is JobStatus.TIMEOUT
    done = await s.wait(failing.job_id, 15)
    assert done.status is JobStatus.FAILED and done.exit_code == 7
    assert await log_lines(s, failing.job_id) == ["oops"]


async def test_live_log_lines_arrive_within_a_second(ssh_hosts, make_scheduler, tmp_path):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    gate = tmp_path / "gate"
    job = await s.submit({"command": f"echo first; while [ ! -e {gate} ]; do sleep 0.02; done;"
                                     f" echo second"})
    await wait_until(lambda: log_lines(s, job.job_id), timeout=5)
    assert await log_lines(s, job.job_id) == ["first"]
    gate.touch()
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def second_seen() -> bool:
        return await log_lines(s, job.job_id) == ["first", "second"]

    await wait_until(second_seen, timeout=5)
    assert loop.time() - t0 < 1.0
    assert (await s.wait(job.job_id, 10)).status is JobStatus.SUCCEEDED


async def test_sshd_killed_mid_job_then_back_loses_nothing(ssh_hosts, make_scheduler,
                                                            tmp_path):
    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    gate = tmp_path / "gate"
    command = (f"i=0; while [ ! -e {gate} ]; do i=$((i+1)); echo line$i; sleep 0.01; done; "
               f"for j in 1 2 3; do i=$((i+1)); echo line$i; done")
    job = await s.submit({"command": command})
    await running(s, job.job_id)
    await wait_until(lambda: log_lines(s, job.job_id), timeout=5)
    host.kill()
    await wait_until(lambda: s._hosts[host.name].state is HostState.OFFLINE, timeout=20)
    assert s._jobs[job.job_id].status is JobStatus.RUNNING
    host.restart()
    await online(s, host.name, timeout=30)
    gate.touch()
    done = await s.wait(job.job_id, 20)
    assert done.status is JobStatus.SUCCEEDED
    lines = await log_lines(s, job.job_id)
    assert lines == [f"line{i}" for i in range(1, len(lines) + 1)], "missing or repeated"
    assert len(lines) > 10


async def test_host_that_never_returns_gets_its_job_requeued(ssh_hosts, make_scheduler,
                                                              tmp_path):
    first, second = ssh_hosts(2)
    s = await make_scheduler(hosts=[ssh_spec(first)], host_lost_after_sec=1.0)
    await online(s, first.name)
    gate = tmp_path / "gate"
    job = await s.submit({"command": f'echo "on $APR_HOST"; while [ ! -e {gate} ]; '
                                     f"do sleep 0.02; done", "retry_limit": 1})
    await running(s, job.job_id)
    await s.register_host(ssh_spec(second))
    await online(s, second.name)
    first.kill()
    await wait_until(lambda: s._jobs[job.job_id].attempt == 2, timeout=30)
    await wait_until(lambda: s._jobs[job.job_id].host_id == second.name, timeout=15)
    gate.touch()
    done = await s.wait(job.job_id, 15)
    assert done.status is JobStatus.SUCCEEDED and done.host_id == second.name
    full = await s.get_job(job.job_id)
    assert full.attempts[0].status is JobStatus.FAILED
    assert "unreachable" in (full.attempts[0].reason or "")


async def test_scheduler_restart_while_remote_jobs_run(ssh_hosts, make_scheduler, tmp_path,
                                                        state_dir):
    (host,) = ssh_hosts(1)
    spec = ssh_spec(host)
    s1 = await make_scheduler(hosts=[spec])
    await online(s1, host.name)
    gate = tmp_path / "gate"
    job = await s1.submit({"command": f"echo before; while [ ! -e {gate} ]; do sleep 0.02; "
                                      f"done; echo after"})
    await running(s1, job.job_id)
    await wait_until(lambda: log_lines(s1, job.job_id), timeout=5)
    await s1.close()
    s2 = await make_scheduler(hosts=[spec])
    await online(s2, host.name)
    gate.touch()
    done = await s2.wait(job.job_id, 20)
    assert done.status is JobStatus.SUCCEEDED
    assert await log_lines(s2, job.job_id) == ["before", "after"]


async def test_changed_host_key_refuses_the_host(ssh_hosts, make_scheduler, tmp_path):
    (host,) = ssh_hosts(1)
    bad = wrong_known_hosts(host, tmp_path / "known_hosts_changed")
    s = await make_scheduler(hosts=[ssh_spec(host, ssh_known_hosts=str(bad))])
    await wait_until(lambda: "host key" in (s._hosts[host.name].state_reason or ""),
                     timeout=15)
    assert s._hosts[host.name].state is HostState.OFFLINE
    job = await s.submit({"command": "true"})
    await asyncio.sleep(0.2)  # an observation window: nothing may be dispatched there
    assert s._jobs[job.job_id].status is JobStatus.PENDING
    assert host.user_pids() == set()


async def test_seed_style_prefix_runs_natively(ssh_hosts, make_scheduler, tmp_path):
    (host,) = ssh_hosts(1)
    spec = HostSpec(host_id="host-a", total_slots=8, total_cpu=32, total_memory_gb=128,
                    executor_prefix=host.prefix, remote_spool=str(host.spool),
                    labels={"tool": "innovus"})
    s = await make_scheduler(hosts=[spec])
    await online(s, "host-a")
    job = await s.submit({"command": "sleep 30",
                          "resource_request": {"host_labels": {"tool": "innovus"}}})
    pgid = await running(s, job.job_id)
    assert (await s.pause(job.job_id)).status is JobStatus.PAUSED
    await wait_until(lambda: all(proc_state(p) in ("T", None) for p in group_members(pgid)))
    assert (await s.resume(job.job_id)).status is JobStatus.RUNNING
    await s.stop(job.job_id)
    assert (await s.wait(job.job_id, 15)).status is JobStatus.STOPPED


async def test_unknown_host_key_refuses_the_host(ssh_hosts, make_scheduler, tmp_path):
    (host,) = ssh_hosts(1)
    empty = tmp_path / "empty_known_hosts"
    empty.write_text("")
    s = await make_scheduler(hosts=[ssh_spec(host, ssh_known_hosts=str(empty))])
    reason = await wait_until(lambda: s._hosts[host.name].state_reason
                              if "host key" in (s._hosts[host.name].state_reason or "")
                              else None, timeout=15)
    assert "not verified" in reason and str(empty) in reason
    assert s._hosts[host.name].state is HostState.OFFLINE


async def test_missed_heartbeats_take_a_host_offline_until_it_beats_again(make_scheduler):
    from tests.conftest import host as plain_host

    s = await make_scheduler(hosts=[plain_host("api-host")], heartbeat_timeout_sec=0.3)
    await s.heartbeat("api-host", {"load_avg_1m": 0.5})
    assert s._hosts["api-host"].state is HostState.ONLINE
    await wait_until(lambda: s._hosts["api-host"].state is HostState.OFFLINE, timeout=5)
    assert "no heartbeat" in (s._hosts["api-host"].state_reason or "")
    job = await s.submit({"command": "true"})
    await asyncio.sleep(0.1)  # an observation window: an OFFLINE host gets no job
    assert s._jobs[job.job_id].status is JobStatus.PENDING
    await s.heartbeat("api-host")
    assert (await s.wait(job.job_id, 10)).status is JobStatus.SUCCEEDED
    events = [e for e in await s.events_since(0) if getattr(e, "host_id", None) == "api-host"
              and e.kind == "host"]
    assert [e.to_state for e in events][-2:] == [HostState.OFFLINE, HostState.ONLINE]


async def test_control_while_the_host_is_unreachable_is_refused_then_works(
        ssh_hosts, make_scheduler):
    from apr_sched.executors.ssh import HostUnavailable

    (host,) = ssh_hosts(1)
    s = await make_scheduler(hosts=[ssh_spec(host)])
    await online(s, host.name)
    job = await s.submit({"command": "sleep 300"})
    await running(s, job.job_id)
    host.kill()
    await wait_until(lambda: s._hosts[host.name].state is HostState.OFFLINE, timeout=20)
    for action in (s.pause, s.stop):
        try:
            await action(job.job_id)
        except HostUnavailable as exc:
            assert "unreachable" in exc.message and exc.http_status == 409
        else:
            raise AssertionError(f"{action.__name__} on an unreachable host was accepted")
    assert s._jobs[job.job_id].status is JobStatus.RUNNING
    host.restart()
    await online(s, host.name, timeout=30)
    await s.stop(job.job_id)
    assert (await s.wait(job.job_id, 15)).status is JobStatus.STOPPED


async def test_restart_with_the_host_gone_declares_its_job_lost(ssh_hosts, make_scheduler,
                                                                tmp_path):
    (host,) = ssh_hosts(1)
    spec = ssh_spec(host)
    s1 = await make_scheduler(hosts=[spec])
    await online(s1, host.name)
    job = await s1.submit({"command": "sleep 300"})
    await running(s1, job.job_id)
    await s1.close()
    host.kill()
    s2 = await make_scheduler(hosts=[spec], host_lost_after_sec=0.5)
    done = await s2.wait(job.job_id, 20)
    assert done.status is JobStatus.FAILED
    assert "unreachable" in ((await s2.get_job(job.job_id)).attempts[-1].reason or "")
