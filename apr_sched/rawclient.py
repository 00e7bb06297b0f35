"""The daemon's ``/scheduler`` API with replies as parsed JSON: no models, no pydantic.

``RawClient`` is what the CLI's client commands and the LSF shims stand on (they print a
reply or read a few fields of it, and start in tens of milliseconds); ``SchedulerClient``
(``client.py``) builds on it and returns the models library users expect.

One keep-alive connection (``wire.Connection``), opened on first use. A connection the
daemon closed while idle is found on reuse and the request sent once more on a fresh one.
An error reply raises the matching ``AprError``; a daemon that cannot be reached raises
``DaemonUnreachable``, a refused token ``AuthFailed``.
"""

from __future__ import annotations

import _socket
import json
import sys
import time
from collections.abc import Mapping

from apr_sched.discovery import normalize_url, parse_daemon_url
from apr_sched.errors import (
    AprError,
    AuthFailed,
    Forbidden,
    HostBusy,
    IllegalTransition,
    InvalidInput,
    NotFound,
)
from apr_sched.states import is_valid_id
from apr_sched.wire import Address, Connection, ConnectionClosed, ProtocolError

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from types import TracebackType
    from typing import Any

__all__ = ["DaemonUnreachable", "RawClient", "encode_json", "error_from_reply", "query_string",
           "valid_id"]

WAIT_MARGIN_SEC = 10.0
"""A long poll may legitimately take ``wait`` seconds: the socket waits that much longer."""
LAST_EVENT_SEQ_HEADER = "last-event-seq"
"""``http.api.LAST_EVENT_SEQ_HEADER`` as replies are read (lower case): spelled here so the
client imports no server code (a test keeps them equal)."""
IDLE_REUSE_SEC = 10.0
"""A connection idle longer than this is replaced before use rather than reused: the
daemon closes idle ones (15 s by default), and finding that out costs a round trip."""

_STALE = (ConnectionClosed, ConnectionResetError, ConnectionAbortedError, BrokenPipeError)
"""What a keep-alive connection the daemon has closed while idle looks like on reuse."""


class DaemonUnreachable(AprError):
    """No daemon answers at the URL (refused, unknown host, timed out, dropped)."""

    code = "unreachable"
    http_status = 503


class _Sent:
    """A request sent and not yet answered: enough to send it again on a fresh connection."""

    __slots__ = ("attempts", "headers", "method", "payload", "target")

    def __init__(self, method: str, target: str, headers: dict[str, str],
                 payload: bytes | None) -> None:
        self.method, self.target, self.headers, self.payload = method, target, headers, payload
        self.attempts = 0


class RawClient:
    """Talks to one daemon at ``url``: ``http(s)://host:port`` (optionally with a path
    prefix), or ``unix:/path/apr_sched.sock``. ``token`` is sent as ``Authorization:
    Bearer``; ``timeout`` bounds connecting and each read. ``last_json`` keeps the raw JSON
    of the last reply, ``last_headers`` its headers (lower-case names). Not thread-safe: use
    one client per thread."""

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = normalize_url(url)
        target = parse_daemon_url(self.url)
        self._scheme, self._host = target.scheme, target.host
        self._port: int | None = target.port
        self._base = target.base
        self.token = token
        self.timeout = timeout
        self.last_json: Any = None
        self.last_headers: dict[str, str] = {}
        self._wire = Connection(Address(target.scheme, target.host, target.port), timeout)
        self._sent: _Sent | None = None
        self._used_at = 0.0

    # connection --------------------------------------------------------------------------
    def close(self) -> None:
        self._sent = None
        self._wire.close()

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r})"

    def clone(self) -> RawClient:
        """Another client for the same daemon, with a connection of its own (to hold a
        second long poll at the same time)."""
        return RawClient(self.url, self.token, self.timeout)

    def fileno(self) -> int:
        """The socket of a request sent and not yet answered (for ``select``)."""
        return self._wire.fileno()

    # requests ----------------------------------------------------------------------------
    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                body: Any = None, timeout: float | None = None,
                headers: Mapping[str, str] | None = None) -> tuple[int, Any]:
        """Send one request to ``/scheduler{path}``; return (status, parsed JSON) of a success.

        An error reply raises its ``AprError``. Query values of ``None`` are left out; a list
        value repeats the parameter.
        """
        self.send(method, path, query=query, body=body, timeout=timeout, headers=headers)
        while (reply := self.finish()) is None:
            pass
        return reply

    def send(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
             body: Any = None, timeout: float | None = None,
             headers: Mapping[str, str] | None = None) -> None:
        """The first half of ``request``: send it; ``finish`` reads the reply."""
        target = self._base + path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            flat = [(k, item) for k, v in pairs for item in (v if isinstance(v, list) else [v])]
            if flat:
                target += "?" + query_string(flat)
        sent_headers = {"Accept": "application/json", **(headers or {})}
        payload: bytes | None = None
        if body is not None:
            payload = encode_json(body)
            sent_headers["Content-Type"] = "application/json"
        if self.token:
            sent_headers["Authorization"] = f"Bearer {self.token}"
        self._wire.settimeout(self.timeout if timeout is None else timeout)
        if self._wire.sock is not None and time.monotonic() - self._used_at > IDLE_REUSE_SEC:
            self._wire.close()
        self._sent = _Sent(method, target, sent_headers, payload)
        self._transmit()

    def _transmit(self) -> None:
        sent = self._sent
        assert sent is not None
        while True:
            reused = self._wire.requests > 0
            sent.attempts += 1
            try:
                self._wire.send(sent.method, sent.target, sent.headers, sent.payload)
                return
            except _STALE as exc:
                self._wire.close()
                if not (reused and sent.attempts == 1):
                    self._sent = None
                    raise self._unreachable(exc) from None
            except OSError as exc:
                self.close()
                raise self._unreachable(exc) from None

    def finish(self) -> tuple[int, Any] | None:
        """The reply to the request ``send`` sent: (status, parsed JSON), or None when the
        daemon had closed the reused connection and the request went out again on a fresh
        one (call ``finish`` again: for a long poll, once its socket is readable)."""
        sent = self._sent
        if sent is None:
            raise RuntimeError("finish() without send()")
        reused = self._wire.requests > 1
        try:
            reply = self._wire.receive()
        except _STALE as exc:
            self._wire.close()
            if reused and sent.attempts == 1:
                self._transmit()  # the daemon closed it while idle: once more, fresh
                return None
            self._sent = None
            raise self._unreachable(exc) from None
        except OSError as exc:
            self.close()
            raise self._unreachable(exc) from None
        self._sent = None
        self._used_at = time.monotonic()
        self.last_headers = reply.headers
        data = self._parse(reply.status, reply.body)
        self.last_json = data
        return reply.status, data

    def _unreachable(self, exc: BaseException) -> DaemonUnreachable:
        if isinstance(exc, ConnectionRefusedError):
            reason = "connection refused"
        elif isinstance(exc, FileNotFoundError) and self._scheme == "unix":
            reason = "no such socket"
        elif isinstance(exc, _socket.gaierror):  # socket.gaierror is this very class
            reason = f"unknown host {self._host!r}"
        elif isinstance(exc, TimeoutError):
            reason = "no reply in time"
        elif isinstance(exc, _STALE):
            reason = "the connection was closed without a reply"
        elif isinstance(exc, ProtocolError):
            reason = str(exc)
        else:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        return DaemonUnreachable(
            f"cannot reach apr_sched at {self.url}: {reason} (is `apr-sched serve` running?)",
            {"url": self.url, "reason": reason},
        )

    def _parse(self, status: int, raw: bytes) -> Any:
        try:
            data = json.loads(raw) if raw.strip() else None
        except ValueError:
            data = None
            if status < 400:
                raise AprError(f"{self.url} sent a reply that is not JSON "
                               f"(HTTP {status}): {raw[:120]!r}") from None
        if status >= 400:
            raise error_from_reply(status, data, raw)
        return data

    # raw replies -------------------------------------------------------------------------
    def submit_dict(self, spec: Any) -> tuple[dict[str, Any], int | None]:
        """``POST /jobs``: the job as sent, and the daemon's last event number from before
        its first event (None from a daemon that does not say: an older one, or a replay)."""
        reply = json_object(self.request("POST", "/jobs", body=spec)[1])
        seq = self.last_headers.get(LAST_EVENT_SEQ_HEADER, "")
        return reply, int(seq) if seq.isascii() and seq.isdigit() else None

    def health(self) -> dict[str, Any]:
        return json_object(self.request("GET", "/health")[1])

    def job_dict(self, job_id: str) -> dict[str, Any]:
        """``GET /jobs/{id}``: the job with its attempts and timeline, as sent."""
        return json_object(self.request("GET", f"/jobs/{valid_id(job_id, 'job_id')}")[1])

    def job_dicts(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """These jobs as listed (no timelines), by id; unknown ids are left out."""
        reply = json_object(self.request("GET", "/jobs", query={
            "id": ",".join(valid_id(j, "job_id") for j in job_ids), "limit": len(job_ids)})[1])
        return {str(item["job_id"]): item for item in reply.get("jobs", [])}

    def act(self, job_id: str, action: str) -> dict[str, Any]:
        """``POST /jobs/{id}/{action}`` (pause, resume, stop, rerun): the job afterwards."""
        path = f"/jobs/{valid_id(job_id, 'job_id')}/{action}"
        return json_object(self.request("POST", path)[1])

    def logs(self, job_id: str, tail: int = 200, attempt: int | None = None,
             offset: int | None = None, wait: float | None = None) -> dict[str, Any]:
        """The raw log reply ``{"job_id", "attempt", "lines", "offset"}``: the last ``tail``
        lines, or with ``offset`` the complete lines appended after that byte offset;
        ``wait`` (with ``offset``) holds the request until there are some, the attempt
        has ended, or ``wait`` seconds pass (a long poll)."""
        self.send_logs(job_id, tail=tail, attempt=attempt, offset=offset, wait=wait)
        while (reply := self.finish()) is None:
            pass
        return json_object(reply[1])

    def send_logs(self, job_id: str, *, tail: int = 200, attempt: int | None = None,
                  offset: int | None = None, wait: float | None = None) -> None:
        """``logs`` sent, its reply to be read with ``finish``."""
        query: dict[str, Any] = {"attempt": attempt}
        query.update({"offset": offset, "wait": wait or None} if offset is not None
                     else {"tail": tail})
        self.send("GET", f"/jobs/{valid_id(job_id, 'job_id')}/logs", query=query,
                  timeout=max(self.timeout, (wait or 0) + WAIT_MARGIN_SEC))

    def events(self, since: int = 0, wait: float = 0, limit: int | None = None
               ) -> dict[str, Any]:
        """The raw reply ``{"events": [...], "last_seq"}`` of events after ``since``;
        ``wait`` > 0 long-polls for the next event."""
        self.send_events(since, wait, limit)
        while (reply := self.finish()) is None:
            pass
        return json_object(reply[1])

    def send_events(self, since: int, wait: float = 0, limit: int | None = None) -> None:
        """``events`` sent, its reply to be read with ``finish``."""
        query = {"since": since, "wait": wait or None, "limit": limit}
        self.send("GET", "/events", query=query,
                  timeout=max(self.timeout, wait + WAIT_MARGIN_SEC))


# helpers ---------------------------------------------------------------------------------
def valid_id(value: str, field: str) -> str:
    """Refuse a string that is not a plain id before it becomes part of a URL."""
    text = str(value)
    if not is_valid_id(text):
        raise InvalidInput(
            f"{field} {text!r} is not a valid id",
            [{"field": field, "message": "not a valid id: letters, digits, '.', '_' and '-', "
              "starting with a letter or digit"}],
        )
    return text


_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-~")


def query_string(pairs: list[tuple[str, str]]) -> str:
    """``urllib.parse.urlencode(pairs)``, which is not loaded for it (with ``ipaddress``
    behind it, a few ms of every client command's start): ``k=v`` joined by ``&``, each
    side's UTF-8 bytes kept if unreserved, a space as ``+``, any other byte as ``%XX``."""
    return "&".join(f"{_quote_plus(key)}={_quote_plus(value)}" for key, value in pairs)


def _quote_plus(text: str) -> str:
    return "".join(chr(byte) if byte in _UNRESERVED else "+" if byte == 0x20 else f"%{byte:02X}"
                   for byte in text.encode("utf-8"))


def _query_value(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return [str(item) for item in value]
    return str(value)


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


def json_object(data: Any) -> dict[str, Any]:
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
