"""A job's log stays under its size limit while the job writes it: the head and the tail are
kept, the log and the job's events say so (once), disk space is released, and tail, offset
reads and a follower keep working across the trim; locally and on a native SSH host (whose
local copy is limited, and the spool's copy on the host drops the same bytes). Where the
file system cannot drop the middle (ramfs), that is said once and the log keeps growing.
And the ``[scheduler.logs]`` config."""

from __future__ import annotations

import itertools
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from apr_sched import JobStatus, Scheduler
from apr_sched.config import LogsConfig, SchedulerConfig, dump_config_toml, load_config
from apr_sched.errors import InvalidInput
from apr_sched.logs import (
    LOG_LIMIT_NOTICE,
    attempt_files,
    dropped_range,
    limit_log,
    read_from,
    read_lines_from,
)
from tests.conftest import host, wait_until
from tests.test_ssh_hosts import online, ssh_spec

MB = 1 << 20
LIMIT = LogsConfig(max_job_log_mb=1, check_every_sec=0.05)
PHASE_LINES = 100_000
"""Lines per phase of the flooding job: ~10 MB (100-byte lines)."""
PAD = "x" * 85
WHOLE_LINE = re.compile(f"line ([0-9]{{8}}) {PAD}")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="mounting ramfs needs root")


def flood(first: int, last: int) -> str:
    """Shell text printing ``line <i> xxx...`` for i in first..last (100 bytes a line)."""
    return (f"awk 'BEGIN {{ for (i = {first}; i <= {last}; i++) "
            f"printf \"line %08d {PAD}\\n\", i }}'")


def two_floods(gate: Path) -> str:
    """~10 MB, then wait for ``gate`` to appear, then ~10 MB more."""
    return (f"{flood(1, PHASE_LINES)}; while [ ! -e {gate} ]; do sleep 0.02; done; "
            f"{flood(PHASE_LINES + 1, 2 * PHASE_LINES)}")


def numbers(lines: list[str]) -> list[int]:
    """The numbers of the whole lines (the ones the notice or the hole cut are left out)."""
    return [int(m[1]) for line in lines if (m := WHOLE_LINE.fullmatch(line))]


async def notes(s: Scheduler, job_id: str) -> list[str]:
    return [e.reason for e in (await s.get_job(job_id)).events if e.reason.startswith("log ")]


def disk_bytes(path: Path) -> int:
    return path.stat().st_blocks * 512


async def follow_across_trims(s: Scheduler, job_id: str, gate: Path) -> list[str]:
    """Read the log by offset as ``apr-sched logs -f`` does: to the end of the first
    flood (already trimmed), open the gate, then on to the end of the job, whose second
    flood drops the part of the log this follower stood in."""
    lines: list[str] = []
    offset = 0

    async def read_on() -> bool:
        nonlocal offset
        chunk = await s.read_log(job_id, offset, max_bytes=256 * 1024)
        lines.extend(chunk.lines)
        offset = chunk.offset
        return bool(chunk.lines)

    await wait_until(lambda: notes(s, job_id), timeout=30, message="first trim noted")
    while numbers(lines[-1:]) != [PHASE_LINES]:
        if not await read_on():
            await wait_until(read_on, timeout=30, message="more of the first flood")
    gate.touch()
    done = await s.wait(job_id, 60)
    while await read_on():
        pass
    assert done.status is JobStatus.SUCCEEDED
    return lines


def check_limited_log(log: Path, lines: list[str]) -> None:
    """Head and tail kept, the notice between them, space released, nothing repeated."""
    limit = LIMIT.limit()
    assert limit is not None
    notice = LOG_LIMIT_NOTICE.format(limit=limit.max_bytes, tail=limit.keep_tail).strip()
    assert [line.strip() for line in lines if "size limit" in line] == [notice]
    seen = numbers(lines)
    assert seen == sorted(set(seen)), "a follower never reads a line twice"
    assert seen[0] == 1 and seen[-1] == 2 * PHASE_LINES
    jump = next(i for i, (n, m) in enumerate(itertools.pairwise(seen)) if m != n + 1)
    head = seen[:jump + 1]
    assert head == list(range(1, len(head) + 1)) and len(head) * 100 >= MB // 2 - 200
    tail = numbers(lines[[line.strip() for line in lines].index(notice):])
    assert tail[-1] == 2 * PHASE_LINES and len(tail) * 100 >= MB // 2
    assert log.stat().st_size == 2 * PHASE_LINES * 100  # offsets stay valid: size kept
    assert disk_bytes(log) <= MB + 3 * 4096


async def test_a_flooding_job_keeps_head_and_tail_and_says_so(make_scheduler, tmp_path):
    gate = tmp_path / "gate"
    s = await make_scheduler(logs=LIMIT)
    job = await s.submit({"command": two_floods(gate)})
    log = attempt_files(s.state_dir, job.job_id, 1).log
    lines = await follow_across_trims(s, job.job_id, gate)
    check_limited_log(log, lines)
    assert await notes(s, job.job_id) == [
        "log over 1 MB: kept the first 512 KB and the last 512 KB, the middle is dropped"]
    tail = await s.tail_log(job.job_id, 3)
    assert numbers(tail.lines) == [2 * PHASE_LINES - 2, 2 * PHASE_LINES - 1, 2 * PHASE_LINES]
    from_start = await s.read_log(job.job_id, 0)
    assert numbers(from_start.lines)[:3] == [1, 2, 3]


async def test_the_log_is_bounded_on_disk_while_the_job_runs(make_scheduler, tmp_path):
    gate = tmp_path / "gate"
    s = await make_scheduler(logs=LIMIT)
    job = await s.submit({"command": f"{flood(1, PHASE_LINES)}; "
                                     f"while [ ! -e {gate} ]; do sleep 0.02; done"})
    log = attempt_files(s.state_dir, job.job_id, 1).log
    await wait_until(lambda: log.exists() and log.stat().st_size >= PHASE_LINES * 100,
                     timeout=30, message="first flood written")
    limit = LIMIT.limit()
    assert limit is not None
    await wait_until(lambda: disk_bytes(log) <= MB + limit.slack + 2 * 4096, timeout=10,
                     message="trimmed while running")
    assert s._jobs[job.job_id].status is JobStatus.RUNNING
    gate.touch()
    assert (await s.wait(job.job_id, 30)).status is JobStatus.SUCCEEDED


async def test_a_flood_between_two_checks_is_trimmed_at_the_end(make_scheduler):
    s = await make_scheduler(logs=LogsConfig(max_job_log_mb=1, check_every_sec=3600))
    job = await s.submit({"command": flood(1, PHASE_LINES)})
    assert (await s.wait(job.job_id, 30)).status is JobStatus.SUCCEEDED
    log = attempt_files(s.state_dir, job.job_id, 1).log
    assert disk_bytes(log) <= MB + 3 * 4096
    events = [e.reason for e in (await s.get_job(job.job_id)).events]
    assert events[-2].startswith("log over 1 MB") and events[-1] == "exit code 0"


async def test_no_limit_leaves_the_log_whole(make_scheduler):
    s = await make_scheduler(logs=LogsConfig(max_job_log_mb=0))
    job = await s.submit({"command": flood(1, 20_000)})
    assert (await s.wait(job.job_id, 30)).status is JobStatus.SUCCEEDED
    log = attempt_files(s.state_dir, job.job_id, 1).log
    assert numbers(log.read_text().splitlines()) == list(range(1, 20_001))
    assert await notes(s, job.job_id) == []


async def test_a_native_ssh_job_has_its_local_copy_limited(ssh_hosts, make_scheduler,
                                                            tmp_path):
    (ssh_host,) = ssh_hosts(1)
    gate = tmp_path / "gate"
    s = await make_scheduler(hosts=[ssh_spec(ssh_host)], logs=LIMIT)
    await online(s, ssh_host.name)
    job = await s.submit({"command": two_floods(gate)})
    log = attempt_files(s.state_dir, job.job_id, 1).log
    lines = await follow_across_trims(s, job.job_id, gate)
    check_limited_log(log, lines)
    assert len(await notes(s, job.job_id)) == 1
    remote = ssh_host.spool / job.job_id / "1.log"
    assert remote.stat().st_size == log.stat().st_size  # every byte arrived, offsets agree
    # the spool's copy on the SSH host drops the same middle (told once the bytes arrived)
    await wait_until(lambda: disk_bytes(remote) <= MB + 3 * 4096, timeout=10,
                     message="remote copy trimmed")
    assert hole(remote) == hole(log)


def hole(path: Path) -> tuple[int, int] | None:
    fd = os.open(path, os.O_RDONLY)
    try:
        return dropped_range(fd, os.fstat(fd).st_size)
    finally:
        os.close(fd)


async def test_the_check_sleeps_while_nothing_runs(make_scheduler):
    s = await make_scheduler(logs=LIMIT)
    limiter = s._runs._log_limiter
    assert limiter is not None and limiter._timer is None
    job = await s.submit({"command": "echo hi"})
    assert (await s.wait(job.job_id, 10)).status is JobStatus.SUCCEEDED
    await wait_until(lambda: limiter._timer is None and limiter._trimming is None,
                     message="no check armed once nothing runs")


def test_a_read_stopped_by_max_bytes_holds_back_its_cut_line(tmp_path):
    log = tmp_path / "1.log"
    log.write_bytes(b"first line\nsecond line\n")
    lines, offset = read_lines_from(log, 0, 15, writer_done=True)
    assert (lines, offset) == (["first line"], 11)
    lines, offset = read_lines_from(log, offset, 15, writer_done=True)
    assert (lines, offset) == (["second line"], 23)
    log.write_bytes(b"x" * 40 + b"\n")  # one line longer than max_bytes comes in pieces
    assert read_lines_from(log, 0, 15, writer_done=False) == (["x" * 15], 15)


# --- where holes cannot be punched ------------------------------------------------------

@pytest.fixture
def ramfs(tmp_path: Path) -> Iterator[Path]:
    """A real ramfs (no hole punching: fallocate says EOPNOTSUPP), for this test only."""
    mount = tmp_path / "ramfs"
    mount.mkdir()
    subprocess.run(["mount", "-t", "ramfs", "-o", "mode=0700", "ramfs", str(mount)],
                   check=True)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@needs_root
def test_a_refused_trim_changes_nothing(ramfs):
    log = ramfs / "1.log"
    data = b"".join(b"line %d\n" % i for i in range(200_000))
    log.write_bytes(data)
    with pytest.raises(OSError, match="not supported"):
        limit_log(log, 64 * 1024)
    assert log.read_bytes() == data  # no notice claiming a drop that did not happen


@needs_root
async def test_where_the_middle_cannot_be_dropped_it_is_said_once(make_scheduler, ramfs):
    s = await make_scheduler(state_dir=ramfs / "state", logs=LIMIT, min_free_disk_mb=0)
    job = await s.submit({"command": f"{flood(1, 30_000)}; sleep 0.3; {flood(30_001, 40_000)}"})
    assert (await s.wait(job.job_id, 30)).status is JobStatus.SUCCEEDED
    assert await notes(s, job.job_id) == [
        "log over 1 MB, but its middle cannot be dropped here (Operation not supported): the "
        "log keeps growing"]
    log = attempt_files(s.state_dir, job.job_id, 1).log
    data, _ = read_from(log, 0, 16 * MB)
    assert numbers(data.decode().splitlines()) == list(range(1, 40_001))


# --- config -------------------------------------------------------------------------------

def test_logs_config_reads_validates_and_round_trips(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[scheduler.logs]\nmax_job_log_mb = 64\ntail_share = 0.25\n"
                    "check_every_sec = 1\n")
    config = load_config(path)
    assert config.logs == LogsConfig(max_job_log_mb=64, tail_share=0.25, check_every_sec=1)
    limit = config.logs.limit()
    assert limit is not None and (limit.max_bytes, limit.keep_tail) == (64 * MB, 16 * MB)
    again = tmp_path / "again.toml"
    again.write_text(dump_config_toml(config))
    assert load_config(again) == config
    assert "[scheduler.logs]" in dump_config_toml(SchedulerConfig())
    assert LogsConfig(max_job_log_mb=0).limit() is None
    assert SchedulerConfig().logs.limit() == LogsConfig().limit()
    assert LogsConfig().limit().max_bytes == 1024 * MB  # type: ignore[union-attr]


@pytest.mark.parametrize(("text", "field", "words"), [
    ("max_job_log_mb = 0.01", "scheduler.logs.max_job_log_mb", "at least 0.0625"),
    ("max_job_log_mb = -1", "scheduler.logs.max_job_log_mb", "greater than or equal to 0"),
    ("tail_share = 1.0", "scheduler.logs.tail_share", "less than 1"),
    ("check_every_sec = 0", "scheduler.logs.check_every_sec", "greater than or equal"),
    ("max_job_log = 5", "scheduler.logs.max_job_log", "unknown field"),
])
def test_bad_logs_config_names_the_field(tmp_path, text, field, words):
    path = tmp_path / "c.toml"
    path.write_text(f"[scheduler.logs]\n{text}\n")
    with pytest.raises(InvalidInput) as refused:
        load_config(path)
    assert refused.value.details == [{"field": field, "message": refused.value.details[0][
        "message"]}]
    assert words in refused.value.details[0]["message"]


def test_the_scheduler_takes_its_limit_from_the_config(tmp_path):
    config = SchedulerConfig(state_dir=str(tmp_path / "s"), logs=LIMIT, hosts=[host()])
    assert Scheduler.from_config(config).logs == LIMIT
