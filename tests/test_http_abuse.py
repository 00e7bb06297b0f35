"""A real daemon under abuse from 127.0.0.1 while a well-behaved client on 127.0.0.2 (the
same loopback network, another address) keeps being served: slow readers, slow headers,
oversized batches; and auth off is refused on an address the network can reach."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from apr_sched.errors import InvalidInput
from apr_sched.http.service import OPEN_NETWORK_FLAG, HttpService, check_exposure, is_loopback
from tests.conftest import wait_until
from tests.http_helpers import exchange, raw_request, running_daemon

HOST = """
[[hosts]]
host_id = "h1"
total_slots = 2
total_cpu = 2
total_memory_gb = 4
"""
UNPLACEABLE = {"command": "true", "resource_request": {"host_labels": {"tool": "none-has-it"}},
               "allow_pending": True}
GOOD = "127.0.0.2"
HEALTH = raw_request("GET", "/scheduler/health")


async def health_probes(port: int, count: int = 20, limit_sec: float = 3.0) -> list[float]:
    """``count`` health requests from GOOD, one after another: each must be a 200 within
    ``limit_sec`` (generous: this machine is shared)."""
    latencies = []
    for _ in range(count):
        status, _, seconds = await exchange(port, HEALTH, GOOD, timeout=limit_sec)
        assert status == 200
        latencies.append(seconds)
    return latencies


def non_reader(port: int, payload: bytes) -> socket.socket:
    """A client from 127.0.0.1 with a small receive buffer that sends and never reads."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16 * 1024)
    sock.connect(("127.0.0.1", port))
    sock.sendall(payload)
    return sock


async def test_slow_readers_neither_starve_others_nor_grow_the_daemon(tmp_path: Path) -> None:
    config = HOST + "[http]\nwrite_timeout_sec = 1.0\n"  # other limits: the defaults
    with running_daemon(tmp_path, config) as daemon:
        batch = json.dumps({"jobs": [UNPLACEABLE] * 1000}).encode()
        status, _, _ = await exchange(daemon.port, raw_request(
            "POST", "/scheduler/jobs/batch", daemon.token, batch), timeout=30)
        assert status == 201
        await health_probes(daemon.port, count=3)
        fds, rss = daemon.open_fds(), daemon.rss_mb()
        # 200 connections, each pipelining 20 full job lists (~450 KB each), never reading.
        pipeline = raw_request("GET", "/scheduler/jobs?limit=1000", daemon.token) * 20
        sockets = [non_reader(daemon.port, pipeline) for _ in range(200)]
        try:
            peak = [rss]
            await health_probes(daemon.port)
            peak.append(daemon.rss_mb())

            def released() -> bool:
                peak.append(daemon.rss_mb())
                return daemon.open_fds() <= fds + 2

            await wait_until(released, timeout=20, interval=0.1,
                             message="the daemon to drop its non-reading clients")
            await health_probes(daemon.port, count=3)
        finally:
            for sock in sockets:
                sock.close()
        assert max(peak) - rss < 60, (rss, max(peak))


async def test_slowloris_from_one_address_does_not_refuse_others(tmp_path: Path) -> None:
    with running_daemon(tmp_path, HOST + "[http]\nheader_timeout_sec = 3.0\n") as daemon:
        writers: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

        async def slow_client() -> None:
            with contextlib.suppress(OSError):
                reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
                writer.write(b"GET /scheduler/health HTTP/1.1\r\nHost: x")
                writers.append((reader, writer))

        try:
            for _ in range(20):  # 1,000 connections, 50 at a time (the listen backlog)
                await asyncio.gather(*(slow_client() for _ in range(50)))
            assert len(writers) >= 990
            latencies = await health_probes(daemon.port)
            assert sorted(latencies)[-1] < 3.0

            async def first_reply(reader: asyncio.StreamReader, timeout: float) -> str:
                """503 (refused with an answer), dropped (refused in a flood), waiting
                (being served: its head is still incomplete), or the status it got."""
                try:
                    data = await asyncio.wait_for(reader.read(12), timeout)
                except TimeoutError:
                    return "waiting"
                except OSError:
                    return "dropped"
                return data.decode()[9:12] if data else "dropped"

            fates = await asyncio.gather(*(first_reply(r, 0.5) for r, _ in writers))
            # 408: served, and its header timeout already ran out (a slow, loaded machine
            # takes seconds to open the 1,000 connections)
            assert set(fates) <= {"503", "dropped", "waiting", "408"}, set(fates)
            waiting = [r for (r, _), fate in zip(writers, fates, strict=True)
                       if fate == "waiting"]
            served = len(waiting) + fates.count("408")
            assert 0 < served <= 64  # the per-client cap: the rest were refused
            assert fates.count("503") >= 64
            if waiting:
                assert await first_reply(waiting[0], 10) == "408"  # the header timeout
        finally:
            for _, writer in writers:
                writer.close()
        await health_probes(daemon.port, count=3)


async def test_oversized_batch_is_413_naming_the_limit_and_others_are_served(
        tmp_path: Path) -> None:
    config = HOST + "[http]\nmax_batch_jobs = 100\nmax_body_bytes = 65536\n"
    with running_daemon(tmp_path, config) as daemon:
        def batch(count: int) -> bytes:
            body = json.dumps({"jobs": [UNPLACEABLE] * count}).encode()
            return raw_request("POST", "/scheduler/jobs/batch", daemon.token, body)

        over, _ = await asyncio.gather(exchange(daemon.port, batch(101)),
                                            health_probes(daemon.port, count=5))
        status, body, _ = over
        error = json.loads(body)["error"]
        assert status == 413 and error["code"] == "batch_too_large"
        assert "limit of 100 jobs" in error["message"] and error["details"]["limit"] == 100
        huge = batch(2000)
        assert len(huge) > 65536
        status, body, _ = await exchange(daemon.port, huge)
        assert status == 413 and json.loads(body)["error"]["code"] == "body_too_large"
        jobs = raw_request("GET", "/scheduler/jobs", daemon.token)
        assert json.loads((await exchange(daemon.port, jobs))[1])["total"] == 0
        assert (await exchange(daemon.port, batch(100)))[0] == 201
        assert json.loads((await exchange(daemon.port, jobs))[1])["total"] == 100


@pytest.mark.parametrize("address, loopback", [
    ("127.0.0.1", True), ("127.0.0.2", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("0.0.0.0", False), ("::", False), ("", False),
    ("10.0.0.11", False), ("head-node.example", False), ("::ffff:10.0.0.1", False),
])
def test_loopback_is_told_from_the_network(address: str, loopback: bool) -> None:
    assert is_loopback(address) is loopback


def test_auth_off_on_the_network_needs_the_long_flag() -> None:
    with pytest.raises(InvalidInput) as refused:
        check_exposure("0.0.0.0", auth=False, allow_open_network=False)
    assert OPEN_NETWORK_FLAG in refused.value.message
    check_exposure("0.0.0.0", auth=False, allow_open_network=True)
    check_exposure("0.0.0.0", auth=True, allow_open_network=False)
    check_exposure("127.0.0.1", auth=False, allow_open_network=False)


async def test_service_refuses_auth_off_on_the_network(make_scheduler) -> None:
    scheduler = await make_scheduler()
    with pytest.raises(InvalidInput):
        HttpService(scheduler, "0.0.0.0", 0, auth=False)


@pytest.mark.parametrize("args, config", [
    (["--host", "0.0.0.0", "--no-auth"], ""),
    (["--host", "::", "--no-auth"], ""),
    ([], '[http]\nhost = "0.0.0.0"\nauth = "none"\n'),
    (["--no-auth"], '[http]\nhost = "10.0.0.11"\n'),
])
def test_serve_refuses_auth_off_on_the_network(tmp_path: Path, args: list[str],
                                               config: str) -> None:
    config_file = tmp_path / "c.toml"
    config_file.write_text(config)
    done = subprocess.run(
        [sys.executable, "-m", "apr_sched", "serve", "--state-dir", str(tmp_path / "state"),
         "--config", str(config_file), "--port", "0", *args],
        capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert OPEN_NETWORK_FLAG in done.stderr and "without auth" in done.stderr
    assert not (tmp_path / "state").exists()  # refused before anything started


async def test_serve_allows_auth_off_on_another_loopback_address(tmp_path: Path) -> None:
    with running_daemon(tmp_path, HOST, "--host", "127.0.0.2", "--no-auth") as daemon:
        assert daemon.url.startswith("http://127.0.0.2:")
        status, body, _ = await exchange(daemon.port, raw_request("GET", "/scheduler/jobs"),
                                         source="127.0.0.2", host="127.0.0.2")
        assert status == 200 and json.loads(body)["total"] == 0
