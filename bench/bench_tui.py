"""Benchmark the TUI headless (``App.run_test``) on 10,000 jobs of a real scheduler.

Measured, one JSON line each:
- ``show_10k``: from starting the app until 10,000 jobs are in the jobs table and painted
  (the scheduler already holds them: a 10,000-job batch, pending on a label no host has);
- ``apply_1000``: 1,000 state changes (PENDING -> HELD, real ``Scheduler.pause`` calls,
  real events) until the table shows all of them and has painted; ``ui_lag`` is the part
  after the scheduler's last change;
- ``key_latency``: while a background task changes 50 jobs a second (pause/resume, on
  visible rows too), a cursor key is sent every ~100 ms; latency is from sending the key to
  the first screen update that shows the cursor on the new row (p50, p95, max).
Floor, in the same run: a bare Textual ``DataTable`` with the same 10,000 rows of the same
10 columns (``add_rows``), and the same key-latency load applied with ``update_cell``
inside ``batch_update``, coalesced every 50 ms, the DataTable way.

"Painted" means the compositor has rendered the update (``App._display`` is called); the
headless driver then discards it, so terminal output time is not included.

Targets: a key press shows within 100 ms (p95) at 10,000 jobs and 50 changes/s.
Run: ``.venv/bin/python bench/bench_tui.py [--jobs 10000] [--keys 60] [--size 250x60]
[--hosts 500] [--no-floor]``. Takes < 60 s on an idle 2-core machine.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from _common import emit, percentile
from textual import events
from textual.app import App, ComposeResult
from textual.widgets import DataTable

from apr_sched import HostSpec, JobStatus, Scheduler
from apr_tui.app import AprTui, make_app
from apr_tui.backend import InProcessBackend
from apr_tui.columns import JOB_COLUMNS
from apr_tui.rows import status_label

BENCH = "tui"
SIZE = (160, 48)
"""Terminal size; ``--size 250x60`` changes it (main_async sets it before anything runs)."""
CHANGES_PER_SEC = 50


class Painted:
    """Timestamps of screen updates, with a probe of what the screen showed."""

    def __init__(self, app: App[Any], probe: Callable[[], Any]) -> None:
        self.frames: list[tuple[float, Any]] = []
        original = app._display

        def display(screen: Any, renderable: Any) -> None:
            if renderable is not None:
                self.frames.append((time.perf_counter(), probe()))
            original(screen, renderable)

        app._display = display  # type: ignore[method-assign]

    async def until(self, predicate: Callable[[Any], bool], since: float,
                    timeout: float = 30.0) -> float:
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            for at, seen in self.frames:
                if at >= since and predicate(seen):
                    return at
            await asyncio.sleep(0.001)
        raise TimeoutError("the screen never showed it")


async def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.perf_counter() + timeout
    while not predicate():
        if time.perf_counter() > deadline:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.002)


async def key_latencies(app: App[Any], painted: Painted, cursor: Callable[[], int],
                        keys: int) -> list[float]:
    """Send ``down`` ``keys`` times; time each until a frame shows the cursor moved."""
    driver = app._driver
    assert driver is not None
    rng = random.Random(7)
    latencies = []
    for _ in range(keys):
        want = cursor() + 1
        sent = time.perf_counter()
        driver.send_message(events.Key("down", None))
        shown = await painted.until(lambda row, want=want: row == want, sent)
        latencies.append(shown - sent)
        await asyncio.sleep(0.07 + rng.random() * 0.06)
    return latencies


async def changing(step: Callable[[int], Awaitable[None]], stop: asyncio.Event) -> int:
    """Call ``step`` CHANGES_PER_SEC times a second until ``stop``; returns the count."""
    count = 0
    start = time.perf_counter()
    while not stop.is_set():
        await step(count)
        count += 1
        delay = start + count / CHANGES_PER_SEC - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
    return count


def report_latency(name: str, latencies: list[float], changes: int, seconds: float) -> None:
    emit(BENCH, f"{name}/key_latency_ms", percentile(latencies, 0.5) * 1000,
         p95_ms=percentile(latencies, 0.95) * 1000, max_ms=max(latencies) * 1000,
         keys=len(latencies), changes_per_sec=changes / seconds)


# ours ------------------------------------------------------------------------------------
async def bench_ours(jobs: int, keys: int, hosts: int = 1) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        specs_of_hosts = [HostSpec(host_id=f"pnr-{i + 1:03d}", total_slots=8, total_cpu=64,
                                   total_memory_gb=512) for i in range(hosts)]
        scheduler = Scheduler(Path(tmp) / "state", hosts=specs_of_hosts)
        await scheduler.start()
        try:
            specs = [{"command": "true", "name": f"block_{i:05d}_route", "project": "P1",
                      "resource_request": {"host_labels": {"tool": "none"}},
                      "allow_pending": True}  # no host has the label: they stay pending
                     for i in range(jobs)]
            ids = [job.job_id for job in await scheduler.submit_batch(specs)]
            await measure_ours(scheduler, ids, keys)
        finally:
            await scheduler.close()


async def measure_ours(scheduler: Scheduler, ids: list[str], keys: int) -> None:
    app: AprTui = make_app(InProcessBackend(scheduler))
    start = time.perf_counter()
    async with app.run_test(size=SIZE) as pilot:
        table = app.main.jobs
        painted = Painted(app, lambda: (table.row_count, table.cursor_row))
        await wait_for(lambda: table.row_count == len(ids))
        shown = await painted.until(lambda seen: seen[0] == len(ids), start)
        emit(BENCH, "ours/show_10k_s", shown - start, jobs=len(ids))

        changed = ids[: 1000]
        t0 = time.perf_counter()
        for job_id in changed:
            await scheduler.pause(job_id)
        t1 = time.perf_counter()
        held = status_label(JobStatus.HELD)
        await wait_for(lambda: all(table.cell_text(k, "status") == held
                                   for k in changed))
        t2 = await painted.until(lambda seen: True, time.perf_counter())
        emit(BENCH, "ours/apply_1000_s", t2 - t0, ui_lag_s=t2 - t1, scheduler_s=t1 - t0)
        await pilot.pause()

        rng = random.Random(1)
        visible = ids[:60]
        held = set(changed)

        async def step(n: int) -> None:
            job_id = rng.choice(visible if n % 2 else ids)
            if job_id in held:
                await scheduler.resume(job_id)
                held.discard(job_id)
            else:
                await scheduler.pause(job_id)
                held.add(job_id)

        painted.frames.clear()
        stop = asyncio.Event()
        began = time.perf_counter()
        load = asyncio.create_task(changing(step, stop))
        table.move_cursor_to(0)
        latencies = await key_latencies(
            app, Painted(app, lambda: table.cursor_row), lambda: table.cursor_row, keys)
        stop.set()
        report_latency("ours", latencies, await load, time.perf_counter() - began)


# floor: a bare DataTable ------------------------------------------------------------------
class BareTable(App[None]):
    def compose(self) -> ComposeResult:
        yield DataTable(cursor_type="row")


async def bench_floor(jobs: int, keys: int) -> None:
    app = BareTable()
    rows = [(str(i), f"block_{i:05d}_route", "P1", "cad", "0", "PENDING", "-", "1",
             "w 1m02s", "no host has label tool=none") for i in range(1, jobs + 1)]
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(DataTable)
        for column in JOB_COLUMNS:
            table.add_column(column.label, key=column.key)
        painted = Painted(app, lambda: (table.row_count, table.cursor_row))
        start = time.perf_counter()
        keys_added = table.add_rows(rows)
        await pilot.pause()
        shown = await painted.until(lambda seen: seen[0] == jobs, start)
        emit(BENCH, "floor/show_10k_s", shown - start, jobs=jobs,
             what="DataTable.add_rows + first paint")

        t0 = time.perf_counter()
        with app.batch_update():
            for key in keys_added[:1000]:
                table.update_cell(key, "status", "HELD")
        t2 = await painted.until(lambda seen: True, time.perf_counter())
        emit(BENCH, "floor/apply_1000_s", t2 - t0, what="1,000 update_cell in one batch")
        await pilot.pause()

        rng = random.Random(1)
        pending: list[Any] = []

        async def step(n: int) -> None:
            key = rng.choice(keys_added[:60] if n % 2 else keys_added)
            pending.append((key, rng.choice(["HELD", "PENDING"])))

        def flush() -> None:
            if pending:
                with app.batch_update():
                    for key, value in pending:
                        table.update_cell(key, "status", value)
                pending.clear()

        app.set_interval(0.05, flush)
        stop = asyncio.Event()
        began = time.perf_counter()
        load = asyncio.create_task(changing(step, stop))
        table.move_cursor(row=0)
        table.focus()
        latencies = await key_latencies(
            app, Painted(app, lambda: table.cursor_row), lambda: table.cursor_row, keys)
        stop.set()
        report_latency("floor", latencies, await load, time.perf_counter() - began)


async def main_async(args: argparse.Namespace) -> None:
    global SIZE
    width, _, height = args.size.partition("x")
    SIZE = (int(width), int(height))
    emit(BENCH, "setup", args.jobs, size=f"{SIZE[0]}x{SIZE[1]}", hosts=args.hosts,
         changes_per_sec=CHANGES_PER_SEC)
    if not args.no_floor:
        await bench_floor(args.jobs, args.keys)
    await bench_ours(args.jobs, args.keys, args.hosts)


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--keys", type=int, default=60, help="key presses timed per table")
    parser.add_argument("--size", default="160x48", help="terminal WIDTHxHEIGHT")
    parser.add_argument("--hosts", type=int, default=1, help="hosts in the hosts pane")
    parser.add_argument("--no-floor", action="store_true",
                        help="skip the bare DataTable floor (half the run time)")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
