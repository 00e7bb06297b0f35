"""Large batches are written in steps but seen whole or not at all: by listings, a job's
page, counts, the event cursor and a restart; the loop keeps running meanwhile; a batch
that fails leaves nothing behind. (A ``kill -9`` at several moments: test_batch_crash.py.)
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from apr_sched import JobSpec, JobStatus, Scheduler
from apr_sched.batches import CHUNK, STAGE_ABOVE
from apr_sched.errors import NotFound, StoreUnavailable
from apr_sched.models import JobEvent, utcnow
from apr_sched.scheduler import DB_NAME
from apr_sched.store import (
    SCHEMA_VERSION,
    IdempotencyKey,
    IdempotencyKeyTaken,
    Store,
    SubmittedEvents,
    job_filter,
    pending_job_row,
)
from tests.conftest import wait_until
from tests.test_store_faults import needs_root, small_disk  # noqa: F401  (fixture)

UNPLACEABLE: dict[str, Any] = {"command": "true", "allow_pending": True,
                               "resource_request": {"host_labels": {"x": "no"}}}
"""No host has the label: the jobs stay PENDING, so only the submit is exercised."""


def batch_of(count: int, project: str = "B") -> list[dict[str, Any]]:
    return [{**UNPLACEABLE, "project": project, "name": f"j{n}"} for n in range(count)]


def raw(state_dir: Path) -> sqlite3.Connection:
    """The database file as another process sees it (read-only)."""
    return sqlite3.connect(f"file:{state_dir / DB_NAME}?mode=ro", uri=True)


def raw_count(state_dir: Path, sql: str) -> int:
    db = raw(state_dir)
    try:
        return int(db.execute(sql).fetchone()[0])
    finally:
        db.close()


def all_events(s: Scheduler) -> Iterator[Any]:
    """Every event through the cursor API, as a follower pages through them."""
    cursor = 0
    while True:
        page = s.store.events_after(cursor, 1000)
        if not page:
            return
        yield from page
        cursor = page[-1].seq


async def test_a_large_batch_is_queued_whole_with_its_events_in_order(make_scheduler, state_dir):
    s = await make_scheduler()
    assert STAGE_ABOVE < 1000
    before = s.last_event_seq
    jobs = await s.submit_batch(batch_of(1000))
    # at once, before a single event of the batch is in the events table
    assert raw_count(state_dir, "SELECT COUNT(*) FROM events WHERE kind='job'") == 0
    assert len(await s.events_since(before, limit=5000)) == 1000
    assert [e.reason for e in (await s.get_job("1000")).events] == ["submitted"]
    assert [j.job_id for j in jobs] == [str(n) for n in range(1, 1001)]
    assert all(j.status is JobStatus.PENDING for j in jobs)
    assert (await s.list_jobs(limit=0)).total == 1000
    assert s.job_counts()[JobStatus.PENDING] == 1000
    events = list(all_events(s))
    submitted = [e for e in events if isinstance(e, JobEvent)]
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    assert [e.seq for e in submitted] == list(range(before + 1, before + 1001))
    assert [e.job_id for e in submitted] == [j.job_id for j in jobs]
    assert s.last_event_seq == before + 1000
    # answered from memory first, then from the table: the same events
    await wait_until(lambda: raw_count(state_dir, "SELECT COUNT(*) FROM batches") == 0)
    assert list(all_events(s)) == events
    assert [e.model_dump_json() for e in all_events(s)] == [e.model_dump_json() for e in events]
    last = await s.get_job("1000")
    assert [(e.seq, e.to_status, e.reason) for e in last.events] == [
        (before + 1000, JobStatus.PENDING, "submitted")]
    assert [a.status for a in last.attempts] == [JobStatus.PENDING]
    await wait_until(lambda: len(s._queue) == 1000)  # queued in steps after the commit


async def test_readers_never_see_part_of_a_batch(make_scheduler, state_dir):
    """A reader looking at every loop turn while a 5,000-job batch is staged and published,
    and single submits commit in between: the batch is always none or all, and the event
    cursor never skips (a later seq is never visible before an earlier one)."""
    s = await make_scheduler()
    for _ in range(3):
        await s.submit({**UNPLACEABLE, "project": "S"})
    size = 5000
    first, last = "4", str(3 + size)
    seen_totals: set[int] = set()
    staged_turns = 0
    cursor, follower_seqs = 0, []
    done = asyncio.Event()

    async def reader() -> None:
        nonlocal staged_turns, cursor
        while not done.is_set():
            batch_total = (await s.list_jobs(project="B", limit=0)).total
            singles = (await s.list_jobs(project="S", limit=0)).total
            counts = s.job_counts()
            waiting = counts[JobStatus.PENDING] + counts[JobStatus.HELD]
            found = []
            for job_id in (first, last):
                try:
                    job = await s.get_job(job_id)
                except NotFound:
                    found.append(False)
                    continue
                assert job.events[0].reason == "submitted", job.events
                found.append(True)
            seen_totals.add(batch_total)
            assert waiting - singles == batch_total, (waiting, singles, batch_total)
            assert found in ([False, False], [True, True]), found
            assert (batch_total == size) == found[0]
            for event in await s.events_since(cursor):
                follower_seqs.append(event.seq)
                assert event.seq == cursor + 1, f"cursor skipped from {cursor} to {event.seq}"
                cursor = event.seq
            if batch_total == 0 and raw_count(state_dir, "SELECT COUNT(*) FROM batches"):
                staged_turns += 1
            await asyncio.sleep(0)

    async def singles_meanwhile() -> None:
        await wait_until(lambda: raw_count(state_dir, "SELECT COUNT(*) FROM batches"),
                         interval=0)
        for _ in range(20):
            await s.submit({**UNPLACEABLE, "project": "S"})
            await asyncio.sleep(0)

    watching = asyncio.create_task(reader())
    singles = asyncio.create_task(singles_meanwhile())
    jobs = await s.submit_batch(batch_of(size))
    await s.pause(last)  # later events, committed before the batch's are in the table
    await s.submit({**UNPLACEABLE, "project": "S"})
    await singles
    await wait_until(lambda: raw_count(state_dir, "SELECT COUNT(*) FROM batches") == 0)
    done.set()
    await watching
    assert [j.job_id for j in jobs] == [str(n) for n in range(4, 4 + size)]
    assert seen_totals == {0, size}
    assert staged_turns > size // CHUNK // 2, "the reader hardly ran while the batch was staged"
    assert follower_seqs == list(range(1, s.last_event_seq + 1))


async def test_the_loop_keeps_running_during_a_10000_job_batch(make_scheduler):
    """Between two ticks of a 1 ms ticker the loop thread spends little CPU: no step of the
    batch is long. (CPU time, not wall time, so a loaded machine does not fail it; the old
    single-step commit spent ~0.7 s of CPU in one go.)"""
    s = await make_scheduler()
    worst_cpu = worst_wall = 0.0
    ticks = 0
    running = True

    async def ticker() -> None:
        nonlocal worst_cpu, worst_wall, ticks
        cpu, wall = time.thread_time(), time.perf_counter()
        while running:
            await asyncio.sleep(0.001)
            now_cpu, now_wall = time.thread_time(), time.perf_counter()
            worst_cpu = max(worst_cpu, now_cpu - cpu)
            worst_wall = max(worst_wall, now_wall - wall)
            cpu, wall = now_cpu, now_wall
            ticks += 1

    tick = asyncio.create_task(ticker())
    await asyncio.sleep(0.01)
    began = time.perf_counter()
    jobs = await s.submit_batch(batch_of(10_000))
    took = time.perf_counter() - began
    running = False
    await tick
    assert len(jobs) == 10_000
    print(f"10,000 jobs in {took:.2f}s; worst gap between ticks: {worst_cpu * 1000:.1f} ms "
          f"CPU, {worst_wall * 1000:.1f} ms wall; {ticks} ticks")
    assert worst_cpu < 0.15, f"a step of the batch held the loop for {worst_cpu:.3f}s of CPU"


async def test_a_cancelled_batch_leaves_nothing_and_its_ids_are_not_reused(
        make_scheduler, state_dir):
    s = await make_scheduler()
    submit = asyncio.create_task(s.submit_batch(batch_of(3000)))
    await wait_until(lambda: raw_count(state_dir, "SELECT COUNT(*) FROM jobs") >= 1000,
                     interval=0.001)
    assert (await s.list_jobs(limit=0)).total == 0
    submit.cancel()
    with pytest.raises(asyncio.CancelledError):
        await submit
    await wait_until(lambda: raw_count(state_dir, "SELECT COUNT(*) FROM jobs") == 0)
    assert raw_count(state_dir, "SELECT COUNT(*) FROM attempts") == 0
    assert raw_count(state_dir, "SELECT COUNT(*) FROM batches") == 0
    assert (await s.list_jobs(limit=0)).total == 0
    assert sum(s.job_counts().values()) == 0
    assert not [e for e in all_events(s) if isinstance(e, JobEvent)]
    job = await s.submit(UNPLACEABLE)
    assert job.job_id == "3001"  # the cancelled batch's reservation is a gap


async def test_a_batch_whose_publish_fails_leaves_nothing(make_scheduler, state_dir):
    s = await make_scheduler()
    key = IdempotencyKey("ann", "k", "fingerprint", lambda jobs: (201, b"{}"))
    await s.submit(UNPLACEABLE, idempotency_key=key)
    events = s.last_event_seq
    with pytest.raises(IdempotencyKeyTaken):
        await s.submit_batch(batch_of(1000), idempotency_key=key)
    await wait_until(lambda: raw_count(state_dir, "SELECT COUNT(*) FROM jobs") == 1)
    assert raw_count(state_dir, "SELECT COUNT(*) FROM batches") == 0
    assert (await s.list_jobs(limit=0)).total == 1
    assert s.last_event_seq == events == raw_count(state_dir, "SELECT MAX(seq) FROM events")
    jobs = await s.submit_batch(batch_of(1000))
    assert jobs[0].job_id == "1002" and (await s.list_jobs(limit=0)).total == 1001


@needs_root
async def test_a_batch_that_fills_the_disk_is_refused_whole_and_removed_once_space_returns(
        small_disk):  # noqa: F811
    state_dir, filler = small_disk / "state", small_disk / "filler"
    s = Scheduler(state_dir, hosts=[], min_free_disk_mb=0)
    await s.start()
    try:
        await s.submit(UNPLACEABLE)
        filler.write_bytes(b"\0" * (2 << 20))  # room to give back later
        with pytest.raises(StoreUnavailable) as refused:
            await s.submit_batch(batch_of(10_000))
        assert "disk full" in refused.value.message
        assert raw_count(state_dir, "SELECT COUNT(*) FROM jobs") > 1  # staged, hidden
        assert (await s.list_jobs(limit=0)).total == 1
        assert s.job_counts()[JobStatus.PENDING] == 1
        assert len([e for e in all_events(s) if isinstance(e, JobEvent)]) == 1
        filler.unlink()  # space returns: the staged rows go
        await wait_until(lambda: raw_count(state_dir, "SELECT COUNT(*) FROM jobs") == 1,
                         timeout=20)
        assert raw_count(state_dir, "SELECT COUNT(*) FROM batches") == 0
        assert raw_count(state_dir, "SELECT COUNT(*) FROM attempts") == 1
        jobs = await s.submit_batch(batch_of(STAGE_ABOVE + 1))
        assert (await s.list_jobs(limit=0)).total == STAGE_ABOVE + 2
        assert jobs[0].job_id == "10002"
    finally:
        await s.close()


async def test_a_job_paused_before_its_batch_is_queued_is_not_dispatched(make_scheduler):
    """Once published the batch's jobs are queued in steps: a job paused (or stopped) in
    between must stay out of the queue."""
    s = await make_scheduler()
    specs = [*batch_of(STAGE_ABOVE + 10), {"command": "true"}, {"command": "true"}]
    jobs = await s.submit_batch(specs)
    held, stopped = jobs[-2].job_id, jobs[-1].job_id
    await s.pause(held)  # before the first queueing step has run
    await s.stop(stopped)
    probe = await s.submit({"command": "true"})
    assert (await s.wait(probe.job_id, 30)).status is JobStatus.SUCCEEDED
    job = await s.get_job(held)
    assert job.status is JobStatus.HELD
    assert [e.to_status for e in job.events] == [JobStatus.PENDING, JobStatus.HELD]
    assert (await s.get_job(stopped)).status is JobStatus.STOPPED
    resumed = await s.resume(held)
    assert resumed.status is JobStatus.PENDING
    assert (await s.wait(held, 30)).status is JobStatus.SUCCEEDED


# the store on its own ---------------------------------------------------------------------
NOW = utcnow()


def stage(store: Store, first: int, count: int) -> None:
    spec = JobSpec(command="true", project="B")
    now = NOW.isoformat()
    store.hide_batch(first, first + count - 1)
    with store.unsynced_transaction():
        store.open_batch(first, first + count - 1)
        store.insert_jobs([pending_job_row(seq, spec, now, seq)
                           for seq in range(first, first + count)])
        store.insert_first_attempts([str(seq) for seq in range(first, first + count)], now)


def submitted(first: int, count: int, base: int) -> SubmittedEvents:
    return SubmittedEvents(first, count, base, NOW)


def test_no_store_reader_admits_a_staged_row(tmp_path):
    store = Store(tmp_path / DB_NAME)
    stage(store, 1, 5)
    with store.transaction():  # a job finished long ago, beside the staged ones
        store.insert_jobs([pending_job_row(6, JobSpec(command="true"), "2000-01-01", 6)])
        store.update_job("6", status="SUCCEEDED", finished_at="2000-01-02")
    everything = job_filter()
    assert store.count_jobs(everything) == 1
    assert [r["job_id"] for r in store.page_jobs(everything)] == ["6"]
    assert store.count_jobs(job_filter(ids=["1", "5"], project="B")) == 0
    assert store.load_job("3") is None
    assert store.count_by_status() == {"SUCCEEDED": 1}
    assert list(store.load_unfinished_jobs()) == []
    assert store.finished_before("9999", 10) == [("6", "SUCCEEDED")]
    store.close()


def test_a_batch_job_is_not_purged_before_its_event_is_written(tmp_path):
    """Else the late write would leave an event of a job that is gone."""
    store = Store(tmp_path / DB_NAME)
    stage(store, 1, 5)
    with store.transaction():
        store.publish_batch(submitted(1, 5, 1))
        store.update_job("1", status="SUCCEEDED", finished_at="2000-01-01")
    assert store.count_jobs(job_filter()) == 5
    assert store.finished_before("9999", 10) == []
    with store.unsynced_transaction():
        assert store.write_batch_events(1, 100)
    assert store.finished_before("9999", 10) == [("1", "SUCCEEDED")]
    store.close()


def test_recovery_removes_a_staged_batch_and_completes_a_published_one(tmp_path):
    path = tmp_path / DB_NAME
    store = Store(path)
    stage(store, 1, 300)  # crashed while staging
    stage(store, 301, 300)
    events = submitted(301, 300, 1)
    with store.transaction():
        store.publish_batch(events)
    with store.unsynced_transaction():
        store.write_batch_events(301, 100)  # crashed with 200 events still unwritten
    assert [e.seq for e in store.events_after(0, 1000)] == list(range(1, 301))
    store.close()

    store = Store(path)
    assert store.recover_batches() == (1, 1)
    assert store.count_jobs(job_filter()) == 300
    assert store.load_job("1") is None and store.load_job("301") is not None
    assert store._db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 300
    assert store._db.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 0
    # the same as memory answered before
    assert store.events_after(0, 1000) == [
        JobEvent(seq=n + 1, time=NOW, job_id=str(301 + n), attempt=1, from_status=None,
                 to_status=JobStatus.PENDING, reason="submitted") for n in range(300)]
    assert store.recover_batches() == (0, 0)
    store.close()


def test_a_failed_batch_is_deleted_in_steps_and_stays_hidden_meanwhile(tmp_path):
    store = Store(tmp_path / DB_NAME)
    stage(store, 1, 250)
    steps = 0
    while True:
        with store.unsynced_transaction():
            done = store.delete_staged_jobs(1, 100)
        steps += 1
        assert store.count_jobs(job_filter()) == 0
        if done:
            break
    assert steps == 3
    assert store._db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    assert store._db.execute("SELECT COUNT(*) FROM attempts").fetchone()[0] == 0
    assert store._db.execute("SELECT COUNT(*) FROM batches").fetchone()[0] == 0
    assert not store._hidden
    store.close()


V3_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE hosts (host_id TEXT PRIMARY KEY, spec TEXT NOT NULL, state TEXT NOT NULL,
    registered_at TEXT NOT NULL, last_heartbeat TEXT);
CREATE TABLE jobs (seq INTEGER PRIMARY KEY, job_id TEXT NOT NULL UNIQUE, spec TEXT NOT NULL,
    status TEXT NOT NULL, attempt INTEGER NOT NULL, host_id TEXT, submitted_at TEXT NOT NULL,
    started_at TEXT, finished_at TEXT, exit_code INTEGER, signal TEXT,
    queue_seq INTEGER NOT NULL, retries_used INTEGER NOT NULL DEFAULT 0,
    run_sec REAL NOT NULL DEFAULT 0, resumed_at TEXT, pgid INTEGER, ending TEXT,
    term_sent_at TEXT, owner TEXT, project TEXT, design TEXT);
CREATE INDEX jobs_status ON jobs (status);
CREATE TABLE attempts (job_id TEXT NOT NULL, attempt INTEGER NOT NULL, host_id TEXT,
    status TEXT NOT NULL, queued_at TEXT, started_at TEXT, finished_at TEXT,
    exit_code INTEGER, signal TEXT, reason TEXT, run_sec REAL, PRIMARY KEY (job_id, attempt));
CREATE TABLE events (seq INTEGER PRIMARY KEY, time TEXT NOT NULL, kind TEXT NOT NULL,
    job_id TEXT, host_id TEXT, attempt INTEGER, from_state TEXT, to_state TEXT,
    reason TEXT NOT NULL);
CREATE TABLE tokens (user TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE idempotency_keys (caller TEXT NOT NULL, key TEXT NOT NULL,
    fingerprint TEXT NOT NULL, created_at REAL NOT NULL, status INTEGER NOT NULL,
    reply BLOB NOT NULL, PRIMARY KEY (caller, key));
INSERT INTO meta VALUES ('schema_version', '3');
INSERT INTO jobs VALUES (1, '1', '{spec}', 'PENDING', 1, NULL,
    '2026-01-01T00:00:00+00:00', NULL, NULL, NULL, NULL, 1, 0, 0, NULL, NULL, NULL, NULL,
    'ann', 'P9', NULL);
INSERT INTO events VALUES (1, '2026-01-01T00:00:00+00:00', 'job', '1', NULL, 1, NULL,
    'PENDING', 'submitted');
"""


async def test_a_version_3_database_is_upgraded_and_takes_a_staged_batch(state_dir):
    state_dir.mkdir(mode=0o700)
    db = sqlite3.connect(state_dir / DB_NAME)
    spec = JobSpec(command="true", owner="ann", project="P9").model_dump_json()
    db.executescript(V3_SCHEMA.replace("{spec}", spec))
    db.close()
    assert SCHEMA_VERSION == 5
    async with Scheduler(state_dir, hosts=[]) as s:
        assert raw_count(state_dir, "SELECT value FROM meta WHERE key='schema_version'") == 5
        assert (await s.list_jobs()).total == 1
        jobs = await s.submit_batch(batch_of(STAGE_ABOVE + 1))
        assert jobs[0].job_id == "2"
        assert [e.seq for e in all_events(s)] == list(range(1, STAGE_ABOVE + 3))
    async with Scheduler(state_dir, hosts=[]) as s:
        assert (await s.list_jobs(limit=0)).total == STAGE_ABOVE + 2
