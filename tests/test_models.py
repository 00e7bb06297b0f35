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
