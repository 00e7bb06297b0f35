"""Read-only views of the daemon's job JSON, for the CLI: no pydantic.

``apr-sched job ID``, ``submit --wait`` or a ``bsub -K`` shim print a job or judge how it
ended; building ``apr_sched.models.Job`` for that would cost each of them pydantic's import
(~80 ms, more than the rest of the command). These views read the same reply with the same
attribute names the printers and ``waiting.exit_code_for`` use, and nothing else: no
validation (the daemon sent it), no defaults beyond what the printers need. Library users
still get the models from ``SchedulerClient``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from apr_sched.states import JobStatus

__all__ = ["AttemptView", "EventView", "JobView", "ResourcesView", "job_views"]


def _time(value: Any) -> datetime | None:
    return None if value is None else datetime.fromisoformat(str(value))


def _status(value: Any) -> JobStatus | None:
    return None if value is None else JobStatus(value)


class ResourcesView:
    __slots__ = ("cpu", "host_labels", "memory_gb", "slots")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.slots: int = int(data.get("slots", 1))
        self.cpu: int = int(data.get("cpu", 1))
        self.memory_gb: float = float(data.get("memory_gb", 0.0))
        self.host_labels: dict[str, str] = dict(data.get("host_labels") or {})

    def describe(self) -> str:
        """As ``ResourceRequest.describe``."""
        parts = [f"{self.slots} slot{'s' if self.slots != 1 else ''}", f"{self.cpu} cpu"]
        if self.memory_gb:
            parts.append(f"{self.memory_gb:g} GB")
        parts += [f"{k}={v}" for k, v in sorted(self.host_labels.items())]
        return ", ".join(parts)


class AttemptView:
    __slots__ = (
        "attempt",
        "exit_code",
        "finished_at",
        "host_id",
        "reason",
        "signal",
        "started_at",
        "status",
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.attempt: int = int(data["attempt"])
        self.host_id: str | None = data.get("host_id")
        self.status: JobStatus = JobStatus(data["status"])
        self.started_at = _time(data.get("started_at"))
        self.finished_at = _time(data.get("finished_at"))
        self.exit_code: int | None = data.get("exit_code")
        self.signal: str | None = data.get("signal")
        self.reason: str | None = data.get("reason")


class EventView:
    __slots__ = ("attempt", "from_status", "host_id", "reason", "seq", "time", "to_status")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.seq: int = int(data.get("seq", 0))
        self.time = _time(data["time"])
        self.attempt: int = int(data.get("attempt", 0))
        self.from_status = _status(data.get("from_status"))
        self.to_status: JobStatus = JobStatus(data["to_status"])
        self.host_id: str | None = data.get("host_id")
        self.reason: str = str(data.get("reason") or "")


class JobView:
    """A job as the daemon sent it (``GET /jobs/{id}``, a page of ``GET /jobs``, a submit
    reply). A listed job has no ``attempts`` or ``events`` (empty lists here)."""

    __slots__ = (
        "attempt",
        "attempts",
        "begin_at",
        "command",
        "depends_on",
        "design",
        "env",
        "events",
        "exit_code",
        "finished_at",
        "host_id",
        "job_id",
        "name",
        "owner",
        "pending_reason",
        "priority",
        "project",
        "resource_request",
        "retry_limit",
        "signal",
        "started_at",
        "status",
        "submitted_at",
        "timeout_sec",
        "umask",
        "workdir",
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.job_id: str = str(data["job_id"])
        self.name: str | None = data.get("name")
        self.project: str = str(data.get("project", "default"))
        self.design: str = str(data.get("design", ""))
        self.owner: str = str(data.get("owner", ""))
        self.priority: int = int(data.get("priority", 0))
        self.command: str = str(data.get("command", ""))
        self.workdir: str | None = data.get("workdir")
        self.env: dict[str, str] = dict(data.get("env") or {})
        self.umask: str | None = data.get("umask")
        self.timeout_sec: float | None = data.get("timeout_sec")
        self.retry_limit: int = int(data.get("retry_limit", 0))
        self.resource_request = ResourcesView(data.get("resource_request") or {})
        self.status: JobStatus = JobStatus(data.get("status", "PENDING"))
        self.attempt: int = int(data.get("attempt", 1))
        self.host_id: str | None = data.get("host_id")
        self.pending_reason: str | None = data.get("pending_reason")
        submitted = _time(data.get("submitted_at"))
        if submitted is None:
            raise ValueError(f"job {self.job_id}: no submitted_at in the reply")
        self.submitted_at: datetime = submitted
        self.started_at = _time(data.get("started_at"))
        self.finished_at = _time(data.get("finished_at"))
        self.exit_code: int | None = data.get("exit_code")
        self.signal: str | None = data.get("signal")
        self.depends_on: dict[str, list[str]] = {
            condition: [str(job_id) for job_id in ids]
            for condition, ids in (data.get("depends_on") or {}).items() if ids}
        self.begin_at = _time(data.get("begin_at"))
        self.attempts = [AttemptView(a) for a in data.get("attempts") or []]
        self.events = [EventView(e) for e in data.get("events") or []]

    def __repr__(self) -> str:
        return f"JobView({self.job_id!r}, {self.status.value})"


def job_views(reply: Any) -> list[JobView]:
    """The jobs of a ``GET /jobs`` reply."""
    jobs = reply.get("jobs") if isinstance(reply, dict) else None
    return [JobView(item) for item in jobs or []]
