"""Model details that other code relies on."""

from __future__ import annotations

import json

from apr_sched import Job, JobSpec
from apr_sched.models import new_pending_job, stored_job, utcnow


def test_fast_new_job_equals_a_validated_job():
    spec = JobSpec.model_validate({
        "name": "n", "project": "P", "design": "top", "owner": "me", "priority": 3,
        "timeout_sec": 9.5, "retry_limit": 2, "workdir": "/tmp", "command": "echo 'x'",
        "env": {"A": "1"}, "resource_request": {"cpu": 2, "memory_gb": 1.5, "slots": 1,
                                                "host_labels": {"tool": "icc2"}}})
    now = utcnow()
    fast = new_pending_job(spec, "7", now)
    slow = Job.model_validate({**spec.model_dump(), "job_id": "7", "submitted_at": now})
    assert fast == slow
    assert fast.model_dump() == slow.model_dump()
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.model_copy().resource_request == spec.resource_request
    fast.status = slow.status  # assignment works as on any model
    assert fast.model_fields_set >= {"job_id", "submitted_at", "command"}


def test_stored_job_equals_a_validated_job():
    spec = JobSpec.model_validate({
        "name": "n", "project": "P", "owner": "me", "command": "true", "env": {"A": "1"},
        "resource_request": {"cpu": 2, "host_labels": {"tool": "icc2"}}})
    columns = {"job_id": "9", "status": "FAILED", "attempt": 2, "host_id": "h1",
               "submitted_at": "2026-01-01T00:00:00+00:00",
               "started_at": "2026-01-01T00:00:01+00:00",
               "finished_at": "2026-01-01T00:00:02.5+00:00", "exit_code": 3, "signal": None,
               "pgid": None}
    stored = json.loads(spec.model_dump_json())
    fast = stored_job(stored, columns)
    slow = Job.model_validate({**stored, **columns})
    assert fast == slow
    assert fast.model_dump_json() == slow.model_dump_json()
    assert fast.resource_request.host_labels == {"tool": "icc2"}
    del stored["env"]  # an older spec without a newer field is validated (defaults fill in)
    assert stored_job(stored, columns).env == {}


def test_graph_fields_survive_the_fast_paths():
    """depends_on, array, hold and begin_at, built by new_pending_job and stored_job
    without validation, equal the validated models."""
    spec = JobSpec.model_validate({
        "command": "true", "depends_on": {"after_ok": ["3"], "after_failed": ["4"]},
        "array": "1-9:2%2", "hold": True, "begin_at": "2026-05-01T12:00:00+02:00"})
    now = utcnow()
    fast = new_pending_job(spec, "7", now)
    assert fast == Job.model_validate({**spec.model_dump(), "job_id": "7", "submitted_at": now,
                                       "status": "HELD"})  # hold: submitted HELD
    columns = {"job_id": "7", "status": "HELD", "attempt": 1, "host_id": None,
               "submitted_at": "2026-01-01T00:00:00+00:00", "started_at": None,
               "finished_at": None, "exit_code": None, "signal": None, "pgid": None}
    stored = json.loads(spec.model_dump_json())
    from_store = stored_job(stored, columns)
    assert from_store == Job.model_validate({**stored, **columns})
    assert from_store.depends_on is not None and from_store.depends_on.after_ok == ["3"]
    assert from_store.begin_at == spec.begin_at
    assert from_store.model_dump_json() == Job.model_validate(
        {**stored, **columns}).model_dump_json()


def test_begin_at_forms_and_refusals():
    import pytest
    from pydantic import ValidationError

    before = utcnow()
    relative = JobSpec.model_validate({"command": "x", "begin_at": "+1h30m"}).begin_at
    assert relative is not None and 5399 <= (relative - before).total_seconds() <= 5460
    zoned = JobSpec.model_validate({"command": "x", "begin_at": "2026-05-01T12:00+02:00"})
    assert zoned.begin_at is not None and zoned.begin_at.utcoffset() is not None
    naive = JobSpec.model_validate({"command": "x", "begin_at": "2026-05-01T12:00"})
    assert naive.begin_at is not None and naive.begin_at.tzinfo is not None  # local time
    for bad, words in [("soon", "neither a time"), ("+2x", "not a duration"), (7, "datetime")]:
        with pytest.raises(ValidationError, match=words):
            JobSpec.model_validate({"command": "x", "begin_at": bad})


def test_dependencies_are_bounded_and_named():
    import pytest
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="at most 1000 dependencies in all"):
        JobSpec.model_validate({"command": "x", "depends_on": {
            "after_ok": [str(i) for i in range(600)], "after_any": [str(i) for i in range(401)]}})
    with pytest.raises(ValidationError, match=r"depends_on\.after_ok\.0"):
        JobSpec.model_validate({"command": "x", "depends_on": {"after_ok": [" "]}})
    with pytest.raises(ValidationError, match=r"depends_on\.after_okk"):
        JobSpec.model_validate({"command": "x", "depends_on": {"after_okk": ["1"]}})
    with pytest.raises(ValidationError, match="array"):
        JobSpec.model_validate({"command": "x", "array": "1-3,2"})


def test_with_dependencies_equals_a_model_copy():
    from apr_sched.models import Dependencies, JobSpec, with_dependencies

    spec = JobSpec.model_validate({"command": "true", "name": "route",
                                   "depends_on": {"after_ok": ["place"]}})
    ids = Dependencies.model_construct(after_ok=["12"], after_any=[], after_failed=[])
    fast = with_dependencies(spec, ids)
    slow = spec.model_copy(update={"depends_on": ids})
    assert fast == slow and fast.model_dump_json() == slow.model_dump_json()
    assert spec.depends_on.after_ok == ["place"]  # the original is left as it was
    assert fast.model_fields_set == slow.model_fields_set
