"""Benchmark the /scheduler endpoint under abuse: is /health still answered, quickly?

The daemon runs as a real subprocess (`python -m apr_sched serve`, auth on, 127.0.0.1).
Attackers connect from 127.0.0.1; the well-behaved prober connects from 127.0.0.2 (another
address on the loopback network), one fresh connection per `GET /scheduler/health`.

Measured, one JSON line each:
- slowloris: ``--slow`` connections (default 1,000) that send a request head one byte a
  second and never finish it. Health latency p50/p99/max from 127.0.0.2 and the share of
  probes answered 200; the share of the attackers' connections refused at once.
- slow readers: ``--readers`` connections (default 520) that pipeline ``--pipeline``
  ``GET /scheduler/jobs?limit=N`` each (``--jobs`` jobs queued, all in one page of at most
  5,000) and never read a byte. Health
  latency and share answered, the daemon's peak RSS, and how long until the daemon has let
  go of those connections.

``BENCH_DEBUG=1`` prints why each failed probe failed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, percentile

PROBE_ADDRESS = "127.0.0.2"
ATTACK_ADDRESS = "127.0.0.1"


def start_daemon(root: Path, http: str = "") -> tuple[subprocess.Popen[bytes], int, str]:
    config = root / "bench.toml"
    config.write_text('[[hosts]]\nhost_id = "bench"\ntotal_slots = 8\ntotal_cpu = 8\n'
                      f"total_memory_gb = 16\n[http]\n{http}")
    state_dir = root / "state"
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


def rss_mb(pid: int) -> tuple[float, float]:
    """Current and peak resident set of ``pid`` in MB."""
    fields = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text()
                  .splitlines() if ":" in line)
    return (int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def request_bytes(method: str, path: str, token: str | None, body: bytes = b"") -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", f"Content-Length: {len(body)}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    if body:
        lines.append("Content-Type: application/json")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


async def exchange(port: int, payload: bytes, source: str, timeout: float = 10.0
                   ) -> tuple[int, bytes]:
    """One request on a fresh connection from ``source``: (status, body); status 0 when the
    connection failed or timed out."""
    writer = None
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=(source, 0))
            writer.write(payload)
            head = await reader.readuntil(b"\r\n\r\n")
            length = next((int(line[15:]) for line in head.split(b"\r\n")
                           if line[:15].lower() == b"content-length:"), 0)
            return int(head[9:12]), await reader.readexactly(length)
    except (OSError, TimeoutError, asyncio.IncompleteReadError) as exc:
        if os.environ.get("BENCH_DEBUG"):
            print(f"probe from {source}: {exc!r}", file=sys.stderr)
        return 0, b""
    finally:
        if writer is not None:
            writer.close()


async def probe(port: int, seconds: float, source: str = PROBE_ADDRESS,
                on_sample: object = None) -> tuple[list[float], list[int]]:
    """``GET /scheduler/health`` every 20 ms for ``seconds``: latencies (s) and statuses."""
    payload = request_bytes("GET", "/scheduler/health", None)
    latencies, statuses = [], []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        began = time.perf_counter()
        status, _ = await exchange(port, payload, source)
        latencies.append(time.perf_counter() - began)
        statuses.append(status)
        if callable(on_sample):
            on_sample()
        await asyncio.sleep(0.02)
    return latencies, statuses


def summary(latencies: list[float], statuses: list[int]) -> dict[str, float | int]:
    served = [lat for lat, status in zip(latencies, statuses, strict=True) if status == 200]
    return {
        "probes": len(statuses), "served_share": len(served) / max(1, len(statuses)),
        "p50_ms": percentile(served, 0.5) * 1000 if served else -1.0,
        "max_ms": max(served) * 1000 if served else -1.0,
        "statuses": sorted(set(statuses)),
    }


async def connect_many(port: int, count: int, first_bytes: bytes
                       ) -> list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]:
    """``count`` connections from ATTACK_ADDRESS, 50 at a time (the listen backlog is small),
    each having sent ``first_bytes``."""
    connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def one() -> None:
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                           local_addr=(ATTACK_ADDRESS, 0))
            writer.write(first_bytes)
            connections.append((reader, writer))

    for start in range(0, count, 50):
        await asyncio.gather(*(one() for _ in range(min(50, count - start))))
    return connections


async def fates(connections: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]
                ) -> dict[str, int]:
    """How the daemon treated each connection before its request was complete: answered
    503, dropped without an answer (a flood), or still waiting (being served)."""
    async def fate(reader: asyncio.StreamReader) -> str:
        try:
            data = await asyncio.wait_for(reader.read(12), 0.5)
        except TimeoutError:
            return "waiting"
        except OSError:
            return "dropped"
        return "answered_503" if data.startswith(b"HTTP/1.1 503") else (
            "dropped" if not data else "other")

    found = await asyncio.gather(*(fate(r) for r, _ in connections))
    return {name: found.count(name) for name in sorted(set(found))}


async def slowloris(port: int, count: int, seconds: float) -> None:
    connections = await connect_many(port, count, b"GET /scheduler/health HTTP/1.1\r\nHost: x")
    treated = await fates(connections)
    stop = asyncio.Event()

    async def drip() -> None:
        while not stop.is_set():
            for _, writer in connections:
                if not writer.is_closing():
                    writer.write(b"x")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)

    dripping = asyncio.create_task(drip())
    try:
        latencies, statuses = await probe(port, seconds)
        same_address = await probe(port, 1.0, source=ATTACK_ADDRESS)
    finally:
        stop.set()
        await dripping
        for _, writer in connections:
            writer.close()
    served = [lat for lat, status in zip(latencies, statuses, strict=True) if status == 200]
    emit("http_abuse", "slowloris_health_p99_ms",
         percentile(served, 0.99) * 1000 if served else None, connections=len(connections),
         **treated, same_address_served_share=summary(*same_address)[
             "served_share"], **summary(latencies, statuses))


async def slow_readers(port: int, token: str, pid: int, count: int, pipeline: int,
                       jobs: int, seconds: float) -> None:
    listing = f"/scheduler/jobs?limit={min(jobs, 5000)}"  # the largest page allowed
    list_bytes = len((await exchange(port, request_bytes("GET", listing, token),
                                     PROBE_ADDRESS, timeout=30))[1])
    fds_before = open_fds(pid)
    rss_before = rss_mb(pid)[0]
    connections = await connect_many(port, count,
                                     request_bytes("GET", listing, token) * pipeline)
    peak = [rss_mb(pid)[0]]
    latencies, statuses = await probe(port, seconds,
                                      on_sample=lambda: peak.append(rss_mb(pid)[0]))
    began = time.perf_counter()
    released = None
    while time.perf_counter() - began < 120:
        peak.append(rss_mb(pid)[0])
        if open_fds(pid) <= fds_before + 2:
            released = time.perf_counter() - began
            break
        await asyncio.sleep(0.1)
    for _, writer in connections:
        writer.close()
    served = [lat for lat, status in zip(latencies, statuses, strict=True) if status == 200]
    emit("http_abuse", "slow_readers_health_p99_ms",
         percentile(served, 0.99) * 1000 if served else None, connections=len(connections),
         pipelined_each=pipeline, jobs=jobs, reply_bytes=list_bytes,
         daemon_rss_before_mb=rss_before, daemon_rss_peak_mb=max(peak),
         released_after_probe_sec=released,
         **summary(latencies, statuses))


async def queue_jobs(port: int, token: str, count: int) -> None:
    body = json.dumps({"jobs": [
        {"command": "true", "name": f"b{i}",
         "resource_request": {"host_labels": {"tool": "none-has-it"}}}
        for i in range(count)]}).encode()
    status, reply = await exchange(port, request_bytes("POST", "/scheduler/jobs/batch", token,
                                                       body), PROBE_ADDRESS, timeout=60)
    if status != 201:
        raise RuntimeError(f"batch refused: {status} {reply[:200]!r}")


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="bench_http_abuse_") as tmp:
        http = "".join(f"{line}\n" for line in args.http)
        daemon, port, token = start_daemon(Path(tmp), http)
        try:
            baseline = await probe(port, 1.0)
            emit("http_abuse", "idle_health_p99_ms", percentile(baseline[0], 0.99) * 1000,
                 **summary(*baseline))
            await slowloris(port, args.slow, args.seconds)
            await queue_jobs(port, token, args.jobs)
            await slow_readers(port, token, daemon.pid, args.readers, args.pipeline,
                               args.jobs, args.seconds)
            emit("http_abuse", "daemon_rss_after_mb", rss_mb(daemon.pid)[0],
                 peak_mb=rss_mb(daemon.pid)[1])
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=1000, help="slowloris connections")
    parser.add_argument("--readers", type=int, default=520, help="slow-reader connections")
    parser.add_argument("--pipeline", type=int, default=50,
                        help="requests each slow reader pipelines")
    parser.add_argument("--jobs", type=int, default=2000, help="jobs queued for GET /jobs")
    parser.add_argument("--seconds", type=float, default=5.0, help="probing time per attack")
    parser.add_argument("--http", action="append", default=[], metavar="KEY=VALUE",
                        help="an [http] config line for the daemon, e.g. "
                             "max_connections_per_client=16 (repeatable)")
    args = parser.parse_args()
    emit("http_abuse", "setup", None, cpus=os.cpu_count(), python=sys.version.split()[0],
         http=args.http)
    asyncio.run(run(args))


if __name__ == "__main__":
    main()
