"""Per-attempt files: paths only from checked ids, exact tails of real files, rc/pid parsing."""

from __future__ import annotations

import os
import random
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from apr_sched.logs import (
    BLOCK_SIZE,
    LOG_LIMIT_NOTICE,
    AttemptFiles,
    LogTrim,
    attempt_files,
    limit_log,
    open_log,
    read_from,
    read_lines_from,
    read_rc,
    tail_lines,
    tail_with_offset,
)
from tests.conftest import wait_until_sync


def reference_tail(data: bytes, n: int) -> list[str]:
    """What tail_lines must return, computed the slow, obvious way on the whole content."""
    if n <= 0 or not data:
        return []
    if data.endswith(b"\n"):
        data = data[:-1]
    return [line.decode("utf-8", errors="replace") for line in data.split(b"\n")][-n:]


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# --- attempt_files ---------------------------------------------------------------------


def test_attempt_files_layout(tmp_path: Path) -> None:
    files = attempt_files(tmp_path, "job-42.a_b", 3)
    job_dir = tmp_path / "logs" / "job-42.a_b"
    assert files == AttemptFiles(
        dir=job_dir, log=job_dir / "3.log", rc=job_dir / "3.rc"
    )
    assert not job_dir.exists()  # computing paths creates nothing


@pytest.mark.parametrize(
    "job_id", ["", "..", "../etc", "a/b", ".hidden", "-x", "a b", "x" * 65, "a\x00b", "é"]
)
def test_attempt_files_rejects_unsafe_ids(tmp_path: Path, job_id: str) -> None:
    with pytest.raises(ValueError, match="invalid job id"):
        attempt_files(tmp_path, job_id, 1)


@pytest.mark.parametrize("attempt", [0, -1, True, 1.0, "1"])
def test_attempt_files_rejects_bad_attempts(tmp_path: Path, attempt: object) -> None:
    with pytest.raises(ValueError, match="invalid attempt"):
        attempt_files(tmp_path, "job-1", attempt)  # type: ignore[arg-type]


# --- tail_lines on small files ---------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "n", "expected"),
    [
        (b"", 5, []),
        (b"\n", 5, [""]),
        (b"\n\n", 5, ["", ""]),
        (b"a", 5, ["a"]),
        (b"a\nb\nc\n", 2, ["b", "c"]),
        (b"a\nb\nc", 2, ["b", "c"]),  # no trailing newline: "c" is still a line
        (b"a\nb\nc\n", 10, ["a", "b", "c"]),  # n larger than the file
        (b"a\nb\nc\n", 3, ["a", "b", "c"]),
        (b"a\n\nc\n", 2, ["", "c"]),  # empty lines count
        (b"a\r\nb\r\n", 2, ["a\r", "b\r"]),  # CRLF: the "\r" is kept, bytes as they are
        (b"x\xffy\n\xe2\x82\xac\n", 2, ["x\ufffdy", "\u20ac"]),  # bad byte -> U+FFFD
        (b"a\nb\n", 0, []),
        (b"a\nb\n", -3, []),
    ],
)
def test_tail_small_files(tmp_path: Path, data: bytes, n: int, expected: list[str]) -> None:
    assert tail_lines(write(tmp_path / "x.log", data), n) == expected


def test_tail_missing_file(tmp_path: Path) -> None:
    assert tail_lines(tmp_path / "nope.log", 10) == []
    assert tail_lines(tmp_path / "no" / "dir.log", 10) == []


def block_boundary_cases() -> Iterator[tuple[str, bytes]]:
    b = BLOCK_SIZE
    yield "line ends exactly on a block boundary", b"x" * (b - 1) + b"\n" + b"tail\n"
    yield "last block is exactly one block", b"head\n" + b"y" * (b - 1) + b"\n"
    yield "newline is the first byte of the last block", b"a" * 10 + b"\n" + b"z" * (b - 1)
    yield "file of exactly two blocks", (b"q" * (b // 2 - 1) + b"\n") * 4
    yield "line longer than a block", b"first\n" + b"L" * (3 * b + 7) + b"\nlast\n"
    yield "only one huge line, no newline", b"H" * (2 * b + 1)
    yield "huge line then newline", b"H" * (2 * b) + b"\n"
    yield "multibyte char split by a block boundary", (
        b"p" * (b - 5) + "\u00e9\u20ac".encode() * 4 + b"\nend"
    )
    yield "many short lines across blocks", b"".join(b"%d\n" % i for i in range(50_000))
    yield "newlines only", b"\n" * (b + 3)


@pytest.mark.parametrize(("label", "data"), list(block_boundary_cases()))
@pytest.mark.parametrize("n", [1, 2, 3, 200])
def test_tail_block_boundaries(tmp_path: Path, label: str, data: bytes, n: int) -> None:
    assert tail_lines(write(tmp_path / "x.log", data), n) == reference_tail(data, n), label


def test_tail_matches_reference_on_random_files(tmp_path: Path) -> None:
    """Random line lengths around the block size, with and without a final newline."""
    rng = random.Random(1234)
    path = tmp_path / "r.log"
    for _ in range(40):
        lengths = [rng.choice([0, 1, 5, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 300])
                   for _ in range(rng.randint(0, 12))]
        data = b"\n".join(bytes([97 + i % 26]) * size for i, size in enumerate(lengths))
        if rng.random() < 0.5:
            data += b"\n"
        write(path, data)
        for n in (1, 2, 5, 13):
            assert tail_lines(path, n) == reference_tail(data, n)


def test_tail_max_bytes_cuts_only_the_oldest_line(tmp_path: Path) -> None:
    path = write(tmp_path / "cr.log", b"old\n" + b"\rprogress 99%" * 100_000 + b"\ndone\n")
    lines = tail_lines(path, 2, max_bytes=1000)
    assert lines[1] == "done"
    assert len(lines[0].encode()) == 1000 - len(b"\ndone\n")
    assert lines[0].endswith("\rprogress 99%")


# --- tail_lines on a real 1 GiB log ------------------------------------------------------

GIB = 1 << 30
FILLER_BUFFER = 64 << 20


@pytest.fixture
def big_log(tmp_path: Path) -> Iterator[tuple[Path, list[str]]]:
    """1 GiB of numbered filler lines, then 200 distinct final lines; removed afterwards."""
    chunk = b"".join(b"filler %09d %s\n" % (i, b"." * 46) for i in range(16384))
    assert len(chunk) == 1 << 20  # 64-byte lines: whole lines fill every buffer exactly
    buffer = chunk * (FILLER_BUFFER // len(chunk))
    tail = [f"final line {i:03d} \u2713 attempt 1" for i in range(200)]
    path = tmp_path / "big.log"
    try:
        with open(path, "wb") as f:
            for _ in range(GIB // FILLER_BUFFER):
                f.write(buffer)
            f.write("".join(line + "\n" for line in tail).encode())
        yield path, tail
    finally:
        path.unlink(missing_ok=True)


def read_chars() -> int | None:
    """Bytes this process has read through read(2) so far (Linux /proc/self/io)."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    return int(next(line for line in text.splitlines() if line.startswith("rchar:")).split()[1])


def test_tail_of_1gib_log_is_exact_and_fast(big_log: tuple[Path, list[str]]) -> None:
    path, expected = big_log
    assert path.stat().st_size > GIB
    before = read_chars()
    started = time.perf_counter()
    lines = tail_lines(path, 200)
    elapsed = time.perf_counter() - started
    after = read_chars()
    assert lines == expected
    assert elapsed < 0.050, f"tail of 1 GiB took {elapsed * 1000:.1f} ms"
    if before is not None and after is not None:
        assert after - before < 4 * BLOCK_SIZE  # read from the end, not the whole file
    # One line more reaches into the filler: still exact.
    assert tail_lines(path, 201)[0].startswith(f"filler {16383:09d} ")
    print(f"\ntail_lines(1 GiB, 200): {elapsed * 1000:.2f} ms")


# --- read_from -----------------------------------------------------------------------------


def test_read_from_follows_appends(tmp_path: Path) -> None:
    path = tmp_path / "f.log"
    assert read_from(path, 0) == (b"", 0)  # not there yet
    assert read_from(path, 17) == (b"", 17)
    path.write_bytes(b"hello\n")
    assert read_from(path, 0) == (b"hello\n", 6)
    assert read_from(path, 6) == (b"", 6)
    with open(path, "ab") as f:
        f.write(b"world\n")
    assert read_from(path, 6) == (b"world\n", 12)


def test_read_from_respects_max_bytes(tmp_path: Path) -> None:
    path = write(tmp_path / "f.log", b"0123456789")
    assert read_from(path, 0, max_bytes=4) == (b"0123", 4)
    assert read_from(path, 4, max_bytes=4) == (b"4567", 8)
    assert read_from(path, 8, max_bytes=4) == (b"89", 10)


def test_read_from_restarts_after_truncation(tmp_path: Path) -> None:
    path = write(tmp_path / "f.log", b"a long first attempt\n")
    _, offset = read_from(path, 0)
    path.write_bytes(b"new\n")
    assert read_from(path, offset) == (b"new\n", 4)


def test_read_from_rejects_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        read_from(tmp_path / "f.log", -1)
    with pytest.raises(ValueError):
        read_from(tmp_path / "f.log", 0, max_bytes=0)


def test_read_from_follows_a_running_process(tmp_path: Path) -> None:
    """A real writer flushing line by line; the follower gets every byte exactly once."""
    path = tmp_path / "job.log"
    script = (
        "import sys\n"
        "with open(sys.argv[1], 'ab', buffering=0) as f:\n"
        "    for i in range(2000):\n"
        "        f.write(b'step %d of 2000\\n' % i)\n"
    )
    expected = b"".join(b"step %d of 2000\n" % i for i in range(2000))
    proc = subprocess.Popen([sys.executable, "-c", script, str(path)])
    received = bytearray()
    offset = 0

    def caught_up() -> bool:
        nonlocal offset
        data, offset = read_from(path, offset, max_bytes=4096)
        received.extend(data)
        return len(received) >= len(expected)

    try:
        wait_until_sync(caught_up, timeout=20)
    finally:
        proc.wait(timeout=20)
    assert bytes(received) == expected
    assert offset == len(expected)


# --- rc and pid files ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"0\n", 0),
        (b"137\n", 137),
        (b"-1\n", -1),
        (b"", None),
        (b"13", None),  # no newline yet: still being written
        (b"abc\n", None),
        (b" 1\n", None),
        (b"1\n2\n", None),
        (b"99999999999\n", None),
    ],
)
def test_read_rc(tmp_path: Path, content: bytes, expected: int | None) -> None:
    assert read_rc(write(tmp_path / "1.rc", content)) == expected


def test_read_rc_missing(tmp_path: Path) -> None:
    assert read_rc(tmp_path / "1.rc") is None
    assert read_rc(tmp_path) is None  # a directory is not an rc file


def test_read_rc_written_by_a_real_shell(tmp_path: Path) -> None:
    """The way the job wrapper writes it: the command's $? echoed by sh."""
    rc = tmp_path / "1.rc"
    subprocess.run(["sh", "-c", 'sh -c "exit 7"; echo $? > "$1"', "sh", str(rc)], check=True)
    assert read_rc(rc) == 7


# --- private files -----------------------------------------------------------------------

def test_open_log_is_owner_only_whatever_the_umask(tmp_path: Path) -> None:
    files = attempt_files(tmp_path / "state", "j1", 1)
    old = os.umask(0)
    try:
        fd = open_log(files)
        os.close(fd)
    finally:
        os.umask(old)
    modes = [stat.S_IMODE(p.stat().st_mode) for p in (files.dir.parent, files.dir, files.log)]
    assert modes == [0o700, 0o700, 0o600]


def test_open_log_tightens_what_an_older_version_left_open(tmp_path: Path) -> None:
    files = attempt_files(tmp_path / "state", "j1", 1)
    files.dir.mkdir(parents=True)
    for path in (files.dir.parent, files.dir):
        path.chmod(0o755)
    files.log.write_bytes(b"old\n")
    files.log.chmod(0o644)
    fd = open_log(files)
    try:
        os.write(fd, b"new\n")
    finally:
        os.close(fd)
    assert files.log.read_bytes() == b"old\nnew\n"  # appended, never truncated
    modes = [stat.S_IMODE(p.stat().st_mode) for p in (files.dir.parent, files.dir, files.log)]
    assert modes == [0o700, 0o700, 0o600]


# --- size limit -----------------------------------------------------------------------------

def read_all(path: Path) -> bytes:
    """The log as a follower sees it, from offset 0 to the end, 4 KiB at a time."""
    out, offset = b"", 0
    while True:
        data, offset = read_from(path, offset, 4096)
        if not data:
            return out
        out += data


def test_limit_log_keeps_head_notice_and_tail_of_a_log_being_written(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    count = 40_000  # ~430 KB of numbered lines, appended by a real shell while we trim
    writer = subprocess.Popen(
        ["sh", "-c", f'i=0; while [ $i -lt {count} ]; do i=$((i+1)); echo "line $i"; done '
                     f'>>"$0"', str(log)])
    limit, tail = 64 * 1024, 16 * 1024
    trims: list[LogTrim] = []

    def trim_until_done() -> bool:
        done = writer.poll() is not None  # read before trimming: the last call sees it all
        if log.exists() and (trim := limit_log(log, limit, tail)) is not None:
            trims.append(trim)
        return done

    wait_until_sync(trim_until_done, timeout=60)
    assert [t.first for t in trims][:1] == [True] and not any(t.first for t in trims[1:])
    assert log.stat().st_size > 400_000
    assert log.stat().st_blocks * 512 <= limit + 3 * 4096  # the middle's space is released
    text = read_all(log).decode()
    head, notice, rest = text.partition(LOG_LIMIT_NOTICE.format(limit=limit, tail=tail))
    assert notice, "the log says what happened"
    head_lines = head.split("\n")[:-1]  # the last piece was cut by the notice
    assert head_lines == [f"line {i}" for i in range(1, len(head_lines) + 1)]
    assert len(head) >= limit - tail - 20
    kept = rest.lstrip(" \n").split("\n")[1:-1]  # drop the tail's first, partial line
    first = int(kept[0].split()[1])
    assert kept == [f"line {i}" for i in range(first, count + 1)]
    assert len(rest) >= tail
    assert tail_lines(log, 3) == [f"line {i}" for i in range(count - 2, count + 1)]
    assert "\0" not in text


def test_a_follower_crosses_the_dropped_middle_without_repeats(tmp_path: Path) -> None:
    log = tmp_path / "1.log"
    log.write_bytes(b"".join(b"line %d\n" % i for i in range(1, 3001)))
    lines, offset = read_lines_from(log, 0, 1000, writer_done=False)  # a follower, mid-way
    trim = limit_log(log, 8192, 4096)
    assert trim is not None and trim.first
    while True:
        more, offset = read_lines_from(log, offset, 1000, writer_done=True)
        if not more:
            break
        lines += more
    assert lines[-1] == "line 3000"
    numbered = [int(w.split()[1]) for w in lines if w.startswith("line ") and w[5:].isdigit()]
    assert numbered == sorted(set(numbered))  # nothing twice, order kept
    assert any("size limit of 8192 bytes" in w for w in lines)
    assert tail_with_offset(log, 2, complete_only=True) == (
        ["line 2999", "line 3000"], log.stat().st_size)


def test_limit_log_waits_for_something_worth_dropping(tmp_path: Path) -> None:
    log = write(tmp_path / "1.log", b"x" * 5000)
    assert limit_log(log, 8192) is None  # under the limit
    assert limit_log(log, 4096, 2048) is None  # over it, but not by a whole block yet
    assert log.read_bytes() == b"x" * 5000
    with pytest.raises(ValueError, match="keep_tail"):
        limit_log(log, 4096, 4096)
