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

import http.client
import json
import os
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlencode, urlsplit

from pydantic import BaseModel

from apr_sched.config import SchedulerConfig
from apr_sched.errors import (
    AprError,
    AuthFailed,
    Forbidden,
    HostBusy,
    IllegalTransition,
    InvalidInput,
    NotFound,
)
from apr_sched.models import Host, Job, JobPage, MetricsSummary, PurgeReport, is_valid_id
from apr_sched.statedir import read_owner
from apr_sched.unix_socket import UNIX_SCHEME, connect_unix, find_socket

__all__ = [
    "DEFAULT_URL",
    "TOKEN_ENV",
    "TOKEN_FILE",
    "URL_ENV",
    "AuthFailed",
    "DaemonUnreachable",
    "SchedulerClient",
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

MAX_POLL_SEC = 30.0
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
            payload = json.dumps(body, default=_jsonable).encode()
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

    # health and hosts --------------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        return _object(self.request("GET", "/health")[1])

    def register_host(self, spec: Mapping[str, Any] | BaseModel) -> tuple[Host, bool]:
        """Register or update a host; True when it is new (201)."""
        status, data = self.request("POST", "/hosts/register", body=spec)
        return Host.model_validate(data), status == 201

    def hosts(self) -> list[Host]:
        data = _object(self.request("GET", "/hosts")[1])
        return [Host.model_validate(item) for item in data.get("hosts", [])]

    def host(self, host_id: str) -> Host:
        return Host.model_validate(self.request("GET", f"/hosts/{_id(host_id, 'host_id')}")[1])

    def unregister_host(self, host_id: str) -> Host:
        path = f"/hosts/{_id(host_id, 'host_id')}"
        return Host.model_validate(self.request("DELETE", path)[1])

    def heartbeat(self, host_id: str, load: Mapping[str, Any] | None = None) -> dict[str, Any]:
        path = f"/hosts/{_id(host_id, 'host_id')}/heartbeat"
        return _object(self.request("POST", path, body=load)[1])

    # jobs --------------------------------------------------------------------------------
    def submit(self, spec: Mapping[str, Any] | BaseModel, *,
               idempotency_key: str | None = None) -> Job:
        """Queue one job. With ``idempotency_key`` (e.g. a UUID), sending the same spec again
        with the same key returns the job created the first time instead of a new one."""
        return Job.model_validate(self.request("POST", "/jobs", body=spec,
                                               headers=_idempotency(idempotency_key))[1])

    def submit_batch(self, specs: Sequence[Mapping[str, Any] | BaseModel], *,
                     idempotency_key: str | None = None) -> list[str]:
        """All or nothing: one bad spec rejects the batch, naming its index and field.
        ``idempotency_key`` as in ``submit``: a retried batch is not queued twice."""
        data = _object(self.request("POST", "/jobs/batch", body={"jobs": list(specs)},
                                    headers=_idempotency(idempotency_key))[1])
        return [str(job_id) for job_id in data.get("job_ids", [])]

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
        """Jobs in submit order, filtered; ``total`` counts all matches before paging."""
        statuses = status if status is None or isinstance(status, str) else ",".join(status)
        query = {"status": statuses, "project": project, "design": design, "owner": owner,
                 "host": host, "limit": limit, "offset": offset}
        return JobPage.model_validate(self.request("GET", "/jobs", query=query)[1])

    def job(self, job_id: str) -> Job:
        """The job with its attempts and event timeline."""
        return Job.model_validate(self.request("GET", f"/jobs/{_id(job_id, 'job_id')}")[1])

    def logs(self, job_id: str, tail: int = 200, attempt: int | None = None,
             offset: int | None = None) -> dict[str, Any]:
        """``{"job_id", "attempt", "lines", "offset"}``: the last ``tail`` lines, or with
        ``offset`` the complete lines appended after that byte offset (to follow)."""
        query = {"attempt": attempt}
        query.update({"offset": offset} if offset is not None else {"tail": tail})
        path = f"/jobs/{_id(job_id, 'job_id')}/logs"
        return _object(self.request("GET", path, query=query)[1])

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
        reply = self.request("POST", "/purge", body={"before": before.isoformat()})[1]
        return PurgeReport.model_validate(reply)

    def _action(self, job_id: str, action: str) -> Job:
        path = f"/jobs/{_id(job_id, 'job_id')}/{action}"
        return Job.model_validate(self.request("POST", path)[1])

    # metrics and events ------------------------------------------------------------------
    def metrics(self) -> MetricsSummary:
        return MetricsSummary.model_validate(self.request("GET", "/metrics/summary")[1])

    def events(self, since: int = 0, wait: float = 0, limit: int | None = None
               ) -> dict[str, Any]:
        """``{"events": [...], "last_seq"}``; ``wait`` > 0 long-polls for the next event."""
        query = {"since": since, "wait": wait or None, "limit": limit}
        timeout = max(self.timeout, wait + _WAIT_MARGIN_SEC)
        return _object(self.request("GET", "/events", query=query, timeout=timeout)[1])

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is final (as ``Scheduler.wait``), following the daemon's
        events by long poll rather than asking again and again."""
        deadline = None if timeout is None else time.monotonic() + timeout
        since = int(self.health().get("last_event_seq", 0))
        job = self.job(job_id)
        while not job.status.is_final:
            left = MAX_POLL_SEC if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"job {job_id} is still {job.status.value}")
            page = self.events(since=since, wait=min(MAX_POLL_SEC, left))
            since = int(page.get("last_seq", since))
            if any(e.get("job_id") == job_id for e in page.get("events", [])):
                job = self.job(job_id)
        return job


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


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
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
