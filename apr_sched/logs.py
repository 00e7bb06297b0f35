"""Per-job, per-attempt files in the state dir, and reading them cheaply while jobs run.

Layout, one directory per job and one set of files per attempt, so a rerun never
overwrites the output of an earlier attempt::

    <state_dir>/logs/<job_id>/<attempt>.log   stdout and stderr of the command
    <state_dir>/logs/<job_id>/<attempt>.rc    "<exit code>\\n", written by the wrapper at the end

Because the wrapper, not the scheduler, writes ``.rc``, a restarted scheduler learns how a
job ended while it was down. (No pid file: the pgid is in the database, and the wrapper's
command line names its rc file, so it can be found in /proc even if that write was lost.)
Every file created per job costs real time on a slow disk or NFS, so there are only two.

Logs of APR runs reach gigabytes, so nothing here reads a whole file: ``tail_lines`` reads
fixed-size blocks backwards from the end, ``read_from`` reads only what was appended.

A job's output may hold secrets, so the ``logs`` tree is owner-only whatever the umask:
``prepare_attempt`` makes (or tightens) ``logs`` and ``logs/<job_id>`` to 0700 and
``open_log`` creates the log 0600.

A log may have a size limit (``limit_log``). The job keeps writing straight to its file (no
daemon pipe: jobs outlive the daemon), and the limit is applied to the file in place: the
head stays, a notice line follows it, the middle becomes a hole (``fallocate`` punch: its
disk space is released, every byte offset stays valid, so followers and the SSH log resume
are unaffected) and the tail stays. The readers here skip that hole.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from apr_sched.states import is_valid_id

__all__ = [
    "BLOCK_SIZE",
    "LOG_LIMIT_NOTICE",
    "TAIL_MAX_BYTES",
    "AttemptFiles",
    "LogTrim",
    "attempt_files",
    "dropped_range",
    "limit_log",
    "open_log",
    "prepare_attempt",
    "read_from",
    "read_lines_from",
    "read_rc",
    "tail_lines",
    "tail_with_offset",
]

BLOCK_SIZE = 64 * 1024
"""Bytes read per step when walking a file backwards."""

TAIL_MAX_BYTES = 64 * 1024 * 1024
"""How far back ``tail_lines`` reads at most; only a file of giant lines gets near it."""

_HOLE_RETRIES = 4
"""Reads done again when a trim (``limit_log``) dropped what they were reading: those
bytes read back as zeros, so the read is repeated with the new hole skipped."""

_RC_RE = re.compile(rb"(-?[0-9]{1,10})\n")


@dataclass(frozen=True, slots=True)
class AttemptFiles:
    """Where one attempt of one job keeps its output and exit code."""

    dir: Path
    log: Path
    rc: Path


def attempt_files(state_dir: Path, job_id: str, attempt: int) -> AttemptFiles:
    """The files of ``job_id``'s attempt ``attempt``; nothing is created.

    The id is checked before it touches a path, so ``../../etc`` can never name a file.
    """
    if not isinstance(job_id, str) or not is_valid_id(job_id):
        raise ValueError(f"invalid job id {job_id!r}")
    if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
        raise ValueError(f"invalid attempt {attempt!r}: must be an integer >= 1")
    job_dir = Path(state_dir) / "logs" / job_id
    return AttemptFiles(
        dir=job_dir,
        log=job_dir / f"{attempt}.log",
        rc=job_dir / f"{attempt}.rc",
    )


PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600


def _private_dir(path: Path) -> None:
    """``path`` exists as a directory only its owner can enter; an existing one of ours is
    tightened (mkdir's mode is filtered by the umask, so it is set again explicitly)."""
    with contextlib.suppress(FileExistsError):
        path.mkdir(mode=PRIVATE_DIR_MODE)
    st = path.stat()
    if st.st_mode & 0o777 != PRIVATE_DIR_MODE and st.st_uid == os.geteuid():
        os.chmod(path, PRIVATE_DIR_MODE)


def prepare_attempt(files: AttemptFiles) -> None:
    """Create the attempt's directory (and ``logs`` above it) owner-only, before anything
    is written there."""
    files.dir.parent.parent.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _private_dir(files.dir.parent)
    _private_dir(files.dir)


def open_log(files: AttemptFiles) -> int:
    """An append-only descriptor on the attempt's log, created 0600 whatever the umask
    (an existing log of ours is tightened too). The caller closes it."""
    prepare_attempt(files)
    fd = os.open(files.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC,
                 PRIVATE_FILE_MODE)
    try:
        st = os.fstat(fd)
        if st.st_mode & 0o777 != PRIVATE_FILE_MODE and st.st_uid == os.geteuid():
            os.fchmod(fd, PRIVATE_FILE_MODE)
    except OSError:
        os.close(fd)
        raise
    return fd


def tail_lines(path: Path, n: int, *, max_bytes: int = TAIL_MAX_BYTES,
               end: int | None = None) -> list[str]:
    """The last ``n`` lines of ``path``, read backwards in blocks: cheap on a 1 GB log.

    A line is what lies between two ``b"\\n"``; the newline is dropped, a final line without
    one still counts, and a ``"\\r"`` before the newline is kept (the bytes are reported as
    they are, as ``tail -n`` does). Each line is decoded as UTF-8 on its own, so a broken
    byte spoils one character of one line, never the split.

    At most ``max_bytes`` are read: if the ``n`` lines are longer than that (a job that
    writes progress with ``"\\r"`` only), the oldest line returned is cut at its start.
    A missing file, or ``n <= 0``, gives ``[]``. With ``end``, bytes from there on are
    ignored (the file as it was at that size).
    """
    if n <= 0:
        return []
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below; avoids an extra indent level
    except FileNotFoundError:
        return []
    with f:
        size = f.seek(0, os.SEEK_END)
        end = size if end is None else min(end, size)
        if end <= 0:
            return []
        f.seek(end - 1)
        trailing_newline = f.read(1) == b"\n"
        # Separators needed before the oldest wanted line; the file's final newline
        # ends the last line and separates nothing.
        wanted = n + 1 if trailing_newline else n
        for _ in range(_HOLE_RETRIES):
            spans = _kept_spans(f.fileno(), end)
            blocks = _blocks_backwards(f, spans, wanted, max_bytes)
            if _kept_spans(f.fileno(), end) == spans:
                break  # no trim dropped part of what was read meanwhile
    data = b"".join(reversed(blocks))
    if trailing_newline:
        data = data[:-1]
    # With enough separators found, lines[-n:] leaves out the first, partial piece;
    # without (start of file or max_bytes reached) that piece is the oldest line returned.
    lines = data.split(b"\n")
    return [line.decode("utf-8", errors="replace") for line in lines[-n:]]


def _blocks_backwards(f: BinaryIO, spans: list[tuple[int, int]], wanted: int,
                      budget: int) -> list[bytes]:
    """Blocks read from the end of ``spans`` backwards until ``wanted`` newlines (or
    ``budget`` bytes) were seen; newest first."""
    blocks: list[bytes] = []
    found = 0
    for low, high in reversed(spans):
        pos = high
        while pos > low and found < wanted and budget > 0:
            start = max(low, pos - BLOCK_SIZE, pos - budget)
            f.seek(start)
            block = f.read(pos - start)
            blocks.append(block)
            found += block.count(b"\n")
            budget -= pos - start
            pos = start
    return blocks


def tail_with_offset(path: Path, n: int, *, complete_only: bool) -> tuple[list[str], int]:
    """The last ``n`` lines and the byte offset just past them, from one consistent view of
    a growing file; pass the offset to ``read_from`` to follow it. With ``complete_only``
    (the writer is still running) an unfinished last line is held back for the next read."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return [], 0
    end = size
    if complete_only and size:
        end = _after_last_newline(path, size)
    return tail_lines(path, n, end=end), end


def _after_last_newline(path: Path, size: int, limit: int = 1 << 20) -> int:
    """Offset just past the last newline before ``size`` (``size`` if none in ``limit``;
    the start of the kept tail if none in it)."""
    with open(path, "rb") as f:
        low, fallback = max(0, size - limit), (0 if size <= limit else size)
        dropped = dropped_range(f.fileno(), size)
        if dropped is not None and dropped[1] > low:
            low = fallback = dropped[1]
        pos = size
        while pos > low:
            start = max(low, pos - BLOCK_SIZE)
            f.seek(start)
            index = f.read(pos - start).rfind(b"\n")
            if index >= 0:
                return start + index + 1
            pos = start
    return fallback


def read_from(path: Path, offset: int, max_bytes: int = 1 << 20) -> tuple[bytes, int]:
    """Bytes appended to ``path`` since ``offset`` (at most ``max_bytes``) and the next offset.

    For following a growing log: call again with the returned offset. A missing file gives
    ``(b"", offset)``. If the file is now shorter than ``offset`` it was truncated or
    replaced, so reading starts again from 0, as ``tail -F`` does; a returned offset
    smaller than the one passed tells the caller this happened. The dropped middle of a
    limited log is skipped (the offset jumps over it).
    """
    if offset < 0:
        raise ValueError(f"offset must be >= 0, got {offset}")
    if max_bytes < 1:
        raise ValueError(f"max_bytes must be >= 1, got {max_bytes}")
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed below
    except FileNotFoundError:
        return b"", offset
    with f:
        size = f.seek(0, os.SEEK_END)
        if size < offset:
            offset = 0
        for _ in range(_HOLE_RETRIES):
            start, stop = offset, size
            dropped = dropped_range(f.fileno(), size)
            if dropped is not None:
                if dropped[0] <= start < dropped[1]:
                    start = dropped[1]  # the dropped middle of a limited log: skip it
                elif start < dropped[0]:
                    stop = dropped[0]
            f.seek(start)
            data = f.read(max(0, min(max_bytes, stop - start)))
            if dropped_range(f.fileno(), size) == dropped:
                break  # no trim dropped part of what was read meanwhile
    return data, start + len(data)


def read_lines_from(path: Path, offset: int, max_bytes: int = 1 << 20, *,
                    writer_done: bool) -> tuple[list[str], int]:
    """Complete lines appended after byte ``offset`` and the offset to continue from.
    While the writer runs, an unfinished last line is held back until it is complete; so
    is the last line of a read that stopped at ``max_bytes`` (the rest of it comes with the
    next read), unless it is the only one: a line longer than ``max_bytes`` comes in pieces."""
    data, end = read_from(path, offset, max_bytes)
    not_restarted = end - len(data) >= offset
    if not data.endswith(b"\n") and not_restarted:
        cut = data.rfind(b"\n") + 1
        full = len(data) >= max_bytes
        if (cut if full else not (writer_done and end >= _size(path))):
            end -= len(data) - cut
            data = data[:cut]
    lines = data.decode("utf-8", errors="replace").split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines, end


# --- size limit ----------------------------------------------------------------------------

LOG_LIMIT_NOTICE = ("\n[apr_sched: this log reached its size limit of {limit} bytes: what "
                    "followed is dropped, except the last {tail} bytes, below]")

_FALLOC_FL_KEEP_SIZE = 0x01
_FALLOC_FL_PUNCH_HOLE = 0x02


@dataclass(frozen=True, slots=True)
class LogTrim:
    """What ``limit_log`` dropped: bytes ``dropped[0]`` to ``dropped[1]`` (a hole now).
    ``first``: the limit was reached just now (the notice was written; tell the events)."""

    dropped: tuple[int, int]
    first: bool


def dropped_range(fd: int, size: int) -> tuple[int, int] | None:
    """The hole ``limit_log`` punched in a log (its first hole), or None. A log written by
    appending has no other hole."""
    try:
        start = os.lseek(fd, 0, os.SEEK_HOLE)
    except OSError:
        return None
    if start >= size:
        return None
    try:
        end = os.lseek(fd, start, os.SEEK_DATA)
    except OSError:  # ENXIO: a hole up to the end
        end = size
    return start, end


def _kept_spans(fd: int, end: int) -> list[tuple[int, int]]:
    """The byte ranges below ``end`` that hold output: all of it, or head and tail."""
    dropped = dropped_range(fd, end)
    if dropped is None:
        return [(0, end)]
    return [(0, dropped[0])] + ([(dropped[1], end)] if dropped[1] < end else [])


def limit_log(path: Path, max_bytes: int, keep_tail: int | None = None) -> LogTrim | None:
    """Keep a log that is still being appended to near ``max_bytes``: the first
    ``max_bytes - keep_tail`` bytes stay, then a notice line, then a hole, then (at least)
    the last ``keep_tail`` bytes (default half). Call it again as the log grows; it only
    extends the hole. Returns None when there is nothing to drop yet. Raises OSError where
    the filesystem cannot punch holes (``EOPNOTSUPP``: NFSv3, ramfs, ...); the log is then
    left as it was.

    The hole is block-aligned, so no stray zero bytes appear; the bytes between the notice
    and the hole are spaces. The writer is never disturbed: only bytes below the size seen
    at the start are touched, and appends go past it.
    """
    keep_tail = max_bytes // 2 if keep_tail is None else keep_tail
    if not 0 < keep_tail < max_bytes:
        raise ValueError(f"need 0 < keep_tail < max_bytes, got {keep_tail} and {max_bytes}")
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        size, block = st.st_size, st.st_blksize or 4096
        if size <= max_bytes:
            return None
        hole_end = (size - keep_tail) // block * block
        dropped = dropped_range(fd, size)
        if dropped is not None:
            if hole_end <= dropped[1]:
                return None
            _punch_hole(fd, dropped[0], hole_end - dropped[0])
            return LogTrim((dropped[0], hole_end), first=False)
        head = max_bytes - keep_tail
        notice = LOG_LIMIT_NOTICE.format(limit=max_bytes, tail=keep_tail).encode()
        hole_start = -(-(head + len(notice) + 1) // block) * block
        if hole_end <= hole_start:
            return None  # not enough to drop a whole block yet
        _punch_hole(fd, hole_start, hole_end - hole_start)  # first: a refusal changes nothing
        os.pwrite(fd, notice + b" " * (hole_start - head - len(notice) - 1) + b"\n", head)
        return LogTrim((hole_start, hole_end), first=True)
    finally:
        os.close(fd)


@functools.cache
def _fallocate() -> Any:
    libc = ctypes.CDLL(None, use_errno=True)
    fallocate = libc.fallocate
    fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
    fallocate.restype = ctypes.c_int
    return fallocate


def _punch_hole(fd: int, offset: int, length: int) -> None:
    if _fallocate()(fd, _FALLOC_FL_PUNCH_HOLE | _FALLOC_FL_KEEP_SIZE, offset, length) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _read_small(path: Path, limit: int = 64) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return f.read(limit)
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        return None


def read_rc(path: Path) -> int | None:
    """The exit code in an ``.rc`` file, or None while there is none to trust.

    The trailing newline is required: the wrapper writes ``"137\\n"`` in one go, so a file
    without it is still being written and ``"13"`` must not be read as exit code 13.
    Missing, empty or garbled files give None.
    """
    raw = _read_small(path)
    if raw is None:
        return None
    match = _RC_RE.fullmatch(raw)
    return int(match.group(1)) if match else None
