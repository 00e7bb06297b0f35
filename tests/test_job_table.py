"""The jobs in memory (jobs.JobTable: unfinished jobs kept, finished ones read from a real
SQLite store), waiting for a job to end (jobs.FinalWaiters), and recognising at restart an
attempt that never ran (runs.never_ran)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import pytest

from apr_sched.errors import NotFound
from apr_sched.executors.base import ExitStatus
from apr_sched.jobs import Book, FinalWaiters, JobTable
from apr_sched.models import Job, JobSpec, JobStatus, utcnow
from apr_sched.runs import never_ran
from apr_sched.store import Store, pending_job_row

NOW = utcnow()


def reason_of(job: Job) -> str | None:
    return f"reason for {job.status.value}" if job.status is JobStatus.PENDING else None


def test_a_table_answers_from_memory_first_then_from_the_store(tmp_path: Path) -> None:
    store = Store(tmp_path / "db")
    spec = JobSpec(command="true")
    with store.transaction():
        store.insert_jobs([pending_job_row(n, spec, NOW.isoformat(), n) for n in (1, 2)])
        store.update_job("2", status="SUCCEEDED")
    table = JobTable(lambda: store, reason_of)
    row = store.load_job("1")
    job, book = table.install(row)
    assert "1" in table and len(table) == 1 and table.get("1") is job
    assert table.get("2").status is JobStatus.SUCCEEDED and "2" not in table, \
        "a finished job is read, not kept"
    for unknown in ("3", "../x"):
        with pytest.raises(NotFound):
            table.get(unknown)

    book.run_sec = 12.5
    view = table.view(job)
    assert view is not job and (view.run_sec, view.pending_reason) == (12.5, "reason for PENDING")
    table.forget(job)
    assert "1" in table, "an unfinished job stays in memory"
    job.status = JobStatus.FAILED
    table.forget(job)
    assert "1" not in table and table.row_view(row).job_id == "1"
    store.close()


async def test_waiters_return_when_their_job_is_final_and_only_then() -> None:
    waiters = FinalWaiters()
    first = asyncio.ensure_future(waiters.until_final("1", timeout=5))
    other = asyncio.ensure_future(waiters.until_final("2", timeout=5))
    await asyncio.sleep(0)  # both are waiting now
    waiters.final("1")
    await first
    assert not other.done()
    with pytest.raises(TimeoutError):
        await waiters.until_final("3", timeout=0.01)
    waiters.cancel_all()
    with pytest.raises(asyncio.CancelledError):
        await other


def test_an_attempt_that_left_nothing_never_ran(tmp_path: Path) -> None:
    log = tmp_path / "log"
    lost = ExitStatus(None, lost=True, detail="no wrapper")
    assert never_ran(lost, None, log), "no log at all"
    log.write_bytes(b"")
    assert never_ran(lost, None, log), "an empty log"
    assert not never_ran(lost, 4242, log), "it had a process group"
    assert not never_ran(ExitStatus(1), None, log), "it wrote an exit code"
    log.write_bytes(b"started\n")
    assert not never_ran(lost, None, log), "it printed something"


def test_a_book_counts_running_time_since_it_last_resumed() -> None:
    resumed = NOW - timedelta(seconds=10)
    book = Book(seq=1, queue_seq=1, queued_at=NOW, run_sec=3.0, resumed_at=resumed)
    assert book.running_sec(NOW) == pytest.approx(13.0)
    assert book.running_sec(resumed - timedelta(seconds=5)) == 3.0, "never negative"
    book.resumed_at = None  # paused: the clock stands still
    assert book.running_sec(NOW) == 3.0
