"""``GET /jobs/{id}/logs?offset=N&wait=S``: a log long poll, answered when the job writes.

Real scheduler, real jobs, real HTTP on 127.0.0.1; latencies are measured from the time a
job stamps into its own line to the time the reply is in the client's hands.
"""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from apr_sched import JobStatus, Scheduler
from apr_sched.http.logwait import RECHECK_SEC, LogWaits
from apr_sched.http.service import HttpService
from tests.conftest import wait_until
from tests.http_helpers import Api, OpenApiChecker, request

STAMPS = 6
"""Lines the stamping job writes, one every STAMP_GAP_SEC."""
STAMP_GAP_SEC = 0.4
OLD_PAUSE_SEC = 0.25
"""The shortest pause of the client-side re-reading this replaces."""


@pytest.fixture
async def served(make_scheduler) -> AsyncIterator[tuple[Scheduler, Api, LogWaits]]:
    scheduler = await make_scheduler()
    async with HttpService(scheduler, "127.0.0.1", 0) as service:
        token = (scheduler.state_dir / "token").read_text().strip()
        doc = await asyncio.to_thread(request, service.url, "GET", "/scheduler/openapi.json",
                                      token=token)
        api = Api(service.url, token, OpenApiChecker(doc.data))
        assert service._api is not None
        yield scheduler, api, service._api.log_waits


def kernel_watches(waits: LogWaits) -> int:
    fd = waits.watcher.fd
    if fd is None:
        return 0
    info = Path(f"/proc/self/fdinfo/{fd}").read_text()
    return sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))


async def running(scheduler: Scheduler, job_id: str) -> None:
    async def is_running() -> bool:
        return (await scheduler.get_job(job_id)).status is JobStatus.RUNNING
    await wait_until(is_running, timeout=10)


def stamping_job(lines: int = STAMPS, gap: float = STAMP_GAP_SEC) -> dict[str, object]:
    """A job that writes the wall-clock time it writes each line, as the line."""
    return {"command": f"for i in $(seq {lines}); do sleep {gap}; date +%s.%N; done"}


async def follow(api: Api, job_id: str, wait: float, until: int) -> tuple[list[float], int]:
    """Long-poll the log from offset 0 until ``until`` lines came: each line's latency, and
    how many requests it took."""
    latencies: list[float] = []
    offset = requests = 0
    while len(latencies) < until:
        reply = await api.get(f"/scheduler/jobs/{job_id}/logs?offset={offset}&wait={wait}")
        now = time.time()
        requests += 1
        assert reply.status == 200, reply.raw
        latencies += [now - float(line) for line in reply.data["lines"]]
        offset = reply.data["offset"]
    return latencies, requests


async def test_a_held_request_answers_soon_after_the_job_writes_a_line(served) -> None:
    scheduler, api, waits = served
    job = await scheduler.submit(stamping_job())
    latencies, requests = await follow(api, job.job_id, wait=30, until=STAMPS)
    assert len(latencies) == STAMPS
    assert requests <= STAMPS + 2  # held until each line, never asked again and again
    assert statistics.median(latencies) < 0.2 < OLD_PAUSE_SEC + 0.2, latencies
    assert waits.answered_at_once == 0
    await wait_until(lambda: waits.held == 0)
    assert waits.watcher.watched_files == 0 and kernel_watches(waits) == 0


async def test_a_held_request_answers_at_once_when_the_attempt_ends(served) -> None:
    scheduler, api, waits = served
    assert waits.held == 0
    job = await scheduler.submit({"command": "sleep 0.5; printf 'no newline'; exit 3"})
    await running(scheduler, job.job_id)
    started = time.monotonic()
    reply = await api.get(f"/scheduler/jobs/{job.job_id}/logs?offset=0&wait=30")
    assert time.monotonic() - started < 10  # the end answered it, not the 30 s
    assert reply.data["lines"] == ["no newline"]  # the unfinished line, once ended
    assert (await scheduler.get_job(job.job_id)).status is JobStatus.FAILED
    ended = await api.get(f"/scheduler/jobs/{job.job_id}/logs?offset={reply.data['offset']}"
                          "&wait=30")
    assert ended.status == 200 and ended.data["lines"] == []  # ended: at once, empty


async def test_a_held_request_on_a_held_job_answers_when_it_is_stopped(served) -> None:
    scheduler, api, waits = served
    job = await scheduler.submit({"command": "echo never", "resource_request": {
        "host_labels": {"tool": "none-has-it"}}, "allow_pending": True})
    poll = asyncio.create_task(
        api.get(f"/scheduler/jobs/{job.job_id}/logs?offset=0&wait=30"))
    await wait_until(lambda: waits.held == 1, timeout=5)
    await scheduler.stop(job.job_id)
    reply = await asyncio.wait_for(poll, 10)
    assert reply.status == 200 and reply.data["lines"] == []
    assert waits.held == 0


async def test_wait_zero_and_no_wait_answer_at_once(served) -> None:
    scheduler, api, waits = served
    job = await scheduler.submit({"command": "sleep 30"})
    await running(scheduler, job.job_id)
    for query in ("offset=0", "offset=0&wait=0", "offset=0&wait=0.0"):
        started = time.monotonic()
        reply = await api.get(f"/scheduler/jobs/{job.job_id}/logs?{query}")
        assert reply.status == 200 and reply.data["lines"] == [] and reply.data["offset"] == 0
        assert time.monotonic() - started < 5
    assert waits.held == 0 and waits.answered_at_once == 0


@pytest.mark.parametrize(("query", "field"), [
    ("offset=0&wait=-1", "wait"), ("offset=0&wait=61", "wait"), ("offset=0&wait=soon", "wait"),
    ("offset=0&wait=nan", "wait"), ("offset=0&wait=1&wait=2", "wait"), ("wait=5", "wait"),
    ("offset=-1&wait=5", "offset"), ("offset=x&wait=5", "offset"),
    ("offset=0&wait=5&attempt=0", "attempt")])
async def test_bad_wait_or_offset_is_refused_naming_the_field(served, query, field) -> None:
    scheduler, api, waits = served
    job = await scheduler.submit({"command": "sleep 30"})
    reply = await api.get(f"/scheduler/jobs/{job.job_id}/logs?{query}")
    assert reply.status == 400, reply.raw
    assert reply.data["error"]["details"][0]["field"] == field
    assert field in reply.data["error"]["message"]
    assert waits.held == 0
    assert (await api.get("/scheduler/health")).status == 200  # and it keeps serving


async def test_beyond_the_cap_a_request_is_answered_at_once(served) -> None:
    scheduler, api, waits = served
    waits.max_held = 3
    job = await scheduler.submit({"command": "sleep 30"})
    await running(scheduler, job.job_id)
    path = f"/scheduler/jobs/{job.job_id}/logs?offset=0&wait=30"
    held = [asyncio.create_task(api.get(path)) for _ in range(3)]
    await wait_until(lambda: waits.held == 3, timeout=5)
    assert waits.watcher.watched_files == 1 and kernel_watches(waits) == 1  # one file
    started = time.monotonic()
    extra = await api.get(path)
    assert extra.status == 200 and extra.data["lines"] == []
    assert time.monotonic() - started < 5 and waits.answered_at_once == 1
    await scheduler.stop(job.job_id)
    for task in held:
        assert (await asyncio.wait_for(task, 15)).status == 200
    assert waits.held == 0
    assert waits.watcher.watched_files == 0 and kernel_watches(waits) == 0


async def test_a_waiter_whose_client_goes_away_is_released(served) -> None:
    scheduler, api, waits = served
    job = await scheduler.submit({"command": "sleep 30"})
    await running(scheduler, job.job_id)
    host, port = api.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)))
    sock.sendall(f"GET /scheduler/jobs/{job.job_id}/logs?offset=0&wait=60 HTTP/1.1\r\n"
                 f"Host: x\r\nAuthorization: Bearer {api.token}\r\n\r\n".encode())
    await wait_until(lambda: waits.held == 1, timeout=5)
    assert kernel_watches(waits) == 1
    sock.close()
    await wait_until(lambda: waits.held == 0, timeout=5)  # not after the 60 s
    assert waits.watcher.watched_files == 0 and kernel_watches(waits) == 0


async def test_without_inotify_a_held_request_rechecks_the_log(served) -> None:
    scheduler, api, waits = served
    waits.watcher.unavailable = "inotify_init1: Too many open files"  # as a refused init
    job = await scheduler.submit(stamping_job(lines=3, gap=0.6))
    latencies, _ = await follow(api, job.job_id, wait=30, until=3)
    assert max(latencies) < RECHECK_SEC + 1.0, latencies
    assert waits.watcher.failed_watches > 0 and waits.watcher.fd is None


async def test_many_held_requests_cost_the_daemon_no_cpu_while_idle(served) -> None:
    """50 followers of silent running jobs: while nothing is written, nothing runs."""
    scheduler, api, waits = served
    jobs = [await scheduler.submit({"command": "sleep 30"}) for _ in range(4)]
    for job in jobs:
        await running(scheduler, job.job_id)
    polls = [asyncio.create_task(raw_get(
        api, f"/scheduler/jobs/{jobs[i % 4].job_id}/logs?offset=0&wait=30"))
        for i in range(50)]
    await wait_until(lambda: waits.held == 50, timeout=20)
    assert waits.watcher.watched_files == 4
    before = time.process_time(), waits.watcher.events_read
    await asyncio.sleep(1.0)  # measuring an idle second, not waiting for a condition
    used = time.process_time() - before[0]
    assert waits.watcher.events_read == before[1]
    assert used < 0.1, used  # the loop slept: no re-reads, no timers
    for job in jobs:
        await scheduler.stop(job.job_id)
    replies = await asyncio.wait_for(asyncio.gather(*polls), 20)
    assert all(reply.startswith(b"HTTP/1.1 200 ") for reply in replies)
    assert waits.watcher.watched_files == 0 and kernel_watches(waits) == 0


async def raw_get(api: Api, path: str) -> bytes:
    """One request on its own connection, from the loop (no thread per waiting request)."""
    host, port = api.url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                 f"Authorization: Bearer {api.token}\r\n\r\n".encode())
    try:
        return await reader.read()
    finally:
        writer.close()


async def test_a_native_ssh_hosts_log_wakes_held_requests_too(ssh_hosts, make_scheduler) -> None:
    """SSH hosts' logs are mirrored into the local spool by the daemon: inotify sees those
    writes as it sees a local job's."""
    from tests.test_ssh_hosts import online, ssh_spec

    (ssh_host,) = ssh_hosts(1)
    scheduler = await make_scheduler(hosts=[ssh_spec(ssh_host)])
    await online(scheduler, ssh_host.name)
    async with HttpService(scheduler, "127.0.0.1", 0) as service:
        api = Api(service.url, (scheduler.state_dir / "token").read_text().strip())
        assert service._api is not None
        waits = service._api.log_waits
        job = await scheduler.submit(stamping_job())
        latencies, requests = await follow(api, job.job_id, wait=30, until=STAMPS)
        assert requests <= STAMPS + 2 and waits.answered_at_once == 0
        assert waits.watcher.failed_watches == 0  # watched by inotify, not re-read
        # the agent streams every 0.1 s; the mirror write wakes the request at once
        assert statistics.median(latencies) < 0.4, latencies
