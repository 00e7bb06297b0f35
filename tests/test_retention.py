"""Bounded by design: finished jobs leave memory (read from SQLite on demand), a restart
loads only unfinished ones, listings page, and a purge forgets old finished jobs with their
events and logs but never a job that has not finished."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
from datetime import timedelta

import pytest

from apr_sched import JobStatus
from apr_sched.errors import InvalidInput, NotFound
from apr_sched.http.service import HttpService
from apr_sched.logs import attempt_files
from apr_sched.models import utcnow
from apr_sched.scheduler import DB_NAME
from apr_sched.store import Store
from tests.conftest import host
from tests.http_helpers import request


async def finished(s, count: int, **spec) -> list[str]:
    jobs = [await s.submit({"command": "echo hi", **spec}) for _ in range(count)]
    for job in jobs:
        assert (await s.wait(job.job_id, 10)).status is JobStatus.SUCCEEDED
    return [job.job_id for job in jobs]


async def test_finished_jobs_leave_memory_and_are_read_on_demand(make_scheduler):
    s = await make_scheduler()
    ids = await finished(s, 3, project="P1")
    held = await s.submit({"command": "true", "project": "P2"})
    await s.pause(held.job_id)
    assert set(s._jobs) == {held.job_id}, "finished jobs stayed in memory"
    assert s.job_counts()[JobStatus.SUCCEEDED] == 3

    one = await s.get_job(ids[0])
    assert one.status is JobStatus.SUCCEEDED and one.events and one.attempts
    assert (await s.tail_log(ids[0])).lines == ["hi"]
    page = await s.list_jobs(project="P1")
    assert [j.job_id for j in page.jobs] == ids and page.total == 3
    page = await s.list_jobs(status="HELD,SUCCEEDED", limit=2, offset=1)
    assert [j.job_id for j in page.jobs] == [ids[1], ids[2]] and page.total == 4
    assert (await s.list_jobs(ids=[ids[2], held.job_id])).total == 2
    assert (await s.wait(ids[1])).status is JobStatus.SUCCEEDED

    again = await s.rerun(ids[0])
    assert again.attempt == 2
    assert (await s.wait(ids[0], 10)).status is JobStatus.SUCCEEDED
    assert ids[0] not in s._jobs
    assert (await s.metrics_summary()).jobs_total == 4


async def test_restart_loads_only_unfinished_jobs(make_scheduler):
    s1 = await make_scheduler()
    ids = await finished(s1, 4)
    held = await s1.submit({"command": "true"})
    await s1.pause(held.job_id)
    counts = s1.job_counts()
    await s1.close()

    s2 = await make_scheduler()
    assert set(s2._jobs) == {held.job_id}
    assert s2.job_counts() == counts
    assert (await s2.metrics_summary()).finished_last_hour >= 4
    assert (await s2.get_job(ids[-1])).status is JobStatus.SUCCEEDED


async def test_purge_forgets_old_finished_jobs_with_events_and_logs(make_scheduler):
    s = await make_scheduler()
    ids = await finished(s, 3)
    held = await s.submit({"command": "true"})
    await s.pause(held.job_id)
    logs = [attempt_files(s.state_dir, job_id, 1).dir for job_id in ids]
    assert all(d.exists() for d in logs)

    nothing = await s.purge(utcnow() - timedelta(days=1))
    assert nothing.jobs_purged == 0
    report = await s.purge(utcnow() + timedelta(seconds=1))
    assert report.jobs_purged == 3
    for job_id in ids:
        with pytest.raises(NotFound):
            await s.get_job(job_id)
    assert not any(d.exists() for d in logs)
    assert (await s.get_job(held.job_id)).status is JobStatus.HELD, "an unfinished job went"
    assert s.job_counts()[JobStatus.SUCCEEDED] == 0
    db = sqlite3.connect(s.state_dir / DB_NAME)
    try:
        left = db.execute("SELECT COUNT(*) FROM events WHERE job_id IN (?, ?, ?)",
                          ids).fetchone()[0]
    finally:
        db.close()
    assert left == 0
    with pytest.raises(InvalidInput):
        await s.purge(utcnow().replace(tzinfo=None))


async def test_purge_over_http_and_the_cli(make_scheduler):
    s = await make_scheduler()
    ids = await finished(s, 2)
    async with HttpService(s, "127.0.0.1", 0) as service:
        token = (s.state_dir / "token").read_text().strip()
        bad = await asyncio.to_thread(request, service.url, "POST", "/scheduler/purge",
                                      {"before": "yesterday"}, token=token)
        assert bad.status == 400 and bad.data["error"]["details"][0]["field"] == "before"
        cli = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "apr_sched", "purge", "--before",
                             (utcnow() + timedelta(seconds=1)).isoformat(), "--url",
                             service.url, "--token", token],
            capture_output=True, text=True, timeout=30)
        assert cli.returncode == 0, cli.stderr
        assert "purged 2 finished jobs" in cli.stdout
    for job_id in ids:
        with pytest.raises(NotFound):
            await s.get_job(job_id)


async def test_http_job_list_is_paged_by_default(make_scheduler):
    s = await make_scheduler(hosts=[host("small", cpu=2)])
    await s.submit_batch([{"command": "true", "resource_request": {"cpu": 4},
                           "allow_pending": True}] * 600)
    async with HttpService(s, "127.0.0.1", 0) as service:
        token = (s.state_dir / "token").read_text().strip()
        first = await asyncio.to_thread(request, service.url, "GET", "/scheduler/jobs",
                                        token=token)
        assert len(first.data["jobs"]) == 500 and first.data["total"] == 600
        rest = await asyncio.to_thread(request, service.url, "GET",
                                       "/scheduler/jobs?offset=500&limit=5000", token=token)
        assert len(rest.data["jobs"]) == 100
        assert rest.data["jobs"][0]["job_id"] == "501"
        too_many = await asyncio.to_thread(request, service.url, "GET",
                                           "/scheduler/jobs?limit=5001", token=token)
        assert too_many.status == 400


V1_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE hosts (host_id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL,
    registered_at TEXT NOT NULL, last_heartbeat TEXT);
CREATE TABLE jobs (seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL UNIQUE, spec TEXT NOT NULL,
    status TEXT NOT NULL, attempt INTEGER NOT NULL, host_id TEXT, submitted_at TEXT NOT NULL,
    started_at TEXT, finished_at TEXT, exit_code INTEGER, signal TEXT,
    queue_seq INTEGER NOT NULL, retries_used INTEGER NOT NULL DEFAULT 0,
    run_sec REAL NOT NULL DEFAULT 0, resumed_at TEXT, pgid INTEGER);
CREATE TABLE attempts (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, host_id TEXT,
    status TEXT NOT NULL, queued_at TEXT, started_at TEXT, finished_at TEXT,
    exit_code INTEGER, signal TEXT, reason TEXT, run_sec REAL, PRIMARY KEY (job_id, attempt));
CREATE TABLE events (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL,
    job_id TEXT, host_id TEXT, attempt INTEGER, from_state TEXT, to_state TEXT,
    reason TEXT NOT NULL);
INSERT INTO meta VALUES ('schema_version', '1');
INSERT INTO jobs VALUES (1, '1', '{"command": "true", "owner": "ann", "project": "P9"}',
    'HELD', 1, NULL, '2026-01-01T00:00:00+00:00', NULL, NULL, NULL, NULL, 1, 0, 0, NULL, NULL);
"""


def test_a_version_1_database_is_upgraded(tmp_path):
    path = tmp_path / DB_NAME
    db = sqlite3.connect(path)
    db.executescript(V1_SCHEMA)
    db.close()
    store = Store(path)
    try:
        rows = store.page_jobs((" WHERE owner=? AND project=?", ["ann", "P9"]))
        assert [row["job_id"] for row in rows] == ["1"]
        assert rows[0]["ending"] is None
    finally:
        store.close()
