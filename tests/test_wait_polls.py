"""The waiter's long polls: one held log request per followed running job at once, and the
bounded fallbacks (more running jobs than held polls; a daemon that holds no log request).
A real scheduler served over HTTP on 127.0.0.1; the waiter runs in a thread, as a library
caller's would (so it installs no signal handlers)."""

from __future__ import annotations

import asyncio
import io
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from apr_sched import Scheduler, waiter, waiting
from apr_sched.http.logwait import LogWaits
from apr_sched.http.service import HttpService
from apr_sched.rawclient import RawClient
from tests.conftest import wait_until


@pytest.fixture
async def served(make_scheduler) -> AsyncIterator[tuple[Scheduler, RawClient, LogWaits]]:
    scheduler = await make_scheduler()
    async with HttpService(scheduler, "127.0.0.1", 0) as service:
        token = (scheduler.state_dir / "token").read_text().strip()
        assert service._api is not None
        with RawClient(service.url, token) as client:
            yield scheduler, client, service._api.log_waits


def numbered(name: str, lines: int = 3, gap: float = 0.3) -> dict[str, object]:
    return {"command": f"for i in $(seq {lines}); do sleep {gap}; echo {name}-$i; done"}


async def wait_in_thread(client: RawClient, job_ids: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    result = await asyncio.to_thread(waiting.wait_for_jobs, client, job_ids, output=out,
                                     notices=io.StringIO(), reconnect_timeout=0)
    return result.code, out.getvalue()


def assert_each_line_once(out: str, names: list[str], job_ids: list[str], lines: int) -> None:
    counts = Counter(out.splitlines())
    expected = {f"{job_id}: {name}-{i}" for job_id, name in zip(job_ids, names, strict=True)
                for i in range(1, lines + 1)}
    assert set(counts) == expected and set(counts.values()) == {1}, out


async def test_each_running_job_has_its_own_held_log_poll(served) -> None:
    scheduler, client, waits = served
    names = ["a", "b", "c"]
    jobs = [await scheduler.submit(numbered(name, lines=4, gap=0.4)) for name in names]
    ids = [job.job_id for job in jobs]
    waiter = asyncio.create_task(wait_in_thread(client, ids))
    await wait_until(lambda: waits.held == 3, timeout=10)  # three logs held at once
    code, out = await asyncio.wait_for(waiter, 30)
    assert code == 0
    assert_each_line_once(out, names, ids, lines=4)
    assert waits.answered_at_once == 0
    await wait_until(lambda: waits.held == 0)
    assert waits.watcher.watched_files == 0


async def test_more_running_jobs_than_held_polls_are_still_printed_once(
        served, monkeypatch: pytest.MonkeyPatch) -> None:
    scheduler, client, waits = served
    monkeypatch.setattr(waiter, "MAX_LOG_POLLS", 1)
    assert waits.max_held > 1  # the limit is the waiter's own
    names = ["a", "b", "c"]
    jobs = [await scheduler.submit(numbered(name)) for name in names]
    ids = [job.job_id for job in jobs]
    code, out = await asyncio.wait_for(wait_in_thread(client, ids), 30)
    assert code == 0
    assert_each_line_once(out, names, ids, lines=3)


async def test_a_daemon_that_holds_no_log_request_is_asked_at_a_growing_pause(served) -> None:
    """As with a daemon at its cap of held requests (or one without log long polls): the
    waiter backs off (0.25 s, doubling to 5 s) instead of asking again and again."""
    scheduler, client, waits = served
    waits.max_held = 0
    job = await scheduler.submit({"command": "sleep 3; echo done"})
    code, out = await asyncio.wait_for(wait_in_thread(client, [job.job_id]), 30)
    assert (code, out) == (0, "done\n")
    # 3 s at pauses of 0.25, 0.5, 1, 2 s: a handful of asks, not hundreds
    assert 1 <= waits.answered_at_once <= 8, waits.answered_at_once


async def test_a_wait_on_one_running_job_holds_its_log_only(served) -> None:
    """The held log poll answers when the attempt ends: no event poll is needed beside it
    (one connection per waiting make recipe, not two)."""
    scheduler, client, waits = served
    job = await scheduler.submit({"command": "echo started; sleep 2; echo done"})
    waiter = asyncio.create_task(wait_in_thread(client, [job.job_id]))
    await wait_until(lambda: waits.held == 1, timeout=10)
    assert not scheduler._hub._pollers  # no /events long poll held meanwhile
    code, out = await asyncio.wait_for(waiter, 30)
    assert (code, out) == (0, "started\ndone\n")
