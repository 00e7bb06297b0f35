"""Shared test helpers: bounded waits on conditions (never bare sleeps) and scheduler setup."""

from __future__ import annotations

import asyncio
import inspect
import os
import selectors
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import pytest

from apr_sched import HostSpec, Scheduler


async def wait_until(predicate: Callable[[], Any], timeout: float = 10.0,
                     interval: float = 0.01, message: str = "") -> Any:
    """Poll ``predicate`` (sync or async) until truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if inspect.isawaitable(value):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s {message}".strip())
        await asyncio.sleep(interval)


def wait_until_sync(predicate: Callable[[], Any], timeout: float = 10.0,
                    interval: float = 0.01, message: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s {message}".strip())
        time.sleep(interval)


def read_line(stream: IO[Any], timeout: float = 10.0) -> str:
    """One line from a child's pipe, or fail after ``timeout`` seconds (a bare readline()
    would hang the suite if the child never writes it).

    Reads the file descriptor a byte at a time, so nothing past the newline is taken from
    the stream: ``communicate()`` afterwards still sees all the rest.
    """
    fd = stream.fileno()
    deadline = time.monotonic() + timeout
    data = bytearray()
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not data.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(left):
                raise AssertionError(f"no whole line within {timeout}s (got {bytes(data)!r})")
            byte = os.read(fd, 1)
            if not byte:
                break  # end of file: the child closed its output
            data += byte
    return data.decode()


def host(host_id: str = "h1", slots: int = 4, cpu: int = 8, memory: float = 16.0,
         **labels: str) -> HostSpec:
    return HostSpec(host_id=host_id, total_slots=slots, total_cpu=cpu, total_memory_gb=memory,
                    labels=labels)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
async def make_scheduler(state_dir: Path) -> AsyncIterator[Callable[..., Awaitable[Scheduler]]]:
    """Start schedulers on ``state_dir`` (default: one 4-slot host ``h1``); stop their jobs
    and close them at the end of the test."""
    started: list[Scheduler] = []

    async def make(hosts: list[HostSpec] | None = None, **options: Any) -> Scheduler:
        options.setdefault("stop_grace_sec", 2.0)
        scheduler = Scheduler(options.pop("state_dir", state_dir),
                              hosts=[host()] if hosts is None else hosts, **options)
        await scheduler.start()
        started.append(scheduler)
        return scheduler

    yield make
    for scheduler in started:
        await scheduler.close(stop_jobs=True)


def proc_state(pid: int) -> str | None:
    """The one-letter state of a process (R, S, T, Z...), or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[0]


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry.name))
    return members


from tests.sshd import ssh_hosts  # noqa: E402, F401  (fixture: real sshd test hosts)
