"""Changing a submitted job (``modify``, HTTP ``PATCH``): what may change when, checked as a
submit would check it.

A waiting job (PENDING or HELD) may change its ``name``, ``priority``, ``timeout_sec``,
``begin_at`` and its ``resource_request`` (``cpu``, ``memory_gb``, ``slots``,
``host_labels``; given fields merge into the request, ``host_labels`` replaces the
labels); a running or paused one only ``priority`` and ``timeout_sec``. ``null`` clears
``name``, ``timeout_sec`` and ``begin_at``. Anything else is refused naming the field and
why (``hold`` is what pause and resume change). The merged spec is validated through
``JobSpec``, so a bad value is refused exactly as at submit, naming the field. Pure: the
Scheduler writes the new spec with an event saying what changed, then re-queues the job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apr_sched.errors import IllegalTransition, InvalidInput, validated
from apr_sched.models import Job, JobSpec, JobStatus, ResourceRequest

WAITING_FIELDS = ("name", "priority", "timeout_sec", "begin_at", "resource_request")
RUNNING_FIELDS = ("priority", "timeout_sec")
REQUEST_FIELDS = frozenset(ResourceRequest.model_fields)
_WHY_NOT = {
    "hold": "hold is changed by pause (holds a pending job) and resume (releases it)",
    "depends_on": "dependencies are fixed at submit: stop the job and submit it again",
    "array": "an array is fixed at submit",
    "owner": "a job's owner never changes",
}


@dataclass(frozen=True, slots=True)
class Modification:
    """The job's spec after the change, and each changed field's old and new value."""

    spec: JobSpec
    changed: dict[str, tuple[Any, Any]]

    def describe(self) -> str:
        """``modified: priority 0 -> 5, cpu 1 -> 4`` (the event's reason)."""
        return "modified: " + ", ".join(f"{name} {_show(old)} -> {_show(new)}"
                                        for name, (old, new) in self.changed.items())

    def apply(self, job: Job) -> None:
        """The job in memory takes the new spec's values (after the write committed)."""
        for name in ("name", "priority", "timeout_sec", "begin_at", "resource_request"):
            setattr(job, name, getattr(self.spec, name))


def modification(job: Job, changes: Any) -> Modification:
    """The change asked for, checked: InvalidInput for a field that never changes or a
    bad value, IllegalTransition for one that may not change in the job's state."""
    if not isinstance(changes, Mapping):
        raise InvalidInput("a modification is a JSON object of the fields to change",
                           [{"field": "(body)", "message": "must be a JSON object"}])
    if not changes:
        raise InvalidInput("nothing to change: give at least one field",
                           [{"field": "(body)", "message": "no field given"}])
    for name in changes:
        _check_field(job, str(name))
    request = changes.get("resource_request", {})
    if not isinstance(request, Mapping):
        raise InvalidInput("resource_request: must be an object of the fields to change",
                           [{"field": "resource_request", "message": "must be an object"}])
    for name in request:
        if name not in REQUEST_FIELDS:
            raise InvalidInput(f"resource_request.{name}: no such field; one of "
                               f"{', '.join(sorted(REQUEST_FIELDS))}",
                               [{"field": f"resource_request.{name}",
                                 "message": "no such field"}])
    before = job.spec()
    merged = before.model_dump()
    merged.update({name: value for name, value in changes.items()
                   if name != "resource_request"})
    merged["resource_request"] = {**merged["resource_request"], **request}
    after = validated(JobSpec, merged)
    changed = _differences(before, after)
    if not changed:
        raise InvalidInput("nothing to change: every field given already has that value",
                           [{"field": "(body)", "message": "no field changes"}])
    return Modification(after, changed)


def _check_field(job: Job, name: str) -> None:
    if name in WAITING_FIELDS:
        if job.status in (JobStatus.PENDING, JobStatus.HELD) or name in RUNNING_FIELDS:
            return
        raise IllegalTransition(
            f"cannot change {name} of job {job.job_id}: it is {job.status.value}; once a "
            f"job runs only {' and '.join(RUNNING_FIELDS)} may change",
            {"job_id": job.job_id, "status": job.status.value, "field": name})
    if name in JobSpec.model_fields:
        why = _WHY_NOT.get(name, f"{name} is fixed at submit: stop the job and submit "
                                 "it again")
        raise InvalidInput(f"{name} cannot be changed: {why}",
                           [{"field": name, "message": "cannot be changed"}])
    raise InvalidInput(f"{name}: no such field; one of {', '.join(WAITING_FIELDS)}",
                       [{"field": name, "message": "no such field"}])


def _differences(before: JobSpec, after: JobSpec) -> dict[str, tuple[Any, Any]]:
    changed: dict[str, tuple[Any, Any]] = {}
    for name in WAITING_FIELDS:
        if name == "resource_request":
            for field in ResourceRequest.model_fields:
                old = getattr(before.resource_request, field)
                new = getattr(after.resource_request, field)
                if old != new:
                    changed[field] = (old, new)
        elif getattr(before, name) != getattr(after, name):
            changed[name] = (getattr(before, name), getattr(after, name))
    return changed


def _show(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ",".join(f"{k}={v}" for k, v in sorted(value.items())) or "{}"
    return repr(value) if isinstance(value, str) else str(value)
