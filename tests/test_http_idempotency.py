"""``Idempotency-Key`` on submit and batch: a retry gets the first reply, not new jobs, also
after a daemon restart; the same key for another request is refused."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import pytest

from apr_sched import Scheduler
from apr_sched.client import SchedulerClient
from apr_sched.errors import AprError
from apr_sched.http.service import HttpService
from apr_sched.models import Job
from apr_sched.store import IDEMPOTENCY_TTL_SEC, IdempotencyKey, IdempotencyKeyTaken, Store
from tests.http_helpers import Api

SPEC = {"command": "true", "name": "place", "resource_request": {"host_labels": {"x": "none"}},
        "allow_pending": True}
BATCH = {"jobs": [SPEC, {**SPEC, "name": "route"}]}


@pytest.fixture
async def served(make_scheduler) -> AsyncIterator[tuple[Scheduler, Api]]:
    scheduler = await make_scheduler()
    async with HttpService(scheduler, "127.0.0.1", 0) as service:
        yield scheduler, Api(service.url, (scheduler.state_dir / "token").read_text().strip())


async def job_total(scheduler: Scheduler) -> int:
    return (await scheduler.list_jobs()).total


def key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def test_retried_submit_returns_the_first_reply_and_creates_nothing(served) -> None:
    scheduler, api = served
    first = await api.post("/scheduler/jobs", SPEC, headers=key("k-1"))
    assert first.status == 201 and "idempotent-replayed" not in first.headers
    retry = await api.post("/scheduler/jobs", SPEC, headers=key("k-1"))
    assert retry.status == 201 and retry.raw == first.raw
    assert retry.headers["idempotent-replayed"] == "true"
    assert await job_total(scheduler) == 1
    other = await api.post("/scheduler/jobs", SPEC, headers=key("k-2"))
    assert other.status == 201 and other.data["job_id"] != first.data["job_id"]
    plain = [await api.post("/scheduler/jobs", SPEC) for _ in range(2)]
    assert [r.status for r in plain] == [201, 201]
    assert await job_total(scheduler) == 4


async def test_replay_is_the_reply_at_creation_even_after_the_job_moved_on(served) -> None:
    scheduler, api = served
    first = await api.post("/scheduler/jobs", SPEC, headers=key("k"))
    await scheduler.pause(first.data["job_id"])
    retry = await api.post("/scheduler/jobs", SPEC, headers=key("k"))
    assert retry.raw == first.raw and retry.data["status"] == "PENDING"


async def test_retried_batch_returns_the_same_jobs(served) -> None:
    scheduler, api = served
    first = await api.post("/scheduler/jobs/batch", BATCH, headers=key("batch-1"))
    assert first.status == 201 and first.data["count"] == 2
    retry = await api.post("/scheduler/jobs/batch", BATCH, headers=key("batch-1"))
    assert (retry.status, retry.raw) == (201, first.raw)
    assert await job_total(scheduler) == 2


@pytest.mark.parametrize("path, body", [
    ("/scheduler/jobs", {**SPEC, "name": "other"}),
    ("/scheduler/jobs/batch", {"jobs": [SPEC]}),
])
async def test_same_key_for_another_request_is_422(served, path: str, body: object) -> None:
    scheduler, api = served
    assert (await api.post("/scheduler/jobs", SPEC, headers=key("k"))).status == 201
    events = scheduler.last_event_seq
    reply = await api.post(path, body, headers=key("k"))
    assert reply.status == 422 and reply.error_code() == "idempotency_key_reused"
    assert "Idempotency-Key" in reply.data["error"]["message"]
    assert await job_total(scheduler) == 1 and scheduler.last_event_seq == events


@pytest.mark.parametrize("value", ["", "two words", "a" * 256, "k1, k2", "é"])
async def test_malformed_key_is_400_naming_the_header(served, value: str) -> None:
    scheduler, api = served
    reply = await api.post("/scheduler/jobs", SPEC, headers={"Idempotency-Key": value})
    assert reply.status == 400
    assert reply.data["error"]["details"][0]["field"] == "Idempotency-Key"
    assert await job_total(scheduler) == 0


async def test_a_refused_submit_does_not_spend_its_key(served) -> None:
    _, api = served
    bad = await api.post("/scheduler/jobs", {**SPEC, "retry_limt": 1}, headers=key("k"))
    assert bad.status == 400
    good = await api.post("/scheduler/jobs", SPEC, headers=key("k"))
    assert good.status == 201 and "idempotent-replayed" not in good.headers


async def test_key_survives_a_daemon_restart(make_scheduler, state_dir: Path) -> None:
    scheduler = await make_scheduler()
    async with HttpService(scheduler, "127.0.0.1", 0) as service:
        api = Api(service.url, (state_dir / "token").read_text().strip())
        first = await api.post("/scheduler/jobs/batch", BATCH, headers=key("before-crash"))
    await scheduler.close()
    again = await make_scheduler()
    async with HttpService(again, "127.0.0.1", 0) as service:
        api = Api(service.url, (state_dir / "token").read_text().strip())
        retry = await api.post("/scheduler/jobs/batch", BATCH, headers=key("before-crash"))
    assert (retry.status, retry.raw) == (201, first.raw)
    assert await job_total(again) == 2


def one_reply(jobs: list[Job]) -> tuple[int, bytes]:
    return 201, json.dumps([j.job_id for j in jobs]).encode()


async def test_scheduler_refuses_a_used_key_in_the_same_transaction(
        make_scheduler: Callable[..., Awaitable[Scheduler]]) -> None:
    scheduler = await make_scheduler()
    claim = IdempotencyKey("alice", "k", "digest", one_reply)
    await scheduler.submit(SPEC, idempotency_key=claim)
    events = await scheduler.events_since(0)
    with pytest.raises(IdempotencyKeyTaken):
        await scheduler.submit_batch([SPEC, SPEC], idempotency_key=claim)
    assert await job_total(scheduler) == 1
    assert await scheduler.events_since(0) == events  # nothing written, nothing published
    assert (await scheduler.submit(SPEC)).job_id == "2"  # no id was spent by the refusal
    await scheduler.submit(SPEC, idempotency_key=IdempotencyKey("bob", "k", "d", one_reply))


def test_keys_expire_and_are_purged(tmp_path: Path) -> None:
    store = Store(tmp_path / "db.sqlite")
    try:
        with store.transaction():
            store.save_idempotent_reply(IdempotencyKey("c", "old", "f", one_reply), [],
                                        now=1000.0)
        expires = 1000.0 + IDEMPOTENCY_TTL_SEC
        assert store.idempotent_reply("c", "old", now=expires - 1) == ("f", 201, b"[]")
        assert store.idempotent_reply("c", "old", now=expires) is None
        assert store.idempotent_reply("other", "old", now=expires - 1) is None
        with store.transaction():
            store.save_idempotent_reply(IdempotencyKey("c", "new", "f", one_reply), [],
                                        now=expires)
            store.save_idempotent_reply(IdempotencyKey("c", "old", "g", one_reply), [],
                                        now=expires)
    finally:
        store.close()
    db = sqlite3.connect(tmp_path / "db.sqlite")
    try:
        rows = db.execute("SELECT key, fingerprint FROM idempotency_keys ORDER BY key").fetchall()
    finally:
        db.close()
    assert rows == [("new", "f"), ("old", "g")]


async def test_client_retries_with_a_key_are_not_queued_twice(served) -> None:
    scheduler, api = served

    def talk() -> tuple[str, str, list[str], list[str], str]:
        with SchedulerClient(api.url, api.token) as client:
            first = client.submit(SPEC, idempotency_key="flow-step-1")
            again = client.submit(SPEC, idempotency_key="flow-step-1")
            batch = client.submit_batch_ids(BATCH["jobs"], idempotency_key="flow-batch-1")
            batch_again = client.submit_batch_ids(BATCH["jobs"], idempotency_key="flow-batch-1")
            with pytest.raises(AprError) as reused:
                client.submit({**SPEC, "name": "other"}, idempotency_key="flow-step-1")
            return first.job_id, again.job_id, batch, batch_again, reused.value.message

    first, again, batch, batch_again, message = await asyncio.to_thread(talk)
    assert first == again and batch == batch_again and len(batch) == 2
    assert "different request" in message
    assert await job_total(scheduler) == 3
