"""A small HTTP/1.1 server: h11 over asyncio streams, one task per connection, no threads.

It knows nothing of routes: every complete request goes to one ``Handler`` coroutine, whose
``Response`` is sent with Content-Length, Date, Server and the standard reason phrase.
An optional ``Admit`` hook sees each request head before its body is read and may refuse it
(e.g. 401): an unauthenticated client cannot make the server read its body, and its
connection stays short-lived. The server answers by itself, as JSON in the project's error
shape, what never reaches the handler: malformed requests (400), slow ones (408), oversize
ones (413, 431), too many connections, overall or from one address (503), and a handler that
raised (500).

A client that does not read its replies gets no more of them: the next request on a
connection is read only once the previous reply has been handed to the kernel, and a reply
that makes no progress for ``write_timeout`` closes the connection. So a connection holds at
most one reply in memory, and not for long.

    async with HttpServer(handler, port=0) as server:
        print(server.url)
        ...
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import http
import json
import logging
import socket
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs

import h11

from apr_sched.identity import Identity, PeerCredentials, peer_credentials

log = logging.getLogger("apr_sched.http")

READ_CHUNK = 64 * 1024
# After an error reply on a request whose body was not read, swallow what the client still
# sends for this long before closing: closing with unread data makes the kernel send a RST,
# which can destroy the reply before the client reads it.
LINGER_SECONDS = 1.0
# Headers the server sets itself; a handler's copies are dropped.
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding"})
# Bytes the kernel may queue for a client beyond what is in flight: a client that stops
# reading then holds at most this (plus its receive window) in the kernel, instead of the
# megabytes send-buffer autotuning allows, so it cannot make us compute reply after reply
# into socket buffers. In-flight data is not counted, so fast links keep their speed.
KERNEL_UNSENT_BYTES = 128 * 1024
# Bodies up to this size go out in one write with their head (one packet for small replies);
# larger ones are written as they are, without copying them next to the head.
SMALL_BODY_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpLimits:
    """Bounds on what one client may make the server hold or wait for."""

    max_head_bytes: int = 16 * 1024
    """Request line + headers; beyond -> 431 and close."""
    max_body_bytes: int = 16 * 1024 * 1024
    """A larger Content-Length -> 413 before reading the body (no 100 Continue); a chunked
    body is counted as it arrives."""
    keepalive_timeout: float = 15.0
    """Idle time allowed between requests on an authenticated connection; then it closes
    quietly."""
    unauthenticated_idle_timeout: float = 5.0
    """Idle time allowed on a connection no authenticated request has used yet (a new one,
    or one that only asked for health); then it closes quietly."""
    header_timeout: float = 10.0
    """From the first byte of a request (for a new connection: from its accept) to the end
    of its head; beyond -> 408 and close. Slow-header clients lose their slot quickly."""
    request_timeout: float = 30.0
    """From the first byte of a request to its last (head and body); beyond -> 408 and close.
    The handler's own run time is not limited (long-polls)."""
    write_timeout: float = 10.0
    """A reply of which the client takes no byte for this long closes the connection (the
    client stopped reading); so does a closing connection whose last reply is still unsent
    after this long."""
    max_connections: int = 512
    """Open connections; one more is answered 503 and closed at once."""
    max_connections_per_client: int = 64
    """Open connections from one client address; one more is answered 503 and closed, so
    one client cannot take every slot."""
    max_headers: int = 100
    """Header fields in one request; more -> 431."""


@dataclass(slots=True)
class Request:
    """One complete request, body included."""

    method: str
    target: str
    """The raw target as sent, e.g. ``/scheduler/jobs?status=RUNNING``."""
    path: str
    """``target`` before ``?``, not percent-decoded: the router decodes per segment."""
    query: dict[str, list[str]]
    headers: dict[str, str]
    """Lower-cased names, values decoded as Latin-1; repeated fields joined with ", "."""
    body: bytes
    client: tuple[str, int] | None
    peer: PeerCredentials | None = None
    """Who connected, from the kernel, when the connection came over a Unix socket."""
    identity: Identity | None = None
    """Who is asking, once the handler's auth step has decided (the server sets nothing)."""
    client_gone: Callable[[], Awaitable[None]] | None = None
    """Returns once the client has closed its side of the connection: a handler that holds
    a request (a long poll) awaits it beside its own wait, to stop waiting for nobody."""

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name.lower(), default)


@dataclass(slots=True)
class Response:
    """What a handler returns; the server adds Content-Length, Date and Server itself."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, data: Any,
             headers: list[tuple[str, str]] | None = None) -> Response:
        body = json.dumps(data, separators=(",", ":")).encode()
        return cls(status, body, "application/json", list(headers or []))


Handler = Callable[[Request], Awaitable[Response]]


class Admission(enum.Enum):
    """What an ``Admit`` hook says about a request head it lets through."""

    AUTHENTICATED = "authenticated"
    """The request proved who sent it (or auth is off): its connection gets the full
    keep-alive."""
    PUBLIC = "public"
    """The request needs no credentials (e.g. health): its connection stays short-lived."""


Admit = Callable[[Request], "Admission | Response"]
"""Called with each request before its body is read (``body`` is still empty). A Response
is sent instead of calling the handler, and the connection is closed."""


def error_response(status: int, code: str, message: str, details: Any = None) -> Response:
    """The project's error shape: ``{"error": {"code", "message", "details"}}``."""
    return Response.json(status, {"error": {"code": code, "message": message,
                                            "details": details}})


def reason_phrase(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


_date_cache: tuple[int, str] = (0, "")


def http_date() -> str:
    """The Date header value, formatted at most once a second."""
    global _date_cache
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, formatdate(now, usegmt=True))
    return _date_cache[1]


class _Reject(Exception):
    """A request the server answers itself before the handler sees it; then it closes."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.response = error_response(status, code, message)

    @classmethod
    def with_response(cls, response: Response) -> _Reject:
        rejected = cls(response.status, "refused", f"refused with {response.status}")
        rejected.response = response
        return rejected


class _WriteStalled(Exception):
    """The client took none of a reply for ``write_timeout``: drop the connection."""


class HttpServer:
    """Serves ``handler`` on ``host:port`` (port 0: any free port) from the running loop.

    ``close(grace)`` stops accepting, closes idle keep-alive connections at once, gives
    requests in flight up to ``grace`` seconds to be answered, then cancels them.
    """

    def __init__(self, handler: Handler, host: str = "127.0.0.1", port: int = 5000, *,
                 limits: HttpLimits = HttpLimits(), admit: Admit | None = None,
                 server_header: str = "apr_sched") -> None:
        self.handler = handler
        self.admit = admit
        self.host = host
        self.limits = limits
        self.server_header = server_header
        self._requested_port = port
        self._server: asyncio.Server | None = None
        self._port: int | None = None
        self._connections: set[_Connection] = set()
        self._rejected: set[_Connection] = set()  # answered 503, closing
        self._per_client: Counter[str] = Counter()  # served connections by address
        self._refused: Counter[str] = Counter()  # being answered 503, by address
        self.closing = False

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._on_connect, self.host,
                                                  self._requested_port)
        self._port = int(self._server.sockets[0].getsockname()[1])

    @property
    def port(self) -> int:
        """The bound port (still known after close, for messages)."""
        if self._port is None:
            raise RuntimeError("HttpServer is not started")
        return self._port

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    async def close(self, grace: float = 5.0) -> None:
        if self._server is None or self.closing:
            return
        self.closing = True
        self._server.close()
        for connection in [*self._connections, *self._rejected]:
            connection.close_if_idle()
        tasks = [c.task for c in [*self._connections, *self._rejected] if c.task is not None]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending, timeout=1.0)
        await self._server.wait_closed()

    async def __aenter__(self) -> HttpServer:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.close()

    async def _on_connect(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        connection = _Connection(self, reader, writer)
        address = connection.address
        refusal = self._refusal(address)
        if self.closing or (refusal and (
                self._refused[address] >= self.limits.max_connections_per_client
                or len(self._rejected) >= 4 * self.limits.max_connections)):
            writer.transport.abort()  # a flood: not even worth an answer
            return
        group = self._rejected if refusal else self._connections
        counts = self._refused if refusal else self._per_client
        group.add(connection)
        counts[address] += 1
        try:
            if refusal:
                await connection.reject(_Reject(503, "service_unavailable", refusal))
            else:
                await connection.serve()
        except asyncio.CancelledError:
            pass  # close() ended it; asyncio 3.11 would log a cancelled connection task
        finally:
            group.discard(connection)
            counts[address] -= 1
            if not counts[address]:
                del counts[address]

    def _refusal(self, address: str) -> str | None:
        """Why a new connection from ``address`` is refused, or None to serve it."""
        limits = self.limits
        if len(self._connections) >= limits.max_connections:
            return f"too many connections (limit {limits.max_connections})"
        if self._per_client[address] >= limits.max_connections_per_client:
            return (f"too many connections from {address} "
                    f"(limit {limits.max_connections_per_client} per client)")
        return None


class _Connection:
    """One client connection: an h11 state machine fed from a stream, one request at a time."""

    def __init__(self, server: HttpServer, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.server = server
        self.limits = server.limits
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER,
                                  max_incomplete_event_size=self.limits.max_head_bytes)
        self.task = asyncio.current_task()
        self.idle = False  # waiting for a request that has not begun: safe to cut off
        self.authenticated = False  # some request on it passed the Admit hook as such
        self.new = True  # no request has begun on it yet
        self._kept = 0  # bytes taken in by _client_gone while the current request is answered
        self.accepted_at = asyncio.get_running_loop().time()
        peer = writer.get_extra_info("peername")
        self.client = (str(peer[0]), int(peer[1])) if isinstance(peer, tuple) else None
        self.peer = peer_credentials(writer.get_extra_info("socket"))
        # a Unix socket has no address: its clients are told apart by uid
        self.address = self.client[0] if self.client else (
            f"uid {self.peer.uid}" if self.peer is not None else "(unknown)")
        # Pause on any unsent byte and resume only when all are gone, so ``drain()`` waits
        # until a reply is wholly handed to the kernel before the next request is read.
        writer.transport.set_write_buffer_limits(high=0, low=0)
        sock = writer.get_extra_info("socket")
        if sock is not None and hasattr(socket, "TCP_NOTSENT_LOWAT"):
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NOTSENT_LOWAT,
                                KERNEL_UNSENT_BYTES)

    def close_if_idle(self) -> None:
        if self.idle and self.task is not None:
            self.task.cancel()

    async def serve(self) -> None:
        try:
            while True:
                head = await self._receive_head()
                if head is None:
                    return
                event, began = head
                started = time.monotonic()
                request = await self._receive_request(event, began + self.limits.request_timeout)
                self._kept = 0
                response = await self._call_handler(request)
                self._write(response, head_only=request.method == "HEAD")
                log.debug("%s %s %d %.1fms", request.method, request.target,
                          response.status, (time.monotonic() - started) * 1000)
                # A client that does not read keeps only the unsent bytes, not the reply
                # and the request too.
                del request, response
                await self._drain()
                if self.h11.our_state is h11.MUST_CLOSE:
                    return
                self.h11.start_next_cycle()
        except _Reject as rejected:
            await self.reject(rejected)
        except _WriteStalled:
            log.debug("connection from %s closed: it stopped reading", self.client)
            self.writer.transport.abort()
        except (ConnectionError, h11.LocalProtocolError) as exc:
            log.debug("connection from %s closed: %r", self.client, exc)
        except Exception:
            log.exception("connection from %s failed", self.client)
        finally:
            self._close()

    def _close(self) -> None:
        """Close; a reply still unsent gets ``write_timeout`` to go out, then is dropped
        (a plain close would wait forever for a client that does not read)."""
        transport = self.writer.transport
        if transport.get_write_buffer_size():
            asyncio.get_running_loop().call_later(self.limits.write_timeout, transport.abort)
        self.writer.close()

    async def reject(self, rejected: _Reject) -> None:
        """Answer with the error and ``Connection: close``, then close without a RST."""
        log.debug("%d to %s: %s", rejected.response.status, self.client, rejected)
        try:
            if self.h11.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                await self._send(rejected.response, close=True)
            if self.writer.can_write_eof():
                self.writer.write_eof()
            self.idle = True
            async with asyncio.timeout(LINGER_SECONDS):
                while await self.reader.read(READ_CHUNK):
                    pass
        except _WriteStalled:
            self.writer.transport.abort()
        except (ConnectionError, TimeoutError, h11.LocalProtocolError):
            pass
        finally:
            self._close()

    def _next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        try:
            return self.h11.next_event()
        except h11.RemoteProtocolError as exc:
            status = exc.error_status_hint
            if status == 431:
                raise _Reject(431, "headers_too_large",
                              f"request head over {self.limits.max_head_bytes} bytes") from None
            raise _Reject(status, "bad_request", f"malformed request: {exc}"[:200]) from None

    async def _read(self, deadline: float, what: str, seconds: float) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                data = await self.reader.read(READ_CHUNK)
        except TimeoutError:
            raise _Reject(408, "request_timeout",
                          f"{what} not received within {seconds:g}s") from None
        self.h11.receive_data(data)

    async def _receive_head(self) -> tuple[h11.Request, float] | None:
        """The next request's head and when the request began (its first byte; for a new
        connection, its accept); None when the client is gone or stayed idle too long."""
        loop = asyncio.get_running_loop()
        limits = self.limits
        idle = limits.keepalive_timeout if self.authenticated else (
            limits.unauthenticated_idle_timeout)
        head_seconds = min(limits.header_timeout, limits.request_timeout)
        idle_until = loop.time() + idle
        began: float | None = None
        new, self.new = self.new, False
        if new:
            idle_until = min(idle_until, self.accepted_at + head_seconds)
        while True:
            event = self._next_event()
            if isinstance(event, h11.Request):
                return event, loop.time() if began is None else began
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return None
            if began is None and self.h11.trailing_data[0]:
                began = loop.time()  # a pipelined request is buffered already
            if began is not None:
                await self._read(began + head_seconds, "request head", head_seconds)
                continue
            if self.server.closing:
                return None
            data = await self._read_idle(idle_until)
            if data is None:
                return None
            began = self.accepted_at if new else loop.time()
            self.h11.receive_data(data)

    async def _read_idle(self, until: float) -> bytes | None:
        """The first bytes of a request, or None if none came by ``until``; meanwhile
        ``close()`` may cut the connection off."""
        self.idle = True
        try:
            async with asyncio.timeout_at(until):
                return await self.reader.read(READ_CHUNK)
        except TimeoutError:
            return None
        finally:
            self.idle = False

    async def _receive_request(self, event: h11.Request, deadline: float) -> Request:
        if len(event.headers) > self.limits.max_headers:
            raise _Reject(431, "headers_too_large",
                          f"more than {self.limits.max_headers} header fields")
        # h11 bounds only a head still incomplete in its buffer; one read can bring a whole
        # oversize head, so measure the parsed one (request line and CRLFs included).
        head_size = len(event.method) + len(event.target) + 13 + sum(
            len(name) + len(value) + 4 for name, value in event.headers)
        if head_size > self.limits.max_head_bytes:
            raise _Reject(431, "headers_too_large",
                          f"request head over {self.limits.max_head_bytes} bytes")
        headers: dict[str, str] = {}
        for raw_name, raw_value in event.headers:
            name, value = raw_name.decode("ascii"), raw_value.decode("latin-1")
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        try:
            target = event.target.decode("utf-8")
            query = parse_qs(target.partition("?")[2], keep_blank_values=True,
                             errors="strict")
        except UnicodeDecodeError:
            raise _Reject(400, "bad_request", "request target is not valid UTF-8") from None
        request = Request(method=event.method.decode("ascii"), target=target,
                          path=target.partition("?")[0], query=query, headers=headers,
                          body=b"", client=self.client, peer=self.peer,
                          client_gone=self._client_gone)
        self._admit(request)
        length = headers.get("content-length", "0").split(",")[0].strip()
        if length.isdigit() and int(length) > self.limits.max_body_bytes:
            raise _Reject(413, "body_too_large",
                          f"body of {length} bytes over the limit of "
                          f"{self.limits.max_body_bytes}")
        request.body = await self._receive_body(deadline)
        return request

    def _admit(self, request: Request) -> None:
        """Ask the Admit hook about a head before its body is read; without a hook every
        request counts as authenticated."""
        admission = Admission.AUTHENTICATED if self.server.admit is None else (
            self.server.admit(request))
        if isinstance(admission, Response):
            raise _Reject.with_response(admission)
        if admission is Admission.AUTHENTICATED:
            self.authenticated = True

    async def _receive_body(self, deadline: float) -> bytes:
        body = bytearray()
        while True:
            event = self._next_event()
            if event is h11.NEED_DATA:
                if self.h11.they_are_waiting_for_100_continue:
                    self.writer.write(self.h11.send(h11.InformationalResponse(
                        status_code=100, headers=[], reason=reason_phrase(100))) or b"")
                await self._read(deadline, "request", self.limits.request_timeout)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self.limits.max_body_bytes:
                    raise _Reject(413, "body_too_large",
                                  f"body over the limit of {self.limits.max_body_bytes} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:  # pragma: no cover - h11 raises before anything else can come here
                raise _Reject(400, "bad_request", f"unexpected {type(event).__name__}")

    async def _client_gone(self) -> None:
        """Return when the client closes its side while its request is being answered.
        Bytes it sends meanwhile (a pipelined request) are handed to h11 for the next
        cycle, up to one request head's worth; past that, reading stops (and this never
        returns), so waiting costs no memory."""
        while self._kept <= self.limits.max_head_bytes:
            data = await self.reader.read(READ_CHUNK)
            if not data:
                return
            self.h11.receive_data(data)
            self._kept += len(data)
        await asyncio.get_running_loop().create_future()

    async def _call_handler(self, request: Request) -> Response:
        """The handler's response, or a 500 if it raised or returned something unsendable."""
        try:
            response = await self.server.handler(request)
            if not isinstance(response, Response):
                raise TypeError(f"handler returned {type(response).__name__}, not Response")
            if not isinstance(response.body, bytes):
                raise TypeError(f"Response.body is {type(response.body).__name__}, not bytes")
            self._head(response, close=False)  # h11 validates status and headers here
            return response
        except Exception:
            log.exception("handler failed on %s %s", request.method, request.target)
            return error_response(500, "internal_error", "internal server error")

    def _head(self, response: Response, *, close: bool) -> h11.Response:
        headers = [("server", self.server.server_header), ("date", http_date())]
        if response.status not in (204, 304):
            headers += [("content-type", response.content_type),
                        ("content-length", str(len(response.body)))]
        headers += [(n, v) for n, v in response.headers if n.lower() not in FRAMING_HEADERS]
        if close or self.server.closing:
            headers.append(("connection", "close"))
        return h11.Response(status_code=response.status, headers=headers,
                            reason=reason_phrase(response.status))

    async def _send(self, response: Response, *, close: bool = False) -> None:
        self._write(response, close=close)
        await self._drain()

    def _write(self, response: Response, *, close: bool = False,
               head_only: bool = False) -> None:
        """Hand the reply to the transport; a large body is passed on as it is, not copied
        into one buffer with the head."""
        head = self.h11.send(self._head(response, close=close)) or b""
        body = response.body if not head_only and response.status not in (204, 304) else b""
        if len(body) <= SMALL_BODY_BYTES:
            data = self.h11.send(h11.Data(data=body)) if body else b""
            self.writer.write(head + (data or b""))
        else:
            self.writer.write(head)
            for chunk in self.h11.send_with_data_passthrough(h11.Data(data=body)) or []:
                self.writer.write(chunk)
        end = self.h11.send(h11.EndOfMessage())
        if end:
            self.writer.write(end)

    async def _drain(self) -> None:
        """Wait until the reply is wholly handed to the kernel; raise _WriteStalled when the
        client takes none of it for ``write_timeout``."""
        transport = self.writer.transport
        unsent = transport.get_write_buffer_size()
        while True:
            try:
                async with asyncio.timeout(self.limits.write_timeout):
                    await self.writer.drain()
                return
            except TimeoutError:
                still = transport.get_write_buffer_size()
                if still >= unsent:
                    raise _WriteStalled from None
                unsent = still
