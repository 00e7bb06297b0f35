"""Job graphs on a real Scheduler with real processes: dependencies (waiting out of the queue,
released in order, cancelled down the graph with reasons, re-armed by a rerun), refusals
that create nothing, holds, begin times, modify, top and bottom, and the graph view."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from apr_sched import IllegalTransition, InvalidInput, JobStatus, NotFound, Scheduler
from apr_sched import cascade as cascade_module
from apr_sched.job_graph import NODE_LIMIT
from apr_sched.models import Job
from apr_sched.scheduler import DB_NAME
from tests.conftest import host, wait_until
from tests.graph_helpers import make_dag, run_order

needs_root = pytest.mark.skipif(subprocess.run(["id", "-u"], capture_output=True,
                                               text=True).stdout.strip() != "0",
                                reason="chattr +i needs root (CI runs as root)")


FAR_FUTURE = datetime(2999, 1, 1, tzinfo=UTC)


def gate_command(gate: Path, then: str = "true") -> str:
    return f"while [ ! -e {gate} ]; do sleep 0.02; done; {then}"


async def all_events(s: Scheduler) -> list[Any]:
    events: list[Any] = []
    while page := await s.events_since(events[-1].seq if events else 0, limit=10_000):
        events.extend(page)
    return events


async def final(s: Scheduler, jobs: list[Job], timeout: float = 60) -> dict[str, Job]:
    return {job.job_id: await s.wait(job.job_id, timeout) for job in jobs}


def job_count(state_dir: Path) -> tuple[int, int, int]:
    db = sqlite3.connect(f"file:{state_dir / DB_NAME}?mode=ro", uri=True)
    try:
        jobs, events, edges = (db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                               for table in ("jobs", "events", "edges"))
        return jobs, events, edges
    finally:
        db.close()


# dependencies ------------------------------------------------------------------------------
async def test_a_dependent_waits_out_of_the_queue_with_a_reason_then_runs_after(
        make_scheduler, tmp_path):
    s = await make_scheduler()
    gate = tmp_path / "gate"
    first = await s.submit({"command": gate_command(gate)})
    second = await s.submit({"command": "true", "depends_on": {"after_ok": [first.job_id]}})
    await wait_until(lambda: s._jobs[first.job_id].status is JobStatus.RUNNING)
    waiting = await s.get_job(second.job_id)
    assert waiting.status is JobStatus.PENDING
    assert waiting.pending_reason == f"waiting for job {first.job_id} (RUNNING) to succeed"
    assert second.job_id not in s._queue, "a waiting dependent is not in the dispatch queue"
    assert waiting.depends_on is not None and waiting.depends_on.after_ok == [first.job_id]
    gate.touch()
    done = await final(s, [first, second], 10)
    assert done[second.job_id].status is JobStatus.SUCCEEDED
    assert done[first.job_id].finished_at <= done[second.job_id].started_at


async def test_a_1000_job_dag_runs_in_topological_order(make_scheduler):
    s = await make_scheduler(hosts=[host(slots=8)], durability="normal")
    dag = make_dag(1000, seed=11)
    jobs = await s.submit_batch(dag.specs)
    ids = {job.name: job.job_id for job in jobs}
    done = await final(s, jobs, 120)
    assert {job.status for job in done.values()} == {JobStatus.SUCCEEDED}
    started, ended = run_order(await all_events(s))
    early = [(up, down) for up, down, _ in dag.edges if not ended[ids[up]] < started[ids[down]]]
    assert not early, f"{len(early)} of {len(dag.edges)} edges ran out of order: {early[:5]}"
    assert len(dag.edges) > 2000 and len(s._eligibility.dependencies) == 0


async def test_a_failure_cancels_exactly_its_downstream_with_reasons(make_scheduler, tmp_path):
    s = await make_scheduler(hosts=[host(slots=8)], durability="normal")
    dag = make_dag(200, seed=5)
    doomed = "n7"
    for spec in dag.specs:
        if spec["name"] == doomed:
            spec["command"] = "exit 3"
    jobs = await s.submit_batch(dag.specs)
    ids = {job.name: job.job_id for job in jobs}
    names = {job_id: name for name, job_id in ids.items()}
    done = await final(s, jobs, 60)
    expected = dag.downstream([doomed], {"after_ok"})
    assert len(expected) > 10  # the seed gives a real downstream
    cancelled = {names[j.job_id] for j in done.values() if j.status is JobStatus.CANCELLED}
    assert cancelled == expected
    assert {names[j.job_id] for j in done.values()
            if j.status is JobStatus.SUCCEEDED} == set(ids) - expected - {doomed}
    started, _ = run_order(await all_events(s))
    for name in expected:
        job = await s.get_job(ids[name])
        assert ids[name] not in started, "a cancelled job never ran"
        assert job.attempts[-1].reason == job.events[-1].reason
        reason = job.events[-1].reason
        upstream = reason.removeprefix("dependency ").split()[0]
        assert names[upstream] in expected | {doomed}, reason
        assert reason.endswith("FAILED" if names[upstream] == doomed else "CANCELLED")
        assert (upstream, "after_ok") in [(u, "after_ok") for u in job.depends_on.after_ok]


async def test_a_cascade_of_a_1000_job_chain_is_a_few_transactions(make_scheduler):
    s = await make_scheduler(hosts=[])
    head = await s.submit({"command": "true", "allow_pending": True})
    chain = [{"name": "c0", "command": "true", "allow_pending": True,
              "depends_on": {"after_ok": [head.job_id]}}]
    chain += [{"name": f"c{i}", "command": "true", "allow_pending": True,
               "depends_on": {"after_ok": [f"c{i - 1}"]}} for i in range(1, 1000)]
    jobs = await s.submit_batch(chain)
    assert jobs[-1].depends_on.after_ok == [jobs[-2].job_id]
    await wait_until(lambda: len(s._eligibility.dependencies) == 1000  # all arrived,
                     and not s.store._unwritten)  # and the batch's events written
    begins: list[str] = []
    s.store._db.set_trace_callback(
        lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None)
    try:
        await s.stop(head.job_id)
        await wait_until(lambda: not s._cascade)
    finally:
        s.store._db.set_trace_callback(None)
    chunks = -(-1000 // cascade_module.CHUNK)
    assert len(begins) == 1 + chunks, begins  # the stop, then CHUNK cancellations each
    last = await s.get_job(jobs[-1].job_id)
    assert last.status is JobStatus.CANCELLED
    assert last.events[-1].reason == f"dependency {jobs[-2].job_id} CANCELLED"
    assert (await s.get_job(jobs[0].job_id)).events[-1].reason == (
        f"dependency {head.job_id} STOPPED")
    assert s.job_counts()[JobStatus.CANCELLED] == 1000 and not s._jobs


async def test_a_large_batch_s_dependent_waits_even_if_resumed_before_it_arrives(
        make_scheduler, tmp_path):
    s = await make_scheduler()
    gate = tmp_path / "gate"
    upstream = await s.submit({"command": gate_command(gate)})
    filler = {"command": "true", "allow_pending": True,
              "resource_request": {"host_labels": {"x": "never"}}}
    jobs = await s.submit_batch([filler] * 300 + [
        {"command": "true", "hold": True, "depends_on": {"after_ok": [upstream.job_id]}}])
    dependent = jobs[-1].job_id
    await s.resume(dependent)  # before the batch's jobs have arrived (in steps)
    await wait_until(lambda: not s._batches.queueing)
    assert dependent not in s._queue
    assert (await s.get_job(dependent)).pending_reason == (
        f"waiting for job {upstream.job_id} (RUNNING) to succeed")
    gate.touch()
    done = await s.wait(dependent, 10)
    assert done.started_at >= (await s.get_job(upstream.job_id)).finished_at


async def test_stop_cancels_after_ok_dependents_and_releases_after_any(make_scheduler, tmp_path):
    s = await make_scheduler()
    upstream = await s.submit({"command": "sleep 60"})
    ok = await s.submit({"command": "true", "depends_on": {"after_ok": [upstream.job_id]}})
    any_ = await s.submit({"command": "true", "depends_on": {"after_any": [upstream.job_id]}})
    failed = await s.submit({"command": "true",
                             "depends_on": {"after_failed": [upstream.job_id]}})
    await wait_until(lambda: s._jobs[upstream.job_id].pgid)
    await s.stop(upstream.job_id)
    done = await final(s, [ok, any_, failed], 15)
    assert done[ok.job_id].status is JobStatus.CANCELLED
    assert (await s.get_job(ok.job_id)).events[-1].reason == (
        f"dependency {upstream.job_id} STOPPED")
    assert done[any_.job_id].status is JobStatus.SUCCEEDED
    assert done[failed.job_id].status is JobStatus.SUCCEEDED


async def test_a_paused_upstream_holds_its_dependents(make_scheduler, tmp_path):
    s = await make_scheduler()
    gate = tmp_path / "gate"
    upstream = await s.submit({"command": gate_command(gate)})
    dependent = await s.submit({"command": "true",
                                "depends_on": {"after_any": [upstream.job_id]}})
    await wait_until(lambda: s._jobs[upstream.job_id].pgid)
    await s.pause(upstream.job_id)
    gate.touch()
    assert (await s.get_job(dependent.job_id)).pending_reason == (
        f"waiting for job {upstream.job_id} (PAUSED) to end")
    await s.resume(upstream.job_id)
    assert (await s.wait(dependent.job_id, 10)).status is JobStatus.SUCCEEDED


async def test_rerun_with_dependents_re_arms_the_cancelled_part(make_scheduler, tmp_path):
    s = await make_scheduler()
    fixed = tmp_path / "fixed"
    place = await s.submit({"name": "place", "command": f"test -e {fixed} || exit 2"})
    other = await s.submit({"name": "other", "command": "exit 1"})
    jobs = await s.submit_batch([
        {"name": "cts", "command": "true", "depends_on": {"after_ok": [place.job_id]}},
        {"name": "route", "command": "true", "depends_on": {"after_ok": ["cts"]}},
        {"name": "sta", "command": "true", "depends_on": {"after_ok": ["route"]}},
        {"name": "both", "command": "true",
         "depends_on": {"after_ok": ["cts", other.job_id]}},
        {"name": "after_both", "command": "true", "depends_on": {"after_ok": ["both"]}},
    ])
    cts, route, sta, both, after_both = jobs
    done = await final(s, [place, other, *jobs], 15)
    assert [done[j.job_id].status for j in jobs] == [JobStatus.CANCELLED] * 5
    with pytest.raises(IllegalTransition, match=f"dependency {place.job_id} FAILED"):
        await s.rerun(cts.job_id)
    fixed.touch()
    again = await s.rerun(place.job_id, with_dependents=True)
    assert again.status is JobStatus.PENDING and again.attempt == 2
    done = await final(s, [place, cts, route, sta], 15)
    assert all(job.status is JobStatus.SUCCEEDED for job in done.values())
    assert [(e.to_status, e.reason) for e in (await s.get_job(route.job_id)).events][1:3] == [
        (JobStatus.CANCELLED, f"dependency {cts.job_id} CANCELLED"),
        (JobStatus.PENDING, f"re-armed by the rerun of job {place.job_id} (attempt 2)")]
    assert "rerun by request as attempt 2, with 3 cancelled dependents re-armed" in [
        e.reason for e in (await s.get_job(place.job_id)).events]
    for left in (both, after_both):  # its other upstream still FAILED: not re-armed
        job = await s.get_job(left.job_id)
        assert job.status is JobStatus.CANCELLED and job.attempt == 1


async def test_a_met_dependency_stays_met_when_the_upstream_is_rerun(make_scheduler, tmp_path):
    s = await make_scheduler(hosts=[host(slots=1)])
    gate = tmp_path / "gate"
    first = await s.submit({"command": "true"})
    await s.wait(first.job_id, 10)
    blocker = await s.submit({"command": gate_command(gate), "priority": 5})
    await wait_until(lambda: s._jobs[blocker.job_id].status is JobStatus.RUNNING)
    dependent = await s.submit({"command": "true",
                                "depends_on": {"after_ok": [first.job_id]}})
    assert dependent.job_id in s._queue  # released at once: its upstream succeeded
    await s.rerun(first.job_id)
    gate.touch()
    assert (await s.wait(dependent.job_id, 10)).status is JobStatus.SUCCEEDED


async def test_refused_submits_create_nothing_and_name_the_reason(make_scheduler):
    s = await make_scheduler(hosts=[])
    failed = await s.submit({"command": "exit 1", "allow_pending": True})
    await s.stop(failed.job_id)
    before = job_count(s.state_dir)
    spec = {"command": "true", "allow_pending": True}
    cases: list[tuple[Any, str, str]] = [
        ({**spec, "depends_on": {"after_ok": ["99"]}}, "depends_on.after_ok[0]",
         "no job '99' (unknown, or purged)"),
        ({**spec, "depends_on": {"after_ok": [failed.job_id]}}, "depends_on.after_ok[0]",
         f"job {failed.job_id} is STOPPED: after_ok can never hold"),
        ({**spec, "depends_on": {"after_any": ["synth"]}}, "depends_on.after_any[0]",
         "no job 'synth'"),
        ({**spec, "array": "1-10"}, "array", "arrays are not supported yet"),
    ]
    for body, field, words in cases:
        with pytest.raises(InvalidInput, match=words.replace("(", r"\(").replace(")", r"\)")
                           ) as refused:
            await s.submit(body)
        assert refused.value.details[0]["field"] == field
    batches: list[tuple[list[dict[str, Any]], str, str]] = [
        ([{**spec, "name": "a", "depends_on": {"after_ok": ["b"]}},
          {**spec, "name": "b", "depends_on": {"after_ok": ["a"]}}],
         "jobs[0].depends_on", "a cycle: 0 (a) waits for 1 (b) waits for 0 (a)"),
        ([{**spec, "name": "a"}, {**spec, "depends_on": {"after_ok": ["a", "nope"]}}],
         "jobs[1].depends_on.after_ok[1]", "'nope' is no job id and no entry name"),
        ([{**spec, "name": failed.job_id}, {**spec, "depends_on": {"after_ok": [failed.job_id]}}],
         "jobs[1].depends_on.after_ok[0]", "rename the entry"),
        ([{**spec, "name": "x"}, {**spec, "depends_on": {"after_failed": ["x", "9999"]}}],
         "jobs[1].depends_on.after_failed[1]", "'9999' is no job id"),
        ([{**spec, "name": "a", "depends_on": {"after_ok": [failed.job_id]}}],
         "jobs[0].depends_on.after_ok[0]", "after_ok can never hold"),
        ([spec, {**spec, "array": "1-3"}], "jobs[1].array", "arrays are not supported yet"),
    ]
    for batch, field, words in batches:
        for padding in (0, 250):  # a small batch, and one large enough to be staged
            entries = [*batch, *[spec] * padding]
            with pytest.raises(InvalidInput, match=words.replace("(", r"\(").replace(")", r"\)")
                               ) as refused:
                await s.submit_batch(entries)
            assert refused.value.details[0]["field"] == field
    assert job_count(s.state_dir) == before
    assert (await s.list_jobs()).total == 1


async def test_a_purged_upstream_is_unknown_and_one_still_needed_is_kept(make_scheduler):
    s = await make_scheduler(hosts=[])
    old = await s.submit({"command": "true", "allow_pending": True})
    needed = await s.submit({"command": "true", "allow_pending": True})
    await s.stop(old.job_id)
    await s.stop(needed.job_id)
    dependent = await s.submit({"command": "true", "allow_pending": True,
                                "depends_on": {"after_any": [needed.job_id]}})
    await s.pause(dependent.job_id)  # HELD: released, but not running
    report = await s.purge(FAR_FUTURE)
    assert report.jobs_purged == 1
    with pytest.raises(NotFound):
        await s.get_job(old.job_id)
    assert (await s.get_job(needed.job_id)).status is JobStatus.STOPPED
    with pytest.raises(InvalidInput, match=f"no job '{old.job_id}'"):
        await s.submit({"command": "true", "allow_pending": True,
                        "depends_on": {"after_any": [old.job_id]}})
    await s.stop(dependent.job_id)
    await s.purge(FAR_FUTURE)
    assert job_count(s.state_dir)[2] == 0, "edges go with their dependent"


# holds and begin times ---------------------------------------------------------------------
async def test_hold_at_submit_waits_for_resume_even_once_its_dependency_is_met(make_scheduler):
    s = await make_scheduler()
    upstream = await s.submit({"command": "true"})
    held = await s.submit({"command": "true", "hold": True,
                           "depends_on": {"after_ok": [upstream.job_id]}})
    assert held.status is JobStatus.HELD
    assert (await s.get_job(held.job_id)).events[0].to_status is JobStatus.HELD
    await s.wait(upstream.job_id, 10)
    view = await s.get_job(held.job_id)
    assert view.status is JobStatus.HELD and view.pending_reason.startswith("held")
    assert held.job_id not in s._queue
    await s.resume(held.job_id)
    assert (await s.wait(held.job_id, 10)).status is JobStatus.SUCCEEDED
    batch = await s.submit_batch([{"command": "true", "hold": True}] * 201)  # staged
    assert {job.status for job in batch} == {JobStatus.HELD}
    assert s.job_counts()[JobStatus.HELD] == 201
    events = [e for e in await all_events(s)
              if e.kind == "job" and e.job_id == batch[-1].job_id]
    assert [(e.to_status, e.reason) for e in events] == [(JobStatus.HELD, "submitted")]


async def test_begin_at_keeps_a_job_pending_until_then(make_scheduler):
    s = await make_scheduler()
    later = await s.submit({"command": "true", "begin_at": "+0.6s"})
    much_later = await s.submit({"command": "true", "begin_at": "+1h"})
    view = await s.get_job(later.job_id)
    assert view.pending_reason.startswith("begins at ") and view.pending_reason.endswith(
        " (local)")
    assert later.job_id not in s._queue
    done = await s.wait(later.job_id, 10)
    assert done.started_at >= later.begin_at
    assert (await s.get_job(much_later.job_id)).status is JobStatus.PENDING
    moved = await s.modify(much_later.job_id, {"begin_at": None})
    assert moved.begin_at is None
    assert (await s.wait(much_later.job_id, 10)).status is JobStatus.SUCCEEDED
    assert len(s._eligibility.begin) == 0


# modify, top, bottom -----------------------------------------------------------------------
async def test_modify_a_waiting_job_requeues_it_under_its_new_request(make_scheduler, tmp_path):
    s = await make_scheduler(hosts=[host(slots=4, cpu=4)])
    gate = tmp_path / "gate"
    big = await s.submit({"command": gate_command(gate), "resource_request": {"cpu": 4}})
    await wait_until(lambda: s._jobs[big.job_id].status is JobStatus.RUNNING)
    waiting = await s.submit({"command": "true", "resource_request": {"cpu": 2}})
    await wait_until(lambda: "cpu" in ((s._queue.reason(waiting.job_id)) or ""))
    before = (job_count(s.state_dir), s.last_event_seq)
    refusals: list[tuple[dict[str, Any], type[Exception], str]] = [
        ({"resource_request": {"cpu": 64}}, InvalidInput, "resource_request.cpu"),
        ({"command": "rm -rf /"}, InvalidInput, "command cannot be changed"),
        ({"hold": True}, InvalidInput, "pause"),
        ({"priority": "high"}, InvalidInput, "priority"),
        ({"resource_request": {"gpus": 1}}, InvalidInput, "resource_request.gpus"),
        ({"retry_limt": 1}, InvalidInput, "no such field"),
        ({}, InvalidInput, "nothing to change"),
        ({"priority": 0}, InvalidInput, "already has that value"),
    ]
    for changes, error, words in refusals:
        with pytest.raises(error, match=words):
            await s.modify(waiting.job_id, changes)
    assert (job_count(s.state_dir), s.last_event_seq) == before
    changed = await s.modify(waiting.job_id, {"resource_request": {"cpu": 0},
                                              "name": "fits-now", "priority": 3})
    assert changed.name == "fits-now" and changed.resource_request.cpu == 0
    done = await s.wait(waiting.job_id, 10)
    assert done.status is JobStatus.SUCCEEDED and done.started_at is not None
    assert (await s.get_job(big.job_id)).status is JobStatus.RUNNING  # ran beside it
    reasons = [e.reason for e in (await s.get_job(waiting.job_id)).events]
    assert "modified: name none -> 'fits-now', priority 0 -> 3, cpu 2 -> 0" in reasons
    gate.touch()


async def test_modify_a_running_job_only_changes_its_limit_and_priority(make_scheduler):
    s = await make_scheduler()
    job = await s.submit({"command": "sleep 60"})
    await wait_until(lambda: s._jobs[job.job_id].pgid)
    with pytest.raises(IllegalTransition, match="once a job runs only priority and timeout"):
        await s.modify(job.job_id, {"resource_request": {"cpu": 2}})
    await s.modify(job.job_id, {"priority": 7})
    await s.pause(job.job_id)
    await s.modify(job.job_id, {"timeout_sec": 0.5})  # armed on resume, paused time excluded
    assert (await s.get_job(job.job_id)).status is JobStatus.PAUSED
    await s.resume(job.job_id)
    done = await s.wait(job.job_id, 15)
    assert done.status is JobStatus.TIMEOUT and done.priority == 7
    assert "modified: timeout_sec none -> 0.5" in [
        e.reason for e in (await s.get_job(job.job_id)).events]
    with pytest.raises(IllegalTransition, match="cannot modify"):
        await s.modify(job.job_id, {"priority": 1})


async def test_top_and_bottom_move_a_job_within_its_priority(make_scheduler, tmp_path):
    s = await make_scheduler(hosts=[host(slots=1)])
    gate, order = tmp_path / "gate", tmp_path / "order"
    blocker = await s.submit({"command": gate_command(gate)})
    await wait_until(lambda: s._jobs[blocker.job_id].status is JobStatus.RUNNING)
    names = ["a", "b", "c", "d"]
    jobs = {name: await s.submit({"name": name, "command": f"echo {name} >> {order}",
                                  "priority": 1 if name == "d" else 0}) for name in names}
    await s.top(jobs["c"].job_id)
    await s.bottom(jobs["a"].job_id)
    with pytest.raises(IllegalTransition, match="cannot top"):
        await s.top(blocker.job_id)
    gate.touch()
    await final(s, list(jobs.values()), 15)
    assert order.read_text().split() == ["d", "c", "b", "a"]
    assert "moved to the front of priority 0 by request" in [
        e.reason for e in (await s.get_job(jobs["c"].job_id)).events]


# the graph ---------------------------------------------------------------------------------
async def test_graph_shows_upstream_and_downstream_with_states(make_scheduler):
    s = await make_scheduler(hosts=[])
    spec = {"command": "true", "allow_pending": True}
    jobs = await s.submit_batch([
        {**spec, "name": "synth"},
        {**spec, "name": "place", "depends_on": {"after_ok": ["synth"]}},
        {**spec, "name": "route", "depends_on": {"after_ok": ["place"]}},
        {**spec, "name": "drc", "depends_on": {"after_any": ["route"]}},
    ])
    synth, place, route, drc = (job.job_id for job in jobs)
    graph = await s.graph(place, depth=1)
    assert [(n.job_id, n.depth, n.status) for n in graph.nodes] == [
        (synth, -1, JobStatus.PENDING), (place, 0, JobStatus.PENDING),
        (route, 1, JobStatus.PENDING)]
    assert graph.nodes[1].pending_reason == f"waiting for job {synth} (PENDING) to succeed"
    assert [(e.upstream, e.job_id, e.condition, e.state) for e in graph.edges] == [
        (synth, place, "after_ok", "waiting"), (place, route, "after_ok", "waiting")]
    await s.stop(synth)
    whole = await s.graph(drc, depth=5)
    assert [n.job_id for n in whole.nodes] == [synth, place, route, drc]
    assert {n.job_id: n.status for n in whole.nodes}[route] is JobStatus.CANCELLED
    assert [e.state for e in whole.edges] == ["met", "never", "never"]
    hub = await s.submit({**spec, "name": "hub"})
    await s.submit_batch([{**spec, "depends_on": {"after_any": [hub.job_id]}}] * 600)
    wide = await s.graph(hub.job_id, depth=1)
    assert wide.truncated and len(wide.nodes) == wide.node_limit == NODE_LIMIT
    with pytest.raises(InvalidInput, match="depth"):
        await s.graph(hub.job_id, depth=1000)


# faults and restarts -----------------------------------------------------------------------
async def test_dependencies_are_decided_at_restart_from_the_upstreams(make_scheduler,
                                                                      tmp_path):
    s1 = await make_scheduler()
    gates = [tmp_path / "ok", tmp_path / "bad"]
    ok = await s1.submit({"command": gate_command(gates[0])})
    bad = await s1.submit({"command": gate_command(gates[1], "exit 4")})
    released = await s1.submit({"command": "true", "depends_on": {"after_ok": [ok.job_id]}})
    doomed = await s1.submit({"command": "true", "depends_on": {"after_ok": [bad.job_id]}})
    below = await s1.submit({"command": "true", "depends_on": {"after_ok": [doomed.job_id]}})
    held = await s1.submit({"command": "true", "hold": True,
                            "depends_on": {"after_ok": [ok.job_id]}})
    later = await s1.submit({"command": "true", "begin_at": "+1h"})
    await wait_until(lambda: all(s1._jobs[j.job_id].pgid for j in (ok, bad)))
    await s1.close()  # the jobs keep running; both upstreams end while it is down
    for gate in gates:
        gate.touch()
    s2 = await make_scheduler()
    done = await final(s2, [released, doomed, below], 15)
    assert done[released.job_id].status is JobStatus.SUCCEEDED
    assert done[doomed.job_id].status is JobStatus.CANCELLED
    assert (await s2.get_job(below.job_id)).events[-1].reason == (
        f"dependency {doomed.job_id} CANCELLED")
    assert (await s2.get_job(held.job_id)).status is JobStatus.HELD
    assert (await s2.get_job(later.job_id)).pending_reason.startswith("begins at")


@needs_root
async def test_a_refused_write_mid_cascade_loses_no_dependent(make_scheduler, monkeypatch):
    monkeypatch.setattr(cascade_module, "CHUNK", 10)
    s = await make_scheduler(hosts=[])
    head = await s.submit({"command": "true", "allow_pending": True})
    chain = [{"name": "c0", "command": "true", "allow_pending": True,
              "depends_on": {"after_ok": [head.job_id]}}]
    chain += [{"name": f"c{i}", "command": "true", "allow_pending": True,
               "depends_on": {"after_ok": [f"c{i - 1}"]}} for i in range(1, 30)]
    jobs = await s.submit_batch(chain)
    files = [s.state_dir / DB_NAME, s.state_dir / f"{DB_NAME}-wal"]
    await s.stop(head.job_id)  # the first 10 are cancelled; the rest on later loop turns
    subprocess.run(["chattr", "+i", *map(str, files)], check=True)
    try:
        await asyncio.sleep(0.05)
        statuses = [s._table.get(job.job_id).status for job in jobs]
        assert statuses == [JobStatus.CANCELLED] * 10 + [JobStatus.PENDING] * 20
        assert not any(job.job_id in s._queue for job in jobs)
        assert (await s.get_job(jobs[10].job_id)).pending_reason == (
            f"being cancelled: dependency {jobs[9].job_id} CANCELLED")
    finally:
        subprocess.run(["chattr", "-i", *map(str, files)], check=True)
    await wait_until(lambda: s.job_counts()[JobStatus.CANCELLED] == 30, timeout=20)
    assert (await s.get_job(jobs[-1].job_id)).events[-1].reason == (
        f"dependency {jobs[-2].job_id} CANCELLED")


async def test_a_version_4_database_gets_its_edges_from_the_specs(state_dir):
    async with Scheduler(state_dir, hosts=[]) as s:
        first = await s.submit({"command": "true", "allow_pending": True})
        second = await s.submit({"command": "true", "allow_pending": True,
                                 "depends_on": {"after_any": [first.job_id]}})
    db = sqlite3.connect(state_dir / DB_NAME)
    db.execute("DROP TABLE edges")
    db.execute("UPDATE meta SET value='4' WHERE key='schema_version'")
    db.commit()
    db.close()
    async with Scheduler(state_dir, hosts=[]) as s:
        assert s.store.dependents(first.job_id) == [(second.job_id, "after_any")]
        assert (await s.get_job(second.job_id)).pending_reason == (
            f"waiting for job {first.job_id} (PENDING) to end")
