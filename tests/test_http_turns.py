"""Requests from one address are worked on a few at a time; others do not queue behind them,
and a long poll waits outside its turn."""

from __future__ import annotations

import asyncio

from apr_sched.http.limits import ApiLimits, ClientTurns
from apr_sched.http.service import HttpService
from tests.conftest import wait_until
from tests.http_helpers import Api


async def test_one_address_gets_at_most_its_turns_others_go_at_once() -> None:
    turns = ClientTurns(limit=2)
    release = asyncio.Event()
    running: list[str] = []
    peak = [0]

    async def work(address: str) -> None:
        async with turns.turn(address):
            running.append(address)
            peak[0] = max(peak[0], running.count("a"))
            if address == "a":
                await release.wait()
            running.remove(address)

    crowd = [asyncio.create_task(work("a")) for _ in range(10)]
    await wait_until(lambda: running.count("a") == 2)
    assert turns.busy("a") == 10  # two at work, eight waiting
    await asyncio.wait_for(work("b"), 2)  # another address is not queued behind them
    release.set()
    await asyncio.wait_for(asyncio.gather(*crowd), 5)
    assert peak[0] == 2
    assert turns.busy("a") == 0 and not turns._gates


async def test_a_long_poll_does_not_hold_its_address_s_turn(make_scheduler) -> None:
    scheduler = await make_scheduler()
    async with HttpService(scheduler, "127.0.0.1", 0,
                           api_limits=ApiLimits(max_busy_per_client=1)) as service:
        api = Api(service.url, (scheduler.state_dir / "token").read_text().strip())
        since = scheduler.last_event_seq
        poll = asyncio.create_task(api.get(f"/scheduler/events?since={since}&wait=30"))
        await wait_until(lambda: scheduler._hub._pollers, timeout=5)
        for _ in range(3):  # same address, one turn: served while the poll waits
            assert (await asyncio.wait_for(api.get("/scheduler/jobs"), 5)).status == 200
        submitted = await api.post("/scheduler/jobs", {"command": "true", "resource_request": {
            "host_labels": {"tool": "none-has-it"}}, "allow_pending": True})
        assert submitted.status == 201
        reply = await asyncio.wait_for(poll, 5)
        assert reply.status == 200 and reply.data["events"][0]["job_id"] == "1"
