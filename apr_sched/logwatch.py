"""Knowing that a log file grew without reading it again: Linux inotify, via ctypes on libc.

The daemon holds a follower's ``GET /jobs/{id}/logs?offset=N&wait=S`` until the job writes
(see ``http/logwait.py``). Jobs write their logs themselves, and SSH hosts' logs are mirrored
into the same local spool by the daemon, so every write is a write to a local file, which
inotify reports (``IN_MODIFY``) to one descriptor read from the asyncio loop
(``add_reader``): nothing runs while nobody writes.

A file is watched only while someone waits on it: the first ``watch(path)`` adds the kernel
watch, the last one to close removes it; two paths of one file share one watch. Where inotify
cannot be had (not Linux, ``fs.inotify.max_user_instances`` or ``max_user_watches`` reached,
a file that does not exist yet) ``watch`` still returns a ``FileWatch``, with ``active``
False, and the caller falls back to re-reading at a bounded pace.

    watcher = LogWatcher()
    with watcher.watch(path) as change:     # watch first, then read: no write is missed
        data = read(path)
        if not data:
            await asyncio.wait_for(change.changed.wait(), 30)
"""

from __future__ import annotations

import asyncio
import ctypes
import errno
import functools
import logging
import os
import struct
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["FileWatch", "LogWatcher"]

log = logging.getLogger("apr_sched.logwatch")

IN_MODIFY = 0x0000_0002
IN_CLOSE_WRITE = 0x0000_0008
IN_MOVE_SELF = 0x0000_0800
IN_DELETE_SELF = 0x0000_0400
IN_Q_OVERFLOW = 0x0000_4000
IN_IGNORED = 0x0000_8000
IN_NONBLOCK = os.O_NONBLOCK
IN_CLOEXEC = os.O_CLOEXEC
WATCH_MASK = IN_MODIFY | IN_CLOSE_WRITE | IN_MOVE_SELF | IN_DELETE_SELF
"""Written to, closed after writing, or gone (purged, replaced): each worth a re-read."""

_EVENT = struct.Struct("iIII")
"""struct inotify_event without its name: wd, mask, cookie, len."""
_READ_BYTES = 64 * 1024


@functools.cache
def _libc() -> Any:
    """libc's inotify calls, or None where there are none (not Linux)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        init, add, rm = libc.inotify_init1, libc.inotify_add_watch, libc.inotify_rm_watch
    except (OSError, AttributeError):
        return None
    init.argtypes, init.restype = [ctypes.c_int], ctypes.c_int
    add.argtypes, add.restype = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32], ctypes.c_int
    rm.argtypes, rm.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return libc


class FileWatch:
    """One waiter's interest in one file: ``changed`` is set when the file is written to
    (or removed). ``active`` is False when inotify could not watch it: nothing will set
    ``changed`` then, so re-read on a timer instead. Close it (or use ``with``)."""

    __slots__ = ("_watcher", "_wd", "active", "changed")

    def __init__(self, watcher: LogWatcher, wd: int | None) -> None:
        self.changed = asyncio.Event()
        self.active = wd is not None
        self._watcher = watcher
        self._wd = wd

    def close(self) -> None:
        wd, self._wd = self._wd, None
        if wd is not None:
            self._watcher._release(wd, self)

    def __enter__(self) -> FileWatch:
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class LogWatcher:
    """One inotify descriptor on the running loop, opened on first use; kernel watches
    only for the files someone waits on. ``unavailable`` says why there is no inotify
    (then every watch is inactive)."""

    def __init__(self) -> None:
        self._fd: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._waiters: dict[int, set[FileWatch]] = {}
        self.unavailable: str | None = None
        self.events_read = 0
        """inotify events handled (for tests and debugging)."""
        self.failed_watches = 0
        """``watch`` calls that fell back to an inactive watch."""

    @property
    def fd(self) -> int | None:
        """The inotify descriptor (its ``/proc/self/fdinfo`` lists the kernel watches)."""
        return self._fd

    @property
    def watched_files(self) -> int:
        """Kernel watches held now: one per file that has waiters."""
        return len(self._waiters)

    @property
    def waiters(self) -> int:
        return sum(len(group) for group in self._waiters.values())

    def _open(self) -> int | None:
        if self._fd is not None or self.unavailable is not None:
            return self._fd
        libc = _libc()
        if libc is None:
            self.unavailable = "inotify is not available on this system"
            return None
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            err = ctypes.get_errno()
            self.unavailable = f"inotify_init1: {os.strerror(err)}"
            log.warning("log followers fall back to re-reading: %s", self.unavailable)
            return None
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(fd, self._on_readable)
        self._fd = int(fd)
        return self._fd

    def watch(self, path: Path) -> FileWatch:
        """Start watching ``path`` for this waiter (inactive if it cannot be watched)."""
        fd = self._open()
        if fd is None:
            self.failed_watches += 1
            return FileWatch(self, None)
        wd = _libc().inotify_add_watch(fd, os.fsencode(path), WATCH_MASK)
        if wd < 0:
            err = ctypes.get_errno()
            self.failed_watches += 1
            if err == errno.ENOSPC:
                log.warning("cannot watch %s: the inotify watch limit is reached "
                            "(fs.inotify.max_user_watches); its followers re-read instead",
                            path)
            return FileWatch(self, None)
        watch = FileWatch(self, wd)
        self._waiters.setdefault(wd, set()).add(watch)
        return watch

    def _release(self, wd: int, watch: FileWatch) -> None:
        group = self._waiters.get(wd)
        if group is None:
            return  # the kernel dropped the watch already (the file went)
        group.discard(watch)
        if not group:
            del self._waiters[wd]
            if self._fd is not None:
                _libc().inotify_rm_watch(self._fd, wd)  # EINVAL if already gone: fine

    def _on_readable(self) -> None:
        fd = self._fd
        if fd is None:
            return
        while True:
            try:
                data = os.read(fd, _READ_BYTES)
            except BlockingIOError:
                return
            except OSError as exc:
                log.warning("reading inotify events failed: %s", exc)
                return
            if not data:
                return
            self._dispatch(data)

    def _dispatch(self, data: bytes) -> None:
        pos = 0
        while pos + _EVENT.size <= len(data):
            wd, mask, _cookie, length = _EVENT.unpack_from(data, pos)
            pos += _EVENT.size + length
            self.events_read += 1
            if mask & IN_Q_OVERFLOW:  # events were lost: everyone reads again
                for group in self._waiters.values():
                    for watch in group:
                        watch.changed.set()
                continue
            for watch in self._waiters.get(wd, ()):
                watch.changed.set()
            if mask & IN_IGNORED:  # the kernel removed the watch (file deleted)
                for watch in self._waiters.pop(wd, ()):
                    watch._wd = None

    def close(self) -> None:
        """Drop every watch and the descriptor (the daemon is shutting down)."""
        fd, self._fd = self._fd, None
        for group in self._waiters.values():
            for watch in group:
                watch._wd = None
                watch.changed.set()
        self._waiters.clear()
        if fd is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(fd)
            os.close(fd)
