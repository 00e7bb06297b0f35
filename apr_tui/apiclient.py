"""A small asyncio client for the ``/scheduler`` HTTP API, for the attached TUI.

Asyncio streams rather than ``apr_sched.client.SchedulerClient`` (blocking ``http.client``)
so a long-poll on the events endpoint is a cancellable coroutine on the UI's loop, not a
thread that outlives the app. Keep-alive connections are pooled: the long-poll holds one
while commands use another. Replies are framed by Content-Length, as the daemon sends them.
A ``unix:/path`` url reaches the daemon over its Unix socket, where it knows us by our uid.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from pydantic import BaseModel

from apr_sched.client import (
    DaemonUnreachable,
    error_from_reply,
    normalize_url,
    parse_daemon_url,
)
from apr_sched.errors import AprError
from apr_sched.unix_socket import reachable_path

_STALE = (asyncio.IncompleteReadError, ConnectionResetError, BrokenPipeError)
"""What reusing a keep-alive connection the daemon closed while idle looks like."""

_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class ApiClient:
    """Requests to ``{url}/scheduler{path}`` with a bearer token; replies parsed as JSON.

    An error reply raises the matching ``AprError`` (``InvalidInput``, ``NotFound``,
    ``IllegalTransition``, ``AuthFailed`` ...) with the daemon's message and details; no
    answer at all raises ``DaemonUnreachable``.
    """

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0) -> None:
        self.url = normalize_url(url)
        target = parse_daemon_url(self.url)
        self._host, self._port, self._base = target.host, target.port, target.base
        self._unix = target.scheme == "unix"
        self._ssl = ssl.create_default_context() if target.scheme == "https" else None
        self._host_header = target.netloc
        self.token = token
        self.timeout = timeout
        self._idle: list[_Connection] = []
        self._busy: set[asyncio.StreamWriter] = set()
        self.last_answer: float | None = None
        """``time.monotonic()`` of the last reply of any kind (None: none yet)."""

    async def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None,
                      body: Any = None, timeout: float | None = None) -> Any:
        target = self._base + path
        if query:
            pairs = [(k, _query_value(v)) for k, v in query.items() if v is not None]
            if pairs:
                target += "?" + urlencode(pairs)
        payload = b"" if body is None else json.dumps(body, default=_jsonable).encode()
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header}",
                "Accept: application/json", f"Content-Length: {len(payload)}"]
        if body is not None:
            head.append("Content-Type: application/json")
        if self.token:
            head.append(f"Authorization: Bearer {self.token}")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                status, data = await self._exchange(raw)
        except TimeoutError:
            raise DaemonUnreachable(f"no reply from apr_sched at {self.url} in time",
                                    {"url": self.url, "reason": "timeout"}) from None
        self.last_answer = time.monotonic()
        if status >= 400:
            raise error_from_reply(status, data)
        return data

    async def _exchange(self, raw: bytes) -> tuple[int, Any]:
        for attempt in (1, 2):
            reused = bool(self._idle)
            conn = self._idle.pop() if reused else await self._connect()
            reader, writer = conn
            self._busy.add(writer)
            try:
                writer.write(raw)
                await writer.drain()
                status, headers, body = await _read_response(reader)
            except _STALE as exc:
                _close(writer)
                if reused and attempt == 1:
                    continue
                raise self._unreachable(exc) from None
            except OSError as exc:
                _close(writer)
                raise self._unreachable(exc) from None
            except BaseException:  # cancelled mid-request: the connection is in an unknown state
                _close(writer)
                raise
            finally:
                self._busy.discard(writer)
            if headers.get("connection", "").lower() == "close":
                _close(writer)
            else:
                self._idle.append(conn)
            return status, _parse(body, status, self.url)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect(self) -> _Connection:
        try:
            if self._unix:
                with reachable_path(Path(self._host)) as address:
                    return await asyncio.open_unix_connection(address)
            return await asyncio.open_connection(self._host, self._port, ssl=self._ssl)
        except OSError as exc:
            raise self._unreachable(exc) from None

    def _unreachable(self, exc: BaseException) -> DaemonUnreachable:
        reason = ("connection refused" if isinstance(exc, ConnectionRefusedError)
                  else "the connection was closed without a reply" if isinstance(exc, _STALE)
                  else getattr(exc, "strerror", None) or str(exc) or type(exc).__name__)
        return DaemonUnreachable(f"cannot reach apr_sched at {self.url}: {reason}",
                                 {"url": self.url, "reason": reason})

    async def close(self) -> None:
        for _, writer in self._idle:
            _close(writer)
        self._idle.clear()
        for writer in list(self._busy):
            _close(writer)


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    status_line = await reader.readuntil(b"\r\n")
    try:
        status = int(status_line.split(b" ", 2)[1])
    except (IndexError, ValueError):
        raise AprError(f"not an HTTP reply: {status_line[:80]!r}") from None
    headers: dict[str, str] = {}
    while (line := await reader.readuntil(b"\r\n")) != b"\r\n":
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0") or 0)
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


def _parse(body: bytes, status: int, url: str) -> Any:
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except ValueError:
        if status >= 400:
            return {"error": {"message": body[:200].decode("utf-8", "replace")}}
        raise AprError(f"{url} sent a reply that is not JSON (HTTP {status})") from None


def _close(writer: asyncio.StreamWriter) -> None:
    if not writer.is_closing():
        writer.close()


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ",".join(str(v) for v in value)
    return str(value)


def _jsonable(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", exclude_unset=True)
    raise TypeError(f"cannot send {type(value).__name__} as JSON")
