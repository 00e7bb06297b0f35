"""Job graphs across ``kill -9``: a real daemon killed twice while a DAG runs (jobs ending
while it is down), restarted each time; afterwards every job ran at most once and in
topological order, exactly the downstream of the failed job is CANCELLED, a held job is still
held, a begin time and a modification survived."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from apr_sched.models import JobStatus
from tests.conftest import wait_until_sync
from tests.crash_campaign import Daemon
from tests.graph_helpers import make_dag

HOSTS = """
[[hosts]]
host_id = "local"
total_slots = 4
total_cpu = 8
total_memory_gb = 8
"""


def ledger_lines(ledger: Path) -> list[str]:
    return ledger.read_text().splitlines() if ledger.exists() else []


def running(ledger: Path) -> set[str]:
    """Jobs the ledger shows started and not ended."""
    lines = ledger_lines(ledger)
    return ({line.split()[1] for line in lines if line.startswith("start")}
            - {line.split()[1] for line in lines if line.startswith("end")})


def test_a_dag_killed_twice_runs_in_order_and_cancels_exactly_its_downstream(
        tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    (tmp_path / "hosts.toml").write_text(HOSTS)
    daemon = Daemon(tmp_path / "state", tmp_path / "hosts.toml")
    command = (f'echo "start $APR_JOB_ID" >> {ledger}; sleep 0.05; '
               f'echo "end $APR_JOB_ID" >> {ledger}')
    dag = make_dag(120, seed=3, command=command)
    for spec in dag.specs:
        if spec["name"] == "n4":
            spec["command"] = f"{command}; exit 3"
    client = daemon.start()
    try:
        jobs = client.submit_batch(dag.specs)
        ids = {job.name: job.job_id for job in jobs}
        doomed = dag.downstream(["n4"], {"after_ok"}) | {"n4"}
        last = ids[max((name for name in ids if name not in doomed),
                       key=lambda name: int(name[1:]))]
        held = client.submit({"command": "true", "hold": True,
                              "depends_on": {"after_ok": [ids["n0"]]}})
        begin_at = datetime.now(UTC) + timedelta(seconds=3)
        later = client.submit({"command": "true", "begin_at": begin_at.isoformat()})
        changed = client.submit({"command": "true", "depends_on": {"after_ok": [last]}})
        client.modify(changed.job_id, {"priority": 9, "resource_request": {"cpu": 2}})
        ended_while_down = 0
        for ended in (15, 60):
            wait_until_sync(lambda ended=ended: sum(
                line.startswith("end") for line in ledger_lines(ledger)) >= ended, timeout=60)
            daemon.kill9()
            client.close()
            ended_while_down += len(running(ledger))
            # the jobs outlive the daemon: those running end while it is down, and their
            # dependents are released (or cancelled) at recovery
            wait_until_sync(lambda: not running(ledger), timeout=30)
            client = daemon.start()
        wanted = [*ids.values(), later.job_id, changed.job_id]
        wait_until_sync(lambda: all(s.is_final for s in client.job_statuses(wanted).values()),
                        timeout=90, interval=0.1)
        final = {job.job_id: job for job in client.list_jobs(ids=wanted).jobs}
        assert ended_while_down, "no job was running at either kill"
        assert client.get_job(held.job_id).status is JobStatus.HELD
        client.resume(held.job_id)
        assert client.wait(held.job_id, 30).status is JobStatus.SUCCEEDED
    finally:
        client.close()
        daemon.stop()
    lines = ledger_lines(ledger)
    starts = Counter(line.split()[1] for line in lines if line.startswith("start"))
    assert max(starts.values()) == 1, "a job ran twice"
    position = {line: index for index, line in enumerate(lines)}
    names = {job_id: name for name, job_id in ids.items()}
    cancelled = {names[j] for j in ids.values() if final[j].status is JobStatus.CANCELLED}
    assert cancelled == dag.downstream(["n4"], {"after_ok"})
    assert {names[j] for j in starts if j in names} == set(ids) - cancelled
    for upstream, dependent, _ in dag.edges:  # a cancelled upstream never ran
        if upstream not in cancelled and dependent not in cancelled:
            assert position[f"end {ids[upstream]}"] < position[f"start {ids[dependent]}"], (
                upstream, dependent)
    assert final[later.job_id].started_at >= begin_at
    assert final[changed.job_id].priority == 9
    assert final[changed.job_id].resource_request.cpu == 2
    assert final[changed.job_id].status is JobStatus.SUCCEEDED
