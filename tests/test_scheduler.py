"""The Scheduler with real processes on this machine: order, matching, control, retries."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path

import pytest

from apr_sched import (
    HostBusy,
    IllegalTransition,
    InvalidInput,
    JobEvent,
    JobStatus,
    NotFound,
)
from apr_sched.logs import attempt_files
from apr_sched.models import HostSpec
from tests.conftest import group_members, host, proc_state, wait_until


async def test_true_runs_to_succeeded_quickly(make_scheduler):
    s = await make_scheduler()
    t0 = time.perf_counter()
    job = await s.submit({"command": "true"})
    done = await s.wait(job.job_id, timeout=10)
    elapsed = time.perf_counter() - t0
    assert done.status is JobStatus.SUCCEEDED
    assert done.exit_code == 0
    assert done.host_id == "h1"
    assert elapsed < 1.0, f"submit to SUCCEEDED took {elapsed:.3f}s"


async def test_priority_then_submit_order_on_one_slot(make_scheduler, tmp_path):
    s = await make_scheduler(hosts=[])
    order = tmp_path / "order.txt"
    priorities = [0, 5, 1, 5, 0, 9]
    jobs = [await s.submit({"command": f'echo "$APR_JOB_ID" >> {order}', "priority": p,
                            "allow_pending": True})
            for p in priorities]
    page = await s.list_jobs(status="PENDING")
    assert page.total == len(priorities)
    assert all(j.pending_reason for j in page.jobs)
    await s.register_host(host("solo", slots=1))
    for job in jobs:
        await s.wait(job.job_id, timeout=10)
    ran = order.read_text().split()
    by_priority = sorted(jobs, key=lambda j: (-j.priority, int(j.job_id)))
    assert ran == [j.job_id for j in by_priority]


async def test_labels_and_resources_pick_the_host(make_scheduler):
    s = await make_scheduler(hosts=[
        host("small", slots=2, cpu=4, memory=8, tool="innovus"),
        host("big", slots=2, cpu=32, memory=256, tool="icc2"),
    ])
    innovus = await s.submit({"command": "true", "resource_request": {
        "host_labels": {"tool": "innovus"}}})
    large = await s.submit({"command": "true", "resource_request": {
        "cpu": 16, "memory_gb": 128}})
    assert (await s.wait(innovus.job_id, 10)).host_id == "small"
    assert (await s.wait(large.job_id, 10)).host_id == "big"


async def test_unplaceable_jobs_say_why(make_scheduler):
    s = await make_scheduler(hosts=[host("a", memory=128, tool="icc2")])
    label = await s.submit({"command": "true", "allow_pending": True, "resource_request": {
        "host_labels": {"tool": "innovus"}}})
    memory = await s.submit({"command": "true", "allow_pending": True,
                             "resource_request": {"memory_gb": 256}})
    await wait_until(lambda: s._queue.reason(memory.job_id))
    label_reason = (await s.get_job(label.job_id)).pending_reason
    memory_reason = (await s.get_job(memory.job_id)).pending_reason
    assert "tool=innovus" in label_reason
    assert "256" in memory_reason and "128" in memory_reason
    assert (await s.get_job(label.job_id)).status is JobStatus.PENDING


async def test_least_loaded_spread_over_two_hosts(make_scheduler):
    s = await make_scheduler(hosts=[host("a", slots=4), host("b", slots=4)])
    jobs = [await s.submit({"command": "sleep 30"}) for _ in range(4)]
    await wait_until(lambda: all(s._jobs[j.job_id].status is JobStatus.RUNNING for j in jobs))
    hosts = [s._jobs[j.job_id].host_id for j in jobs]
    assert sorted(hosts) == ["a", "a", "b", "b"]
    a = await s.get_host("a")
    assert (a.used_slots, a.running_jobs) == (2, 2)


async def test_waiting_for_capacity_then_runs_when_a_slot_frees(make_scheduler):
    s = await make_scheduler(hosts=[host("one", slots=1)])
    first = await s.submit({"command": "sleep 30"})
    second = await s.submit({"command": "true"})
    await wait_until(lambda: s._jobs[first.job_id].status is JobStatus.RUNNING)
    await wait_until(lambda: s._queue.reason(second.job_id))
    assert "capacity" in (await s.get_job(second.job_id)).pending_reason
    await s.stop(first.job_id)
    assert (await s.wait(second.job_id, 10)).status is JobStatus.SUCCEEDED
    assert (await s.wait(first.job_id, 10)).status is JobStatus.STOPPED


async def test_pause_stops_the_whole_group_and_resume_continues(make_scheduler, tmp_path):
    s = await make_scheduler()
    counter = tmp_path / "counter"
    command = (f"(while :; do echo x >> {counter}; sleep 0.02; done) & "
               f"while :; do echo y >> {counter}; sleep 0.02; done")
    job = await s.submit({"command": command})
    await wait_until(lambda: counter.exists() and counter.stat().st_size > 20)
    pgid = s._jobs[job.job_id].pgid
    members = group_members(pgid)
    assert len(members) >= 3  # wrapper, subshell, loop child (and sleeps)
    paused = await s.pause(job.job_id)
    assert paused.status is JobStatus.PAUSED
    # a sleep that exited just before the stop stays a zombie while its parent is stopped
    await wait_until(lambda: all(proc_state(p) in ("T", "Z", None) for p in members))
    size = counter.stat().st_size
    await asyncio.sleep(0.3)  # an observation window, not a wait for a condition
    assert counter.stat().st_size == size, "a paused job kept writing"
    resumed = await s.resume(job.job_id)
    assert resumed.status is JobStatus.RUNNING
    await wait_until(lambda: counter.stat().st_size > size + 20)
    await s.stop(job.job_id)
    assert (await s.wait(job.job_id, 10)).status is JobStatus.STOPPED


async def test_stop_kills_every_child_the_command_forked(make_scheduler):
    s = await make_scheduler()
    job = await s.submit({"command": "sleep 300 & sleep 301 & sh -c 'sleep 302' & wait"})
    await wait_until(lambda: s._jobs[job.job_id].pgid
                     and len(group_members(s._jobs[job.job_id].pgid)) >= 5)
    pgid = s._jobs[job.job_id].pgid
    await s.stop(job.job_id)
    done = await s.wait(job.job_id, 10)
    assert done.status is JobStatus.STOPPED
    await wait_until(lambda: group_members(pgid) == [], timeout=5)


async def test_stop_escalates_to_sigkill_after_grace(make_scheduler):
    s = await make_scheduler(stop_grace_sec=0.3)
    job = await s.submit({"command": "trap '' TERM; echo armed; sleep 300"})

    async def armed() -> bool:  # a stop before the trap is set would end the job at once
        return (await s.tail_log(job.job_id)).lines == ["armed"]

    await wait_until(armed)
    t0 = time.monotonic()
    await s.stop(job.job_id)
    done = await s.wait(job.job_id, 10)
    assert done.status is JobStatus.STOPPED
    assert time.monotonic() - t0 >= 0.25
    reasons = [e.reason for e in (await s.get_job(job.job_id)).events]
    assert any("SIGKILL in 0.3s" in r for r in reasons)


async def test_paused_job_can_be_stopped(make_scheduler):
    s = await make_scheduler()
    job = await s.submit({"command": "sleep 300"})
    await wait_until(lambda: s._jobs[job.job_id].pgid)
    await s.pause(job.job_id)
    await s.stop(job.job_id)
    assert (await s.wait(job.job_id, 10)).status is JobStatus.STOPPED


async def test_timeout_ends_in_timeout_and_retries(make_scheduler):
    s = await make_scheduler(stop_grace_sec=0.5)
    job = await s.submit({"command": "sleep 30", "timeout_sec": 0.3, "retry_limit": 1})
    done = await s.wait(job.job_id, 15)
    assert done.status is JobStatus.TIMEOUT
    assert done.attempt == 2
    full = await s.get_job(job.job_id)
    assert [a.status for a in full.attempts] == [JobStatus.TIMEOUT, JobStatus.TIMEOUT]
    assert any("retry 1 of 1" in e.reason for e in full.events)


async def test_paused_time_does_not_count_toward_timeout(make_scheduler):
    s = await make_scheduler(stop_grace_sec=0.5)
    job = await s.submit({"command": "sleep 0.6", "timeout_sec": 1.2})
    await wait_until(lambda: s._jobs[job.job_id].pgid)
    await s.pause(job.job_id)
    await asyncio.sleep(1.5)  # paused longer than the whole timeout: must not count
    assert s._jobs[job.job_id].status is JobStatus.PAUSED
    await s.resume(job.job_id)
    assert (await s.wait(job.job_id, 10)).status is JobStatus.SUCCEEDED


async def test_failures_retry_up_to_the_limit(make_scheduler):
    s = await make_scheduler()
    job = await s.submit({"command": 'echo "try $APR_ATTEMPT"; exit 3', "retry_limit": 2})
    done = await s.wait(job.job_id, 10)
    assert done.status is JobStatus.FAILED
    assert done.exit_code == 3
    assert done.attempt == 3
    full = await s.get_job(job.job_id)
    assert [a.exit_code for a in full.attempts] == [3, 3, 3]
    for attempt in (1, 2, 3):
        assert (await s.tail_log(job.job_id, 5, attempt)).lines == [f"try {attempt}"]


async def test_killed_wrapper_reports_the_signal(make_scheduler):
    """``$$`` in the command is the wrapper's pid: the wrapper dies, no rc file is written."""
    s = await make_scheduler()
    job = await s.submit({"command": "kill -SEGV $$"})
    done = await s.wait(job.job_id, 10)
    assert done.status is JobStatus.FAILED
    assert (done.exit_code, done.signal) == (None, "SIGSEGV")


@pytest.mark.parametrize(("signame", "exit_code"), [("SEGV", 139), ("KILL", 137), ("USR1", 138)])
async def test_job_killed_by_a_signal_is_decoded(make_scheduler, tmp_path, signame, exit_code):
    """The job's own process dies by the signal; the wrapper lives on and writes 128+N."""
    s = await make_scheduler()
    job = await s.submit({"command": f"ulimit -c 0; sh -c 'kill -{signame} $$'",
                          "workdir": str(tmp_path)})
    done = await s.wait(job.job_id, 10)
    assert (done.status, done.exit_code, done.signal) == (
        JobStatus.FAILED, exit_code, f"SIG{signame}")
    (attempt,) = (await s.get_job(job.job_id)).attempts
    assert (attempt.exit_code, attempt.signal) == (exit_code, f"SIG{signame}")
    assert attempt.reason == f"exit code {exit_code} (killed by SIG{signame}?)"


async def test_rerun_keeps_earlier_attempts(make_scheduler):
    s = await make_scheduler()
    job = await s.submit({"command": 'echo "attempt $APR_ATTEMPT"'})
    assert (await s.wait(job.job_id, 10)).status is JobStatus.SUCCEEDED
    rerun = await s.rerun(job.job_id)
    assert rerun.attempt == 2
    assert rerun.status in (JobStatus.PENDING, JobStatus.RUNNING)
    done = await s.wait(job.job_id, 10)
    assert done.status is JobStatus.SUCCEEDED and done.attempt == 2
    assert (await s.tail_log(job.job_id)).lines == ["attempt 2"]
    assert (await s.tail_log(job.job_id, attempt=1)).lines == ["attempt 1"]
    full = await s.get_job(job.job_id)
    assert len(full.attempts) == 2
    assert any("rerun" in e.reason for e in full.events)


async def test_rerun_gets_a_fresh_retry_budget(make_scheduler):
    s = await make_scheduler()
    job = await s.submit({"command": "exit 3", "retry_limit": 1})
    first = await s.wait(job.job_id, 10)
    assert (first.status, first.attempt) == (JobStatus.FAILED, 2)  # its one retry is spent
    await s.rerun(job.job_id)
    done = await s.wait(job.job_id, 10)
    assert (done.status, done.attempt) == (JobStatus.FAILED, 4)  # the rerun retried once more
    reasons = [e.reason for e in (await s.get_job(job.job_id)).events]
    assert "retry 1 of 1 as attempt 4" in reasons


async def test_read_log_holds_a_partial_line_until_it_is_complete(make_scheduler, tmp_path):
    """``abc`` then later ``def\\n`` is read as ``abcdef`` once: never split, never lost."""
    gates = [tmp_path / "gate1", tmp_path / "gate2"]
    wait_for = "while [ ! -e {} ]; do sleep 0.02; done".format
    s = await make_scheduler()
    job = await s.submit({"command": f"printf abc; {wait_for(gates[0])}; printf 'def\\n'; "
                                     f"{wait_for(gates[1])}; printf ghi"})
    log = attempt_files(s.state_dir, job.job_id, 1).log
    await wait_until(lambda: log.exists() and log.read_bytes() == b"abc")
    held = await s.read_log(job.job_id, 0)
    assert (held.lines, held.offset) == ([], 0)
    tail = await s.tail_log(job.job_id)
    assert (tail.lines, tail.offset) == ([], 0)
    gates[0].touch()
    await wait_until(lambda: log.read_bytes() == b"abcdef\n")
    whole = await s.read_log(job.job_id, held.offset)
    assert (whole.lines, whole.offset) == (["abcdef"], 7)
    assert (await s.tail_log(job.job_id)).lines == ["abcdef"]
    gates[1].touch()  # the job ends on a last line without a newline: it comes out at the end
    assert (await s.wait(job.job_id, 10)).status is JobStatus.SUCCEEDED
    last = await s.read_log(job.job_id, whole.offset)
    assert (last.lines, last.offset) == (["ghi"], 10)


async def test_illegal_actions_are_refused_naming_the_state(make_scheduler):
    s = await make_scheduler()
    job = await s.submit({"command": "true"})
    await s.wait(job.job_id, 10)
    for action in (s.pause, s.resume, s.stop):
        with pytest.raises(IllegalTransition, match="SUCCEEDED"):
            await action(job.job_id)
    running = await s.submit({"command": "sleep 30"})
    await wait_until(lambda: s._jobs[running.job_id].status is JobStatus.RUNNING)
    with pytest.raises(IllegalTransition, match=r"cannot rerun .* RUNNING"):
        await s.rerun(running.job_id)
    with pytest.raises(IllegalTransition, match="RUNNING"):
        await s.resume(running.job_id)
    with pytest.raises(NotFound):
        await s.pause("999")
    with pytest.raises(NotFound):
        await s.get_job("../../etc/passwd")


async def test_hold_and_release_keep_queue_place(make_scheduler, tmp_path):
    s = await make_scheduler(hosts=[])
    order = tmp_path / "order"
    a = await s.submit({"command": f"echo a >> {order}", "allow_pending": True})
    b = await s.submit({"command": f"echo b >> {order}", "allow_pending": True})
    held = await s.pause(a.job_id)
    assert held.status is JobStatus.HELD
    assert (await s.resume(a.job_id)).status is JobStatus.PENDING
    stopped_pending = await s.submit({"command": "true", "allow_pending": True})
    await s.stop(stopped_pending.job_id)
    assert (await s.get_job(stopped_pending.job_id)).status is JobStatus.STOPPED
    await s.register_host(host("solo", slots=1))
    await s.wait(a.job_id, 10)
    await s.wait(b.job_id, 10)
    assert order.read_text().split() == ["a", "b"]


async def test_bad_input_is_rejected_naming_the_field(make_scheduler):
    s = await make_scheduler()
    cases = [
        ({"command": "true", "retry_limt": 1}, "retry_limt", "unknown field"),
        ({"command": ""}, "command", "at least 1"),
        ({"command": "true", "priority": "2"}, "priority", "integer"),
        ({"command": "true", "timeout_sec": 0}, "timeout_sec", "greater than 0"),
        ({"command": "true", "workdir": "relative/dir"}, "workdir", "absolute"),
        ({"command": "true", "resource_request": {"memory_gb": -1}},
         "resource_request.memory_gb", "greater than or equal"),
        ({"command": "true", "env": {"BAD-NAME": "x"}}, "env.BAD-NAME", ""),
        ({}, "command", "required"),
    ]
    for body, field, words in cases:
        with pytest.raises(InvalidInput) as info:
            await s.submit(body)
        fields = [d["field"] for d in info.value.details]
        assert field in fields, (body, info.value.details)
        assert words in info.value.message, (body, info.value.message)
    assert (await s.list_jobs()).total == 0


async def test_bad_batch_rejects_everything_and_names_the_index(make_scheduler):
    s = await make_scheduler()
    jobs = [{"command": "true"} for _ in range(5)]
    jobs[3] = {"command": "true", "resource_request": {"cpu": "many"}}
    with pytest.raises(InvalidInput) as info:
        await s.submit_batch(jobs)
    assert info.value.details[0]["field"] == "jobs[3].resource_request.cpu"
    assert "no job queued" in info.value.message
    assert (await s.list_jobs()).total == 0
    created = await s.submit_batch([{"command": "true"} for _ in range(3)])
    assert [int(j.job_id) for j in created] == sorted(int(j.job_id) for j in created)


async def test_hosts_register_update_and_unregister(make_scheduler):
    s = await make_scheduler(hosts=[])
    created, is_new = await s.register_host({"host_id": "h", "total_slots": 1,
                                             "total_cpu": 2, "total_memory_gb": 4})
    assert is_new and created.total_slots == 1
    updated, is_new = await s.register_host(host("h", slots=3, tool="innovus"))
    assert not is_new and updated.total_slots == 3 and updated.labels == {"tool": "innovus"}
    with pytest.raises(InvalidInput, match="host_id"):
        await s.register_host({"host_id": "bad id!", "total_slots": 1, "total_cpu": 1,
                               "total_memory_gb": 1})
    job = await s.submit({"command": "sleep 30"})
    await wait_until(lambda: s._jobs[job.job_id].status is JobStatus.RUNNING)
    with pytest.raises(HostBusy, match=job.job_id):
        await s.unregister_host("h")
    await s.stop(job.job_id)
    await s.wait(job.job_id, 10)
    beat = await s.heartbeat("h")
    assert beat.last_heartbeat is not None
    await s.unregister_host("h")
    assert await s.list_hosts() == []


async def test_list_filters_and_paging(make_scheduler):
    s = await make_scheduler(hosts=[])
    for i in range(6):
        await s.submit({"command": "true", "project": f"P{i % 2}", "design": "top",
                        "owner": "alice" if i < 3 else "bob", "allow_pending": True})
    assert (await s.list_jobs(project="P0")).total == 3
    assert (await s.list_jobs(owner="bob", project="P1")).total == 2
    page = await s.list_jobs(limit=2, offset=2)
    assert [j.job_id for j in page.jobs] == ["3", "4"] and page.total == 6
    assert (await s.list_jobs(status="PENDING,HELD")).total == 6
    assert (await s.list_jobs(status=["RUNNING"])).total == 0
    with pytest.raises(InvalidInput, match="unknown status"):
        await s.list_jobs(status="DONE")


async def test_events_are_followed_live(make_scheduler):
    s = await make_scheduler()
    async with s.subscribe() as events:
        job = await s.submit({"command": "true"})
        seen = []
        async with asyncio.timeout(10):
            async for event in events:
                if isinstance(event, JobEvent) and event.job_id == job.job_id:
                    seen.append(event.to_status)
                    if event.to_status is JobStatus.SUCCEEDED:
                        break
    assert seen == [JobStatus.PENDING, JobStatus.RUNNING, JobStatus.SUCCEEDED]
    since = await s.events_since(0)
    assert [e.seq for e in since] == sorted(e.seq for e in since)


async def test_long_poll_returns_when_an_event_arrives(make_scheduler):
    s = await make_scheduler()
    last = (await s.events_since(0))[-1].seq
    waiter = asyncio.create_task(s.events_since(last, wait=10))
    await asyncio.sleep(0)
    await s.submit({"command": "true"})
    events = await asyncio.wait_for(waiter, 5)
    assert events and events[0].seq == last + 1


async def test_metrics_summary(make_scheduler):
    s = await make_scheduler()
    ok = await s.submit({"command": "true"})
    bad = await s.submit({"command": "exit 1"})
    await s.wait(ok.job_id, 10)
    await s.wait(bad.job_id, 10)
    m = await s.metrics_summary()
    assert m.jobs_total == 2
    assert m.jobs_by_status[JobStatus.SUCCEEDED] == 1
    assert m.jobs_by_status[JobStatus.FAILED] == 1
    assert m.hosts_online == 1 and m.slots.total == 4
    assert m.finished_last_hour == 2
    assert m.wait_sec_median is not None and m.run_sec_p95 is not None


async def test_workdir_and_env_reach_the_command(make_scheduler, tmp_path):
    s = await make_scheduler()
    job = await s.submit({"command": 'pwd; echo "$DESIGN_NAME"', "workdir": str(tmp_path),
                          "env": {"DESIGN_NAME": "top $x 'q'"}})
    await s.wait(job.job_id, 10)
    assert (await s.tail_log(job.job_id)).lines == [str(tmp_path), "top $x 'q'"]
    missing = await s.submit({"command": "true", "workdir": str(tmp_path / "nope")})
    done = await s.wait(missing.job_id, 10)
    assert done.status is JobStatus.FAILED and done.exit_code == 126
    assert "cannot enter workdir" in (await s.tail_log(missing.job_id)).lines[-1]


async def test_large_log_tail_is_exact(make_scheduler):
    s = await make_scheduler()
    job = await s.submit({"command": "seq 1 200000"})
    await s.wait(job.job_id, 20)
    t0 = time.perf_counter()
    tail = await s.tail_log(job.job_id, 200)
    assert time.perf_counter() - t0 < 0.05
    assert tail.lines == [str(i) for i in range(199801, 200001)]


async def test_killed_wrapper_fails_the_job_and_leaves_no_process(make_scheduler):
    s = await make_scheduler()
    job = await s.submit({"command": "sleep 300"})
    pgid = await wait_until(lambda: s._jobs[job.job_id].pgid)
    os.kill(pgid, signal.SIGKILL)  # the wrapper only; the sleep must not survive it
    done = await s.wait(job.job_id, 10)
    assert done.status is JobStatus.FAILED
    assert "wrapper" in (await s.get_job(job.job_id)).events[-1].reason
    await wait_until(lambda: group_members(pgid) == [], timeout=5)


async def test_prefix_host_quotes_survive_and_pause_works(make_scheduler, tmp_path):
    prefix_host = HostSpec(host_id="remote", total_slots=2, total_cpu=2, total_memory_gb=1,
                           executor_prefix="sh -c", remote_spool=str(tmp_path / "spool"))
    s = await make_scheduler(hosts=[prefix_host])
    nasty = "printf '%s\\n' \"a 'b' \\\"c\\\" $HOME_X\" && echo \"$APR_JOB_ID\"\necho 'line2 $x'"
    job = await s.submit({"command": nasty, "workdir": str(tmp_path),
                          "env": {"HOME_X": "$not-expanded"}})
    done = await s.wait(job.job_id, 10)
    assert done.status is JobStatus.SUCCEEDED, (await s.tail_log(job.job_id)).lines
    assert (await s.tail_log(job.job_id)).lines == [
        "a 'b' \"c\" $not-expanded", job.job_id, "line2 $x"]
    sleeper = await s.submit({"command": "sleep 30"})
    await wait_until(lambda: s._jobs[sleeper.job_id].pgid)
    assert (await s.pause(sleeper.job_id)).status is JobStatus.PAUSED
    assert (await s.resume(sleeper.job_id)).status is JobStatus.RUNNING
    await s.stop(sleeper.job_id)
    assert (await s.wait(sleeper.job_id, 10)).status is JobStatus.STOPPED


async def test_concurrent_slots_are_never_oversubscribed(make_scheduler, tmp_path):
    s = await make_scheduler(hosts=[host("h", slots=3)])
    marker = tmp_path / "running"
    marker.mkdir()
    command = (f'touch {marker}/$APR_JOB_ID; ls {marker} | wc -l >> {tmp_path}/counts; '
               f'sleep 0.05; rm {marker}/$APR_JOB_ID')
    jobs = await s.submit_batch([{"command": command} for _ in range(12)])
    for job in jobs:
        assert (await s.wait(job.job_id, 20)).status is JobStatus.SUCCEEDED
    counts = [int(c) for c in (tmp_path / "counts").read_text().split()]
    assert max(counts) <= 3


def test_job_files_live_under_the_state_dir(state_dir: Path):
    from apr_sched.logs import attempt_files

    files = attempt_files(state_dir, "12", 2)
    assert files.log == state_dir / "logs" / "12" / "2.log"
    with pytest.raises(ValueError):
        attempt_files(state_dir, "../x", 1)


async def test_job_env_cannot_hijack_the_wrapper(make_scheduler, tmp_path):
    s = await make_scheduler()
    job = await s.submit({"command": 'echo "[$1] $command $rc_file"; exit 5',
                          "env": {"command": "hijack", "rc_file": "/tmp/x", "IFS": "x"}})
    done = await s.wait(job.job_id, 10)
    assert done.exit_code == 5
    assert (await s.tail_log(job.job_id)).lines == ["[] hijack /tmp/x"]


async def test_job_env_stays_off_the_command_line(make_scheduler):
    s = await make_scheduler()
    job = await s.submit({"command": "sleep 30", "env": {"LICENSE_TOKEN": "hunter2"}})
    pgid = await wait_until(lambda: s._jobs[job.job_id].pgid)
    for pid in group_members(pgid):
        assert b"hunter2" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    assert b"LICENSE_TOKEN=hunter2" in Path(f"/proc/{pgid}/environ").read_bytes()
    await s.stop(job.job_id)
    await s.wait(job.job_id, 10)
