"""Durable state: a new Scheduler over the same state dir keeps everything and finds
running jobs again through their wrappers."""

from __future__ import annotations

import os
import signal

import pytest

from apr_sched import JobStatus, Scheduler, StateDirLocked
from apr_sched.logs import attempt_files
from tests.conftest import group_members, host, proc_state, wait_until, wait_until_sync


def gated(tmp_path, before: str = "echo start", after: str = "echo done") -> str:
    """A command that waits (job-side) for a gate file the test creates."""
    gate = tmp_path / "gate"
    return f"{before}; while [ ! -e {gate} ]; do sleep 0.02; done; {after}"


async def test_everything_survives_a_restart(make_scheduler, tmp_path):
    s1 = await make_scheduler(hosts=[])
    done_order = tmp_path / "order"
    jobs = [await s1.submit({"command": f"echo {i} >> {done_order}", "priority": p,
                             "project": "P1", "allow_pending": True})
            for i, p in enumerate([1, 3, 2])]
    held = await s1.submit({"command": "true", "allow_pending": True})
    await s1.pause(held.job_id)
    before = {j.job_id: (await s1.get_job(j.job_id)) for j in jobs}
    await s1.close()

    s2 = await make_scheduler(hosts=[host("solo", slots=1)])
    for job in jobs:
        again = await s2.get_job(job.job_id)
        assert again.command == job.command and again.priority == job.priority
        assert again.submitted_at == before[job.job_id].submitted_at
        assert [e.seq for e in again.events][: len(before[job.job_id].events)] == [
            e.seq for e in before[job.job_id].events]
    assert (await s2.get_job(held.job_id)).status is JobStatus.HELD
    for job in jobs:
        await s2.wait(job.job_id, 10)
    assert done_order.read_text().split() == ["1", "2", "0"]
    new = await s2.submit({"command": "true"})
    assert int(new.job_id) == int(held.job_id) + 1


async def test_running_job_survives_restart_with_its_whole_log(make_scheduler, tmp_path):
    runs = tmp_path / "runs"
    s1 = await make_scheduler()
    job = await s1.submit({"command": gated(tmp_path, before=f"echo run >> {runs}; echo start")})
    files = attempt_files(s1.state_dir, job.job_id, 1)
    await wait_until(lambda: runs.exists())
    pgid = s1._jobs[job.job_id].pgid
    await s1.close()  # detach: the job keeps running
    assert proc_state(pgid) not in (None, "Z")

    s2 = await make_scheduler()
    again = await s2.get_job(job.job_id)
    assert again.status is JobStatus.RUNNING and again.pgid == pgid
    assert "found running again" in again.events[-1].reason
    (tmp_path / "gate").touch()
    done = await s2.wait(job.job_id, 10)
    assert done.status is JobStatus.SUCCEEDED
    assert files.log.read_text().split() == ["start", "done"]
    assert runs.read_text().split() == ["run"], "the job ran twice"


async def test_job_that_finished_while_down_gets_its_rc(make_scheduler, tmp_path):
    s1 = await make_scheduler()
    job = await s1.submit({"command": gated(tmp_path, after="echo bye; exit 4")})
    files = attempt_files(s1.state_dir, job.job_id, 1)
    await wait_until(lambda: s1._jobs[job.job_id].pgid)
    await s1.close()
    (tmp_path / "gate").touch()
    wait_until_sync(files.rc.exists)

    s2 = await make_scheduler()
    done = await s2.get_job(job.job_id)
    assert done.status is JobStatus.FAILED and done.exit_code == 4
    assert "after scheduler restart" in done.events[-1].reason
    assert (await s2.tail_log(job.job_id)).lines == ["start", "bye"]


async def test_lost_job_is_failed_and_retried(make_scheduler, tmp_path):
    s1 = await make_scheduler()
    job = await s1.submit({"command": '[ "$APR_ATTEMPT" = 2 ] && echo second || sleep 300',
                           "retry_limit": 1})
    pgid = await wait_until(lambda: s1._jobs[job.job_id].pgid)
    await s1.close()
    os.killpg(pgid, signal.SIGKILL)  # wrapper and job gone, no rc file
    wait_until_sync(lambda: group_members(pgid) == [])

    s2 = await make_scheduler()
    done = await s2.wait(job.job_id, 10)
    assert done.status is JobStatus.SUCCEEDED and done.attempt == 2
    full = await s2.get_job(job.job_id)
    assert full.attempts[0].status is JobStatus.FAILED
    assert "lost" in full.attempts[0].reason
    assert (await s2.tail_log(job.job_id)).lines == ["second"]


async def test_retries_used_survive_a_restart(make_scheduler, tmp_path):
    """A job that spent its one retry before the restart gets no other after it."""
    s1 = await make_scheduler()
    job = await s1.submit({"command": gated(tmp_path, before='[ "$APR_ATTEMPT" = 1 ] && exit 1',
                                            after="exit 1"),
                           "retry_limit": 1})
    await wait_until(lambda: s1._jobs[job.job_id].attempt == 2 and s1._jobs[job.job_id].pgid)
    await s1.close()  # attempt 2 keeps running

    s2 = await make_scheduler()
    (tmp_path / "gate").touch()
    done = await s2.wait(job.job_id, 10)
    assert (done.status, done.attempt) == (JobStatus.FAILED, 2)
    assert [a.status for a in (await s2.get_job(job.job_id)).attempts] == [
        JobStatus.FAILED, JobStatus.FAILED]


async def test_paused_job_stays_paused_across_restart(make_scheduler, tmp_path):
    s1 = await make_scheduler()
    job = await s1.submit({"command": gated(tmp_path)})
    pgid = await wait_until(lambda: s1._jobs[job.job_id].pgid)
    await s1.pause(job.job_id)
    await s1.close()

    s2 = await make_scheduler()
    assert (await s2.get_job(job.job_id)).status is JobStatus.PAUSED
    # a process caught in a short uninterruptible sleep (D) stops as it leaves it
    await wait_until(lambda: proc_state(pgid) == "T", 5, message="the job is still stopped")
    (tmp_path / "gate").touch()
    await s2.resume(job.job_id)
    assert (await s2.wait(job.job_id, 10)).status is JobStatus.SUCCEEDED


async def test_a_second_scheduler_is_refused(make_scheduler, state_dir):
    await make_scheduler()
    second = Scheduler(state_dir, hosts=[])
    with pytest.raises(StateDirLocked, match=f"pid {os.getpid()}"):
        await second.start()


async def test_close_with_stop_jobs_stops_them(make_scheduler, tmp_path):
    s1 = await make_scheduler()
    job = await s1.submit({"command": "sleep 300"})
    pgid = await wait_until(lambda: s1._jobs[job.job_id].pgid)
    await s1.close(stop_jobs=True)
    assert group_members(pgid) == []
    s2 = await make_scheduler()
    assert (await s2.get_job(job.job_id)).status is JobStatus.STOPPED


async def test_ten_thousand_job_batch_is_one_fast_transaction(make_scheduler):
    import time

    s1 = await make_scheduler(hosts=[])
    t0 = time.perf_counter()
    jobs = await s1.submit_batch([{"command": "true", "priority": i % 7, "allow_pending": True}
                                  for i in range(10_000)])
    elapsed = time.perf_counter() - t0
    assert len(jobs) == 10_000 and elapsed < 10, f"{elapsed:.2f}s"
    await s1.close()
    s2 = await make_scheduler(hosts=[])
    assert (await s2.list_jobs(status="PENDING")).total == 10_000


async def test_state_files_are_private(make_scheduler):
    import stat

    s = await make_scheduler()
    await s.submit({"command": "true", "env": {"LICENSE_KEY": "secret"}})
    for name in ("apr_sched.db", "apr_sched.db-wal"):
        mode = stat.S_IMODE((s.state_dir / name).stat().st_mode)
        assert mode & 0o077 == 0, (name, oct(mode))
    assert stat.S_IMODE(s.state_dir.stat().st_mode) & 0o077 == 0
