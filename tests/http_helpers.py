"""A small HTTP client for tests, a check of every reply against the OpenAPI document, and a
real daemon process to point them at."""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator

from apr_sched.statedir import read_owner


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    raw: bytes
    data: Any = None

    def error_code(self) -> str:
        return str(self.data["error"]["code"])


def request(url: str, method: str, path: str, body: Any = None, *, token: str | None = None,
            headers: dict[str, str] | None = None, raw_body: bytes | None = None) -> Reply:
    """One blocking request on a fresh connection (tests call it through a thread)."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    all_headers = dict(headers or {})
    if token:
        all_headers.setdefault("Authorization", f"Bearer {token}")
    payload = raw_body if raw_body is not None else (
        None if body is None else json.dumps(body).encode())
    if payload is not None:
        all_headers.setdefault("Content-Type", "application/json")
    try:
        conn.request(method, path, body=payload, headers=all_headers)
        response = conn.getresponse()
        raw = response.read()
        reply = Reply(response.status, {k.lower(): v for k, v in response.getheaders()}, raw)
    finally:
        conn.close()
    if reply.headers.get("content-type", "").startswith("application/json") and raw:
        reply.data = json.loads(raw)
    return reply


@dataclass
class OpenApiChecker:
    """Validates replies against the document the server itself publishes."""

    doc: dict[str, Any]
    checked: int = 0
    _patterns: list[tuple[re.Pattern[str], str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        for template in self.doc["paths"]:
            regex = "/".join("[^/]+" if seg.startswith("{") else re.escape(seg)
                             for seg in template.split("/"))
            self._patterns.append((re.compile(f"^{regex}$"), template))

    def check(self, method: str, path: str, reply: Reply) -> None:
        path = path.split("?", 1)[0]
        templates = [t for p, t in self._patterns if p.match(path)]
        if not templates:
            assert reply.status in (400, 404, 405), (path, reply.status)
            self._validate({"$ref": "#/components/schemas/Error"}, reply)
            return
        with_method = [t for t in templates if method.lower() in self.doc["paths"][t]]
        if not with_method:
            assert reply.status == 405, (method, path, reply.status)
            self._validate({"$ref": "#/components/schemas/Error"}, reply)
            return
        template = with_method[0]
        operation = self.doc["paths"][template][method.lower()]
        response = operation["responses"].get(str(reply.status))
        assert response is not None, f"{method} {template}: status {reply.status} not documented"
        content_type = reply.headers.get("content-type", "").split(";")[0]
        media = response["content"].get(content_type)
        assert media is not None, f"{method} {template} {reply.status}: {content_type} undocumented"
        if content_type == "application/json":
            self._validate(media["schema"], reply)

    def _validate(self, schema: dict[str, Any], reply: Reply) -> None:
        root = {**schema, "components": self.doc["components"]}
        Draft202012Validator(root).validate(reply.data)
        self.checked += 1


class Api:
    """Async-friendly calls to a live server, each reply checked against OpenAPI."""

    def __init__(self, url: str, token: str | None, checker: OpenApiChecker | None = None):
        self.url = url
        self.token = token
        self.checker = checker

    async def call(self, method: str, path: str, body: Any = None, *, token: Any = "default",
                   headers: dict[str, str] | None = None, raw_body: bytes | None = None) -> Reply:
        use_token = self.token if token == "default" else token
        reply = await asyncio.to_thread(request, self.url, method, path, body, token=use_token,
                                        headers=headers, raw_body=raw_body)
        if self.checker is not None:
            self.checker.check(method, path, reply)
        return reply

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, body, **kw)

    async def delete(self, path: str, **kw: Any) -> Reply:
        return await self.call("DELETE", path, **kw)


class KeepAliveClient:
    """One persistent HTTP/1.1 connection driven by h11 on the event loop (true concurrency
    without threads: many of these can run at once)."""

    def __init__(self, url: str, token: str | None = None) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.token = token
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._conn: Any = None

    async def __aenter__(self) -> KeepAliveClient:
        import h11

        self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        self._conn = h11.Connection(h11.CLIENT)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._writer is not None
        self._writer.close()
        await self._writer.wait_closed()

    async def request(self, method: str, path: str, body: Any = None) -> Reply:
        import h11

        assert self._reader is not None and self._writer is not None
        payload = b"" if body is None else json.dumps(body).encode()
        headers = [("Host", f"{self.host}:{self.port}"), ("Content-Length", str(len(payload)))]
        if payload:
            headers.append(("Content-Type", "application/json"))
        if self.token:
            headers.append(("Authorization", f"Bearer {self.token}"))
        conn = self._conn
        if conn.our_state is h11.DONE:
            conn.start_next_cycle()
        data = conn.send(h11.Request(method=method, target=path, headers=headers))
        data += conn.send(h11.Data(data=payload)) if payload else b""
        data += conn.send(h11.EndOfMessage())
        self._writer.write(data)
        status, reply_headers, chunks = 0, {}, []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await self._reader.read(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
                reply_headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                break
        raw = b"".join(chunks)
        reply = Reply(status, reply_headers, raw)
        if reply_headers.get("content-type", "").startswith("application/json") and raw:
            reply.data = json.loads(raw)
        return reply


@dataclass
class Daemon:
    """A real ``python -m apr_sched serve`` process on 127.0.0.1."""

    proc: subprocess.Popen[bytes]
    state_dir: Path
    url: str
    token: str
    log: Path

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])

    def rss_mb(self) -> float:
        """Resident memory now, from /proc."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise AssertionError("no VmRSS")

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))


@contextlib.contextmanager
def running_daemon(root: Path, config: str = "", *args: str) -> Iterator[Daemon]:
    """Start a daemon with ``config`` (TOML) in ``root``; SIGTERM it at the end."""
    config_file = root / "daemon.toml"
    config_file.write_text(config)
    state_dir = root / "state"
    log = root / "daemon.log"
    env = {k: v for k, v in os.environ.items()
           if k not in ("APR_SCHED_URL", "APR_SCHED_TOKEN", "APR_SCHED_HOME")}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apr_sched", "serve", "--state-dir", str(state_dir),
             "--config", str(config_file), "--port", "0", *args],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=root)
    try:
        deadline = time.monotonic() + 30
        while not (read_owner(state_dir) or {}).get("url"):
            assert proc.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "daemon did not start"
            time.sleep(0.02)  # polling a condition with a bound
        url = (read_owner(state_dir) or {})["url"]
        token_file = state_dir / "token"
        token = token_file.read_text().strip() if token_file.exists() else ""
        yield Daemon(proc, state_dir, url, token, log)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


async def exchange(port: int, payload: bytes, source: str = "127.0.0.1",
                   timeout: float = 10.0, host: str = "127.0.0.1") -> tuple[int, bytes, float]:
    """One raw request on a fresh connection from ``source``: (status, body, seconds)."""
    began = time.monotonic()
    async with asyncio.timeout(timeout):
        reader, writer = await asyncio.open_connection(host, port, local_addr=(source, 0))
        try:
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line[15:]) for line in head.split(b"\r\n")
                           if line[:15].lower() == b"content-length:"), 0)
            body = await reader.readexactly(length)
        finally:
            writer.close()
    return int(head[9:12]), body, time.monotonic() - began


def raw_request(method: str, path: str, token: str | None = None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body
