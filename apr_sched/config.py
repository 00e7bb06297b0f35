"""Where the scheduler keeps its state, and the TOML file that describes hosts and options.

A config file has up to three tables; anything else is an error, so a misspelt table or a
key written above ``[scheduler]`` is reported instead of silently ignored::

    [scheduler]
    state_dir = "/var/lib/apr_sched"
    stop_grace_sec = 10.0

    [scheduler.logs]
    max_job_log_mb = 1024

    [http]
    host = "127.0.0.1"
    port = 5000
    auth = "token"

    [[hosts]]
    host_id = "host-a"
    total_slots = 8
    total_cpu = 32
    total_memory_gb = 128
    executor_prefix = "ssh -o BatchMode=yes cad@10.0.0.11"
    [hosts.labels]
    tool = "innovus"

Files are read with ``tomllib`` and written with ``tomli_w``; what ``dump_config_toml``
writes, ``load_config`` reads back to an equal config.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import tomli_w
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
)
from pydantic_core import PydanticCustomError

from apr_sched.errors import InvalidInput, field_errors
from apr_sched.models import HostSpec

# Re-exported: where the state dir is, decided without pydantic (statedir.py).
from apr_sched.statedir import LEGACY_BASE_ENV as LEGACY_BASE_ENV
from apr_sched.statedir import STATE_DIR_ENV as STATE_DIR_ENV
from apr_sched.statedir import resolve_state_dir as resolve_state_dir

if TYPE_CHECKING:  # the daemon's modules load only where the daemon builds them
    from apr_sched.http.limits import ApiLimits
    from apr_sched.http.server import HttpLimits
    from apr_sched.loglimit import LogLimit

__all__ = [
    "HttpConfig",
    "LogsConfig",
    "SchedulerConfig",
    "dump_config_toml",
    "hosts_toml",
    "load_config",
    "local_host_spec",
    "resolve_state_dir",
]

_TABLES = ("scheduler", "http", "hosts")


def local_host_spec(host_id: str = "local") -> HostSpec:
    """This machine as a host, for running without any hosts file.

    Slots and cpu are ``os.cpu_count()``; memory is physical RAM in GB of 2**30 bytes
    (what ``free -g`` shows), rounded down to 0.1 so a job never asks for more than exists.
    """
    cpus = os.cpu_count() or 1
    ram_bytes = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    memory_gb = (ram_bytes * 10 // (1 << 30)) / 10
    try:
        return HostSpec(
            host_id=host_id, total_slots=cpus, total_cpu=cpus, total_memory_gb=memory_gb
        )
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None


def _no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("must not contain NUL bytes")
    return value


def _absolute_or_home(value: str) -> str:
    if not (value.startswith("/") or value == "~" or value.startswith("~/")):
        # Relative to what? The cwd of whoever starts the daemon is a trap.
        raise ValueError("must be an absolute path or start with ~/")
    return value


StateDirPath = Annotated[
    str, StringConstraints(min_length=1, max_length=4096), AfterValidator(_no_nul),
    AfterValidator(_absolute_or_home),
]


class _StrictConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class HttpConfig(_StrictConfig):
    """The ``/scheduler`` HTTP endpoint; safe defaults: loopback only, bearer token."""

    host: Annotated[str, StringConstraints(min_length=1, max_length=255)] = "127.0.0.1"
    """Address to bind; anything but loopback exposes job control to the network."""
    port: int = Field(default=5000, ge=0, le=65535)
    """0 picks a free port (tests, several schedulers on one machine)."""
    auth: Literal["token", "none"] = "token"
    """``"none"`` turns authentication off; only for a trusted, single-user machine."""
    max_head_bytes: int = Field(default=16 * 1024, ge=1024, le=1 << 20)
    """Request line and headers; larger is refused with 431."""
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, le=1 << 30)
    """Larger bodies are refused with 413 before they are read."""
    keepalive_timeout_sec: float = Field(default=15.0, gt=0, le=3600)
    """An idle keep-alive connection that has made an authenticated request is closed after
    this long."""
    unauthenticated_idle_timeout_sec: float = Field(default=5.0, gt=0, le=3600)
    """A connection that has made no authenticated request yet (a new one, or one that only
    asked for health) is closed after this long idle."""
    header_timeout_sec: float = Field(default=10.0, gt=0, le=3600)
    """A request head not complete this long after its first byte (a new connection's: after
    the accept) gets 408."""
    request_timeout_sec: float = Field(default=30.0, gt=0, le=3600)
    """A request not fully received in this time gets 408."""
    write_timeout_sec: float = Field(default=10.0, gt=0, le=3600)
    """A client that takes no byte of a reply for this long is disconnected; until a reply
    is taken, its connection's next request is not read."""
    max_connections: int = Field(default=512, ge=1, le=100_000)
    """Connections beyond this get 503."""
    max_connections_per_client: int = Field(default=64, ge=1, le=100_000)
    """Connections from one address beyond this get 503, so one client cannot take them
    all."""
    max_batch_jobs: int = Field(default=10_000, ge=1, le=1_000_000)
    """Jobs in one batch submit; more get 413 naming the limit."""
    max_busy_per_client: int = Field(default=4, ge=1, le=10_000)
    """Requests from one address worked on at once; more wait their turn (long polls wait
    outside it), so one client cannot fill the daemon's memory or time."""
    socket: bool = True
    """Also serve the API on ``<state_dir>/apr_sched.sock``, where local users are known by
    their uid and need no token."""
    socket_mode: int | None = Field(default=None, ge=0, le=0o777)
    """Who may connect to the socket, e.g. ``0o660`` with ``socket_group``. Default: only
    the daemon's account and root (0o600), or everyone (0o666) with ``run_as_owner``: a job
    another user submits runs as the daemon's account unless jobs run as their owners."""
    socket_group: Annotated[str, StringConstraints(min_length=1, max_length=64)] | None = None
    """The socket's group (with a ``socket_mode`` such as ``0o660``)."""

    def limits(self) -> HttpLimits:
        from apr_sched.http.server import HttpLimits

        return HttpLimits(max_head_bytes=self.max_head_bytes,
                          max_body_bytes=self.max_body_bytes,
                          keepalive_timeout=self.keepalive_timeout_sec,
                          unauthenticated_idle_timeout=self.unauthenticated_idle_timeout_sec,
                          header_timeout=self.header_timeout_sec,
                          request_timeout=self.request_timeout_sec,
                          write_timeout=self.write_timeout_sec,
                          max_connections=self.max_connections,
                          max_connections_per_client=self.max_connections_per_client)

    def api_limits(self) -> ApiLimits:
        from apr_sched.http.limits import ApiLimits

        return ApiLimits(max_batch_jobs=self.max_batch_jobs,
                         max_busy_per_client=self.max_busy_per_client)


class RetentionConfig(_StrictConfig):
    """How long finished jobs are kept. A daemon runs for months: their rows, events and
    logs are purged once they are this old (never a job that has not finished)."""

    finished_job_days: float | None = Field(default=30.0, gt=0, le=36500)
    """Finished jobs (with their attempts, events and log files) older than this are
    purged; ``None`` keeps them forever."""
    host_event_days: float | None = Field(default=30.0, gt=0, le=36500)
    """Host events (registered, ONLINE/OFFLINE ...) older than this are purged."""
    purge_every_sec: float = Field(default=3600.0, ge=60, le=7 * 86400)
    """How often the daemon purges (also once at start)."""


MIN_JOB_LOG_MB = 1 / 16
"""The smallest log limit (64 KiB): below it the head, notice and tail would not fit."""


class LogsConfig(_StrictConfig):
    """Jobs' log files in the state dir (``[scheduler.logs]``). A job that prints without
    end must not fill the state disk: past ``max_job_log_mb``, a log keeps its first and
    last part and drops the middle, saying so in the log (a notice line after the head)
    and once in the job's events. Followers, ``tail`` and offset reads keep working (every
    byte offset stays valid: the middle becomes a hole whose disk space is released)."""

    max_job_log_mb: float = Field(default=1024.0, ge=0, le=1 << 30)
    """Largest an attempt's log may grow on disk, in MB of 2**20 bytes; ``0`` = no
    limit. Checked every ``check_every_sec`` while the job runs and once when it ends, so
    a log may briefly pass it by what the job writes in between (and by 1/64 of it)."""
    tail_share: float = Field(default=0.5, gt=0, lt=1)
    """The share of the limit kept from the end of the log (the rest is its head)."""
    check_every_sec: float = Field(default=2.0, ge=0.01, le=3600)
    """How often running jobs' log sizes are checked (one ``stat`` per running job)."""

    @field_validator("max_job_log_mb")
    @classmethod
    def _zero_or_enough(cls, value: float) -> float:
        if 0 < value < MIN_JOB_LOG_MB:
            raise ValueError(f"must be 0 (no limit) or at least {MIN_JOB_LOG_MB:g} (64 KiB)")
        return value

    def limit(self) -> LogLimit | None:
        """The limit the scheduler applies, or None without one."""
        from apr_sched.loglimit import LogLimit

        if not self.max_job_log_mb:
            return None
        max_bytes = int(self.max_job_log_mb * (1 << 20))
        keep_tail = min(max_bytes - 1, max(1, int(max_bytes * self.tail_share)))
        return LogLimit(max_bytes=max_bytes, keep_tail=keep_tail,
                        check_every_sec=self.check_every_sec)


class SchedulerConfig(_StrictConfig):
    """Everything a config file sets. Unknown fields are errors, values are not coerced."""

    state_dir: StateDirPath | None = None
    """Overrides ``$APR_SCHED_HOME`` and the defaults; ``--state-dir`` overrides this."""
    stop_grace_sec: float = Field(default=10.0, gt=0, le=3600)
    """Between SIGTERM and SIGKILL when a job is stopped or times out: EDA tools need time
    to save and release licenses."""
    heartbeat_timeout_sec: float = Field(default=30.0, gt=0, le=86400)
    """A host that has sent heartbeats goes OFFLINE when they stop for this long."""
    host_lost_after_sec: float = Field(default=300.0, gt=0, le=7 * 86400)
    """Jobs on an SSH host unreachable this long are declared lost (and requeued if their
    retry_limit allows); a host back sooner gets its jobs found again."""
    durability: Literal["full", "normal"] = "full"
    """``full``: every commit is fsynced, so even an OS crash or power loss keeps every
    committed transition (a job never runs twice). ``normal``: survives a killed daemon but
    an OS crash may lose the last commits; faster on slow disks (README has figures)."""
    min_free_disk_mb: float = Field(default=64.0, ge=0, le=1e9)
    """Below this much free space on the state dir's disk (logs and database), dispatch
    pauses and health says degraded; running jobs go on."""
    job_cgroups: bool = True
    """Give each local attempt a cgroup of its own where cgroup v2 is writable, so stop and
    timeout find every process even one that cleared its environment. Costs ~2.5 ms per job
    start on this project's CI machine (README); off, the APR_SCHED_RUN marker alone is
    used."""
    run_as_owner: bool = False
    """Run each job on local hosts as its owner's account (uid, gid and groups), not as the
    daemon's: needs a daemon running as root, and refuses at submit a job whose owner has no
    local account. SSH and prefix hosts run jobs as their login account either way."""
    http: HttpConfig = Field(default_factory=HttpConfig)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    logs: LogsConfig = Field(default_factory=LogsConfig)
    hosts: list[HostSpec] = Field(default_factory=list)
    """Registered at startup; ``host_id`` must be unique."""

    @field_validator("hosts")
    @classmethod
    def _unique_host_ids(cls, hosts: list[HostSpec]) -> list[HostSpec]:
        first_index: dict[str, int] = {}
        for index, host in enumerate(hosts):
            if host.host_id in first_index:
                raise PydanticCustomError(
                    "duplicate_host_id",
                    "duplicate host_id '{host_id}' in hosts[{first}] and hosts[{index}]",
                    {"host_id": host.host_id, "first": first_index[host.host_id],
                     "index": index},
                )
            first_index[host.host_id] = index
        return hosts


def _invalid(path: str, details: list[dict[str, str]]) -> InvalidInput:
    """One error naming the file first, then each field, like a compiler's diagnostics."""
    summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
    if len(details) > 5:
        summary += f"; and {len(details) - 5} more"
    return InvalidInput(f"{path}: {summary}", details)


def _expected_tables() -> str:
    return "expected only [scheduler], [http] and [[hosts]]"


def load_config(path: str | os.PathLike[str]) -> SchedulerConfig:
    """Read and validate a TOML config file; every problem is an ``InvalidInput``.

    The message starts with the file's path and names the field, e.g.
    ``hosts.toml: hosts[2].total_cpu: Input should be greater than or equal to 1``.
    """
    name = os.fspath(path)
    try:
        raw = Path(name).read_bytes()
    except FileNotFoundError:
        raise _invalid(name, [{"field": "(file)", "message": "no such file"}]) from None
    except OSError as exc:
        raise _invalid(name, [{"field": "(file)", "message": exc.strerror or str(exc)}]) from None
    try:
        document = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 (byte {exc.start})"
        raise _invalid(name, [{"field": "(toml)", "message": message}]) from None
    except tomllib.TOMLDecodeError as exc:
        # The message carries "(at line L, column C)".
        raise _invalid(name, [{"field": "(toml)", "message": str(exc)}]) from None

    unknown = [key for key in document if key not in _TABLES]
    if unknown:
        raise _invalid(name, [
            {"field": key, "message": f"unknown table or key ({_expected_tables()})"}
            for key in unknown
        ])
    scheduler = document.get("scheduler", {})
    if not isinstance(scheduler, dict):
        raise _invalid(name, [{"field": "scheduler", "message": "must be a table"}])
    nested = [key for key in scheduler if key in _TABLES]
    if nested:
        raise _invalid(name, [
            {"field": f"scheduler.{key}", "message": f"unknown field ([{key}] is its own table)"}
            for key in nested
        ])
    flat: dict[str, Any] = dict(scheduler)
    for key in ("http", "hosts"):
        if key in document:
            flat[key] = document[key]
    try:
        return SchedulerConfig.model_validate(flat)
    except ValidationError as exc:
        details = field_errors(exc)
        for detail in details:
            # Everything but http and hosts came from the [scheduler] table.
            if detail["field"].partition(".")[0].partition("[")[0] not in ("http", "hosts"):
                detail["field"] = f"scheduler.{detail['field']}"
        raise _invalid(name, details) from None


def _host_table(host: HostSpec) -> dict[str, Any]:
    table = host.model_dump(exclude_none=True)
    if not table["labels"]:
        del table["labels"]  # an empty [hosts.labels] header is noise
    return table


def dump_config_toml(config: SchedulerConfig) -> str:
    """The TOML text of ``config``; ``load_config`` of it gives back an equal config."""
    document: dict[str, Any] = {
        "scheduler": config.model_dump(exclude_none=True, exclude={"http", "hosts"}),
        "http": config.http.model_dump(exclude_none=True),
    }
    if config.hosts:
        document["hosts"] = [_host_table(host) for host in config.hosts]
    return tomli_w.dumps(document)


def hosts_toml(hosts: Sequence[HostSpec]) -> str:
    """Only ``[[hosts]]`` tables, e.g. to save the registered hosts as a hosts file.

    Duplicate ids are refused here, since ``load_config`` would refuse the file.
    """
    try:
        config = SchedulerConfig(hosts=list(hosts))
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc) from None
    return tomli_w.dumps({"hosts": [_host_table(host) for host in config.hosts]})
