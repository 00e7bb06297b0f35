"""Error paths with real parts: an attempt that cannot start, a watch that fails, and one
store transaction that SQLite refuses under a running scheduler (a trigger that raises).

A refused store write changes nothing: the caller gets ``503 store_unavailable`` naming
the cause, nothing half-written lands, memory and database agree, the daemon keeps serving
and works again once the store does.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from apr_sched import JobStatus, Scheduler
from apr_sched.errors import StoreUnavailable
from apr_sched.http.service import HttpService
from apr_sched.logs import attempt_files
from apr_sched.models import HostSpec
from apr_sched.scheduler import DB_NAME
from tests.conftest import group_members, host, wait_until
from tests.http_helpers import Reply, request


async def attempt_reasons(s: Scheduler, job_id: str) -> list[str | None]:
    return [a.reason for a in (await s.get_job(job_id)).attempts]


async def assert_host_still_runs_jobs(s: Scheduler, host_id: str = "h1",
                                      **labels: str) -> None:
    """The failed attempt gave its slot back and the scheduler goes on dispatching."""
    job = await s.submit({"command": "true", "resource_request": {"host_labels": labels}})
    done = await s.wait(job.job_id, 10)
    assert (done.status, done.host_id) == (JobStatus.SUCCEEDED, host_id)
    assert (await s.get_host(host_id)).used_slots == 0


# executor start ----------------------------------------------------------------------------
async def test_a_log_dir_that_cannot_be_created_fails_the_attempt(make_scheduler, state_dir):
    blocker = state_dir / "logs" / "1"  # the first job's log dir: a file is in the way
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a directory")
    s = await make_scheduler()
    job = await s.submit({"command": "echo never", "retry_limit": 1})
    assert job.job_id == "1"
    done = await s.wait(job.job_id, 10)
    assert (done.status, done.attempt, done.exit_code) == (JobStatus.FAILED, 2, None)
    for reason in await attempt_reasons(s, job.job_id):  # the retry failed the same way
        assert reason is not None and reason.startswith("could not start: cannot open log")
        assert str(blocker) in reason
    await assert_host_still_runs_jobs(s)


async def test_an_environment_too_large_to_exec_fails_the_attempt(make_scheduler):
    """Each value is within the JobSpec limit; together they exceed what execve accepts."""
    s = await make_scheduler()
    env = {f"BIG_{i}": "x" * 32_768 for i in range(200)}  # 6.5 MB > ARG_MAX
    job = await s.submit({"command": "echo never", "env": env})
    done = await s.wait(job.job_id, 10)
    assert (done.status, done.exit_code) == (JobStatus.FAILED, None)
    (reason,) = await attempt_reasons(s, job.job_id)
    assert reason == "could not start: cannot start job wrapper: Argument list too long"
    await assert_host_still_runs_jobs(s)


async def test_a_missing_workdir_fails_with_126_and_says_why(make_scheduler, tmp_path):
    s = await make_scheduler()
    missing = tmp_path / "no" / "such" / "dir"
    job = await s.submit({"command": "echo never", "workdir": str(missing)})
    done = await s.wait(job.job_id, 10)
    assert (done.status, done.exit_code) == (JobStatus.FAILED, 126)
    assert (await s.tail_log(job.job_id)).lines[-1] == f"apr_sched: cannot enter workdir {missing}"
    await assert_host_still_runs_jobs(s)


async def test_a_prefix_that_cannot_be_executed_fails_with_127(make_scheduler, tmp_path):
    prefix = f"{tmp_path}/no-such-ssh -T"
    s = await make_scheduler(hosts=[host(site="near"), HostSpec(
        host_id="far", total_slots=1, total_cpu=1, total_memory_gb=1,
        executor_prefix=prefix, labels={"site": "far"})])
    job = await s.submit({"command": "echo never",
                          "resource_request": {"host_labels": {"site": "far"}}})
    done = await s.wait(job.job_id, 10)
    assert (done.status, done.exit_code, done.host_id) == (JobStatus.FAILED, 127, "far")
    (line,) = (await s.tail_log(job.job_id)).lines
    assert f"{tmp_path}/no-such-ssh" in line and "not found" in line
    assert (await s.get_host("far")).used_slots == 0
    await assert_host_still_runs_jobs(s, site="near")


# watch -------------------------------------------------------------------------------------
async def test_a_failing_watch_ends_the_attempt_as_lost(make_scheduler, state_dir):
    """The job turns its own rc file into a symlink loop, so reading it raises ELOOP. (The
    wrapper keeps retrying the rc write, as it does on a full disk, so the test kills it.)"""
    s = await make_scheduler()
    rc = f"{state_dir}/logs/$APR_JOB_ID/$APR_ATTEMPT.rc"
    job = await s.submit({"command": f'ln -s "{rc}" "{rc}"; echo sabotaged'})
    rc_path = attempt_files(state_dir, job.job_id, 1).rc
    pgid = await wait_until(lambda: rc_path.is_symlink() and s._jobs[job.job_id].pgid)
    os.kill(pgid, signal.SIGKILL)
    done = await s.wait(job.job_id, 10)
    assert (done.status, done.exit_code) == (JobStatus.FAILED, None)
    (reason,) = await attempt_reasons(s, job.job_id)
    assert reason is not None and reason.startswith("lost: watch failed: OSError(40")
    assert "Too many levels of symbolic links" in reason
    assert (await s.tail_log(job.job_id)).lines[0] == "sabotaged"
    await assert_host_still_runs_jobs(s)


# store -------------------------------------------------------------------------------------
# One transition refused by SQLite (a trigger that raises, added from another connection):
# narrower than a whole unwritable database (tests/test_store_faults.py), it shows that the
# transaction in flight, and only it, is undone.
def db_file(s: Scheduler) -> Path:
    return s.state_dir / DB_NAME


@contextmanager
def failing_trigger(db: Path, when: str, message: str) -> Iterator[None]:
    """A trigger that makes SQLite refuse a write, added and dropped from another connection
    (what the scheduler's connection sees, as it would see any real failure)."""
    with sqlite3.connect(db) as conn:
        conn.execute(f"CREATE TRIGGER injected_failure {when} "
                     f"BEGIN SELECT RAISE(ABORT, '{message}'); END")
    try:
        yield
    finally:
        with sqlite3.connect(db) as conn:
            conn.execute("DROP TRIGGER injected_failure")


def stored_job(db: Path, job_id: str) -> tuple[Any, ...] | None:
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT status, attempt FROM jobs WHERE job_id=?",
                            (job_id,)).fetchone()


def stored_job_count(db: Path) -> int:
    with sqlite3.connect(db) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0])


class Http:
    def __init__(self, service: HttpService) -> None:
        self.url = service.url
        self.token = (service.scheduler.state_dir / "token").read_text().strip()

    async def __call__(self, method: str, path: str, body: Any = None) -> Reply:
        return await asyncio.to_thread(request, self.url, method, f"/scheduler{path}", body,
                                       token=self.token)


@pytest.fixture
async def served(make_scheduler) -> AsyncIterator[tuple[Scheduler, Http]]:
    """A scheduler (one host, h1) and its real HTTP service on 127.0.0.1."""
    s = await make_scheduler()
    service = HttpService(s, port=0)
    await service.start()
    try:
        yield s, Http(service)
    finally:
        await service.close()


def assert_store_unavailable(reply: Reply, cause: str) -> None:
    assert reply.status == 503, (reply.status, reply.raw)
    assert reply.data["error"]["code"] == "store_unavailable"
    assert cause in reply.data["error"]["message"]


async def test_a_refused_submit_changes_nothing_and_the_next_one_works(served):
    s, http = served
    db = db_file(s)
    before = (await s.list_jobs()).total
    with failing_trigger(db, "BEFORE INSERT ON events", "injected: events refused"):
        assert_store_unavailable(await http("POST", "/jobs", {"command": "true"}),
                                 "injected: events refused")
        with pytest.raises(StoreUnavailable, match="injected"):
            await s.submit_batch([{"command": "true"}, {"command": "true"}])
        assert (await s.list_jobs()).total == before
        assert stored_job_count(db) == before
        assert (await http("GET", "/health")).status == 200
    reply = await http("POST", "/jobs", {"command": "true"})
    assert reply.status == 201
    assert (await s.wait(reply.data["job_id"], 10)).status is JobStatus.SUCCEEDED


async def test_a_refused_stop_leaves_the_job_queued_as_stored(served):
    s, http = served
    job = await s.submit({"command": "true", "allow_pending": True,
                          "resource_request": {"host_labels": {"pool": "later"}}})
    db = db_file(s)
    with failing_trigger(db, "BEFORE UPDATE OF status ON jobs WHEN NEW.status = 'STOPPED'",
                         "injected: stop refused"):
        assert_store_unavailable(await http("POST", f"/jobs/{job.job_id}/stop"),
                                 "injected: stop refused")
        with pytest.raises(StoreUnavailable, match="injected"):
            await s.stop(job.job_id)
    assert stored_job(db, job.job_id) == ("PENDING", 1)
    view = await http("GET", f"/jobs/{job.job_id}")
    assert view.status == 200 and view.data["status"] == "PENDING"
    assert [e.reason for e in (await s.get_job(job.job_id)).events] == ["submitted"]
    await s.register_host(host("later", pool="later"))  # still queued: it runs there
    done = await s.wait(job.job_id, 10)
    assert (done.status, done.host_id) == (JobStatus.SUCCEEDED, "later")


async def test_a_refused_finish_is_recorded_once_writes_work(make_scheduler, tmp_path,
                                                             state_dir):
    """The end of an attempt cannot be written: nothing half-written lands, the attempt keeps
    its slot and dispatch waits meanwhile, and the outcome is recorded without a restart."""
    gate = tmp_path / "gate"
    s = await make_scheduler()
    job = await s.submit({"command": f"while [ ! -e {gate} ]; do sleep 0.02; done; exit 3"})
    pgid = await wait_until(lambda: s._jobs[job.job_id].pgid)
    rc = attempt_files(state_dir, job.job_id, 1).rc
    db = db_file(s)
    # The last write of the transition fails: the job and attempt rows before it must not land.
    with failing_trigger(db, "BEFORE INSERT ON events WHEN NEW.to_state = 'FAILED'",
                         "injected: finish refused"):
        gate.touch()
        await wait_until(lambda: rc.exists() and not group_members(pgid))
        await wait_until(lambda: s.store.failure)  # the watch saw the end; the write failed
        assert stored_job(db, job.job_id) == ("RUNNING", 1)
        assert (await s.get_job(job.job_id)).status is JobStatus.RUNNING
        assert (await s.get_host("h1")).used_slots == 1
        other = await s.submit({"command": "true"})  # accepted; dispatch waits meanwhile
        assert (await s.get_job(other.job_id)).status is JobStatus.PENDING
    done = await s.wait(job.job_id, 15)
    assert (done.status, done.exit_code) == (JobStatus.FAILED, 3)
    assert stored_job(db, job.job_id) == ("FAILED", 1)
    assert (await s.wait(other.job_id, 10)).status is JobStatus.SUCCEEDED
    assert (await s.get_host("h1")).used_slots == 0
