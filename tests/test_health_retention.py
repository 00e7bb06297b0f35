"""Housekeeping parts on their own: the disk floor and the degraded reason (health.py), the
retry backoff, the retention policy's cutoffs and timer (retention.py), and the batched pgid
writes (journal.PgidSaver) against a real SQLite store."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from pathlib import Path

from apr_sched.config import RetentionConfig
from apr_sched.errors import StoreUnavailable
from apr_sched.events import EventHub
from apr_sched.health import DiskFloor, RetryTimer, degraded_reason
from apr_sched.journal import Journal, PgidSaver
from apr_sched.models import JobSpec, new_pending_job, utcnow
from apr_sched.retention import RetentionTimer, cutoffs, remove_logs
from apr_sched.store import Store, pending_job_row
from tests.conftest import wait_until


async def after_timers_due_by(delay: float) -> None:
    """Return once every loop timer due within ``delay`` from now has run: the loop runs
    timers in deadline order, so a sentinel at ``delay`` fires after them (no sleeping)."""
    fired = asyncio.Event()
    asyncio.get_running_loop().call_later(delay, fired.set)
    await fired.wait()


def test_the_disk_floor_says_why_while_it_is_crossed(tmp_path: Path) -> None:
    floor = DiskFloor(tmp_path, min_free_mb=0)
    assert floor.check() is False and floor.low is None
    floor.min_free_mb = 1e15  # more than any disk has
    assert floor.check() is True
    assert floor.low is not None and "min_free_disk_mb=1e+15" in floor.low
    floor.min_free_mb = 0
    assert floor.check() is False and floor.low is None


def test_a_store_refusing_writes_is_the_reason_before_the_disk(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    floor = DiskFloor(tmp_path, min_free_mb=1e15)
    floor.check()
    assert degraded_reason(None, floor) == floor.low
    assert degraded_reason(store, floor) == floor.low
    store.failure = "cannot write the state database: disk full"
    assert degraded_reason(store, floor) == store.failure
    store.close()


async def test_the_retry_timer_calls_once_however_often_it_is_armed() -> None:
    calls: list[int] = []
    timer = RetryTimer(lambda: calls.append(1), delay_sec=0.01)
    loop = asyncio.get_running_loop()
    timer.arm(loop)
    timer.arm(loop)
    await wait_until(lambda: calls)
    await after_timers_due_by(0.02)
    assert calls == [1]
    timer.arm(loop)
    timer.cancel()
    await after_timers_due_by(0.02)
    assert calls == [1], "a cancelled retry must not run"


def test_the_cutoffs_follow_the_policy() -> None:
    now = utcnow()
    policy = RetentionConfig(finished_job_days=2, host_event_days=0.5)
    assert cutoffs(policy, now) == (now - timedelta(days=2), now - timedelta(hours=12))
    keep_all = RetentionConfig(finished_job_days=None, host_event_days=None)
    assert cutoffs(keep_all, now) == (None, None)


def test_removing_logs_leaves_other_jobs_logs(tmp_path: Path) -> None:
    for job_id in ("1", "2"):
        (tmp_path / "logs" / job_id / "1").mkdir(parents=True)
    remove_logs(tmp_path, ["1", "404"])
    assert [p.name for p in (tmp_path / "logs").iterdir()] == ["2"]


async def test_the_retention_timer_purges_both_and_a_refusal_only_postpones() -> None:
    purged_jobs: list[datetime] = []
    purged_events: list[datetime] = []
    background: list[asyncio.Task[None]] = []

    async def purge_jobs(before: datetime) -> None:
        purged_jobs.append(before)
        if len(purged_jobs) == 1:
            raise StoreUnavailable("disk full", {})

    timer = RetentionTimer(RetentionConfig(finished_job_days=1, host_event_days=3),
                           purge_jobs=purge_jobs, purge_host_events=purged_events.append,
                           spawn=lambda work: background.append(asyncio.ensure_future(work)))
    timer.soon(0.0)
    await wait_until(lambda: background and background[0].done())
    assert len(purged_jobs) == 1 and purged_events == [], "postponed, not half done"
    timer.policy.purge_every_sec = 0.0  # the next round at once
    timer.soon(0.0)
    await wait_until(lambda: purged_events)
    assert purged_events[0] - purged_jobs[1] == timedelta(days=-2)
    timer.stop()
    rounds = len(background)
    timer.soon(0.0)
    await after_timers_due_by(0.01)
    assert len(background) == rounds, "a stopped timer purges nothing"


async def test_a_policy_that_keeps_everything_never_arms() -> None:
    spawned: list[object] = []
    timer = RetentionTimer(RetentionConfig(finished_job_days=None, host_event_days=None),
                           purge_jobs=lambda before: asyncio.sleep(0),
                           purge_host_events=lambda before: None, spawn=spawned.append)
    timer.soon(0.0)
    await after_timers_due_by(0.01)
    assert spawned == []


async def test_pgids_of_one_loop_iteration_are_written_together_after_it(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    now = utcnow()
    jobs = {str(n): new_pending_job(JobSpec(command="true"), str(n), now) for n in (1, 2)}
    with store.transaction():
        store.insert_jobs([pending_job_row(n, JobSpec(command="true"), now.isoformat(), n)
                           for n in (1, 2)])
    jobs["1"].pgid, jobs["2"].pgid = 4242, 4343
    refused: list[int] = []
    saver = PgidSaver(Journal(lambda: store, EventHub()), lambda: store, jobs,
                      on_refused=lambda: refused.append(1))

    def pgids() -> list[tuple[str, int | None]]:
        return [(row["job_id"], row["pgid"]) for row in store.page_jobs(("", []))]

    saver.soon("1")
    saver.soon("2")
    assert saver and pgids() == [("1", None), ("2", None)], "deferred to the next iteration"
    await wait_until(lambda: not saver)
    assert pgids() == [("1", 4242), ("2", 4343)] and refused == []
    store.close()
