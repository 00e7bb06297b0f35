"""HTTP/1.1 over one socket, as the daemon's clients need it and no more.

``http.client`` costs a client command ~25 ms of imports before it sends a byte (it loads
``email.parser`` to read headers); flows start the CLI once per step, so the sync client
speaks HTTP here instead: a request line, headers and a body out; a status line, headers and
a body in, framed by ``Content-Length`` or ``chunked`` (or the connection's end). One
request at a time per connection, kept alive until either side says ``close``.

A request can be sent and its reply read later (``send`` then ``receive``), so a waiter can
hold several long polls on several connections and ``select`` on their sockets.

Errors are ``OSError``s: ``ConnectionClosed`` when the peer closed before the first byte of
a reply (on a reused keep-alive connection: it timed out while idle, send again),
``ProtocolError`` for a reply that is not HTTP/1.x, ``TimeoutError`` from the socket.
"""

from __future__ import annotations

import _socket  # socket.socket's own base: all a Unix socket needs (see unix_socket.py)

__all__ = ["Address", "Connection", "ConnectionClosed", "ProtocolError", "Reply"]

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 256 * 1024 * 1024
RECV_BYTES = 256 * 1024


class ConnectionClosed(ConnectionError):
    """The peer closed the connection before any byte of the reply."""


class ProtocolError(OSError):
    """The peer's reply is not HTTP/1.x we can read."""


class Address:
    """Where the daemon listens: ``scheme`` is ``unix`` (``host`` is the socket path),
    ``http`` or ``https``. (Plain classes here and in ``Reply``: ``typing.NamedTuple``
    would load ``typing``, which a client command's start does without.)"""

    __slots__ = ("host", "port", "scheme")

    def __init__(self, scheme: str, host: str, port: int = 0) -> None:
        self.scheme, self.host, self.port = scheme, host, port

    def __repr__(self) -> str:
        return f"Address({self.scheme!r}, {self.host!r}, {self.port!r})"


class Reply:
    __slots__ = ("body", "headers", "status", "will_close")

    def __init__(self, status: int, headers: dict[str, str], body: bytes,
                 will_close: bool) -> None:
        self.status = status
        self.headers = headers
        """Lower-cased names; a repeated field's values joined with ", "."""
        self.body = body
        self.will_close = will_close


class Connection:
    """One client connection, opened on first use; not thread-safe."""

    def __init__(self, address: Address, timeout: float | None) -> None:
        self.address = address
        self.timeout = timeout
        self.sock: _socket.socket | None = None
        self.requests = 0
        """Requests sent on the current socket (more than one: it is a reused connection)."""
        self._buffer = bytearray()
        self._head_only = False

    def fileno(self) -> int:
        return -1 if self.sock is None else self.sock.fileno()

    def settimeout(self, timeout: float | None) -> None:
        self.timeout = timeout
        if self.sock is not None:
            self.sock.settimeout(timeout)

    def close(self) -> None:
        sock, self.sock = self.sock, None
        self._buffer.clear()
        self.requests = 0
        if sock is not None:
            sock.close()

    def _connect(self) -> _socket.socket:
        scheme, host, port = self.address.scheme, self.address.host, self.address.port
        if scheme == "unix":
            from apr_sched.unix_socket import connect_unix_lean

            return connect_unix_lean(host, self.timeout)
        import socket  # TCP only: the Unix socket needs none of it

        sock = socket.create_connection((host.strip("[]"), port), self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if scheme == "https":
            import ssl

            try:
                return ssl.create_default_context().wrap_socket(sock, server_hostname=host)
            except BaseException:
                sock.close()
                raise
        return sock

    def send(self, method: str, target: str, headers: dict[str, str],
             body: bytes | None = None) -> None:
        """Send one request (connecting first if need be); read its reply with ``receive``."""
        if self.sock is None:
            self.sock = self._connect()
        head = [f"{method} {target} HTTP/1.1", f"Host: {self._host_header()}"]
        head += [f"{name}: {value}" for name, value in headers.items()]
        if body is not None or method in ("POST", "PUT", "PATCH"):
            head.append(f"Content-Length: {len(body or b'')}")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + (body or b"")
        self._head_only = method == "HEAD"
        self.requests += 1
        self.sock.sendall(data)

    def _host_header(self) -> str:
        scheme, host, port = self.address.scheme, self.address.host, self.address.port
        if scheme == "unix":
            return "localhost"
        default = 443 if scheme == "https" else 80
        host = f"[{host}]" if ":" in host and not host.startswith("[") else host
        return host if port == default else f"{host}:{port}"

    def receive(self) -> Reply:
        """The reply to the request sent last (informational 1xx replies skipped)."""
        while True:
            version, status, headers = self._read_head()
            if not 100 <= status < 200:
                break
        bodiless = self._head_only or status in (204, 304)
        framed = bodiless or "content-length" in headers or (
            "chunked" in headers.get("transfer-encoding", "").lower())
        body = b"" if bodiless else self._read_body(headers)
        tokens = {t.strip().lower() for t in headers.get("connection", "").split(",")}
        will_close = "close" in tokens or not framed or (
            version == "HTTP/1.0" and "keep-alive" not in tokens)
        if will_close:
            self.close()
        return Reply(status, headers, body, will_close)

    def _fill(self, *, first: bool = False) -> None:
        assert self.sock is not None, "receive() without send()"
        data = self.sock.recv(RECV_BYTES)
        if not data:
            if first:
                raise ConnectionClosed("the connection was closed before a reply")
            raise ProtocolError("the connection was closed in the middle of a reply")
        self._buffer += data

    def _read_head(self) -> tuple[str, int, dict[str, str]]:
        first = not self._buffer
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolError(f"reply head over {MAX_HEAD_BYTES} bytes")
            self._fill(first=first and not self._buffer)
        if end > MAX_HEAD_BYTES:
            raise ProtocolError(f"reply head over {MAX_HEAD_BYTES} bytes")
        raw = bytes(self._buffer[:end]).decode("latin-1")
        del self._buffer[:end + 4]
        line, *fields = raw.split("\r\n")
        version, _, rest = line.partition(" ")
        code = rest[:3]
        if not version.startswith("HTTP/1.") or not code.isdigit():
            raise ProtocolError(f"not an HTTP/1.x reply: {line[:80]!r}")
        headers: dict[str, str] = {}
        for field in fields:
            name, sep, value = field.partition(":")
            if not sep:
                raise ProtocolError(f"malformed reply header {field[:80]!r}")
            key, value = name.strip().lower(), value.strip()
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return version, int(code), headers

    def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            return self._read_chunked()
        length = headers.get("content-length")
        if length is None:  # framed by the end of the connection
            while True:
                try:
                    self._fill()
                except ProtocolError:
                    break
                if len(self._buffer) > MAX_BODY_BYTES:
                    raise ProtocolError(f"reply body over {MAX_BODY_BYTES} bytes")
            return self._take(len(self._buffer))
        size = length.split(",")[0].strip()
        if not size.isdigit() or int(size) > MAX_BODY_BYTES:
            raise ProtocolError(f"bad Content-Length {length[:40]!r}")
        return self._exactly(int(size))

    def _exactly(self, size: int) -> bytes:
        while len(self._buffer) < size:
            self._fill()
        return self._take(size)

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _line(self) -> bytes:
        while (end := self._buffer.find(b"\r\n")) < 0:
            if len(self._buffer) > MAX_HEAD_BYTES:
                raise ProtocolError("chunk header too long")
            self._fill()
        line = self._take(end)
        del self._buffer[:2]
        return line

    def _read_chunked(self) -> bytes:
        parts: list[bytes] = []
        total = 0
        while True:
            text = self._line().split(b";")[0].strip()
            try:
                size = int(text, 16)
            except ValueError:
                raise ProtocolError(f"bad chunk size {text[:20]!r}") from None
            if size == 0:
                while self._line():  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            total += size
            if total > MAX_BODY_BYTES:
                raise ProtocolError(f"reply body over {MAX_BODY_BYTES} bytes")
            parts.append(self._exactly(size))
            if self._exactly(2) != b"\r\n":
                raise ProtocolError("chunk not followed by CRLF")
