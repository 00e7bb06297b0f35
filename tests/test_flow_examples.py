"""The flow examples README shows, run as written against a real daemon: the make flow
(through ``apr-sched submit --wait`` and through ``bsub -K``), the shell script, and a
workflow engine's submit / status / cancel commands from its profile."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from apr_sched.models import JobStatus
from tests.conftest import wait_until_sync
from tests.test_client_cli import Daemon, clean_env, daemon  # noqa: F401  (fixture)

FLOWS = Path(__file__).resolve().parent.parent / "examples" / "flows"
BIN = str(Path(sys.executable).parent)  # apr-sched, apr-sched-stop, ...


def flow_env(daemon: Daemon, shims: Path | None = None) -> dict[str, str]:  # noqa: F811
    path = f"{BIN}:{os.environ['PATH']}"
    if shims is not None:
        path = f"{shims}:{path}"
    return clean_env(PATH=path, APR_SCHED_HOME=str(daemon.state_dir))


def write_shims(daemon: Daemon, where: Path) -> Path:  # noqa: F811
    subprocess.run([sys.executable, "-m", "apr_sched", "lsf-shims", str(where)], check=True,
                   capture_output=True, env=flow_env(daemon), timeout=30)
    return where


@pytest.mark.parametrize("submit", ["default", "bsub -K"])
def test_the_make_flow_orders_stages_and_reports_the_failing_one(
        daemon: Daemon, tmp_path: Path, submit: str) -> None:  # noqa: F811
    shutil.copy(FLOWS / "Makefile", tmp_path)
    shims = write_shims(daemon, tmp_path / "bin") if submit != "default" else None
    args = ["make", "-k", "-j4", "FAIL=c", "DESIGNS=a b c d"]
    if submit != "default":
        args.append(f"SUBMIT={submit}")
    with daemon.client() as client:
        first = client.list_jobs(limit=1).total
    done = subprocess.run(args, cwd=tmp_path, env=flow_env(daemon, shims), text=True,
                          capture_output=True, timeout=180)
    assert done.returncode != 0
    assert re.search(r"\[Makefile:\d+: place-c\] Error 3", done.stderr), done.stderr
    made = {p.name for p in tmp_path.glob("*-?")}
    assert made == {"synth-a", "synth-b", "synth-c", "synth-d", "place-a", "place-b",
                    "place-d", "route-a", "route-b", "route-d"}
    with daemon.client() as client:
        jobs = client.list_jobs(limit=5000).jobs[first:]
    by_command = {job.command.rsplit("echo ", 1)[-1]: job for job in jobs}
    for design in "abd":  # each stage started only after the previous one ended
        synth, place, route = (by_command[f"{stage} {design}"]
                               for stage in ("synth", "place", "route"))
        assert synth.finished_at and place.started_at and synth.finished_at <= place.started_at
        assert place.finished_at and route.started_at and place.finished_at <= route.started_at
    assert all(job.status.is_final for job in jobs)


@pytest.mark.parametrize("submit", ["apr-sched submit --wait --name int-$@ --",
                                    "bsub -K -J int-$@"])
def test_ctrl_c_to_make_stops_the_jobs_it_waits_for(daemon: Daemon, tmp_path: Path,  # noqa: F811
                                                   submit: str) -> None:
    shims = write_shims(daemon, tmp_path / "bin") if submit.startswith("bsub") else None
    (tmp_path / "Makefile").write_text(f"all: one two\none two:\n\t{submit} sleep 60\n")
    make = subprocess.Popen(["make", "-j2"], cwd=tmp_path, env=flow_env(daemon, shims), text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    with daemon.client() as client:
        def running() -> list[str]:
            return [j.job_id for j in client.list_jobs(status="RUNNING", limit=5000).jobs
                    if j.name in ("int-one", "int-two")]
        ids = wait_until_sync(lambda: len(running()) == 2 and running(), timeout=30)
        os.killpg(make.pid, signal.SIGINT)  # Ctrl-C at the terminal: the whole group
        make.communicate(timeout=30)
        assert make.returncode != 0
        for job_id in ids:
            assert daemon.wait_status(job_id, JobStatus.STOPPED).status is JobStatus.STOPPED


def test_the_shell_script_flow(daemon: Daemon) -> None:  # noqa: F811
    done = subprocess.run([str(FLOWS / "stages.sh"), "blk9"], env=flow_env(daemon),
                          text=True, capture_output=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "synth blk9" and lines[-1] == "signoff blk9"
    # several jobs waited at once: each line says whose it is
    corners = sorted(line.split(": ", 1)[1] for line in lines[1:-1])
    assert corners == ["sta blk9 ff", "sta blk9 ss", "sta blk9 tt"], lines
    assert done.stdout.splitlines()[-1] == "signoff blk9"


def profile() -> dict[str, str]:
    """The engine profile's ``key: "value"`` lines."""
    pairs = {}
    for line in (FLOWS / "engine-profile" / "config.yaml").read_text().splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            pairs[key.strip()] = value.strip().strip('"')
    return pairs


def test_a_workflow_engine_submits_polls_and_cancels(daemon: Daemon, tmp_path: Path  # noqa: F811
                                                    ) -> None:
    """What a generic cluster executor does with the profile's three commands."""
    commands = profile()
    env = flow_env(daemon)

    def submit(rule: str, script: str) -> str:
        path = tmp_path / f"{rule}.sh"
        path.write_text(script)
        line = commands["cluster-generic-submit-cmd"].format(rule=rule, threads=1)
        done = subprocess.run(f"{line} {shlex.quote(str(path))}", shell=True, env=env,
                              text=True, capture_output=True, timeout=30, cwd=tmp_path)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    def status(job_id: str) -> str:
        done = subprocess.run(f"{commands['cluster-generic-status-cmd']} {job_id}",
                              shell=True, env=env, text=True, capture_output=True,
                              timeout=30)
        return done.stdout.strip()

    good, bad, slow = (submit("good", "echo fine\n"), submit("bad", "exit 4\n"),
                       submit("slow", "sleep 60\n"))
    assert status(slow) == "running"
    assert wait_until_sync(lambda: status(good) in ("success", "failed") and status(good),
                           timeout=30) == "success"
    assert wait_until_sync(lambda: status(bad) in ("success", "failed") and status(bad),
                           timeout=30) == "failed"
    # engines run the cancel command without a shell: it must be one word
    cancel = subprocess.run([commands["cluster-generic-cancel-cmd"], slow], env=env,
                            text=True, capture_output=True, timeout=30)
    assert cancel.returncode == 0, cancel.stderr
    assert wait_until_sync(lambda: status(slow) == "failed", timeout=30)
    assert daemon.wait_status(slow, JobStatus.STOPPED).status is JobStatus.STOPPED
