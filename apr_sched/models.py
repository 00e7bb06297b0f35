"""The data apr_sched speaks in: specs people submit, and the records the scheduler keeps.

Input models (``HostSpec``, ``ResourceRequest``, ``JobSpec``) are strict and forbid unknown
fields, so ``"priority": "2"`` or a typo like ``retry_limt`` is an error, never a silent
coercion or a dropped field. Output models relax strictness: they are built by us.
"""

from __future__ import annotations

import functools
import getpass
import os
import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationInfo,
    field_validator,
    model_validator,
)

from apr_sched.errors import InvalidInput

# Re-exported: the states are part of the models' contract (and defined without pydantic).
from apr_sched.states import FINAL_STATUSES as FINAL_STATUSES
from apr_sched.states import ID_PATTERN as ID_PATTERN
from apr_sched.states import HostState as HostState
from apr_sched.states import JobStatus as JobStatus
from apr_sched.states import is_valid_id as is_valid_id
from apr_sched.states import utcnow as utcnow

_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

Identifier = Annotated[str, StringConstraints(pattern=ID_PATTERN)]
"""Job and host ids: safe in a path, a shell word and a URL without quoting."""


def _no_control_chars(value: str) -> str:
    if _CONTROL_RE.search(value):
        raise ValueError("must not contain control characters")
    return value


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


def _absolute_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError("must be an absolute path")
    return value


Text = Annotated[str, StringConstraints(max_length=128), AfterValidator(_no_control_chars)]
LabelKey = Annotated[
    str, StringConstraints(min_length=1, max_length=64), AfterValidator(_no_control_chars)
]
LabelValue = Annotated[str, StringConstraints(max_length=128), AfterValidator(_no_control_chars)]
EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")]
EnvValue = Annotated[str, StringConstraints(max_length=32768), AfterValidator(_no_nul)]
Command = Annotated[
    str, StringConstraints(min_length=1, max_length=65536), AfterValidator(_no_nul),
    AfterValidator(_not_blank),
]
Workdir = Annotated[
    str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_no_nul),
    AfterValidator(_absolute_path),
]
def _ssh_port_in_range(value: str) -> str:
    """A port in ``user@host:port`` (or ``[v6]:port``) must be one a server can listen on."""
    hostport = value.rpartition("@")[2]
    tail = hostport.rpartition("]")[2] if hostport.startswith("[") else hostport
    if ":" in tail and not 1 <= int(tail.rpartition(":")[2]) <= 65535:
        raise ValueError(f"port {int(tail.rpartition(':')[2])} is out of range 1-65535")
    return value


SshAddress = Annotated[
    str, StringConstraints(
        pattern=r"^(?:[A-Za-z0-9._][A-Za-z0-9._-]{0,63}@)?"
                r"(?:\[[0-9A-Fa-f:.]{2,45}\]|[A-Za-z0-9][A-Za-z0-9.-]{0,252})(?::[0-9]{1,5})?$"),
    AfterValidator(_ssh_port_in_range),
]
FilePath = Annotated[
    str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_no_control_chars),
]
Umask = Annotated[str, StringConstraints(pattern=r"^0?[0-7]{3}$")]
Prefix = Annotated[
    str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_no_control_chars),
    AfterValidator(_not_blank),
]

MAX_COUNT = 1_000_000
MAX_DEPENDENCIES = 1_000
"""Edges one job may list in all (a fan-in of a whole 1,000-element array is one edge)."""
MAX_ARRAY_ELEMENTS = 1_000_000
"""A hard ceiling; the HTTP service limits an array like a batch (``max_batch_jobs``)."""
MAX_MEMORY_GB = 1_000_000.0
MAX_TIMEOUT_SEC = 10 * 365 * 24 * 3600.0


@functools.cache
def current_user() -> str:
    """The submitting account, the natural default owner on a head node."""
    try:
        return getpass.getuser()
    except Exception:  # no passwd entry, e.g. in a container
        return os.environ.get("USER", "unknown")


class _StrictInput(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


DependencyRef = Annotated[
    str, StringConstraints(min_length=1, max_length=128), AfterValidator(_no_control_chars),
    AfterValidator(_not_blank),
]
"""A job id, or in a batch the ``name`` of another entry of the same batch."""


class Dependencies(_StrictInput):
    """Jobs that must end (a certain way) before this one may start; all must hold.

    A condition that can never hold any more (``after_ok`` on a job that FAILED) ends the
    dependent as CANCELLED at once, naming the dependency, and so on down the graph.
    """

    after_ok: list[DependencyRef] = Field(default_factory=list, max_length=MAX_DEPENDENCIES)
    """Start once each of these SUCCEEDED (an array: every element)."""
    after_any: list[DependencyRef] = Field(default_factory=list, max_length=MAX_DEPENDENCIES)
    """Start once each of these ended, however (an array: every element)."""
    after_failed: list[DependencyRef] = Field(default_factory=list,
                                              max_length=MAX_DEPENDENCIES)
    """Start once each of these ended without succeeding (an array: every element ended
    and at least one did not succeed)."""

    @model_validator(mode="after")
    def _bounded(self) -> Dependencies:
        if len(self.after_ok) + len(self.after_any) + len(self.after_failed) > MAX_DEPENDENCIES:
            raise ValueError(f"at most {MAX_DEPENDENCIES} dependencies in all")
        return self

    def as_mapping(self) -> dict[str, list[str]]:
        return {"after_ok": list(self.after_ok), "after_any": list(self.after_any),
                "after_failed": list(self.after_failed)}

    def __bool__(self) -> bool:
        return bool(self.after_ok or self.after_any or self.after_failed)


def _valid_array(value: str) -> str:
    from apr_sched.arrays import parse_array

    return parse_array(value, max_elements=MAX_ARRAY_ELEMENTS).text()


ArrayText = Annotated[str, StringConstraints(max_length=4096), AfterValidator(_valid_array)]


def _begin_time(value: Any) -> Any:
    """``+2h`` (from now), an ISO 8601 time (local time when it names no zone) or a
    datetime; kept as an aware UTC datetime, so a stored spec means one instant."""
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("+"):
            from datetime import timedelta

            from apr_sched.durations import parse_duration

            return utcnow() + timedelta(seconds=parse_duration(text[1:]))
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"{value!r} is neither a time like 2026-12-01T18:00 nor "
                             "+DURATION like +2h") from None
    if isinstance(value, datetime):
        return value.astimezone() if value.tzinfo is None else value
    return value


BeginTime = Annotated[datetime, BeforeValidator(_begin_time)]


def _not_reserved(value: str) -> str:
    if value in RESERVED_HOST_IDS:
        raise ValueError(f"{value!r} is reserved (it names an endpoint under /hosts/)")
    return value


RESERVED_HOST_IDS = frozenset({"register"})
"""``/scheduler/hosts/register`` is an endpoint: a host of that name could not be read."""


class HostSpec(_StrictInput):
    """A place jobs run, as registered by an admin or listed in hosts.toml."""

    host_id: Annotated[Identifier, AfterValidator(_not_reserved)]
    total_slots: int = Field(ge=1, le=MAX_COUNT)
    total_cpu: int = Field(ge=1, le=MAX_COUNT)
    total_memory_gb: float = Field(ge=0, le=MAX_MEMORY_GB)
    executor_prefix: Prefix | None = None
    """Run jobs as ``<prefix> <quoted command>``, e.g. ``ssh -o BatchMode=yes cad@10.0.0.11``.
    A plain ``ssh`` command line is recognised and run natively (see ``ssh``)."""
    labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=64)
    ssh: SshAddress | None = None
    """``user@host[:port]``: a native SSH host (one connection, remote pause/resume/stop)."""
    ssh_identity_file: FilePath | None = None
    """Private key to log in with (default: the ssh client's usual keys)."""
    ssh_known_hosts: FilePath | None = None
    """known_hosts file to check the host key against (default ~/.ssh/known_hosts)."""
    ssh_connect_timeout_sec: float = Field(default=10.0, gt=0, le=600)
    remote_spool: FilePath = "~/.apr_sched/spool"
    """Directory on the SSH host for job logs and exit codes (created when missing)."""

    @model_validator(mode="after")
    def _one_way_to_reach(self) -> HostSpec:
        if self.ssh and self.executor_prefix:
            raise ValueError("give either ssh or executor_prefix, not both")
        return self


class ResourceRequest(_StrictInput):
    """What a job consumes on its host while it runs; labels the host must carry."""

    cpu: int = Field(default=1, ge=0, le=MAX_COUNT)
    memory_gb: float = Field(default=0.0, ge=0, le=MAX_MEMORY_GB)
    slots: int = Field(default=1, ge=1, le=MAX_COUNT)
    host_labels: dict[LabelKey, LabelValue] = Field(default_factory=dict, max_length=64)

    def cluster_key(self) -> tuple[Any, ...]:
        """Equal for requests that no host could tell apart: one autocluster."""
        return (self.slots, self.cpu, self.memory_gb, tuple(sorted(self.host_labels.items())))

    def describe(self) -> str:
        parts = [f"{self.slots} slot{'s' if self.slots != 1 else ''}", f"{self.cpu} cpu"]
        if self.memory_gb:
            parts.append(f"{self.memory_gb:g} GB")
        parts += [f"{k}={v}" for k, v in sorted(self.host_labels.items())]
        return ", ".join(parts)


class JobSpec(_StrictInput):
    """What someone asks to run. Field names follow the seed usage document."""

    name: Text | None = None
    project: Text = "default"
    design: Text = ""
    owner: Text = Field(default_factory=current_user)
    priority: int = Field(default=0, ge=-MAX_COUNT, le=MAX_COUNT)
    """Larger runs first; equal priorities run in submit order."""
    timeout_sec: float | None = Field(default=None, gt=0, le=MAX_TIMEOUT_SEC)
    """Limit on running time (paused time excluded); ends in TIMEOUT."""
    retry_limit: int = Field(default=0, ge=0, le=100)
    """How many times a FAILED or TIMEOUT attempt is requeued."""
    workdir: Workdir | None = None
    """Absolute directory to run in; the executing account's home when omitted."""
    command: Command
    env: dict[EnvName, EnvValue] = Field(default_factory=dict, max_length=1024)
    resource_request: ResourceRequest = Field(default_factory=ResourceRequest)
    output_path: FilePath | None = None
    """Also write the job's stdout (and stderr, unless ``error_path``) to this file on the
    executing host, like LSF ``-o`` / Slurm ``--output``: relative to the workdir, ``%J``
    becomes the job id. The scheduler's own log keeps the combined output either way."""
    error_path: FilePath | None = None
    """Also write the job's stderr to this file (LSF ``-e``); needs ``output_path``."""
    umask: Umask | None = None
    """The job's file-creation mask, e.g. ``"022"`` (the CLI sends the submitter's)."""
    allow_pending: bool = False
    """Queue the job even when no registered host could ever run it (one may be registered
    later). Without it, submit refuses such a job and names the reason."""
    depends_on: Dependencies | None = None
    """Jobs this one waits for (LSF ``-w``, Slurm ``--dependency``); see ``Dependencies``."""
    array: ArrayText | None = None
    """Run this spec once per index: ``1-100``, ``1-100:5``, ``1,4,9-12``, ``%N`` to run at
    most N at once (LSF ``-J "name[1-100]%N"``, Slurm ``--array``). Elements are jobs
    ``<id>.<index>`` with ``APR_ARRAY_ID`` and ``APR_ARRAY_INDEX`` in their environment."""
    hold: bool = False
    """Submit HELD: it starts only once released with ``resume`` (LSF ``-H``)."""
    begin_at: BeginTime | None = None
    """Not before this time (LSF ``-b``, Slurm ``--begin``): ISO 8601 or ``+2h``."""

    @field_validator("error_path")
    @classmethod
    def _error_path_needs_output_path(cls, value: str | None, info: ValidationInfo,
                                      ) -> str | None:
        """A rule between two fields, checked on the later one so the error names it."""
        if value is not None and info.data.get("output_path", "") is None:
            raise ValueError("needs output_path: stderr goes to error_path, stdout to "
                             "output_path (LSF -e needs -o)")
        return value


class Attempt(BaseModel):
    """One run of a job on one host; reruns and retries add attempts, never replace them."""

    attempt: int
    host_id: str | None = None
    status: JobStatus
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: str | None = None
    reason: str | None = None


class JobEvent(BaseModel):
    """A job's state changed: when, from what, to what, and why."""

    kind: Literal["job"] = "job"
    seq: int
    time: datetime
    job_id: str
    attempt: int
    from_status: JobStatus | None
    to_status: JobStatus
    reason: str
    host_id: str | None = None


class HostEvent(BaseModel):
    """A host appeared, changed, or left."""

    kind: Literal["host"] = "host"
    seq: int
    time: datetime
    host_id: str
    from_state: HostState | None
    to_state: HostState | None
    reason: str


Event = JobEvent | HostEvent


class Job(JobSpec):
    """A submitted job as the scheduler knows it."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=False)

    job_id: str
    status: JobStatus = JobStatus.PENDING
    attempt: int = 1
    host_id: str | None = None
    pending_reason: str | None = None
    submitted_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    exit_code: int | None = None
    signal: str | None = None
    pgid: int | None = None
    """Process-group id of the running attempt on its host (signals go to the whole group)."""
    run_sec: float = 0.0
    """Running time of the current attempt up to ``resumed_at`` (or in all, once it is
    paused or finished): paused time excluded, as ``timeout_sec`` counts it."""
    resumed_at: datetime | None = None
    """When the current attempt last started or resumed running; None while it is paused
    or not running. Running time now = ``run_sec`` + (now - ``resumed_at``)."""
    events: list[JobEvent] = Field(default_factory=list)
    attempts: list[Attempt] = Field(default_factory=list)

    def spec(self) -> JobSpec:
        return JobSpec.model_validate(self.model_dump(include=set(JobSpec.model_fields)))


class HostLoad(_StrictInput):
    """Figures a host reports with its heartbeat (or that a probe reads), for display."""

    load_avg_1m: float | None = Field(default=None, ge=0, le=1e6)
    free_memory_gb: float | None = Field(default=None, ge=0, le=MAX_MEMORY_GB)
    free_disk_gb: float | None = Field(default=None, ge=0, le=1e9)


class Host(HostSpec):
    """A registered host with its state and what its running jobs use now."""

    model_config = ConfigDict(extra="forbid", strict=False, frozen=False)

    state: HostState = HostState.ONLINE
    state_reason: str | None = None
    """Why the host is in its state, e.g. why it is OFFLINE."""
    registered_at: datetime
    last_heartbeat: datetime | None = None
    used_slots: int = 0
    used_cpu: int = 0
    used_memory_gb: float = 0.0
    running_jobs: int = 0
    load: HostLoad | None = None

    def spec(self) -> HostSpec:
        return HostSpec.model_validate(self.model_dump(include=set(HostSpec.model_fields)))


class GraphNode(BaseModel):
    """A job in the graph around another: ``depth`` < 0 upstream, > 0 downstream."""

    job_id: str
    name: str | None = None
    status: JobStatus | None
    """None for a job that no longer exists (purged)."""
    depth: int
    pending_reason: str | None = None


class GraphEdge(BaseModel):
    """``job_id`` waits for ``upstream`` under ``condition``; ``state`` is what the
    upstream's status says now: ``met``, ``waiting`` or ``never``."""

    upstream: str
    job_id: str
    condition: Literal["after_ok", "after_any", "after_failed"]
    state: Literal["met", "waiting", "never"]


class JobGraph(BaseModel):
    """The jobs a job waits for and those that wait for it, ``depth`` steps each way,
    at most ``node_limit`` nodes (``truncated`` says some were left out)."""

    job_id: str
    depth: int
    node_limit: int
    truncated: bool
    nodes: list[GraphNode]
    edges: list[GraphEdge]


class JobPage(BaseModel):
    jobs: list[Job]
    total: int


class PurgeReport(BaseModel):
    """What a purge removed: finished jobs (with attempts, events, logs) and host events."""

    before: datetime
    jobs_purged: int
    host_events_purged: int


class LogTail(BaseModel):
    """Lines of one attempt's log; ``offset`` is where to continue reading to follow it."""

    job_id: str
    attempt: int
    lines: list[str]
    offset: int = 0


class Usage(BaseModel):
    used: float
    total: float


class MetricsSummary(BaseModel):
    """The numbers a person wants on one screen."""

    jobs_total: int
    jobs_by_status: dict[JobStatus, int]
    hosts_online: int
    hosts_offline: int
    hosts_total: int
    slots: Usage
    cpu: Usage
    memory_gb: Usage
    finished_last_hour: int
    wait_sec_median: float | None
    wait_sec_p95: float | None
    run_sec_median: float | None
    run_sec_p95: float | None
    degraded_reason: str | None = None
    """Why the scheduler cannot do its work now (store refuses writes, state disk full)."""


_NEW_JOB_FIELDS: dict[str, Any] = {
    "status": JobStatus.PENDING, "attempt": 1, "host_id": None, "pending_reason": None,
    "started_at": None, "finished_at": None, "exit_code": None, "signal": None, "pgid": None,
    "run_sec": 0.0, "resumed_at": None,
}


_JOB_FIELD_ORDER = tuple(Job.model_fields)


def new_pending_job(spec: JobSpec, job_id: str, now: datetime) -> Job:
    """A PENDING Job (HELD with ``hold``) from an already validated spec, without
    validating it again.

    What ``Job.model_construct`` does, minus its per-field default lookups (it inspects
    default factories every call): a 10,000-job batch builds 10,000 of these.
    tests/test_models.py checks the result equals a validated Job field for field.
    """
    given = {**spec.__dict__, **_NEW_JOB_FIELDS, "job_id": job_id, "submitted_at": now,
             "events": [], "attempts": []}
    if spec.hold:
        given["status"] = JobStatus.HELD
    values = {name: given[name] for name in _JOB_FIELD_ORDER}  # serialisation follows it
    job = Job.__new__(Job)
    object.__setattr__(job, "__dict__", values)
    object.__setattr__(job, "__pydantic_fields_set__", set(values))
    object.__setattr__(job, "__pydantic_extra__", None)
    object.__setattr__(job, "__pydantic_private__", None)
    return job


def with_dependencies(spec: JobSpec, depends_on: Dependencies) -> JobSpec:
    """``spec`` with other (already checked) dependencies, without validating again: a
    batch's names turned into ids, 10,000 of them (``model_copy`` took 30 us each).
    tests/test_models.py checks it equals ``model_copy``."""
    copy = JobSpec.__new__(JobSpec)
    object.__setattr__(copy, "__dict__", {**spec.__dict__, "depends_on": depends_on})
    object.__setattr__(copy, "__pydantic_fields_set__", {*spec.model_fields_set, "depends_on"})
    object.__setattr__(copy, "__pydantic_extra__", None)
    object.__setattr__(copy, "__pydantic_private__", None)
    return copy


_SPEC_FIELDS = frozenset(JobSpec.model_fields)


def stored_job(spec: dict[str, Any], columns: Mapping[str, Any]) -> Job:
    """A Job from what the store kept: the spec validated at submit (as its JSON dump) and
    the scheduler's own columns, without validating again. Restart, reads and listings
    build thousands of these; a spec missing a field (an older schema) is validated.
    tests/test_models.py checks the result equals a validated Job field for field."""
    if not spec.keys() >= _SPEC_FIELDS:
        return Job.model_validate({**spec, **columns})
    request = spec["resource_request"]
    depends_on = spec["depends_on"]
    given = {
        **spec,
        "resource_request": ResourceRequest.model_construct(**request),
        "depends_on": Dependencies.model_construct(**depends_on) if depends_on else None,
        "begin_at": _time(spec["begin_at"]),
        "job_id": columns["job_id"], "status": JobStatus(columns["status"]),
        "attempt": columns["attempt"], "host_id": columns["host_id"], "pending_reason": None,
        "submitted_at": _time(columns["submitted_at"]),
        "started_at": _time(columns["started_at"]),
        "finished_at": _time(columns["finished_at"]),
        "exit_code": columns["exit_code"], "signal": columns["signal"],
        "pgid": columns["pgid"], "run_sec": _column(columns, "run_sec") or 0.0,
        "resumed_at": _time(_column(columns, "resumed_at")), "events": [], "attempts": [],
    }
    values = {name: given[name] for name in _JOB_FIELD_ORDER}
    job = Job.__new__(Job)
    object.__setattr__(job, "__dict__", values)
    object.__setattr__(job, "__pydantic_fields_set__", set(values))
    object.__setattr__(job, "__pydantic_extra__", None)
    object.__setattr__(job, "__pydantic_private__", None)
    return job


def _column(columns: Mapping[str, Any], name: str) -> Any:
    """A column that older rows (and callers passing fewer columns) may lack: None."""
    try:
        return columns[name]
    except (KeyError, IndexError):  # sqlite3.Row raises IndexError for an unknown name
        return None


def _time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def parse_statuses(
    status: JobStatus | str | Iterable[JobStatus | str] | None,
) -> set[JobStatus] | None:
    """Statuses from a filter: one, several, or a comma-separated string (None: any)."""
    if status is None:
        return None
    items = status.split(",") if isinstance(status, str) else list(status)
    result = set()
    for item in items:
        try:
            result.add(JobStatus(str(item).strip().upper()))
        except ValueError:
            raise InvalidInput(
                f"unknown status {item!r}; expected one of {', '.join(JobStatus)}",
                [{"field": "status", "message": f"unknown status {item!r}"}],
            ) from None
    return result
