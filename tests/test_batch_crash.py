"""A real daemon killed by SIGKILL while a 10,000-job batch is being written, at several
moments (early and late in staging, just after the publish commit): after each restart
the batch is there whole or not at all, to every reader, and a retry with the same
Idempotency-Key creates it exactly once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from apr_sched.client import SchedulerClient
from apr_sched.errors import NotFound
from apr_sched.scheduler import DB_NAME
from tests.crash_campaign import Daemon

SIZE = 10_000
HOSTS = """
[[hosts]]
host_id = "local"
total_slots = 4
total_cpu = 4
total_memory_gb = 4
"""
JOB = {"command": "true", "project": "B", "allow_pending": True,
       "resource_request": {"host_labels": {"x": "no"}}}
"""Unplaceable: the batch stays PENDING, only its submit is exercised."""


class Raw:
    """The database file as another process reads it, without the daemon's filters."""

    def __init__(self, state_dir: Path) -> None:
        self.db = sqlite3.connect(f"file:{state_dir / DB_NAME}?mode=ro", uri=True)

    def one(self, sql: str) -> int:
        return int(self.db.execute(sql).fetchone()[0] or 0)

    def batch_state(self) -> str:
        rows = self.db.execute("SELECT event_base FROM batches").fetchall()
        if not rows:
            return "none"
        return "staged" if rows[0][0] is None else "published"

    def close(self) -> None:
        self.db.close()


def post_batch(client: SchedulerClient, body: Path, key: str) -> subprocess.Popen[bytes]:
    """The batch, sent by curl: the kill leaves it without an answer, as a real client."""
    return subprocess.Popen(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "120",
         "-H", f"Authorization: Bearer {client.token}", "-H", f"Idempotency-Key: {key}",
         "-H", "Content-Type: application/json", "--data-binary", f"@{body}",
         f"{client.url}/scheduler/jobs/batch"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("the daemon never reached the moment to kill it at")
        time.sleep(0.001)  # bounded poll on the database file


def check_whole_or_nothing(client: SchedulerClient, state_dir: Path, singles: int) -> int:
    """Every reader agrees the batch is all there or absent; returns its size seen."""
    raw = Raw(state_dir)
    try:
        assert raw.batch_state() == "none", "the restart left a batch half done"
        jobs = raw.one("SELECT COUNT(*) FROM jobs")
        assert raw.one("SELECT COUNT(*) FROM attempts") == jobs
        assert raw.one("SELECT COUNT(*) FROM events WHERE kind='job' AND reason='submitted'"
                       ) == jobs
        assert raw.one("SELECT COUNT(*) FROM events") == raw.one("SELECT MAX(seq) FROM events")
    finally:
        raw.close()
    batch = client.jobs(project="B", limit=0).total
    assert batch in (0, SIZE)
    assert jobs == batch + singles
    assert client.jobs(limit=0).total == jobs
    assert client.metrics().jobs_total == jobs
    events, since = 0, 0
    while page := client.events(since=since, limit=1000)["events"]:
        assert [e["seq"] for e in page] == list(range(since + 1, since + 1 + len(page)))
        events += sum(1 for e in page if e.get("reason") == "submitted")
        since = page[-1]["seq"]
    assert events == jobs
    last = client.jobs(project="B", limit=1, offset=max(batch - 1, 0)).jobs
    if batch:
        assert [e.reason for e in client.job(last[0].job_id).events] == ["submitted"]
    else:
        assert last == []
        with pytest.raises(NotFound):  # the first id of the batch that never was
            client.job(str(singles + 1))
    return batch


@pytest.mark.timeout(300)
def test_a_batch_killed_at_any_moment_is_all_or_nothing(tmp_path):
    state_dir, config, body = tmp_path / "state", tmp_path / "hosts.toml", tmp_path / "b.json"
    config.write_text(HOSTS)
    body.write_text(json.dumps({"jobs": [JOB] * SIZE}))
    daemon = Daemon(state_dir, config)
    hit: list[str] = []
    try:
        client = daemon.start()
        singles = 3
        for _ in range(singles):
            client.submit({**JOB, "project": "S"})
        moments = [
            ("10% staged", lambda raw: raw.one("SELECT COUNT(*) FROM jobs") >= singles + 1000),
            ("90% staged", lambda raw: raw.one("SELECT COUNT(*) FROM jobs") >= singles + 9000),
            ("published", lambda raw: raw.batch_state() == "published"),
        ]
        for name, moment in moments:
            curl = post_batch(client, body, "batch-1")
            raw = Raw(state_dir)
            try:
                wait_for(lambda m=moment, r=raw, c=curl: m(r) or c.poll() is not None)
                daemon.kill9()
                hit.append(f"{name}: {raw.batch_state()}")
            finally:
                raw.close()
            curl.wait(30)
            client.close()
            client = daemon.start()
            batch = check_whole_or_nothing(client, state_dir, singles)
            if hit[-1].endswith("staged"):
                assert batch == 0
            elif hit[-1].endswith("published"):
                assert batch == SIZE  # committed, though its client never saw the 201
        assert hit[:2] == ["10% staged: staged", "90% staged: staged"], hit
        # the same request again: created now if it never was, else the first reply
        retry = post_batch(client, body, "batch-1")
        out, _ = retry.communicate(timeout=120)
        assert out == b"201"
        assert check_whole_or_nothing(client, state_dir, singles) == SIZE
        # a staged batch's reserved ids were never seen: after the restart they are free
        assert client.jobs(project="B", limit=1).jobs[0].job_id == str(singles + 1)
        client.close()
    finally:
        daemon.stop()
    print("killed at:", hit)
