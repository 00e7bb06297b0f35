"""LogWatcher: real inotify on real files, read from the running loop."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from apr_sched.logwatch import LogWatcher
from tests.conftest import wait_until


def kernel_watches(watcher: LogWatcher) -> int:
    """The inotify watches the kernel holds for the watcher's descriptor."""
    if watcher.fd is None:
        return 0
    info = Path(f"/proc/self/fdinfo/{watcher.fd}").read_text()
    return sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)


async def test_a_write_wakes_the_waiter_of_that_file_only(tmp_path: Path) -> None:
    one, other = tmp_path / "1.log", tmp_path / "2.log"
    one.touch()
    other.touch()
    watcher = LogWatcher()
    try:
        with watcher.watch(one) as a, watcher.watch(other) as b:
            assert a.active and b.active
            append(one, b"line\n")
            await asyncio.wait_for(a.changed.wait(), 5)
            await asyncio.sleep(0)  # the reader callback has run: b was not woken
            assert not b.changed.is_set()
    finally:
        watcher.close()


async def test_waiters_of_one_file_share_one_kernel_watch_released_by_the_last(
        tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    log.touch()
    watcher = LogWatcher()
    try:
        first = watcher.watch(log)
        second = watcher.watch(tmp_path / "." / "1.log")  # another name, the same file
        assert watcher.watched_files == 1 and watcher.waiters == 2
        assert kernel_watches(watcher) == 1
        append(log, b"x\n")
        await asyncio.wait_for(asyncio.gather(first.changed.wait(), second.changed.wait()), 5)
        first.close()
        assert kernel_watches(watcher) == 1 and watcher.waiters == 1
        second.close()
        second.close()  # twice is harmless
        assert watcher.watched_files == 0 and watcher.waiters == 0
        assert kernel_watches(watcher) == 0
    finally:
        watcher.close()
    assert watcher.fd is None


async def test_a_file_that_is_not_there_gets_an_inactive_watch(tmp_path: Path) -> None:
    watcher = LogWatcher()
    try:
        change = watcher.watch(tmp_path / "missing.log")
        assert not change.active and watcher.failed_watches == 1
        change.close()
        assert watcher.watched_files == 0
    finally:
        watcher.close()


async def test_a_deleted_file_wakes_its_waiters_and_drops_the_watch(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    log.touch()
    watcher = LogWatcher()
    try:
        change = watcher.watch(log)
        os.unlink(log)
        await asyncio.wait_for(change.changed.wait(), 5)
        # IN_IGNORED follows IN_DELETE_SELF in the same queue
        await wait_until(lambda: watcher.watched_files == 0, timeout=5)
        assert kernel_watches(watcher) == 0
        change.close()  # after the kernel dropped it: nothing left to remove
    finally:
        watcher.close()


async def test_without_inotify_every_watch_is_inactive(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    log.touch()
    watcher = LogWatcher()
    watcher.unavailable = "inotify_init1: Too many open files"  # as a refused init leaves it
    change = watcher.watch(log)
    assert not change.active and watcher.fd is None
    change.close()
    watcher.close()
