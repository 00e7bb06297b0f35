"""What was asked of a job survives a crash of the scheduler: a stop or timeout under way
is carried out after a ``kill -9`` and restart, an attempt that never started is queued
again without spending a retry, and an end that happened while the scheduler was down keeps
its real time. The crashed scheduler is a real process killed by SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from apr_sched import JobStatus
from apr_sched.logs import attempt_files
from tests.conftest import group_members, host, wait_until, wait_until_sync

IGNORES_TERM = "trap '' TERM; echo started; while true; do sleep 0.2; done"

CHILD = """
import asyncio, json, os, signal, sys
from apr_sched import HostSpec, Scheduler
from apr_sched.executors.local import LocalExecutor

def say(**facts):
    print(json.dumps(facts), flush=True)

async def until(predicate, timeout=20):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            say(error="timeout")
            os._exit(3)
        await asyncio.sleep(0.01)

async def main(state_dir, grace):
    s = Scheduler(state_dir, hosts=[HostSpec(host_id="h1", total_slots=4, total_cpu=8,
                                             total_memory_gb=16)], stop_grace_sec=grace)
    await s.start()
{body}
    await asyncio.Event().wait()  # until SIGKILL

asyncio.run(main(sys.argv[1], float(sys.argv[2])))
"""


class CrashingScheduler:
    """A scheduler in a child process that runs ``body`` and then waits to be SIGKILLed."""

    def __init__(self, state_dir: Path, body: str, grace: float = 3.0) -> None:
        code = CHILD.format(body=textwrap.indent(textwrap.dedent(body), "    "))
        self.proc = subprocess.Popen([sys.executable, "-c", code, str(state_dir), str(grace)],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait(10)
            raise AssertionError(f"child ended: {self.proc.stderr and self.proc.stderr.read()}")
        facts: dict[str, Any] = json.loads(line)
        assert "error" not in facts, facts
        return facts

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


async def test_stop_under_way_is_carried_out_after_kill_9(make_scheduler, state_dir):
    child = CrashingScheduler(state_dir, f"""
        job = await s.submit({{"command": {IGNORES_TERM!r}}})
        log = s.state_dir / "logs" / job.job_id / "1.log"
        await until(lambda: s._jobs[job.job_id].pgid and b"started" in log.read_bytes())
        await s.stop(job.job_id)  # after its TERM trap is set: it must outlive SIGTERM
        say(job_id=job.job_id, pgid=s._jobs[job.job_id].pgid)
    """, grace=3.0)
    facts = child.read()
    child.kill9()
    pgid = facts["pgid"]
    assert group_members(pgid), "the job should outlive the scheduler"

    restarted = time.monotonic()
    s2 = await make_scheduler(hosts=[host("h1")], stop_grace_sec=3.0)
    done = await s2.wait(facts["job_id"], 10)
    assert done.status is JobStatus.STOPPED
    assert time.monotonic() - restarted < 3.0 + 2.0, "more than one grace after the restart"
    wait_until_sync(lambda: not group_members(pgid), timeout=5)
    reasons = [e.reason for e in (await s2.get_job(done.job_id)).events]
    assert any("stop requested" in r for r in reasons)
    assert any("under way before the restart" in r for r in reasons), reasons


async def test_timeout_under_way_is_carried_out_after_kill_9(make_scheduler, state_dir):
    child = CrashingScheduler(state_dir, f"""
        job = await s.submit({{"command": {IGNORES_TERM!r}, "timeout_sec": 0.5}})
        await until(lambda: s._books[job.job_id].term_sent_at is not None)
        say(job_id=job.job_id, pgid=s._jobs[job.job_id].pgid)
    """, grace=30.0)
    facts = child.read()
    child.kill9()
    assert group_members(facts["pgid"])

    s2 = await make_scheduler(hosts=[host("h1")], stop_grace_sec=1.0)
    done = await s2.wait(facts["job_id"], 10)
    assert done.status is JobStatus.TIMEOUT
    wait_until_sync(lambda: not group_members(facts["pgid"]), timeout=5)


async def test_timeout_that_expired_while_down_ends_the_job(make_scheduler, state_dir, tmp_path):
    """The job's running time includes the time the scheduler was down."""
    child = CrashingScheduler(state_dir, """
        job = await s.submit({"command": "sleep 30", "timeout_sec": 1.5})
        await until(lambda: s._jobs[job.job_id].pgid)
        say(job_id=job.job_id, pgid=s._jobs[job.job_id].pgid)
    """)
    facts = child.read()
    child.kill9()
    started = time.monotonic()
    s2 = await make_scheduler(hosts=[host("h1")], stop_grace_sec=1.0)
    done = await s2.wait(facts["job_id"], 10)
    assert done.status is JobStatus.TIMEOUT
    assert time.monotonic() - started < 1.5 + 1.0 + 2.0


async def test_attempt_that_never_started_is_queued_again_without_a_retry(
        make_scheduler, state_dir, tmp_path):
    """The scheduler dies after committing RUNNING and before the wrapper is spawned."""
    ledger = tmp_path / "ledger"
    child = CrashingScheduler(state_dir, f"""
        async def die_instead(self, launch):
            os.kill(os.getpid(), signal.SIGKILL)  # the crash, at exactly this point
            await asyncio.Event().wait()
        LocalExecutor.start = die_instead
        say(submitting=True)
        job = await s.submit({{"command": "echo ran >> {ledger}", "retry_limit": 0}})
    """)
    assert child.read() == {"submitting": True}
    child.proc.wait(20)
    assert child.proc.returncode == -signal.SIGKILL
    child.kill9()

    s2 = await make_scheduler(hosts=[host("h1")])
    (job,) = (await s2.list_jobs()).jobs
    done = await s2.wait(job.job_id, 10)
    assert done.status is JobStatus.SUCCEEDED, done
    assert done.attempt == 1, "a new attempt was spent on one that never ran"
    assert ledger.read_text() == "ran\n"
    reasons = [e.reason for e in (await s2.get_job(job.job_id)).events]
    assert any("never started" in r for r in reasons), reasons


async def test_attempt_killed_between_its_log_and_its_wrapper_is_queued_again(
        make_scheduler, state_dir, tmp_path):
    """The scheduler dies after creating the attempt's (empty) log, before the spawn: the
    crash campaign found this one (a job FAILED "lost" that never ran)."""
    ledger = tmp_path / "ledger"
    child = CrashingScheduler(state_dir, f"""
        import apr_sched.executors.local as local
        def die_instead(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGKILL)  # the log exists, the wrapper does not
        local.subprocess.Popen = die_instead
        say(submitting=True)
        job = await s.submit({{"command": "echo ran >> {ledger}", "retry_limit": 0}})
    """)
    assert child.read() == {"submitting": True}
    child.proc.wait(20)
    assert child.proc.returncode == -signal.SIGKILL
    child.kill9()
    logs = list((state_dir / "logs").rglob("*.log"))
    assert logs and all(log.stat().st_size == 0 for log in logs), logs

    s2 = await make_scheduler(hosts=[host("h1")])
    (job,) = (await s2.list_jobs()).jobs
    done = await s2.wait(job.job_id, 10)
    assert done.status is JobStatus.SUCCEEDED, done
    assert done.attempt == 1
    assert ledger.read_text() == "ran\n"


async def test_end_while_down_keeps_its_real_time(make_scheduler, tmp_path):
    gate = tmp_path / "gate"
    s1 = await make_scheduler()
    job = await s1.submit({"command": f"while [ ! -e {gate} ]; do sleep 0.02; done"})
    files = attempt_files(s1.state_dir, job.job_id, 1)
    await wait_until(lambda: s1._jobs[job.job_id].pgid)
    await s1.close()
    gate.touch()
    wait_until_sync(files.rc.exists)
    ended = files.rc.stat().st_mtime
    os.utime(files.rc, (ended - 30, ended - 30))  # as if the scheduler had been down 30 s

    s2 = await make_scheduler()
    done = await s2.get_job(job.job_id)
    assert done.status is JobStatus.SUCCEEDED
    assert done.finished_at is not None
    assert abs(done.finished_at.timestamp() - (ended - 30)) < 0.01
    assert done.attempts[-1].finished_at == done.finished_at


async def test_heartbeat_host_goes_offline_when_silent_after_a_restart(make_scheduler):
    s1 = await make_scheduler(hosts=[host("hb")])
    await s1.heartbeat("hb")
    await s1.close()

    s2 = await make_scheduler(hosts=[host("hb")], heartbeat_timeout_sec=0.3)
    assert (await s2.get_host("hb")).last_heartbeat is not None
    await wait_until(lambda: s2._hosts["hb"].state.value == "OFFLINE", timeout=5)
    assert "no heartbeat" in (s2._hosts["hb"].state_reason or "")
    await s2.heartbeat("hb")
    assert (await s2.get_host("hb")).state.value == "ONLINE"
