"""The checks a submit passes before anything is written (submission.Intake), and the jobs,
books and rows a small batch writes (submission.new_jobs)."""

from __future__ import annotations

import pytest

from apr_sched.errors import InvalidInput
from apr_sched.models import HostSpec, JobStatus, utcnow
from apr_sched.placement import HostCapacity, HostPool
from apr_sched.resources import Resources
from apr_sched.store import JOB_COLUMNS
from apr_sched.submission import VALIDATE_CHUNK, Intake, new_jobs

NO_SUCH_ACCOUNT = "nobody-apr-sched-test"


def intake(*, run_as_owner: bool = False) -> Intake:
    pool = HostPool()
    pool.upsert(HostCapacity.from_spec(HostSpec(host_id="h", total_slots=2, total_cpu=4,
                                                total_memory_gb=8)))
    return Intake(Resources(pool), run_as_owner=run_as_owner)


def test_one_bad_field_is_named() -> None:
    with pytest.raises(InvalidInput) as caught:
        intake().one({"command": "true", "retry_limt": 1})
    assert [d["field"] for d in caught.value.details] == ["retry_limt"]


def test_a_job_no_host_could_run_is_refused_unless_it_may_wait() -> None:
    too_big = {"command": "true", "resource_request": {"cpu": 5}}
    with pytest.raises(InvalidInput, match="cpu"):
        intake().one(too_big)
    assert intake().one({**too_big, "allow_pending": True}).resource_request.cpu == 5


async def test_a_batch_names_every_bad_entry_by_index() -> None:
    specs = [{"command": "true"}] * (VALIDATE_CHUNK + 3)
    specs[1] = {"command": ""}
    specs[VALIDATE_CHUNK + 1] = {"command": "true", "priority": "high"}
    with pytest.raises(InvalidInput, match="2 invalid job") as caught:
        await intake().batch(specs)
    fields = {d["field"].split(".")[0] for d in caught.value.details}
    assert fields == {"jobs[1]", f"jobs[{VALIDATE_CHUNK + 1}]"}


async def test_an_empty_batch_and_an_unrunnable_entry_are_refused() -> None:
    with pytest.raises(InvalidInput, match="holds no jobs"):
        await intake().batch([])
    with pytest.raises(InvalidInput, match=r"jobs\[1\]"):
        await intake().batch([{"command": "true"},
                              {"command": "true", "resource_request": {"memory_gb": 9}}])


async def test_with_run_as_owner_an_owner_without_an_account_is_refused() -> None:
    spec = {"command": "true", "owner": NO_SUCH_ACCOUNT}
    assert intake().one(spec).owner == NO_SUCH_ACCOUNT
    with pytest.raises(InvalidInput, match="no local account") as caught:
        intake(run_as_owner=True).one(spec)
    assert caught.value.details[0]["field"] == "owner"
    with pytest.raises(InvalidInput) as caught:
        await intake(run_as_owner=True).batch([{"command": "true", "owner": "root"}, spec])
    assert [d["field"] for d in caught.value.details] == ["jobs[1].owner"]


def test_new_jobs_take_consecutive_ids_and_queue_seqs() -> None:
    now = utcnow()
    specs = [intake().one({"command": "true", "name": f"j{n}"}) for n in range(3)]
    built = new_jobs(specs, 41, 7, now)
    assert [j.job_id for j in built.jobs] == ["41", "42", "43"]
    assert all(j.status is JobStatus.PENDING and j.attempt == 1 for j in built.jobs)
    assert [(b.seq, b.queue_seq, b.queued_at) for b in built.books] == [
        (41, 7, now), (42, 8, now), (43, 9, now)]
    row = dict(zip(JOB_COLUMNS, built.rows[2], strict=True))
    assert (row["job_id"], row["queue_seq"], row["status"]) == ("43", 9, "PENDING")
