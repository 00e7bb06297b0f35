"""A failed write changes nothing: with the database immutable or the state disk full, every
request is refused with ``store_unavailable`` naming the cause, memory and database still
agree, nothing already committed is lost, and once writes work again everything goes on
without a restart (a job that ended meanwhile included). Real SQLite files, ``chattr +i``
and a real 5 MB tmpfs (CI runs as root)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apr_sched import JobStatus, Scheduler
from apr_sched.errors import StoreUnavailable
from apr_sched.http.service import HttpService
from apr_sched.scheduler import DB_NAME
from apr_tui.widgets.summary import SummaryData, summary_text
from tests.conftest import group_members, host, proc_state, wait_until
from tests.http_helpers import request

needs_root = pytest.mark.skipif(os.geteuid() != 0 and not os.environ.get("CI"),
                                reason="chattr +i and mount need root (CI runs as root)")


def db_status(state_dir: Path, job_id: str) -> str:
    db = sqlite3.connect(f"file:{state_dir / DB_NAME}?mode=ro", uri=True)
    try:
        return str(db.execute("SELECT status FROM jobs WHERE job_id=?", (job_id,)).fetchone()[0])
    finally:
        db.close()


def chattr(flag: str, *paths: Path) -> None:
    subprocess.run(["chattr", flag, *map(str, paths)], check=True)


@pytest.fixture
def immutable(state_dir: Path) -> Iterator[list[Path]]:
    """``chattr +i`` on demand for the database and its WAL; always undone at the end."""
    files = [state_dir / DB_NAME, state_dir / f"{DB_NAME}-wal"]
    yield files
    subprocess.run(["chattr", "-i", *map(str, files)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 5 MB tmpfs, mounted for this test only."""
    mount = tmp_path / "small"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=5m,mode=0700", "tmpfs", str(mount)],
                   check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@needs_root
async def test_immutable_database_refuses_writes_and_changes_nothing(
        make_scheduler, state_dir, tmp_path, immutable):
    gate = tmp_path / "gate"
    s = await make_scheduler(hosts=[host("solo", slots=1)])
    running = await s.submit({"command": f"while [ ! -e {gate} ]; do sleep 0.02; done"})
    queued = await s.submit({"command": "echo second"})
    await wait_until(lambda: s._jobs[running.job_id].pgid)
    pgid = s._jobs[running.job_id].pgid
    events_before = s.last_event_seq
    chattr("+i", *immutable)

    for action, job in ((s.stop, running), (s.pause, queued), (s.pause, running)):
        with pytest.raises(StoreUnavailable) as refused:
            await action(job.job_id)
        assert refused.value.http_status == 503 and refused.value.code == "store_unavailable"
        assert "I/O error" in refused.value.message or "read-only" in refused.value.message
    with pytest.raises(StoreUnavailable):
        await s.submit({"command": "true"})
    assert (await s.list_jobs()).total == 2, "a refused submit created a job"
    assert s.degraded_reason is not None
    assert s.last_event_seq == events_before, "a refused change published an event"
    assert s._jobs[running.job_id].status is JobStatus.RUNNING
    assert db_status(state_dir, running.job_id) == "RUNNING"
    assert s._jobs[queued.job_id].status is JobStatus.PENDING and len(s._queue) == 1
    assert proc_state(pgid) not in (None, "T", "Z"), "the job was signalled anyway"

    gate.touch()  # the job ends while nothing can be written
    await wait_until(lambda: not group_members(pgid))
    await asyncio.sleep(0)
    assert s._jobs[running.job_id].status is JobStatus.RUNNING
    assert db_status(state_dir, running.job_id) == "RUNNING"

    chattr("-i", *immutable)  # writes work again: everything goes on, no restart
    done = await s.wait(running.job_id, 15)
    assert done.status is JobStatus.SUCCEEDED and done.exit_code == 0
    second = await s.wait(queued.job_id, 15)
    assert second.status is JobStatus.SUCCEEDED
    assert s.degraded_reason is None
    assert db_status(state_dir, running.job_id) == "SUCCEEDED"


@needs_root
async def test_health_says_degraded_and_requests_get_503(make_scheduler, immutable):
    s = await make_scheduler()
    async with HttpService(s, "127.0.0.1", 0) as service:
        token = (s.state_dir / "token").read_text().strip()
        health = await asyncio.to_thread(request, service.url, "GET", "/scheduler/health")
        assert health.data["status"] == "ok"
        chattr("+i", *immutable)
        reply = await asyncio.to_thread(request, service.url, "POST", "/scheduler/jobs",
                                        {"command": "true"}, token=token)
        assert reply.status == 503 and reply.error_code() == "store_unavailable"
        assert reply.data["error"]["details"]["cause"]
        health = await asyncio.to_thread(request, service.url, "GET", "/scheduler/health")
        assert health.data["status"] == "degraded" and health.data["degraded_reason"]
        metrics = await s.metrics_summary()
        assert metrics.degraded_reason == health.data["degraded_reason"]
        header = summary_text(SummaryData(metrics=metrics)).plain
        assert f"DEGRADED: {metrics.degraded_reason}" in header  # what the TUI shows
        chattr("-i", *immutable)
        reply = await asyncio.to_thread(request, service.url, "POST", "/scheduler/jobs",
                                        {"command": "true"}, token=token)
        assert reply.status == 201
        health = await asyncio.to_thread(request, service.url, "GET", "/scheduler/health")
        assert health.data["status"] == "ok"


@needs_root
async def test_full_disk_loses_nothing_and_recovers_without_restart(small_disk, tmp_path):
    """A job fills the state disk with its output: submits are refused (503), the job's
    exit code is not lost, and freeing space makes everything work again."""
    state_dir = small_disk / "state"
    filler = small_disk / "filler"
    s = Scheduler(state_dir, hosts=[host("solo", slots=2)], stop_grace_sec=1.0,
                  min_free_disk_mb=0)
    await s.start()
    try:
        filler.write_bytes(b"\0" * (2 << 20))  # room to give back later
        hog = await s.submit({"command": "head -c 8000000 /dev/zero; exit 7"})
        await wait_until(lambda: os.statvfs(small_disk).f_bavail == 0, timeout=20)

        async def refused() -> bool:
            try:
                await s.submit({"command": "true"})
            except StoreUnavailable as exc:
                return "disk full" in exc.message
            return False

        await wait_until(refused, timeout=20)
        assert s.degraded_reason is not None
        filler.unlink()  # space returns
        done = await s.wait(hog.job_id, 20)
        assert done.status is JobStatus.FAILED and done.exit_code == 7, done
        after = await s.submit({"command": "echo ok"})
        assert (await s.wait(after.job_id, 20)).status is JobStatus.SUCCEEDED
        await wait_until(lambda: s.degraded_reason is None, timeout=10)
    finally:
        await s.close(stop_jobs=True)


@needs_root
async def test_dispatch_pauses_below_the_free_space_floor(small_disk):
    state_dir = small_disk / "state"
    s = Scheduler(state_dir, hosts=[host("solo")], min_free_disk_mb=4)
    await s.start()
    try:
        filler = small_disk / "filler"
        filler.write_bytes(b"\0" * (2 << 20))
        job = await s.submit({"command": "true"})
        await wait_until(lambda: s.degraded_reason and "min_free_disk_mb" in s.degraded_reason)
        assert s._jobs[job.job_id].status is JobStatus.PENDING
        filler.unlink()
        assert (await s.wait(job.job_id, 15)).status is JobStatus.SUCCEEDED
        assert s.degraded_reason is None
    finally:
        await s.close()


def serve(state_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apr_sched", "serve", "--state-dir",
                           str(state_dir), "--port", "0"], capture_output=True, text=True,
                          timeout=30)


async def _make_state(state_dir: Path) -> None:
    s = Scheduler(state_dir, hosts=[host("solo")])
    await s.start()
    await s.submit({"command": "true", "name": "keep"})
    await s.close()


@needs_root
async def test_daemon_on_an_immutable_database_exits_with_one_line(state_dir, immutable):
    await _make_state(state_dir)
    chattr("+i", immutable[0])
    result = await asyncio.to_thread(serve, state_dir)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("apr-sched:")]
    assert "read-only" in line and DB_NAME in line


@needs_root
async def test_daemon_on_a_read_only_file_system_exits_with_one_line(small_disk):
    state_dir = small_disk / "state"
    await _make_state(state_dir)
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    result = await asyncio.to_thread(serve, state_dir)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = [x for x in result.stderr.splitlines() if x.startswith("apr-sched:")]
    assert "read-only" in line.lower(), line
