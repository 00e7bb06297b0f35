"""State dir ownership with real second processes: refused while held, free once they die."""

from __future__ import annotations

import json
import os
import select
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from apr_sched.errors import StateDirLocked
from apr_sched.statedir import LOCK_FILE, OWNER_FILE, StateDirLock, read_owner
from tests.conftest import wait_until_sync

REPO = Path(__file__).resolve().parent.parent

HOLDER = """\
import subprocess, sys
from pathlib import Path
from apr_sched.statedir import StateDirLock

lock = StateDirLock(Path(sys.argv[1]))
lock.acquire({"url": "http://127.0.0.1:5000"})
# A job that outlives the scheduler, given every inheritable descriptor.
job = subprocess.Popen(["sleep", "120"], close_fds=False)
print("locked", job.pid, flush=True)
sys.stdin.read()
"""

RAW_HOLDER = """\
import fcntl, os, sys
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT)
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
sys.stdin.read()
"""

PROBER = """\
import sys
from pathlib import Path
from apr_sched.statedir import read_owner

state_dir, stop = Path(sys.argv[1]), Path(sys.argv[2])
print("probing", flush=True)
probes = 0
while not stop.exists():
    read_owner(state_dir)
    probes += 1
print(probes, flush=True)
"""

OWNER_OF = """\
import json, sys
from pathlib import Path
from apr_sched.statedir import read_owner
print(json.dumps(read_owner(Path(sys.argv[1]))))
"""


def read_line(proc: subprocess.Popen[str], timeout: float = 10.0) -> str:
    """One line of the child's stdout, or fail after ``timeout`` seconds."""
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"no output from child within {timeout}s")
    return proc.stdout.readline().strip()


def python_child(script: str, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env,
    )


def stop_child(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=10)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat_line = Path(f"/proc/{pid}/stat").read_text()
    return stat_line.rpartition(")")[2].split()[0] != "Z"  # a zombie is dead


def test_second_process_owns_then_dies(state_dir: Path) -> None:
    holder = python_child(HOLDER, str(state_dir))
    job_pid: int | None = None
    try:
        word, pid_text = read_line(holder).split()
        assert word == "locked"
        job_pid = int(pid_text)

        with pytest.raises(StateDirLocked) as info:
            StateDirLock(state_dir).acquire({})
        error = info.value
        assert error.message == (
            f"state dir {state_dir} is in use by another scheduler "
            f"(pid {holder.pid}, http://127.0.0.1:5000)"
        )
        assert error.details["pid"] == holder.pid
        assert error.details["url"] == "http://127.0.0.1:5000"

        owner = read_owner(state_dir)
        assert owner is not None and owner["pid"] == holder.pid

        holder.kill()  # no cleanup code runs: only the kernel can release the lock
        holder.wait(timeout=10)
        assert process_alive(job_pid), "the job must outlive the scheduler"
        assert (state_dir / OWNER_FILE).exists()  # stale record left by the dead holder
        wait_until_sync(lambda: read_owner(state_dir) is None, timeout=5)

        with StateDirLock(state_dir) as lock:
            assert lock.held
            owner = read_owner(state_dir)
            assert owner is not None and owner["pid"] == os.getpid()
        assert read_owner(state_dir) is None
        assert not (state_dir / OWNER_FILE).exists()
    finally:
        stop_child(holder)
        if job_pid is not None and process_alive(job_pid):
            os.kill(job_pid, signal.SIGKILL)


def test_lock_held_without_record_names_no_owner(state_dir: Path) -> None:
    state_dir.mkdir()
    holder = python_child(RAW_HOLDER, str(state_dir / LOCK_FILE))
    try:
        assert read_line(holder) == "locked"
        with pytest.raises(StateDirLocked, match=r"\(owner unknown\)$"):
            StateDirLock(state_dir).acquire({})
        assert read_owner(state_dir) == {}  # held, but nothing recorded
    finally:
        stop_child(holder)
    wait_until_sync(lambda: read_owner(state_dir) is None, timeout=5)


def test_acquire_records_owner_and_creates_private_dir(state_dir: Path) -> None:
    lock = StateDirLock(state_dir)
    lock.acquire({"version": "0.1.0"})
    try:
        assert stat.S_IMODE(state_dir.stat().st_mode) == 0o700 & ~current_umask()
        record = json.loads((state_dir / OWNER_FILE).read_text())
        assert record["pid"] == os.getpid()
        assert record["version"] == "0.1.0"
        assert record["started_at"].endswith("+00:00")
        assert record == lock.info == read_owner(state_dir)
    finally:
        lock.release()
    assert (state_dir / LOCK_FILE).exists()  # never deleted: see the module docstring
    assert not (state_dir / OWNER_FILE).exists()


def current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_update_is_seen_by_another_process(state_dir: Path) -> None:
    with StateDirLock(state_dir) as lock:
        lock.update(url="http://127.0.0.1:40123")
        child = python_child(OWNER_OF, str(state_dir))
        try:
            owner = json.loads(read_line(child))
        finally:
            stop_child(child)
        assert owner["url"] == "http://127.0.0.1:40123"
        assert owner["pid"] == os.getpid()
        assert lock.info["url"] == "http://127.0.0.1:40123"


def test_second_lock_in_same_process_is_refused(state_dir: Path) -> None:
    with StateDirLock(state_dir), pytest.raises(StateDirLocked, match=f"pid {os.getpid()}"):
        StateDirLock(state_dir).acquire({})
    with StateDirLock(state_dir):  # free again after the first one released
        pass


def test_misuse_is_an_error_not_a_silent_no_op(state_dir: Path) -> None:
    lock = StateDirLock(state_dir)
    with pytest.raises(RuntimeError, match="not held"):
        lock.update(url="x")
    lock.acquire({})
    with pytest.raises(RuntimeError, match="already held"):
        lock.acquire({})
    lock.release()
    lock.release()  # idempotent
    assert not lock.held


def test_unrecordable_info_takes_nothing(state_dir: Path) -> None:
    with pytest.raises(TypeError):
        StateDirLock(state_dir).acquire({"bad": object()})
    assert read_owner(state_dir) is None
    with StateDirLock(state_dir):
        pass


def test_read_owner_of_missing_dir_creates_nothing(tmp_path: Path) -> None:
    assert read_owner(tmp_path / "nope") is None
    assert not (tmp_path / "nope").exists()


def test_lock_descriptor_is_not_inherited(state_dir: Path) -> None:
    with StateDirLock(state_dir) as lock:
        fd = lock._fd
        assert fd is not None and not os.get_inheritable(fd)


@pytest.fixture
def prober(state_dir: Path, tmp_path: Path) -> Iterator[Path]:
    """Another process calling read_owner in a tight loop until the stop file appears."""
    stop = tmp_path / "stop"
    proc = python_child(PROBER, str(state_dir), str(stop))
    try:
        assert read_line(proc) == "probing"
        yield stop
        stop.touch()
        probes = int(read_line(proc))
        assert probes > 100, "the prober must actually have overlapped the test"
    finally:
        stop.touch()
        stop_child(proc)


def test_status_probes_do_not_block_a_starting_scheduler(
    state_dir: Path, prober: Path
) -> None:
    """read_owner takes a shared lock for an instant; acquire must ride that out."""
    state_dir.mkdir()
    for _ in range(100):
        with StateDirLock(state_dir) as lock:
            assert lock.held
