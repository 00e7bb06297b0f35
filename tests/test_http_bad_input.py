"""Bad input found by a fault campaign: each is a 400 naming the field, and changes nothing."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator

import pytest

from apr_sched import Scheduler
from apr_sched.http.service import HttpService
from tests.http_helpers import Api


@pytest.fixture
async def served(make_scheduler) -> AsyncIterator[tuple[Scheduler, Api]]:
    scheduler = await make_scheduler()
    async with HttpService(scheduler, "127.0.0.1", 0) as service:
        yield scheduler, Api(service.url, (scheduler.state_dir / "token").read_text().strip())


def stored_hosts(scheduler: Scheduler) -> list[str]:
    db = sqlite3.connect(f"file:{scheduler.state_dir / 'apr_sched.db'}?mode=ro", uri=True)
    try:
        return [row[0] for row in db.execute("SELECT host_id FROM hosts ORDER BY host_id")]
    finally:
        db.close()


async def test_event_sequence_past_64_bits_is_400(served) -> None:
    _, api = served
    reply = await api.get("/scheduler/events?since=9223372036854775808")
    assert reply.status == 400 and reply.data["error"]["details"][0]["field"] == "since"
    assert (await api.get("/scheduler/events?since=9223372036854775807")).data == {
        "events": [], "last_seq": 9223372036854775807}


async def test_log_offset_past_64_bits_is_400(served) -> None:
    scheduler, api = served
    job = await scheduler.submit({"command": "true", "allow_pending": True,
                                  "resource_request": {"host_labels": {"x": "none"}}})
    reply = await api.get(f"/scheduler/jobs/{job.job_id}/logs?offset=9223372036854775808")
    assert reply.status == 400 and reply.data["error"]["details"][0]["field"] == "offset"
    deepest = await api.get(f"/scheduler/jobs/{job.job_id}/logs?offset=9223372036854775807")
    assert deepest.status == 200 and deepest.data["lines"] == []


@pytest.mark.parametrize("path", ["/scheduler/jobs", "/scheduler/jobs/batch",
                                  "/scheduler/hosts/register", "/scheduler/hosts/h1/heartbeat"])
async def test_deeply_nested_body_is_400(served, path: str) -> None:
    scheduler, api = served
    before = scheduler.last_event_seq
    for body in (b"[" * 100_000, b'{"a":' * 100_000):
        reply = await api.post(path, raw_body=body)
        assert reply.status == 400, (path, reply.status)
        assert "nested too deeply" in reply.data["error"]["message"]
    assert scheduler.last_event_seq == before
    assert (await api.get("/scheduler/health")).status == 200


@pytest.mark.parametrize("address", ["root@127.0.0.1:0", "127.0.0.1:65536", "[::1]:0",
                                     "u@h:99999"])
async def test_register_with_an_impossible_ssh_port_creates_no_host(served,
                                                                    address: str) -> None:
    scheduler, api = served
    reply = await api.post("/scheduler/hosts/register", {
        "host_id": "ghost", "total_slots": 1, "total_cpu": 1, "total_memory_gb": 1,
        "ssh": address})
    assert reply.status == 400
    assert reply.data["error"]["details"][0]["field"] == "ssh"
    assert "out of range 1-65535" in reply.data["error"]["details"][0]["message"]
    assert (await api.get("/scheduler/hosts/ghost")).status == 404
    listed = (await api.get("/scheduler/hosts")).data["hosts"]
    assert [h["host_id"] for h in listed] == ["h1"]
    assert stored_hosts(scheduler) == ["h1"]


async def test_trailing_newline_id_is_refused_before_any_lookup(served) -> None:
    scheduler, api = served
    job = await scheduler.submit({"command": "true", "allow_pending": True,
                                  "resource_request": {"host_labels": {"x": "none"}}})
    assert (await api.get(f"/scheduler/jobs/{job.job_id}")).status == 200
    for path in (f"/scheduler/jobs/{job.job_id}%0A", f"/scheduler/jobs/{job.job_id}%0A/logs",
                 "/scheduler/hosts/h1%0A", f"/scheduler/jobs?id={job.job_id}%0A"):
        reply = await api.get(path)
        assert reply.status == 400 and "not a valid id" in reply.data["error"]["message"], path
    stop = await api.post(f"/scheduler/jobs/{job.job_id}%0A/stop")
    assert stop.status == 400
    assert (await scheduler.get_job(job.job_id)).status.value == "PENDING"
