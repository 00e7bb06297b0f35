"""wire.Connection against a real socket on 127.0.0.1 that sends canned replies: framing by
Content-Length, chunks or the connection's end; keep-alive; replies that are not HTTP."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from apr_sched.wire import Address, Connection, ConnectionClosed, ProtocolError


class CannedServer:
    """Answers each request it reads (up to the blank line) with the next canned reply;
    a None closes the connection (at once after the reply before it)."""

    def __init__(self, replies: list[bytes | None]) -> None:
        self.replies = list(replies)
        self.requests: list[bytes] = []
        self.connections = 0
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while self.replies:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while self.replies:
                    while b"\r\n\r\n" not in data:
                        chunk = conn.recv(65536)
                        if not chunk:
                            break
                        data += chunk
                    if b"\r\n\r\n" not in data:
                        break
                    head, _, data = data.partition(b"\r\n\r\n")
                    self.requests.append(head)
                    reply = self.replies.pop(0)
                    if reply is None:
                        break
                    conn.sendall(reply)
                    if self.replies and self.replies[0] is None:
                        self.replies.pop(0)
                        break

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve() -> Iterator[type[CannedServer]]:
    servers: list[CannedServer] = []

    class Server(CannedServer):
        def __init__(self, replies: list[bytes | None]) -> None:
            super().__init__(replies)
            servers.append(self)

    yield Server
    for server in servers:
        server.close()


def connect(server: CannedServer) -> Connection:
    return Connection(Address("http", "127.0.0.1", server.port), timeout=5)


def ask(conn: Connection, path: str = "/x") -> tuple[int, bytes, bool]:
    conn.send("GET", path, {"Accept": "application/json"})
    reply = conn.receive()
    return reply.status, reply.body, reply.will_close


def test_keep_alive_with_content_length_then_chunks(serve) -> None:
    server = serve([
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nX-Trailer: 1\r\n\r\n",
    ])
    conn = connect(server)
    assert ask(conn) == (200, b"ok", False)
    assert ask(conn) == (201, b"abcde", False)
    assert server.connections == 1 and conn.requests == 2
    assert server.requests[0].startswith(b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:")
    conn.close()


def test_a_reply_framed_by_the_end_of_the_connection(serve) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\n\r\nall of it", None])
    conn = connect(server)
    assert ask(conn) == (200, b"all of it", True)
    assert conn.sock is None  # closed: the next request connects again


def test_close_and_http_1_0_replies_close_the_connection(serve) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                    b"HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx"])
    conn = connect(server)
    assert ask(conn) == (200, b"", True)
    assert ask(conn) == (200, b"x", True)
    assert server.connections == 2


def test_informational_replies_are_skipped(serve) -> None:
    server = serve([b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n"])
    assert ask(connect(server)) == (204, b"", False)


def test_a_connection_closed_before_the_reply_says_so(serve) -> None:
    server = serve([None])
    conn = connect(server)
    with pytest.raises(ConnectionClosed):
        ask(conn)


@pytest.mark.parametrize("reply", [
    b"SSH-2.0-OpenSSH_9.6\r\n\r\n",
    b"HTTP/1.1 2xx Fine\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: lots\r\n\r\n",
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
    b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
])
def test_replies_that_are_not_http_are_protocol_errors(serve, reply: bytes) -> None:
    server = serve([reply, None])
    with pytest.raises(ProtocolError):
        ask(connect(server))


def test_an_endless_head_is_refused(serve) -> None:
    server = serve([b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000 + b"\r\n\r\n"])
    with pytest.raises(ProtocolError, match="head over"):
        ask(connect(server))
