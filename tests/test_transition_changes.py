"""What each job transition writes and changes in memory (transitions.py builders), and how
an ended attempt reads and whether it retries, decided without a store or a loop."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from apr_sched import transitions
from apr_sched.errors import IllegalTransition
from apr_sched.executors.base import ExitStatus
from apr_sched.executors.local import LocalExecutor
from apr_sched.jobs import Book
from apr_sched.models import Job, JobSpec, JobStatus, ResourceRequest, new_pending_job, utcnow
from apr_sched.runs import Run

NOW = utcnow()


def job(**spec: object) -> Job:
    return new_pending_job(JobSpec.model_validate({"command": "true", **spec}), "7", NOW)


def now_reads(*values: object) -> tuple[object, ...]:
    """Values read after ``then`` ran (typed loosely: mypy narrowed them before it ran)."""
    return values


def book(**fields: object) -> Book:
    return Book(**{"seq": 7, "queue_seq": 3, "queued_at": NOW, **fields})  # type: ignore[arg-type]


def test_a_start_writes_its_host_and_time_and_applies_them_only_when_told() -> None:
    j, b = job(), book(run_sec=5.0)
    change = transitions.started(j, b, "h1", NOW)
    assert (change.to_status, change.reason, change.host_id) == (
        JobStatus.RUNNING, "dispatched to h1", "h1")
    assert change.job_cols == {"host_id": "h1", "started_at": NOW, "run_sec": 0.0,
                               "resumed_at": NOW, "pgid": None}
    assert j.host_id is None and b.run_sec == 5.0, "building a change changes nothing"
    assert change.then is not None
    change.then()
    assert now_reads(j.host_id, j.started_at, b.run_sec, b.resumed_at) == ("h1", NOW, 0.0, NOW)


@pytest.mark.parametrize(("ending", "status", "retries_used", "final", "retry"), [
    (None, ExitStatus(0), 0, JobStatus.SUCCEEDED, False),
    (None, ExitStatus(3), 0, JobStatus.FAILED, True),
    (None, ExitStatus(3), 2, JobStatus.FAILED, False),  # retry_limit=2 spent
    (None, ExitStatus(None, lost=True, detail="host gone"), 0, JobStatus.FAILED, True),
    (transitions.TIMEOUT, ExitStatus(None, signal="SIGTERM"), 0, JobStatus.TIMEOUT, True),
    (transitions.STOP, ExitStatus(None, signal="SIGTERM"), 0, JobStatus.STOPPED, False),
])
def test_an_ended_attempt_retries_only_when_it_failed_and_has_retries_left(
        ending: str | None, status: ExitStatus, retries_used: int, final: JobStatus,
        retry: bool) -> None:
    ended = transitions.attempt_ended(job(retry_limit=2, timeout_sec=60),
                                      book(retries_used=retries_used), ending, status, None, NOW)
    assert (ended.change.to_status, ended.retry) == (final, retry)


def test_an_ended_attempts_time_counts_running_time_only_and_never_the_future() -> None:
    resumed = NOW - timedelta(seconds=30)
    b = book(run_sec=100.0, resumed_at=resumed)  # ran 100 s, paused, resumed 30 s ago
    j = job()
    earlier = transitions.attempt_ended(
        j, b, None, ExitStatus(0, ended_at=(NOW - timedelta(seconds=10)).timestamp()),
        "after scheduler restart", NOW)
    assert earlier.run_sec == pytest.approx(120.0)
    assert earlier.change.reason == "exit code 0 (after scheduler restart)"
    assert earlier.change.attempt_cols is not None
    assert earlier.change.attempt_cols["reason"] == earlier.change.reason
    later = transitions.attempt_ended(
        j, b, None, ExitStatus(0, ended_at=(NOW + timedelta(hours=1)).timestamp()), None, NOW)
    assert later.run_sec == pytest.approx(130.0)
    assert later.change.then is not None
    later.change.then()
    assert (j.finished_at, j.exit_code, j.pgid) == (NOW, 0, None)


def test_a_retry_is_the_next_attempt_with_everything_of_the_last_one_reset() -> None:
    j, b = job(retry_limit=3), book(retries_used=1, ending=transitions.TIMEOUT)
    j.attempt, j.host_id, j.exit_code = 2, "h1", 1
    change = transitions.retried(j, b, NOW, queue_seq=42)
    assert change.reason == "retry 2 of 3 as attempt 3"
    assert change.attempt == 3 and change.job_cols is not None
    assert (change.job_cols["queue_seq"], change.job_cols["retries_used"]) == (42, 2)
    assert change.job_cols["host_id"] is None and change.job_cols["ending"] is None
    assert change.then is not None
    change.then()
    assert now_reads(j.attempt, j.host_id, j.exit_code, b.ending) == (3, None, None, None)


def test_pause_stops_the_running_clock_and_resume_restarts_it() -> None:
    b = book(run_sec=10.0, resumed_at=NOW - timedelta(seconds=5))
    pause = transitions.paused(b, NOW)
    assert pause.job_cols == {"run_sec": pytest.approx(15.0), "resumed_at": None}
    assert pause.then is not None
    pause.then()
    assert now_reads(b.run_sec, b.resumed_at) == (pytest.approx(15.0), None)
    later = NOW + timedelta(minutes=1)
    resume = transitions.resumed(b, later)
    assert resume.then is not None
    resume.then()
    assert b.resumed_at == later and b.running_sec(later + timedelta(seconds=1)) == \
        pytest.approx(16.0)


def test_a_requeued_unstarted_attempt_forgets_its_host_and_spends_nothing() -> None:
    j, b = job(), book(resumed_at=NOW)
    j.host_id, j.started_at = "h1", NOW
    change = transitions.requeued_unstarted(j, b, "h1")
    assert change.to_status is JobStatus.PENDING and change.attempt is None
    assert "no retry spent" in change.reason
    assert change.then is not None
    change.then()
    assert now_reads(j.host_id, j.started_at, b.resumed_at) == (None, None, None)


async def test_pause_and_resume_go_only_to_a_live_attempt_that_is_not_being_ended() -> None:
    j = job().model_copy(update={"status": JobStatus.RUNNING})
    with pytest.raises(IllegalTransition, match="it is RUNNING"):
        transitions.control_target("pause", j, None)
    run = Run("7", 1, "h1", ResourceRequest(), LocalExecutor("h1"),
              started=asyncio.get_running_loop().create_future())
    assert transitions.control_target("pause", j, run) is run
    intent = transitions.ending_intent(j, book(), run, transitions.STOP, "stop requested")
    assert intent.to_status is JobStatus.RUNNING, "an intent is a note, not a new status"
    assert intent.then is not None
    intent.then()
    with pytest.raises(IllegalTransition, match=r"being stopped \(stop\)"):
        transitions.control_target("resume", j, run)
