"""Local containment: every process of an attempt carries ``APR_SCHED_RUN=<rc path>`` and,
where the host allows it, sits in a cgroup of its own; signals reach the processes that left
the job's process group (``setsid``) too, also after the group is gone, never anyone else's."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from apr_sched import JobStatus, Scheduler
from apr_sched.executors.base import Launch, RunHandle
from apr_sched.executors.cgroup import attempts_root, cgroup2_mount, cgroup_dir, own_cgroup
from apr_sched.executors.local import LocalExecutor
from apr_sched.logs import AttemptFiles, attempt_files
from tests.conftest import proc_state, wait_until

ESCAPE = ("setsid sh -c 'trap \"\" TERM; while :; do echo x; sleep 0.1; done' & "
          "echo \"escaped $!\"; sleep 300")
"""A job whose child leaves its session, ignores SIGTERM and keeps writing to the log."""

CGROUP_MODES = [
    pytest.param(True, id="cgroup", marks=pytest.mark.skipif(
        attempts_root() is None, reason="no usable cgroup v2 here (the marker alone is used)")),
    pytest.param(False, id="marker"),
]


def marked(files: AttemptFiles) -> set[int]:
    """Live processes whose environment holds exactly this attempt's marker (read here,
    independently of the code under test)."""
    wanted = f"APR_SCHED_RUN={files.rc}".encode()
    found = set()
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            variables = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if wanted in variables and proc_state(int(proc.name)) not in (None, "Z"):
            found.add(int(proc.name))
    return found


def session_of(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[3])
    except (OSError, IndexError, ValueError):
        return None


def log_size(files: AttemptFiles) -> int:
    return files.log.stat().st_size if files.log.exists() else 0


@pytest.fixture
async def executors() -> AsyncIterator[list[tuple[LocalExecutor, RunHandle]]]:
    """Attempts started by a test; whatever they left is killed at the end, even when the
    test failed half-way (by the executor, and by pid for what carries the marker)."""
    made: list[tuple[LocalExecutor, RunHandle]] = []
    yield made
    for executor, handle in made:
        await executor.signal(handle, signal.SIGKILL)
        for pid in marked(handle.files):
            os.kill(pid, signal.SIGKILL)
        await executor.close()


async def start(executors: list[tuple[LocalExecutor, RunHandle]], tmp_path: Path,
                command: str, *, cgroups: bool, job_id: str = "j1",
                ) -> tuple[LocalExecutor, RunHandle]:
    executor = LocalExecutor("h1", cgroups=cgroups)
    files = attempt_files(tmp_path / "state", job_id, 1)
    handle = await executor.start(Launch(job_id, 1, "h1", command, None, {}, files))
    executors.append((executor, handle))
    return executor, handle


async def escaped(handle: RunHandle) -> int:
    """The pid of the escaped child, once it is running in a session of its own."""
    line = await wait_until(lambda: [w for w in handle.files.log.read_text().split("\n")
                                     if w.startswith("escaped ")], timeout=10)
    pid = int(line[0].split()[1])
    await wait_until(lambda: session_of(pid) == pid and log_size(handle.files) > 20)
    assert session_of(pid) != handle.pgid
    return pid


@pytest.mark.parametrize("cgroups", CGROUP_MODES)
async def test_stop_then_sweep_ends_a_setsid_escape(executors, tmp_path, cgroups):
    executor, handle = await start(executors, tmp_path, ESCAPE, cgroups=cgroups)
    child = await escaped(handle)
    await executor.signal(handle, signal.SIGTERM)
    await executor.signal(handle, signal.SIGCONT)
    status = await executor.wait(handle)
    assert status.signal == "SIGTERM"
    assert child in marked(handle.files), "it ignores SIGTERM: only a SIGKILL can end it"
    # The sweep the scheduler sends after a stopped/timed-out attempt, the group long gone.
    await executor.signal(handle, signal.SIGKILL)
    await wait_until(lambda: not marked(handle.files), timeout=5)
    size = log_size(handle.files)
    await asyncio.sleep(0.3)  # an observation window: nothing may write the log any more
    assert log_size(handle.files) == size
    cgroup = executor.attempt_cgroup("j1", 1, handle.files)
    assert cgroup is None or not cgroup.path.exists()


@pytest.mark.parametrize("cgroups", CGROUP_MODES)
async def test_pause_stops_the_escaped_child_too(executors, tmp_path, cgroups):
    executor, handle = await start(executors, tmp_path, ESCAPE, cgroups=cgroups)
    child = await escaped(handle)
    await executor.signal(handle, signal.SIGSTOP)
    await wait_until(lambda: all(proc_state(p) == "T" for p in marked(handle.files)))
    assert proc_state(child) == "T"
    size = log_size(handle.files)
    await asyncio.sleep(0.3)  # an observation window: a paused job must not write
    assert log_size(handle.files) == size
    await executor.signal(handle, signal.SIGCONT)
    await wait_until(lambda: log_size(handle.files) > size)
    assert proc_state(child) != "T"
    await executor.signal(handle, signal.SIGKILL)
    assert (await executor.wait(handle)).signal == "SIGKILL"
    await wait_until(lambda: not marked(handle.files), timeout=5)


@pytest.mark.skipif(attempts_root() is None, reason="no usable cgroup v2 here")
async def test_cgroup_catches_a_child_that_cleared_its_environment(executors, tmp_path):
    command = ("setsid env -i /bin/sh -c 'while :; do sleep 0.1; done' & "
               "echo \"escaped $!\"; exit 0")
    executor, handle = await start(executors, tmp_path, command, cgroups=True)
    assert (await executor.wait(handle)).exit_code == 0
    child = await escaped_pid(handle)
    # Once env -i has run, the marker cannot see it ...
    await wait_until(lambda: child not in marked(handle.files) and proc_state(child) == "S")
    await executor.signal(handle, signal.SIGKILL)  # ... the cgroup can
    await wait_until(lambda: proc_state(child) in (None, "Z"), timeout=5)


async def escaped_pid(handle: RunHandle) -> int:
    line = await wait_until(lambda: [w for w in handle.files.log.read_text().split("\n")
                                     if w.startswith("escaped ")], timeout=10)
    return int(line[0].split()[1])


async def test_signal_after_the_end_hits_nobody_else(executors, tmp_path):
    """The wrapper's pid reused by a stranger, a stranger whose environment holds the marker
    as a prefix or inside another variable: a late SIGKILL reaches none of them."""
    executor, handle = await start(executors, tmp_path, "exit 3", cgroups=True)
    assert (await executor.wait(handle)).exit_code == 3
    entry = f"APR_SCHED_RUN={handle.files.rc}"
    strangers = [
        subprocess.Popen(["sleep", "300"], start_new_session=True,
                         env={"APR_SCHED_RUN": f"{handle.files.rc}.other"}),
        subprocess.Popen(["sleep", "300"], start_new_session=True, env={"NOTE": entry}),
    ]
    try:
        reused = RunHandle("j1", 1, strangers[0].pid, handle.files)  # as if the pid came back
        await executor.signal(reused, signal.SIGKILL)
        assert all(p.poll() is None for p in strangers)
    finally:
        for proc in strangers:
            proc.kill()
            proc.wait()


async def test_scheduler_stop_leaves_nothing_of_an_escaped_child(make_scheduler):
    """Through the scheduler: the stop's SIGTERM ends the job but not its escaped child,
    which ignores it; the SIGKILL the scheduler sends after the end finds it."""
    s = await make_scheduler(stop_grace_sec=30)
    job = await s.submit({"command": ESCAPE})
    files = attempt_files(s.state_dir, job.job_id, 1)
    await wait_until(lambda: len({session_of(p) for p in marked(files)}) == 2, timeout=10)
    await s.stop(job.job_id)
    assert (await s.wait(job.job_id, 10)).status is JobStatus.STOPPED  # long before 30 s
    await wait_until(lambda: not marked(files), timeout=5)
    size = log_size(files)
    await asyncio.sleep(0.3)  # an observation window: the log stops growing
    assert log_size(files) == size


# --- cgroup discovery -------------------------------------------------------------------

MOUNTINFO = textwrap.dedent("""\
    24 1 0:22 / / rw,relatime shared:1 - overlay overlay rw
    35 24 0:30 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory
    36 24 0:31 / /sys/fs/cgroup/unified\\040v2 rw,relatime shared:10 - cgroup2 cgroup2 rw
""")


def test_cgroup2_mount_and_own_cgroup_are_read_from_proc_text():
    assert cgroup2_mount(MOUNTINFO) == (Path("/sys/fs/cgroup/unified v2"), "/")
    assert cgroup2_mount("35 24 0:30 / /sys/fs/cgroup rw - cgroup cgroup rw,memory\n") is None
    assert own_cgroup("4:memory:/x\n0::/user.slice/app.scope\n") == "/user.slice/app.scope"
    assert own_cgroup("4:memory:/x\n") is None


def test_cgroup_dir_maps_a_path_under_the_mount_root():
    assert cgroup_dir(Path("/cg"), "/", "/a/b") == Path("/cg/a/b")
    assert cgroup_dir(Path("/cg"), "/a", "/a/b") == Path("/cg/b")
    assert cgroup_dir(Path("/cg"), "/a", "/ab") is None  # outside the mounted subtree


NOBODY_SCRIPT = """
import asyncio, os, signal, sys
from pathlib import Path
from apr_sched.executors.base import Launch
from apr_sched.executors.cgroup import attempts_root
from apr_sched.executors.local import LocalExecutor
from apr_sched.logs import attempt_files

async def main():
    assert attempts_root() is None, attempts_root()
    files = attempt_files(Path(sys.argv[1]), "j1", 1)
    executor = LocalExecutor("h1")
    handle = await executor.start(Launch("j1", 1, "h1", sys.argv[2], "/", {}, files))
    for _ in range(500):  # a bounded wait for the escaped child
        if "escaped" in files.log.read_text():
            break
        await asyncio.sleep(0.02)
    else:
        sys.exit("no escaped child: " + files.log.read_text())
    await executor.signal(handle, signal.SIGTERM)
    print("status", (await executor.wait(handle)).signal, flush=True)
    await executor.signal(handle, signal.SIGKILL)
    print("done", flush=True)

asyncio.run(main())
"""


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("runuser")
                    or not Path(f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}")
                    .exists(), reason="needs root, runuser and a system python of this version")
def test_without_cgroups_an_unprivileged_daemon_falls_back_to_the_marker():
    """As ``nobody`` the cgroup tree is not writable: no cgroup, and the marker alone still
    ends the escaped child."""
    python = f"/usr/bin/python{sys.version_info[0]}.{sys.version_info[1]}"
    site = next(p for p in sys.path if p.endswith("site-packages"))
    root = Path(__file__).resolve().parent.parent
    state = Path(tempfile.mkdtemp(prefix="apr-nobody-"))
    files = attempt_files(state, "j1", 1)
    nobody = pwd.getpwnam("nobody")
    os.chown(state, nobody.pw_uid, nobody.pw_gid)
    try:
        result = subprocess.run(
            ["runuser", "-u", "nobody", "--", python, "-c", NOBODY_SCRIPT, str(state), ESCAPE],
            env={"PYTHONPATH": f"{root}:{site}", "PATH": os.environ["PATH"]},
            capture_output=True, text=True, timeout=60, cwd="/")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split("\n")[:2] == ["status SIGTERM", "done"]
        assert not marked(files)
    finally:
        for pid in marked(files):  # only what this test started, found by its marker
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(state, ignore_errors=True)


@pytest.mark.parametrize("enabled", [True, False])
async def test_job_cgroups_can_be_turned_off_in_the_config(tmp_path, enabled):
    """``job_cgroups = false``: local attempts get no cgroup (the marker alone finds them)."""
    from apr_sched.config import SchedulerConfig

    if enabled and attempts_root() is None:
        pytest.skip("no writable cgroup v2 here")
    config = SchedulerConfig.model_validate({"job_cgroups": enabled, "hosts": [
        {"host_id": "h1", "total_slots": 1, "total_cpu": 1, "total_memory_gb": 1}]})
    s = Scheduler.from_config(config, state_dir=tmp_path / "state")
    await s.start()
    try:
        executor = s._executors["h1"]
        assert isinstance(executor, LocalExecutor) and executor.cgroups is enabled
        job = await s.submit({"command": "cat /proc/self/cgroup; echo $APR_SCHED_RUN"})
        assert (await s.wait(job.job_id, 10)).status is JobStatus.SUCCEEDED
        lines = (await s.tail_log(job.job_id)).lines
        assert any("apr-sched" in line for line in lines[:-1]) is enabled, lines
        assert lines[-1].endswith("/1.rc")
    finally:
        await s.close()
