"""Benchmark the /scheduler endpoint: requests/s and batch acceptance.

The daemon runs as a real subprocess (`python -m apr_sched serve`, auth on); the load comes
from this process over keep-alive connections on 127.0.0.1, with a lean client (raw bytes,
Content-Length framing) so the client costs little of the machine's two cores.

Measured, one JSON line each:
- GET /scheduler/health, 16 concurrent keep-alive clients: requests/s;
- GET /scheduler/jobs with 100 jobs queued, 16 clients: requests/s;
- POST /scheduler/jobs/batch with 10,000 jobs: time until the 201 (jobs committed), jobs/s.
Floor, in the same run: the same HttpServer with a handler that returns a constant JSON
body (the cost of HTTP alone, no routing, auth or scheduler), same client, same load.

Targets on a 2-core machine: >= 3,000 health requests/s; a 10,000-job batch accepted in < 1 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit

FLOOR_SERVER = """
import asyncio, sys
from apr_sched.http.server import HttpServer, Response

async def main():
    async def handler(request):
        return Response.json(200, {"status": "ok"})
    server = HttpServer(handler, "127.0.0.1", 0)
    await server.start()
    print(server.port, flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


async def one_request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      payload: bytes) -> int:
    writer.write(payload)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


def request_bytes(method: str, path: str, token: str | None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body:
        lines.append("Content-Type: application/json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def load(port: int, payload: bytes, clients: int, seconds: float) -> float:
    """Requests/s over ``clients`` keep-alive connections for ``seconds``."""
    deadline = time.perf_counter() + seconds
    counts = [0] * clients

    async def client(i: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.perf_counter() < deadline:
                status = await one_request(reader, writer, payload)
                if status != 200:
                    raise RuntimeError(f"status {status}")
                counts[i] += 1
        finally:
            writer.close()

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    return sum(counts) / (time.perf_counter() - start)


async def batch_accept(port: int, token: str, count: int) -> tuple[float, int]:
    jobs = [{"command": "true", "name": f"b{i}", "priority": i % 10,
             "resource_request": {"host_labels": {"tool": "none-has-it"}}}
            for i in range(count)]
    body = json.dumps({"jobs": jobs}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        start = time.perf_counter()
        writer.write(request_bytes("POST", "/scheduler/jobs/batch", token, body))
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line[15:]) for line in head.split(b"\r\n")
                      if line[:15].lower() == b"content-length:")
        reply = json.loads(await reader.readexactly(length))
        elapsed = time.perf_counter() - start
    finally:
        writer.close()
    if reply.get("count") != count:
        raise RuntimeError(f"batch not accepted: {reply}")
    return elapsed, len(body)


def start_daemon(state_dir: Path) -> tuple[subprocess.Popen[bytes], int, str]:
    config = state_dir.parent / "bench.toml"
    config.write_text('[[hosts]]\nhost_id = "bench"\ntotal_slots = 8\ntotal_cpu = 8\n'
                      "total_memory_gb = 16\n")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apr_sched", "serve", "--port", "0", "--state-dir",
         str(state_dir), "--config", str(config)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    owner_file = state_dir / "scheduler.json"
    deadline = time.monotonic() + 30
    while True:
        if owner_file.exists():
            owner = json.loads(owner_file.read_text() or "{}")
            if owner.get("url"):
                break
        if time.monotonic() > deadline or proc.poll() is not None:
            raise RuntimeError("daemon did not start")
        time.sleep(0.02)
    port = int(owner["url"].rsplit(":", 1)[1])
    return proc, port, (state_dir / "token").read_text().strip()


def start_floor() -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen([sys.executable, "-c", FLOOR_SERVER], stdout=subprocess.PIPE,
                            text=True)
    assert proc.stdout is not None
    return proc, int(proc.stdout.readline())


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_http_") as tmp:
        floor, floor_port = start_floor()
        daemon, port, token = start_daemon(Path(tmp) / "state")
        try:
            health = request_bytes("GET", "/scheduler/health", None)
            floor_rate = await load(floor_port, health, args.clients, args.seconds)
            emit("http", "floor_req_per_sec", floor_rate, clients=args.clients,
                 method="HttpServer with a constant-JSON handler, same client")
            rate = await load(port, health, args.clients, args.seconds)
            emit("http", "health_req_per_sec", rate, clients=args.clients,
                 ratio_to_floor=rate / floor_rate, target=3000, met=rate >= 3000)
            await batch_accept(port, token, 100)
            jobs = request_bytes("GET", "/scheduler/jobs", token)
            rate = await load(port, jobs, args.clients, args.seconds)
            emit("http", "jobs_list_req_per_sec", rate, clients=args.clients, jobs=100)
            elapsed, size = await batch_accept(port, token, args.batch)
            emit("http", "batch_accept_sec", elapsed, jobs=args.batch, body_bytes=size,
                 jobs_per_sec=args.batch / elapsed, target_sec=1.0, met=elapsed < 1.0)
        finally:
            for proc in (daemon, floor):
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--batch", type=int, default=10_000)
    args = parser.parse_args()
    emit("http", "setup", None, cpus=os.cpu_count(), python=sys.version.split()[0])
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
