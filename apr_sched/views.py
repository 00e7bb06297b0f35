"""Read-only views of the daemon's job JSON, for the CLI: no pydantic.

``apr-sched job ID``, ``submit --wait`` or a ``bsub -K`` shim print a job or judge how it
ended; building ``apr_sched.models.Job`` for that would cost each of them pydantic's import
(~80 ms, more than the rest of the command). These views read the same reply with the same
attribute names the printers and ``waiting.exit_code_for`` use, and nothing else: no
validation (the daemon sent it), no defaults beyond what the printers need. Library users
still get the models from ``SchedulerClient``.

Times are read from the reply when first asked for: a status poll, a submit or a stop never
needs them, and ``datetime`` is a few milliseconds of their start.
"""

from __future__ import annotations

from apr_sched.states import JobStatus

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import datetime
    from typing import Any

__all__ = ["AttemptView", "EventView", "JobView", "ResourcesView", "job_views"]


def _time(value: Any) -> datetime | None:
    if value is None:
        return None
    from datetime import datetime  # at first use (see the module docstring)

    return datetime.fromisoformat(str(value))


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
        "_finished",
        "_started",
        "attempt",
        "exit_code",
        "host_id",
        "reason",
        "signal",
        "status",
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.attempt: int = int(data["attempt"])
        self.host_id: str | None = data.get("host_id")
        self.status: JobStatus = JobStatus(data["status"])
        self._started = data.get("started_at")
        self._finished = data.get("finished_at")
        self.exit_code: int | None = data.get("exit_code")
        self.signal: str | None = data.get("signal")
        self.reason: str | None = data.get("reason")

    @property
    def started_at(self) -> datetime | None:
        return _time(self._started)

    @property
    def finished_at(self) -> datetime | None:
        return _time(self._finished)


class EventView:
    __slots__ = ("_time", "attempt", "from_status", "host_id", "reason", "seq", "to_status")

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.seq: int = int(data.get("seq", 0))
        self._time = data["time"]
        self.attempt: int = int(data.get("attempt", 0))
        self.from_status = _status(data.get("from_status"))
        self.to_status: JobStatus = JobStatus(data["to_status"])
        self.host_id: str | None = data.get("host_id")
        self.reason: str = str(data.get("reason") or "")

    @property
    def time(self) -> datetime | None:
        return _time(self._time)


class JobView:
    """A job as the daemon sent it (``GET /jobs/{id}``, a page of ``GET /jobs``, a submit
    reply). A listed job has no ``attempts`` or ``events`` (empty lists here)."""

    __slots__ = (
        "_finished",
        "_started",
        "_submitted",
        "attempt",
        "attempts",
        "begin_at",
        "command",
        "depends_on",
        "design",
        "env",
        "events",
        "exit_code",
        "host_id",
        "job_id",
        "name",
        "owner",
        "pending_reason",
        "priority",
        "project",
        "raw",
        "resource_request",
        "retry_limit",
        "signal",
        "status",
        "timeout_sec",
        "umask",
        "workdir",
    )

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.raw = data
        """The reply it reads."""
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
        self._submitted = data.get("submitted_at")
        if self._submitted is None:
            raise ValueError(f"job {self.job_id}: no submitted_at in the reply")
        self._started = data.get("started_at")
        self._finished = data.get("finished_at")
        self.exit_code: int | None = data.get("exit_code")
        self.signal: str | None = data.get("signal")
        self.depends_on: dict[str, list[str]] = {
            condition: [str(job_id) for job_id in ids]
            for condition, ids in (data.get("depends_on") or {}).items() if ids}
        self.begin_at = _time(data.get("begin_at"))
        self.attempts = [AttemptView(a) for a in data.get("attempts") or []]
        self.events = [EventView(e) for e in data.get("events") or []]

    @property
    def submitted_at(self) -> datetime:
        submitted = _time(self._submitted)
        assert submitted is not None  # checked when the view was made
        return submitted

    @property
    def started_at(self) -> datetime | None:
        return _time(self._started)

    @property
    def finished_at(self) -> datetime | None:
        return _time(self._finished)

    def succeeded_by(self, event: Mapping[str, Any]) -> JobView:
        """The job as its ``SUCCEEDED`` event leaves it: what a second look would show that
        a waiter needs (a success's exit code is 0), without that look."""
        return JobView({**self.raw, "status": JobStatus.SUCCEEDED.value, "exit_code": 0,
                        "signal": None, "pending_reason": None,
                        "attempt": event.get("attempt", self.attempt),
                        "host_id": event.get("host_id") or self.host_id,
                        "finished_at": event.get("time")})

    def __repr__(self) -> str:
        return f"JobView({self.job_id!r}, {self.status.value})"


def job_views(reply: Any) -> list[JobView]:
    """The jobs of a ``GET /jobs`` reply."""
    jobs = reply.get("jobs") if isinstance(reply, dict) else None
    return [JobView(item) for item in jobs or []]
