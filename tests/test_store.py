"""The SQLite store on its own: a transaction lands whole or not at all, on a real file."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from apr_sched.errors import StoreUnavailable
from apr_sched.models import JobEvent, JobStatus
from apr_sched.store import JOB_COLUMNS, Store

NOW = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)


def job_row(seq: int) -> tuple[object, ...]:
    """A PENDING job in ``JOB_COLUMNS`` order, as the Scheduler writes it."""
    values = {"seq": seq, "job_id": str(seq), "spec": '{"command": "true"}',
              "status": "PENDING", "attempt": 1, "submitted_at": NOW.isoformat(),
              "queue_seq": seq, "retries_used": 0, "run_sec": 0.0}
    return tuple(values.get(name) for name in JOB_COLUMNS)


def submitted(seq: int) -> JobEvent:
    return JobEvent(seq=seq, time=NOW, job_id=str(seq), attempt=1, from_status=None,
                    to_status=JobStatus.PENDING, reason="submitted")


def committed_jobs(path: Path) -> list[str]:
    """What another connection (a restarted daemon) finds in the file."""
    with sqlite3.connect(path) as db:
        return [row[0] for row in db.execute("SELECT job_id FROM jobs ORDER BY seq")]


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(tmp_path / "apr_sched.db")


def test_a_transaction_commits_everything_together(store: Store) -> None:
    with store.transaction():
        store.insert_jobs([job_row(1), job_row(2)])
        store.insert_events([submitted(1), submitted(2)])
    assert committed_jobs(store.path) == ["1", "2"]
    assert store.max_event_seq() == 2


def test_an_error_half_way_rolls_back_every_write(store: Store) -> None:
    with store.transaction():
        store.insert_jobs([job_row(1)])
    with pytest.raises(RuntimeError, match="half-way"), store.transaction():
        store.insert_jobs([job_row(2)])
        store.update_job("1", status="STOPPED")
        raise RuntimeError("fails half-way")
    assert committed_jobs(store.path) == ["1"]
    row = store.load_job("1")
    assert row is not None and row["status"] == "PENDING"


def test_a_failing_statement_rolls_back_the_ones_before_it(store: Store) -> None:
    """SQLite itself refuses the third write (duplicate id): the first two must not land."""
    with pytest.raises(StoreUnavailable, match="UNIQUE"), store.transaction():
        store.insert_jobs([job_row(1)])
        store.insert_events([submitted(1)])
        store.insert_jobs([job_row(1)])
    assert committed_jobs(store.path) == []
    assert store.max_event_seq() == 0
    with store.transaction():  # the store is usable again
        store.insert_jobs([job_row(1)])
    assert committed_jobs(store.path) == ["1"]


def test_a_nested_transaction_fails_with_the_outer_one(store: Store) -> None:
    with pytest.raises(RuntimeError), store.transaction():
        with store.transaction():
            store.insert_jobs([job_row(1)])
        raise RuntimeError("the outer part fails after the nested one ended")
    assert committed_jobs(store.path) == []
