"""Job graphs through the command line, against a real daemon: submit's --after, --hold and
--begin, graph, modify, top, bottom, rerun --with-dependents, the exit code and status word
of a CANCELLED job, and the make flow as one batch that runs with no client alive."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from apr_sched.models import JobStatus
from apr_sched.outcomes import EXIT_CANCELLED
from tests.conftest import wait_until_sync
from tests.test_client_cli import (  # noqa: F401  (fixtures)
    APR_SCHED,
    Daemon,
    Run,
    apr,
    clean_env,
    daemon,
    submitted_id,
)

FLOWS = Path(__file__).resolve().parent.parent / "examples" / "flows"


def test_submit_after_hold_begin_then_graph_modify_move_and_rerun(
        apr: Run, daemon: Daemon, tmp_path: Path) -> None:  # noqa: F811
    gate, fixed = tmp_path / "gate", tmp_path / "fixed"
    up = submitted_id(apr("submit", "--name", "up", "--",
                          f"while [ ! -e {gate} ]; do sleep 0.02; done; test -e {fixed}"))
    mid = submitted_id(apr("submit", "--after", up, "--name", "mid", "--", "true"))
    low = submitted_id(apr("submit", "--after", mid, "--after-any", f"{up},{up}",
                           "--name", "low", "--", "true"))
    held = submitted_id(apr("submit", "--hold", "--begin", "2999-01-01T18:00", "--", "true"))
    daemon.wait_status(up, JobStatus.RUNNING)
    job = json.loads(apr("job", low, "--json").stdout)
    assert job["depends_on"] == {"after_ok": [mid], "after_any": [up, up], "after_failed": []}
    assert job["pending_reason"] == f"waiting for job {mid} (PENDING) to succeed (and 1 more)"
    shown = json.loads(apr("job", held, "--json").stdout)
    assert shown["status"] == "HELD" and shown["begin_at"].startswith("2999-01-01T")
    lines = apr("graph", mid).stdout.splitlines()
    assert lines == [f"    {up} up RUNNING  [after_ok of {mid}: waiting]",
                     f"* {mid} mid PENDING  [waiting for job {up} (RUNNING) to succeed]",
                     f"    {low} low PENDING  [after_ok on {mid}: waiting]"]
    assert json.loads(apr("graph", low, "--json", "--depth", "1").stdout)["nodes"][0][
        "job_id"] == up
    nowhere = apr("modify", held, "--label", "site=sj")
    assert nowhere.returncode == 1 and "no host has label site=sj" in nowhere.stderr
    modified = apr("modify", held, "--priority", "4", "--cpu", "2", "--begin", "none")
    assert modified.stdout.strip() == f"{held}: modified (HELD)", modified.stderr
    job = json.loads(apr("job", held, "--json").stdout)
    assert (job["priority"], job["resource_request"]["cpu"], job["begin_at"]) == (4, 2, None)
    assert job["events"][-1]["reason"].startswith("modified: priority 0 -> 4, begin_at ")
    running = apr("modify", up, "--cpu", "2")
    assert running.returncode == 1 and "once a job runs only priority and timeout_sec" in (
        running.stderr)
    assert apr("modify", held).returncode != 0  # nothing to change
    assert apr("top", mid).stdout.strip() == f"{mid}: moved to the front of priority 0 (PENDING)"
    assert apr("bottom", up).returncode == 1
    gate.touch()
    waited = apr("wait", low)
    assert waited.returncode == EXIT_CANCELLED
    assert f"job {low} CANCELLED (dependency {mid} CANCELLED)" in waited.stderr
    assert apr("status", low).stdout.split() == ["failed"]
    fixed.touch()
    again = apr("rerun", "--with-dependents", up)
    assert again.stdout.strip() == f"{up}: PENDING", again.stderr
    assert apr("wait", low).returncode == 0
    apr("stop", held)


def test_the_make_flow_as_one_batch_runs_with_no_client_alive(
        daemon: Daemon, tmp_path: Path) -> None:  # noqa: F811
    made = subprocess.run([sys.executable, str(FLOWS / "batch_flow.py"), "--fail", "c",
                           "--workdir", str(tmp_path)], capture_output=True, text=True,
                          check=True, timeout=30)
    (tmp_path / "flow.json").write_text(made.stdout)
    submit = subprocess.run([*APR_SCHED, "submit-batch", "--state-dir", str(daemon.state_dir),
                             "--json", str(tmp_path / "flow.json")], capture_output=True,
                            text=True, timeout=30, env=clean_env())
    assert submit.returncode == 0, submit.stderr
    ids = json.loads(submit.stdout)["job_ids"]  # the client has exited: the daemon runs it
    assert len(ids) == 12
    with daemon.client() as client:
        wait_until_sync(lambda: all(s.is_final for s in client.job_statuses(ids).values()),
                        timeout=60, interval=0.1)
        jobs = {job.name: job for job in client.list_jobs(ids=ids).jobs}
        route_c = client.get_job(jobs["route-c"].job_id)
    assert {name for name, job in jobs.items() if job.status is not JobStatus.SUCCEEDED} == {
        "place-c", "route-c"}
    assert jobs["place-c"].status is JobStatus.FAILED and jobs["place-c"].exit_code == 3
    assert route_c.status is JobStatus.CANCELLED and route_c.started_at is None
    assert route_c.events[-1].reason == f"dependency {jobs['place-c'].job_id} FAILED"
    assert {p.name for p in tmp_path.glob("*-?")} == {
        "synth-a", "synth-b", "synth-c", "synth-d", "place-a", "place-b", "place-d",
        "route-a", "route-b", "route-d"}
    for design in "abd":  # each stage started only after the one before it ended
        synth, place, route = (jobs[f"{stage}-{design}"] for stage in ("synth", "place",
                                                                        "route"))
        assert synth.finished_at and place.started_at and synth.finished_at <= place.started_at
        assert place.finished_at and route.started_at and place.finished_at <= route.started_at
