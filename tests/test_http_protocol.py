"""HttpServer over real sockets on 127.0.0.1: raw bytes for the protocol edges (keep-alive,
pipelining, 100-continue, oversize, garbage, timeouts, limits, shutdown), http.client for
an ordinary client's view."""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import pytest

from apr_sched.http.server import Admission, HttpLimits, HttpServer, Request, Response
from tests.conftest import wait_until


@dataclass
class Reply:
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def read_reply(reader: asyncio.StreamReader, timeout: float = 5.0,
                     head: bool = False) -> Reply:
    """One response off the wire (``head``: to a HEAD request, so no body); checks what
    every response must carry."""
    async with asyncio.timeout(timeout):
        text = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status_line, *lines = text.split("\r\n")[:-2]
        version, status, reason = status_line.split(" ", 2)
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        reply = Reply(int(status), reason, headers, b"")
        assert version == "HTTP/1.1"
        assert reason == HTTPStatus(reply.status).phrase
        if reply.status >= 200:
            assert {"content-length", "date", "server"} <= headers.keys(), headers
        if reply.status >= 200 and not head:
            reply.body = await reader.readexactly(int(headers["content-length"]))
    return reply


async def at_eof(reader: asyncio.StreamReader, timeout: float = 3.0) -> bool:
    try:
        return await asyncio.wait_for(reader.read(), timeout) == b""
    except ConnectionResetError:
        return True


def get(path: str = "/", *headers: str, method: str = "GET") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test", *headers, "", ""]
    return "\r\n".join(lines).encode()


class App:
    """The test handler: echoes the request as JSON; /boom raises; /gate waits for ``gate``."""

    def __init__(self) -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.cancelled = False

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        if request.path == "/boom":
            raise RuntimeError("boom")
        if request.path == "/bad-header":
            return Response(200, headers=[("bad header", "x")])
        if request.path == "/gate":
            self.started.set()
            try:
                await self.gate.wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
        return Response.json(200, {
            "method": request.method, "target": request.target, "path": request.path,
            "query": request.query, "headers": request.headers,
            "body_length": len(request.body), "body": request.body[:64].decode("latin-1"),
            "client_host": request.client[0] if request.client else None,
        })


Connect = Callable[[], Awaitable[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]


@pytest.fixture
async def app() -> App:
    return App()


@pytest.fixture
async def start(app: App) -> AsyncIterator[Callable[..., Awaitable[HttpServer]]]:
    servers: list[HttpServer] = []

    async def start(**limits: Any) -> HttpServer:
        server = HttpServer(app, "127.0.0.1", 0, limits=HttpLimits(**limits))
        await server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        await server.close(grace=0.5)


@pytest.fixture
async def server(start: Callable[..., Awaitable[HttpServer]]) -> HttpServer:
    return await start()


@pytest.fixture
async def connect(server: HttpServer) -> AsyncIterator[Connect]:
    writers: list[asyncio.StreamWriter] = []

    async def connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writers.append(writer)
        return reader, writer

    yield connect
    for writer in writers:
        writer.close()


async def test_keep_alive_serves_three_requests_on_one_connection(connect: Connect) -> None:
    reader, writer = await connect()
    for i in range(3):
        writer.write(get(f"/n/{i}"))
        reply = await read_reply(reader)
        assert reply.status == 200
        assert reply.headers["content-type"] == "application/json"
        assert reply.headers["server"] == "apr_sched"
        assert reply.json()["path"] == f"/n/{i}"
        assert "connection" not in reply.headers


async def test_connection_close_is_honoured(connect: Connect) -> None:
    reader, writer = await connect()
    writer.write(get("/", "Connection: close"))
    reply = await read_reply(reader)
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert await at_eof(reader)


async def test_pipelined_requests_get_ordered_responses(connect: Connect) -> None:
    reader, writer = await connect()
    writer.write(get("/a") + get("/b", "Content-Length: 3", method="POST") + b"xyz" + get("/c"))
    replies = [await read_reply(reader) for _ in range(3)]
    assert [r.json()["path"] for r in replies] == ["/a", "/b", "/c"]
    assert replies[1].json()["body"] == "xyz"


async def test_query_headers_and_content_length_body(connect: Connect) -> None:
    reader, writer = await connect()
    body = b'{"command": "make place"}'
    writer.write(get("/scheduler/jobs/a%2Fb?status=RUNNING&status=HELD&empty=&q=%E5%BC%A0",
                     "X-Tag: one", "X-Tag: two", f"Content-Length: {len(body)}",
                     method="POST") + body)
    echoed = (await read_reply(reader)).json()
    assert echoed["method"] == "POST"
    assert echoed["path"] == "/scheduler/jobs/a%2Fb"
    assert echoed["target"].endswith("?status=RUNNING&status=HELD&empty=&q=%E5%BC%A0")
    assert echoed["query"] == {"status": ["RUNNING", "HELD"], "empty": [""], "q": ["张"]}
    assert echoed["headers"]["x-tag"] == "one, two"
    assert echoed["body"] == body.decode()
    assert echoed["client_host"] == "127.0.0.1"


async def test_chunked_body(connect: Connect) -> None:
    reader, writer = await connect()
    writer.write(get("/up", "Transfer-Encoding: chunked", method="POST"))
    writer.write(b"5\r\nhello\r\n")
    await writer.drain()
    writer.write(b"6\r\n world\r\n0\r\n\r\n")
    reply = await read_reply(reader)
    assert reply.json()["body"] == "hello world"
    writer.write(get("/after"))
    assert (await read_reply(reader)).json()["path"] == "/after"


async def test_chunked_body_over_limit_is_413(
        start: Callable[..., Awaitable[HttpServer]], app: App) -> None:
    server = await start(max_body_bytes=10)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/up", "Transfer-Encoding: chunked", method="POST")
                 + b"8\r\n12345678\r\n8\r\n12345678\r\n0\r\n\r\n")
    reply = await read_reply(reader)
    assert reply.status == 413 and reply.json()["error"]["code"] == "body_too_large"
    assert await at_eof(reader)
    assert app.calls == 0
    writer.close()


async def test_expect_100_continue_gets_100_then_200(connect: Connect) -> None:
    reader, writer = await connect()
    writer.write(get("/up", "Expect: 100-continue", "Content-Length: 4", method="PUT"))
    interim = await read_reply(reader)
    assert (interim.status, interim.reason) == (100, "Continue")
    writer.write(b"data")
    reply = await read_reply(reader)
    assert reply.status == 200 and reply.json()["body_length"] == 4


async def test_expect_100_continue_with_too_big_body_gets_413_and_no_100(
        start: Callable[..., Awaitable[HttpServer]], app: App) -> None:
    server = await start(max_body_bytes=1000)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/up", "Expect: 100-continue", "Content-Length: 5000", method="PUT"))
    reply = await read_reply(reader)  # the body is never sent: the server must not wait for it
    assert reply.status == 413
    assert reply.headers["connection"] == "close"
    assert reply.json()["error"]["code"] == "body_too_large"
    assert await at_eof(reader)
    assert app.calls == 0
    writer.close()


async def test_20_mb_body_is_refused_fast(connect: Connect, app: App) -> None:
    reader, writer = await connect()
    size = 20 * 1024 * 1024
    began = time.monotonic()
    writer.write(get("/up", f"Content-Length: {size}", method="POST"))

    async def send_body() -> None:
        chunk = b"x" * 65536
        try:
            for _ in range(size // len(chunk)):
                writer.write(chunk)
                await writer.drain()
        except ConnectionError:
            pass

    sender = asyncio.create_task(send_body())
    reply = await read_reply(reader)
    assert reply.status == 413
    assert time.monotonic() - began < 2.0
    assert await at_eof(reader)
    assert app.calls == 0
    sender.cancel()
    await asyncio.gather(sender, return_exceptions=True)


async def test_too_many_header_fields_is_431(connect: Connect, app: App) -> None:
    reader, writer = await connect()
    writer.write(get("/", *(f"X-{i}: v" for i in range(1000))))
    reply = await read_reply(reader)
    assert reply.status == 431 and reply.json()["error"]["code"] == "headers_too_large"
    assert await at_eof(reader)
    assert app.calls == 0


async def test_20_kib_header_is_431(connect: Connect, app: App) -> None:
    reader, writer = await connect()
    writer.write(get("/", "X-Big: " + "a" * 20 * 1024))
    reply = await read_reply(reader)
    assert reply.status == 431 and reply.json()["error"]["code"] == "headers_too_large"
    assert await at_eof(reader)
    assert app.calls == 0


@pytest.mark.parametrize("garbage", [
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",  # a TLS hello
    b"GET / HTTP/1.1\r\nHost: test\r\nBad Header: x\r\n\r\n",
    b"GET /a b c HTTP/1.1\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
])
async def test_protocol_errors_are_400_json_and_close(connect: Connect, app: App,
                                                      garbage: bytes) -> None:
    reader, writer = await connect()
    writer.write(garbage)
    reply = await read_reply(reader)
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/json"
    assert reply.json()["error"]["code"] == "bad_request"
    assert await at_eof(reader)
    assert app.calls == 0


async def test_bad_percent_encoding_in_query_is_400(connect: Connect, app: App) -> None:
    reader, writer = await connect()
    writer.write(get("/x?name=%FF"))
    reply = await read_reply(reader)
    assert reply.status == 400 and reply.json()["error"]["code"] == "bad_request"
    assert app.calls == 0


async def test_handler_exception_is_500_json_and_serving_goes_on(
        connect: Connect, caplog: pytest.LogCaptureFixture) -> None:
    reader, writer = await connect()
    with caplog.at_level(logging.ERROR, logger="apr_sched.http"):
        writer.write(get("/boom"))
        reply = await read_reply(reader)
    assert reply.status == 500
    assert reply.json()["error"]["code"] == "internal_error"
    assert "boom" not in reply.body.decode()
    [record] = [r for r in caplog.records if r.name == "apr_sched.http"]
    assert record.exc_info is not None and "/boom" in record.getMessage()
    writer.write(get("/same-connection"))
    assert (await read_reply(reader)).status == 200
    reader2, writer2 = await connect()
    writer2.write(get("/new-connection"))
    assert (await read_reply(reader2)).status == 200


async def test_unsendable_response_is_500(connect: Connect) -> None:
    reader, writer = await connect()
    writer.write(get("/bad-header"))
    assert (await read_reply(reader)).status == 500
    writer.write(get("/fine"))
    assert (await read_reply(reader)).status == 200


async def test_idle_keep_alive_connection_is_closed(
        start: Callable[..., Awaitable[HttpServer]]) -> None:
    server = await start(keepalive_timeout=0.2)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/"))
    assert (await read_reply(reader)).status == 200
    began = time.monotonic()
    assert await at_eof(reader, timeout=3.0)
    assert time.monotonic() - began >= 0.15
    writer.close()


@pytest.mark.parametrize("partial", [
    b"GET /slow HTTP/1.1\r\nHost: te",
    b"POST /slow HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\n12345",
])
async def test_slow_request_is_408(start: Callable[..., Awaitable[HttpServer]], app: App,
                                   partial: bytes) -> None:
    server = await start(request_timeout=0.3)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(partial)
    began = time.monotonic()
    reply = await read_reply(reader)
    assert reply.status == 408 and reply.json()["error"]["code"] == "request_timeout"
    assert 0.25 <= time.monotonic() - began < 3.0
    assert await at_eof(reader)
    assert app.calls == 0
    writer.close()


async def test_long_handler_is_not_cut_by_request_timeout(
        start: Callable[..., Awaitable[HttpServer]], app: App) -> None:
    server = await start(request_timeout=0.1, keepalive_timeout=0.1)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/gate"))
    await asyncio.wait_for(app.started.wait(), 3.0)
    await asyncio.sleep(0.3)  # deliberately longer than both timeouts
    app.gate.set()
    assert (await read_reply(reader)).status == 200
    writer.close()


async def test_connections_beyond_the_cap_get_503(
        start: Callable[..., Awaitable[HttpServer]]) -> None:
    server = await start(max_connections=2)
    held = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get("/"))
        assert (await read_reply(reader)).status == 200
        held.append((reader, writer))
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    reply = await read_reply(reader)
    assert reply.status == 503 and reply.json()["error"]["code"] == "service_unavailable"
    assert reply.headers["connection"] == "close"
    assert await at_eof(reader)
    writer.close()
    held[0][1].close()

    async def served() -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get("/"))
        try:
            return (await read_reply(reader)).status == 200
        finally:
            writer.close()

    await wait_until(served, timeout=3.0)
    held[1][1].close()


async def test_http_1_0_request_is_answered_and_closed(connect: Connect) -> None:
    reader, writer = await connect()
    writer.write(b"GET /old?x=1 HTTP/1.0\r\n\r\n")
    reply = await read_reply(reader)
    assert reply.status == 200 and reply.json()["query"] == {"x": ["1"]}
    assert reply.headers["connection"].lower() == "close"
    assert await at_eof(reader)


async def test_head_gets_headers_without_body(connect: Connect) -> None:
    reader, writer = await connect()
    writer.write(get("/x", method="HEAD") + get("/x"))
    head = await read_reply(reader, head=True)
    full = await read_reply(reader)  # would be the HEAD's body if one had been sent
    assert head.status == full.status == 200
    assert int(head.headers["content-length"]) > 0  # the length a GET body would have
    assert full.json()["method"] == "GET"


async def test_close_lets_in_flight_request_finish_and_refuses_new(
        server: HttpServer, connect: Connect, app: App) -> None:
    idle_reader, idle_writer = await connect()
    idle_writer.write(get("/"))
    assert (await read_reply(idle_reader)).status == 200
    busy_reader, busy_writer = await connect()
    busy_writer.write(get("/gate"))
    await asyncio.wait_for(app.started.wait(), 3.0)

    closing = asyncio.create_task(server.close(grace=5.0))
    assert await at_eof(idle_reader, timeout=2.0)  # idle keep-alive: closed at once
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", server.port)
    assert not closing.done()
    app.gate.set()
    reply = await read_reply(busy_reader)
    assert reply.status == 200 and reply.headers["connection"] == "close"
    assert await at_eof(busy_reader)
    await asyncio.wait_for(closing, 3.0)
    assert not app.cancelled


async def test_close_cancels_requests_that_outlive_the_grace(
        server: HttpServer, connect: Connect, app: App) -> None:
    reader, writer = await connect()
    writer.write(get("/gate"))
    await asyncio.wait_for(app.started.wait(), 3.0)
    began = time.monotonic()
    await server.close(grace=0.2)
    assert 0.15 <= time.monotonic() - began < 2.0
    assert app.cancelled
    assert await at_eof(reader)


async def test_http_client_round_trips_on_one_connection(server: HttpServer) -> None:
    def talk() -> list[tuple[int, str, dict[str, Any]]]:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        results = []
        try:
            for body in (b'{"a":1}', b"x" * 100_000):
                conn.request("POST", "/scheduler/jobs?dry=1", body=body,
                             headers={"Content-Type": "application/json"})
                response = conn.getresponse()
                results.append((response.status, response.reason, json.loads(response.read())))
        finally:
            conn.close()
        return results

    (s1, r1, e1), (s2, _, e2) = await asyncio.to_thread(talk)
    assert (s1, r1, s2) == (200, "OK", 200)
    assert e1["headers"]["content-type"] == "application/json" and e1["body"] == '{"a":1}'
    assert e2["body_length"] == 100_000 and e2["query"] == {"dry": ["1"]}


# abuse: slow readers, slow headers, per-client limits, admission ---------------------------
class BigApp(App):
    """Replies 1 MB to every request, counting them."""

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        return Response(200, b"x" * 1_000_000, content_type="text/plain")


def non_reading_socket(port: int, payload: bytes) -> socket.socket:
    """A blocking client with a small receive buffer that sends ``payload`` and never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(payload)
    return sock


async def test_non_reading_client_gets_one_reply_then_is_dropped() -> None:
    app = BigApp()
    server = HttpServer(app, "127.0.0.1", 0, limits=HttpLimits(write_timeout=0.5))
    await server.start()
    try:
        sock = non_reading_socket(server.port, get("/") * 50)
        try:
            await wait_until(lambda: app.calls, timeout=10, message="the first request")
            assert server._connections
            await wait_until(lambda: not server._connections, timeout=10,
                             message="non-reading connection to be dropped")
            # The next request is read only once a reply is handed over: a megabyte reply
            # stuck in buffers stops the pipeline at once.
            assert app.calls <= 2, app.calls
        finally:
            sock.close()
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get("/"))
        assert (await read_reply(reader)).status == 200
        writer.close()
    finally:
        await server.close(grace=0.5)


async def test_slow_but_steady_reader_gets_the_whole_reply() -> None:
    app = BigApp()
    server = HttpServer(app, "127.0.0.1", 0, limits=HttpLimits(write_timeout=0.5))
    await server.start()
    try:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)  # no autotuning
        sock.connect(("127.0.0.1", server.port))
        reader, writer = await asyncio.open_connection(sock=sock, limit=4096)
        writer.write(get("/"))
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
        assert head.startswith(b"HTTP/1.1 200 ")
        received, began = 0, time.monotonic()
        while received < 1_000_000:
            chunk = await asyncio.wait_for(reader.read(1_000_000 - received), 10)
            assert chunk, "connection dropped while the client kept reading"
            received += len(chunk)
            await asyncio.sleep(0.05)  # the client's pace, not a wait for a condition
        assert time.monotonic() - began > 0.5  # slower than write_timeout, yet served
        writer.close()
    finally:
        await server.close(grace=0.5)


class SmallApp(App):
    """40 kB replies; notes how much of earlier replies was still unsent at each call."""

    def __init__(self) -> None:
        super().__init__()
        self.server: HttpServer | None = None
        self.unsent_at_call: list[int] = []

    async def __call__(self, request: Request) -> Response:
        self.calls += 1
        assert self.server is not None
        self.unsent_at_call.append(sum(c.writer.transport.get_write_buffer_size()
                                       for c in self.server._connections))
        return Response(200, b"x" * 40_000, content_type="text/plain")


async def test_next_request_waits_until_the_reply_is_handed_over() -> None:
    app = SmallApp()
    server = app.server = HttpServer(app, "127.0.0.1", 0, limits=HttpLimits(write_timeout=0.5))
    await server.start()
    try:
        sock = non_reading_socket(server.port, get("/") * 200)
        try:
            await wait_until(lambda: app.calls, timeout=10, message="the first request")
            await wait_until(lambda: not server._connections, timeout=10)
        finally:
            sock.close()
        assert 1 < app.calls < 200  # kernel buffers took a few replies, then it stopped
        assert app.unsent_at_call == [0] * app.calls
    finally:
        await server.close(grace=0.5)


async def test_connections_from_one_address_are_capped_others_served(
        start: Callable[..., Awaitable[HttpServer]]) -> None:
    server = await start(max_connections_per_client=2)
    held = []
    for _ in range(2):
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(get("/"))
        assert (await read_reply(reader)).status == 200
        held.append(writer)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    refused = await read_reply(reader)
    assert refused.status == 503 and "per client" in refused.json()["error"]["message"]
    writer.close()
    other_reader, other_writer = await asyncio.open_connection(
        "127.0.0.1", server.port, local_addr=("127.0.0.2", 0))
    other_writer.write(get("/"))
    assert (await read_reply(other_reader)).status == 200
    other_writer.close()
    for writer in held:
        writer.close()


async def test_slow_head_gets_408_at_the_header_timeout(
        start: Callable[..., Awaitable[HttpServer]], app: App) -> None:
    server = await start(header_timeout=0.3, request_timeout=20)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    began = time.monotonic()
    writer.write(b"GET /slow HTTP/1.1\r\nHost: te")
    reply = await read_reply(reader)
    assert reply.status == 408
    assert "request head not received within 0.3s" in reply.json()["error"]["message"]
    assert time.monotonic() - began < 5.0
    assert app.calls == 0
    writer.close()


async def test_silent_new_connection_is_closed_quietly(
        start: Callable[..., Awaitable[HttpServer]]) -> None:
    server = await start(unauthenticated_idle_timeout=0.2, keepalive_timeout=30)
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    began = time.monotonic()
    assert await asyncio.wait_for(reader.read(), 5) == b""  # no 408 for saying nothing
    assert time.monotonic() - began < 4.0
    writer.close()


class Gate:
    """An Admit hook: /public is PUBLIC, a request with ``X-Key: good`` AUTHENTICATED, and
    anything else gets 401."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    def __call__(self, request: Request) -> Admission | Response:
        self.seen.append((request.path, len(request.body)))
        if request.path == "/public":
            return Admission.PUBLIC
        if request.header("x-key") == "good":
            return Admission.AUTHENTICATED
        return Response.json(401, {"error": {"code": "unauthorized", "message": "no"}})


@pytest.fixture
async def gated(app: App) -> AsyncIterator[tuple[HttpServer, Gate]]:
    gate = Gate()
    server = HttpServer(app, "127.0.0.1", 0, admit=gate, limits=HttpLimits(
        unauthenticated_idle_timeout=0.3, keepalive_timeout=30))
    await server.start()
    yield server, gate
    await server.close(grace=0.5)


async def test_refused_head_never_has_its_body_read(gated: tuple[HttpServer, Gate],
                                                    app: App) -> None:
    server, gate = gated
    reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
    writer.write(get("/private", "Content-Length: 5000000", method="POST") + b"x" * 1000)
    reply = await read_reply(reader)
    assert reply.status == 401 and reply.headers["connection"] == "close"
    assert await at_eof(reader)
    assert app.calls == 0 and gate.seen == [("/private", 0)]
    writer.close()


async def test_unauthenticated_connection_lives_short_authenticated_long(
        gated: tuple[HttpServer, Gate]) -> None:
    server, _ = gated
    public_reader, public_writer = await asyncio.open_connection("127.0.0.1", server.port)
    public_writer.write(get("/public"))
    assert (await read_reply(public_reader)).status == 200
    trusted_reader, trusted_writer = await asyncio.open_connection("127.0.0.1", server.port)
    trusted_writer.write(get("/private", "X-Key: good"))
    assert (await read_reply(trusted_reader)).status == 200
    assert await at_eof(public_reader, timeout=5.0)  # idle past 0.3 s: closed
    trusted_writer.write(get("/private", "X-Key: good"))  # still open, well past 0.3 s
    assert (await read_reply(trusted_reader)).status == 200
    public_writer.close()
    trusted_writer.close()
