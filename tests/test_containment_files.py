"""A job's output may hold secrets: the state dir, the logs tree and every log and rc file
are owner-only whatever the umask, and whatever mode an older state dir was made with."""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from apr_sched import HostSpec, JobStatus
from apr_sched.logs import attempt_files
from apr_sched.statedir import StateDirLock
from tests.conftest import host


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """The most careless umask there is, for the whole test (scheduler included)."""
    old = os.umask(0)
    yield
    os.umask(old)


async def test_a_careless_state_dir_and_umask_still_give_private_logs(
        open_umask, state_dir, make_scheduler, tmp_path):
    state_dir.mkdir(mode=0o755)
    (state_dir / "logs").mkdir(mode=0o755)  # as left by an older version
    assert mode(state_dir) == 0o755
    prefixed = HostSpec(host_id="viaprefix", total_slots=1, total_cpu=1, total_memory_gb=1,
                        executor_prefix="sh -c", remote_spool=str(tmp_path / "spool"),
                        labels={"via": "prefix"})
    s = await make_scheduler(hosts=[host("h1"), prefixed])
    assert mode(state_dir) == 0o700
    local = await s.submit({"command": "echo secret"})
    remote = await s.submit({"command": "echo secret",
                             "resource_request": {"host_labels": {"via": "prefix"}}})
    for job in (local, remote):
        assert (await s.wait(job.job_id, 10)).status is JobStatus.SUCCEEDED
        files = attempt_files(state_dir, job.job_id, 1)
        assert (mode(files.dir.parent), mode(files.dir)) == (0o700, 0o700)
        assert (mode(files.log), mode(files.rc)) == (0o600, 0o600)
        assert files.log.read_text() == "secret\n"


def test_state_dir_of_someone_else_is_left_alone_with_a_warning(open_umask, tmp_path, caplog):
    if os.geteuid() != 0:
        pytest.skip("needs root to give the dir to another user")
    state = tmp_path / "theirs"
    state.mkdir(mode=0o777)
    os.chown(state, 65534, 65534)
    with caplog.at_level(logging.WARNING, logger="apr_sched.statedir"), StateDirLock(state):
        assert mode(state) == 0o777
    assert "belongs to uid 65534" in caplog.text
