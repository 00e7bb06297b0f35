"""A small synchronous client for a running daemon's ``/scheduler`` API.

    with SchedulerClient(*find_daemon(None, None, None, state_dir)) as c:
        job = c.submit({"command": "innovus -init place.tcl", "priority": 2})
        print(c.job(job.job_id).status)

The daemon is reached over its Unix socket (``unix:<state_dir>/apr_sched.sock``, where it
knows the caller by uid and needs no token) or over HTTP with a bearer token.
Standard library only (``http.client``): one keep-alive connection, opened on first use and
reopened once when the daemon has closed it while idle. An error reply raises the matching
``AprError``; a daemon that cannot be reached raises ``DaemonUnreachable``, a refused token
``AuthFailed``. The CLI's client commands and the attached TUI are built on this.
"""

from __future__ import annotations

import functools
import http.client
import json
import os
import socket
import sys
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlencode, urlsplit

from apr_sched import futures
from apr_sched.errors import (
    AprError,
    AuthFailed,
    Forbidden,
    HostBusy,
    IllegalTransition,
    InvalidInput,
    NotFound,
)
from apr_sched.futures import MAX_POLL_SEC
from apr_sched.statedir import read_owner
from apr_sched.states import JobStatus, is_valid_id
from apr_sched.unix_socket import UNIX_SCHEME, connect_unix, find_socket

if TYPE_CHECKING:  # the models (and pydantic) load on the first reply that needs them
    from pydantic import TypeAdapter

    from apr_sched.config import SchedulerConfig
    from apr_sched.futures import JobHandle, JobRef
    from apr_sched.models import (
        Event,
        Host,
        HostLoad,
        HostSpec,
        Job,
        JobPage,
        JobSpec,
        LogTail,
        MetricsSummary,
        PurgeReport,
    )

__all__ = [
    "DEFAULT_URL",
    "MAX_POLL_SEC",
    "TOKEN_ENV",
    "TOKEN_FILE",
    "URL_ENV",
    "AuthFailed",
    "DaemonUnreachable",
    "SchedulerClient",
    "encode_json",
    "error_from_reply",
    "find_daemon",
    "find_token",
    "find_url",
    "normalize_url",
    "parse_daemon_url",
]

DEFAULT_URL = "http://127.0.0.1:5000"
URL_ENV = "APR_SCHED_URL"
TOKEN_ENV = "APR_SCHED_TOKEN"
TOKEN_FILE = "token"
PREFIX = "/scheduler"

LIST_PAGE = 1000
"""Jobs per request when ``list_jobs`` reads every match (the daemon allows up to 5,000)."""
_MAX_IDS_QUERY = 6000
"""Bytes of comma-joined ids in one request's query, well under the daemon's 16 KiB head."""
T = TypeVar("T")

_WAIT_MARGIN_SEC = 10.0
"""A long poll may legitimately take ``wait`` seconds: the socket waits that much longer."""


class DaemonUnreachable(AprError):
    """No daemon answers at the URL (refused, unknown host, timed out, dropped)."""

    code = "unreachable"
    http_status = 503


_STALE_CONNECTION = (
    http.client.RemoteDisconnected,
    http.client.BadStatusLine,
    ConnectionResetError,
    ConnectionAbortedError,
    BrokenPipeError,
)
"""What a keep-alive connection the server has closed while idle looks like on reuse."""


class _UnixConnection(http.client.HTTPConnection):
    """HTTP over the daemon's Unix socket (``http.client`` speaks only TCP)."""

    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        self.sock = connect_unix(Path(self.socket_path), self.timeout)


class SchedulerClient:
    """Talks to one daemon at ``url``: ``http://host:port`` (optionally with a path prefix),
    or ``unix:/path/apr_sched.sock``.

    ``token`` is sent as ``Authorization: Bearer``; ``timeout`` bounds connecting and each
    read. Every call returns the parsed model where one fits; ``last_json`` keeps the raw
    JSON of the last reply (what ``apr-sched ... --json`` prints). Not thread-safe: use one
    client per thread.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = normalize_url(url)
        target = parse_daemon_url(self.url)
        self._scheme, self._host = target.scheme, target.host
        self._port: int | None = target.port
        self._base = target.base
        self.token = token
        self.timeout = timeout
        self.last_json: Any = None
        self._conn: http.client.HTTPConnection | None = None
        self._reused = False

    # connection --------------------------------------------------------------------------
    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __enter__(self) -> SchedulerClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"SchedulerClient({self.url!r})"

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self._conn is None:
            if self._scheme == "unix":
                self._conn = _UnixConnection(self._host, timeout)
            elif self._scheme == "https":
                import ssl

                self._conn = http.client.HTTPSConnection(
                    self._host, self._port, timeout=timeout,
                    context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(self._host, self._port, timeout=timeout)
            self._reused = False
        elif self._conn.sock is not None:
            self._conn.sock.settimeout(timeout)
        self._conn.timeout = timeout
        return self._conn

    def request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        timeout: float | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """Send one request to ``/scheduler{path}``; return (status, parsed JSON) of a success.

        An error reply raises its ``AprError``. Query values of ``None`` are left out; a list
        value repeats the parameter.
        """
        target = self._base + path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            flat = [(k, item) for k, v in pairs for item in (v if isinstance(v, list) else [v])]
            if flat:
                target += "?" + urlencode(flat)
        headers = {"Accept": "application/json", **(headers or {})}
        payload: bytes | None = None
        if body is not None:
            payload = encode_json(body)
            headers["Content-Type"] = "application/json"
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        status, data = self._exchange(method, target, payload, headers,
                                      self.timeout if timeout is None else timeout)
        self.last_json = data
        return status, data

    def _exchange(self, method: str, target: str, payload: bytes | None,
                  headers: dict[str, str], timeout: float) -> tuple[int, Any]:
        for retry in (False, True):
            conn = self._connection(timeout)
            reused = self._reused
            try:
                conn.request(method, target, body=payload, headers=headers)
                response = conn.getresponse()
                raw = response.read()
            except _STALE_CONNECTION as exc:
                self.close()
                if reused and not retry:
                    continue  # the daemon closed the idle connection: one fresh try
                raise self._unreachable(exc) from None
            except (OSError, http.client.HTTPException) as exc:
                self.close()
                raise self._unreachable(exc) from None
            if response.will_close:
                self.close()
            else:
                self._reused = True
            return response.status, self._parse(response, raw)
        raise AssertionError("unreachable")  # pragma: no cover

    def _unreachable(self, exc: BaseException) -> DaemonUnreachable:
        if isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(exc, FileNotFoundError) and self._scheme == "unix":
            reason = "no such socket"
        elif isinstance(exc, socket.gaierror):
            reason = f"unknown host {self._host!r}"
        elif isinstance(exc, TimeoutError):
            reason = "no reply in time"
        elif isinstance(exc, _STALE_CONNECTION):
            reason = "the connection was closed without a reply"
        else:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return DaemonUnreachable(
            f"cannot reach apr_sched at {self.url}: {reason} (is `apr-sched serve` running?)",
            {"url": self.url, "reason": reason},
        )

    def _parse(self, response: http.client.HTTPResponse, raw: bytes) -> Any:
        try:
            data = json.loads(raw) if raw.strip() else None
        except ValueError:
            data = None
            if response.status < 400:
                raise AprError(f"{self.url} sent a reply that is not JSON "
                               f"(HTTP {response.status}): {raw[:120]!r}") from None
        if response.status >= 400:
            raise error_from_reply(response.status, data, raw)
        return data

    # health ------------------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return _object(self.request("GET", "/health")[1])

    # hosts (the Scheduler's names and types) ---------------------------------------------
    def register_host(self, spec: HostSpec | Mapping[str, Any]) -> tuple[Host, bool]:
        """Register or update a host; True when it is new (201)."""
        from apr_sched.models import Host

        status, data = self.request("POST", "/hosts/register", body=spec)
        return Host.model_validate(data), status == 201

    def heartbeat(self, host_id: str, load: HostLoad | Mapping[str, Any] | None = None
                  ) -> Host:
        """A host says it is alive (optionally with load figures); the host afterwards.
        Two requests: the heartbeat reply holds only the host's state."""
        path = f"/hosts/{_id(host_id, 'host_id')}/heartbeat"
        self.request("POST", path, body=load)
        return self.get_host(host_id)

    def unregister_host(self, host_id: str) -> Host:
        from apr_sched.models import Host

        path = f"/hosts/{_id(host_id, 'host_id')}"
        return Host.model_validate(self.request("DELETE", path)[1])

    def list_hosts(self) -> list[Host]:
        from apr_sched.models import Host

        data = _object(self.request("GET", "/hosts")[1])
        return [Host.model_validate(item) for item in data.get("hosts", [])]

    def get_host(self, host_id: str) -> Host:
        from apr_sched.models import Host

        return Host.model_validate(self.request("GET", f"/hosts/{_id(host_id, 'host_id')}")[1])

    # jobs --------------------------------------------------------------------------------
    def submit(self, spec: JobSpec | Mapping[str, Any], *,
               idempotency_key: str | None = None) -> Job:
        """Queue one job. With ``idempotency_key`` (e.g. a UUID), sending the same spec again
        with the same key returns the job created the first time instead of a new one."""
        from apr_sched.models import Job

        return Job.model_validate(self.request("POST", "/jobs", body=spec,
                                               headers=_idempotency(idempotency_key))[1])

    def submit_batch(self, specs: Iterable[JobSpec | Mapping[str, Any]], *,
                     idempotency_key: str | None = None) -> list[Job]:
        """All or nothing: one bad spec rejects the batch, naming its index and field.
        ``idempotency_key`` as in ``submit``: a retried batch is not queued twice. The daemon
        replies with ids; the jobs are then read back (``submit_batch_ids`` skips that)."""
        job_ids = self.submit_batch_ids(specs, idempotency_key=idempotency_key)
        return self._jobs_by_id(job_ids) if job_ids else []

    def submit_batch_ids(self, specs: Iterable[JobSpec | Mapping[str, Any]], *,
                         idempotency_key: str | None = None) -> list[str]:
        """``submit_batch`` in one request: the new jobs' ids only."""
        data = _object(self.request("POST", "/jobs/batch", body={"jobs": list(specs)},
                                    headers=_idempotency(idempotency_key))[1])
        return [str(job_id) for job_id in data.get("job_ids", [])]

    def list_jobs(
        self,
        *,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        project: str | None = None,
        design: str | None = None,
        owner: str | None = None,
        host: str | None = None,
        ids: Iterable[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> JobPage:
        """Jobs in submit order, filtered; ``total`` counts all matches before paging.
        ``limit=None`` means all of them, as in-process: read in pages of LIST_PAGE jobs."""
        from apr_sched.models import JobPage

        query: dict[str, Any] = {
            "status": _statuses(status), "project": project, "design": design,
            "owner": owner, "host": host}
        if ids is not None:
            wanted = list(ids)
            if not wanted:
                return JobPage(jobs=[], total=0)
            query["id"] = _ids_query(wanted)
        if limit is not None:
            return self._job_page(query, limit, offset)
        page = self._job_page(query, LIST_PAGE, offset)
        jobs, total = list(page.jobs), page.total
        while page.jobs and offset + len(jobs) < total:
            page = self._job_page(query, LIST_PAGE, offset + len(jobs))
            jobs.extend(page.jobs)
        return JobPage(jobs=jobs, total=total)

    def _job_page(self, query: dict[str, Any], limit: int, offset: int) -> JobPage:
        from apr_sched.models import JobPage

        reply = self.request("GET", "/jobs", query={**query, "limit": limit,
                                                    "offset": offset or None})[1]
        return JobPage.model_validate(reply)

    def _jobs_by_id(self, job_ids: Sequence[str]) -> list[Job]:
        """These jobs (as listed: no timelines), in the order given; NotFound for one that
        does not exist. As many requests as the ids need (each under the head limit)."""
        found: dict[str, Job] = {}
        for chunk in _id_chunks(job_ids):
            page = self._job_page({"id": ",".join(chunk)}, len(chunk), 0)
            found.update((job.job_id, job) for job in page.jobs)
        return [_found(found, job_id) for job_id in job_ids]

    def job_statuses(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        """Each job's status, in the order given; NotFound for an unknown one. No models are
        built (pydantic is not even loaded), so a status poll from a script starts fast."""
        wanted = list(job_ids)
        found: dict[str, JobStatus] = {}
        for chunk in _id_chunks(wanted):
            reply = _object(self.request("GET", "/jobs", query={
                "id": ",".join(chunk), "limit": len(chunk)})[1])
            found.update((str(item["job_id"]), JobStatus(item["status"]))
                         for item in reply.get("jobs", []))
        return {job_id: _found(found, job_id) for job_id in wanted}

    def get_job(self, job_id: str) -> Job:
        """The job with its attempts and event timeline."""
        from apr_sched.models import Job

        return Job.model_validate(self.request("GET", f"/jobs/{_id(job_id, 'job_id')}")[1])

    def tail_log(self, job_id: str, n: int = 200, attempt: int | None = None) -> LogTail:
        """The last ``n`` lines of an attempt's log (the current attempt by default)."""
        from apr_sched.models import LogTail

        return LogTail.model_validate(self._log_reply(job_id, {"tail": n, "attempt": attempt}))

    def read_log(self, job_id: str, offset: int, attempt: int | None = None) -> LogTail:
        """Complete lines appended after byte ``offset`` (to follow a log; continue from the
        reply's ``offset``). The daemon reads at most 1 MiB per call."""
        from apr_sched.models import LogTail

        reply = self._log_reply(job_id, {"offset": offset, "attempt": attempt})
        return LogTail.model_validate(reply)

    def _log_reply(self, job_id: str, query: dict[str, Any]) -> dict[str, Any]:
        return _object(self.request("GET", f"/jobs/{_id(job_id, 'job_id')}/logs",
                                    query=query)[1])

    def pause(self, job_id: str) -> Job:
        return self._action(job_id, "pause")

    def resume(self, job_id: str) -> Job:
        return self._action(job_id, "resume")

    def stop(self, job_id: str) -> Job:
        return self._action(job_id, "stop")

    def rerun(self, job_id: str) -> Job:
        return self._action(job_id, "rerun")

    def purge(self, before: datetime) -> PurgeReport:
        """Forget finished jobs (attempts, events, logs) and host events from before then."""
        from apr_sched.models import PurgeReport

        reply = self.request("POST", "/purge", body={"before": before.isoformat()})[1]
        return PurgeReport.model_validate(reply)

    def _action(self, job_id: str, action: str) -> Job:
        from apr_sched.models import Job

        path = f"/jobs/{_id(job_id, 'job_id')}/{action}"
        return Job.model_validate(self.request("POST", path)[1])

    # metrics and events ------------------------------------------------------------------
    def metrics_summary(self) -> MetricsSummary:
        from apr_sched.models import MetricsSummary

        return MetricsSummary.model_validate(self.request("GET", "/metrics/summary")[1])

    def events_since(self, seq: int, *, wait: float = 0.0, limit: int = 1000) -> list[Event]:
        """Events after ``seq`` (oldest first), waiting up to ``wait`` seconds for one: a
        long poll, answered as soon as there is an event."""
        page = self._events_reply(seq, wait, limit)
        return _event_list().validate_python(page.get("events", []))

    def _events_reply(self, since: int, wait: float, limit: int | None) -> dict[str, Any]:
        query = {"since": since, "wait": wait or None, "limit": limit}
        timeout = max(self.timeout, wait + _WAIT_MARGIN_SEC)
        return _object(self.request("GET", "/events", query=query, timeout=timeout)[1])

    def _event_cursor(self) -> int:
        """The newest event's number: what to follow from (``futures`` needs it)."""
        return int(self.health().get("last_event_seq", 0))

    # waiting -----------------------------------------------------------------------------
    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is final (as ``Scheduler.wait``; TimeoutError after
        ``timeout`` seconds). Follows the daemon's events by long poll: one request per
        burst of events or per MAX_POLL_SEC of quiet, never a polling loop."""
        return futures.wait_one(self, job_id, timeout)

    def wait_all(self, jobs: Iterable[JobRef], timeout: float | None = None) -> list[Job]:
        """Every job once final, in the order given (TimeoutError naming those unfinished)."""
        return futures.wait_all(self, jobs, timeout)

    def as_completed(self, jobs: Iterable[JobRef], timeout: float | None = None
                     ) -> Iterator[Job]:
        """Each job as it becomes final, in the order they finish."""
        return futures.as_completed(self, jobs, timeout)

    def submit_handle(self, spec: JobSpec | Mapping[str, Any], *,
                      idempotency_key: str | None = None) -> JobHandle:
        """``submit``, returning a handle to wait on or stop the job."""
        return futures.JobHandle(self, self.submit(spec, idempotency_key=idempotency_key))

    def handle(self, job: JobRef) -> JobHandle:
        """A handle on an existing job (an id, a Job or a handle)."""
        return futures.JobHandle(self, job)

    # deprecated short names ----------------------------------------------------------------
    def hosts(self) -> list[Host]:
        """Deprecated: ``list_hosts``."""
        return self.list_hosts()

    def host(self, host_id: str) -> Host:
        """Deprecated: ``get_host``."""
        return self.get_host(host_id)

    def jobs(
        self,
        status: str | Sequence[str] | None = None,
        project: str | None = None,
        design: str | None = None,
        owner: str | None = None,
        host: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> JobPage:
        """Deprecated: ``list_jobs`` (which reads every match when ``limit`` is None; this
        one request gets the daemon's default page of 500)."""
        from apr_sched.models import JobPage

        query = {"status": _statuses(status), "project": project, "design": design,
                 "owner": owner, "host": host, "limit": limit, "offset": offset}
        return JobPage.model_validate(self.request("GET", "/jobs", query=query)[1])

    def job(self, job_id: str) -> Job:
        """Deprecated: ``get_job``."""
        return self.get_job(job_id)

    def logs(self, job_id: str, tail: int = 200, attempt: int | None = None,
             offset: int | None = None) -> dict[str, Any]:
        """Deprecated: ``tail_log`` / ``read_log`` (which return a LogTail). The raw reply
        ``{"job_id", "attempt", "lines", "offset"}``: the last ``tail`` lines, or with
        ``offset`` the complete lines appended after that byte offset."""
        query: dict[str, Any] = {"attempt": attempt}
        query.update({"offset": offset} if offset is not None else {"tail": tail})
        return self._log_reply(job_id, query)

    def metrics(self) -> MetricsSummary:
        """Deprecated: ``metrics_summary``."""
        return self.metrics_summary()

    def events(self, since: int = 0, wait: float = 0, limit: int | None = None
               ) -> dict[str, Any]:
        """Deprecated: ``events_since`` (which returns Event models). The raw reply
        ``{"events": [...], "last_seq"}``; ``wait`` > 0 long-polls for the next event."""
        return self._events_reply(since, wait, limit)


@dataclass(frozen=True, slots=True)
class DaemonUrl:
    scheme: str
    host: str
    port: int
    base: str
    """Path prefix of the API, ending in /scheduler."""
    netloc: str


def parse_daemon_url(url: str) -> DaemonUrl:
    """Where the API lives, from an ``http(s)://host:port[/prefix]`` URL or a
    ``unix:/path`` socket (``host`` is then the path), shared by this client and the TUI's
    async one; InvalidInput for anything else."""
    url = normalize_url(url)
    if url.startswith(UNIX_SCHEME):
        path = url.removeprefix(UNIX_SCHEME)
        if not path.startswith("/"):
            raise InvalidInput(f"not an absolute socket path: {url!r}",
                               [{"field": "url", "message": "expected unix:/path/to/socket"}])
        return DaemonUrl("unix", path, 0, PREFIX, "localhost")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"not an http(s) URL: {url!r}",
                           [{"field": "url", "message": "expected http://host:port"}])
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidInput(f"bad port in URL {url!r}",
                           [{"field": "url", "message": "bad port"}]) from None
    return DaemonUrl(parts.scheme, parts.hostname, port, parts.path.rstrip("/") + PREFIX,
                     parts.netloc)


# discovery -------------------------------------------------------------------------------
def normalize_url(url: str) -> str:
    """``host:port`` -> ``http://host:port``; no trailing slash; ``unix:/path`` as it is."""
    url = url.strip()
    if url.startswith(UNIX_SCHEME):
        return url
    if "://" not in url:
        url = f"http://{url}"
    return url.rstrip("/")


def find_url(explicit: str | None, config: SchedulerConfig | None, state_dir: Path) -> str:
    """Where the daemon listens: ``--url``, ``$APR_SCHED_URL``, the url the running daemon
    recorded in ``<state_dir>/scheduler.json``, the config's ``[http]``, or the default."""
    if explicit:
        return normalize_url(explicit)
    if env := os.environ.get(URL_ENV, "").strip():
        return normalize_url(env)
    try:
        owner = read_owner(state_dir)
    except OSError:  # another user's state dir: its records are not ours to read
        owner = None
    if owner and isinstance(owner.get("url"), str) and owner["url"]:
        return normalize_url(owner["url"])
    if config is not None and config.http.port:
        return f"http://{_connect_host(config.http.host)}:{config.http.port}"
    return DEFAULT_URL


def _connect_host(bind_host: str) -> str:
    """The address to connect to for a bind address: wildcards mean loopback."""
    if bind_host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if bind_host in ("::", "[::]"):
        return "[::1]"
    if ":" in bind_host and not bind_host.startswith("["):
        return f"[{bind_host}]"
    return bind_host


def find_daemon(url: str | None, token: str | None, config: SchedulerConfig | None,
                state_dir: Path) -> tuple[str, str | None]:
    """The daemon's url and the token to send: its Unix socket (no token: it knows us by
    our uid) when the state dir has one and no url or token was given (``--url``,
    ``--token``, ``$APR_SCHED_URL``, ``$APR_SCHED_TOKEN``); else ``find_url`` and
    ``find_token``."""
    given = url or token or os.environ.get(URL_ENV, "").strip() or (
        os.environ.get(TOKEN_ENV, "").strip())
    if not given and (path := find_socket(state_dir)) is not None:
        return f"{UNIX_SCHEME}{path}", None
    return find_url(url, config, state_dir), find_token(token, state_dir)


def find_token(explicit: str | None, state_dir: Path) -> str | None:
    """``--token``, ``$APR_SCHED_TOKEN``, or the daemon's ``<state_dir>/token`` if readable."""
    if explicit:
        return explicit
    if env := os.environ.get(TOKEN_ENV, "").strip():
        return env
    try:
        token = (Path(state_dir) / TOKEN_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None


# helpers ---------------------------------------------------------------------------------
def _idempotency(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Idempotency-Key": key}


def _id(value: str, field: str) -> str:
    """Refuse a string that is not a plain id before it becomes part of a URL."""
    text = str(value)
    if not is_valid_id(text):
        raise InvalidInput(
            f"{field} {text!r} is not a valid id",
            [{"field": field, "message": "not a valid id: letters, digits, '.', '_' and '-', "
              "starting with a letter or digit"}],
        )
    return text


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return str(value)


def _found(found: Mapping[str, T], job_id: str) -> T:
    try:
        return found[job_id]
    except KeyError:
        raise NotFound(f"no job {job_id!r}", {"job_id": job_id}) from None


def _statuses(status: str | Iterable[str] | None) -> str | None:
    """One comma-separated ``status`` query value (JobStatus members are strings)."""
    if status is None or isinstance(status, str):
        return status
    return ",".join(str(item) for item in status)


def _ids_query(job_ids: Sequence[str]) -> str:
    """The ``id`` query value, refused here rather than by the daemon's head limit."""
    text = ",".join(_id(job_id, "ids") for job_id in job_ids)
    if len(text) > _MAX_IDS_QUERY:
        raise InvalidInput(
            f"ids: {len(job_ids)} ids are too many for one request over HTTP (at most "
            f"{_MAX_IDS_QUERY} characters comma-joined); ask in parts",
            [{"field": "ids", "message": "too many ids for one request"}])
    return text


def _id_chunks(job_ids: Sequence[str]) -> Iterator[list[str]]:
    """Distinct ids in groups whose comma-joined query fits in one request."""
    chunk: list[str] = []
    size = 0
    for job_id in dict.fromkeys(job_ids):
        _id(job_id, "job_id")
        if chunk and size + len(job_id) + 1 > _MAX_IDS_QUERY:
            yield chunk
            chunk, size = [], 0
        chunk.append(job_id)
        size += len(job_id) + 1
    if chunk:
        yield chunk


@functools.cache
def _event_list() -> TypeAdapter[list[Event]]:
    from pydantic import TypeAdapter

    from apr_sched.models import Event

    return TypeAdapter(list[Event])


def encode_json(body: Any) -> bytes:
    """A request body as this client sends it (also what an idempotency key's fingerprint
    is taken over, so an in-process submit fingerprints the same spec the same way)."""
    return json.dumps(body, default=_jsonable).encode()


def _jsonable(value: Any) -> Any:
    pydantic = sys.modules.get("pydantic")  # not loaded: the value cannot be a model
    if pydantic is not None and isinstance(value, pydantic.BaseModel):
        # Defaults computed here are sent (a JobSpec's owner is the submitter, not the
        # daemon's account); None means "not given".
        return value.model_dump(mode="json", exclude_none=True)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"cannot send {type(value).__name__} as JSON")


def _object(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise AprError(f"expected a JSON object in the reply, got {type(data).__name__}")
    return data


_BY_STATUS: dict[int, type[AprError]] = {
    400: InvalidInput,
    401: AuthFailed,
    403: Forbidden,
    404: NotFound,
    409: IllegalTransition,
}


def error_from_reply(status: int, data: Any, raw: bytes = b"") -> AprError:
    """The ``AprError`` for an error reply, keeping the daemon's message and details
    (shared by this client and the TUI's async one)."""
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, dict):
        code = error.get("code")
        message = str(error.get("message") or f"HTTP {status}")
        details = error.get("details")
    else:
        code, details = None, None
        text = raw.decode("utf-8", errors="replace").strip()[:200]
        message = f"HTTP {status}" + (f": {text}" if text else "")
    if status == 409 and code == HostBusy.code:
        return HostBusy(message, details)
    return _BY_STATUS.get(status, AprError)(message, details)
