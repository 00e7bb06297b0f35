"""The seed usage document's own curl commands (sections 2-5), run with curl against a live
daemon. Only the port differs, and the token header is added because auth is on.

The seed registers host-a with an executor_prefix naming 10.0.0.11; here that field is
dropped so every job runs on this machine and nothing tries to reach that address.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from apr_sched.statedir import read_owner
from tests.conftest import wait_until_sync

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.skipif(shutil.which("curl") is None and not __import__("os").environ.get(
    "CI"), reason="curl not installed (.ci/run installs it)")


class Curl:
    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def __call__(self, *args: str, cwd: Path | None = None) -> tuple[int, object]:
        """Run curl with the seed's arguments (URL host:port rewritten), return status, JSON."""
        argv = ["curl", "-sS", "-w", "\n%{http_code}", "-H", f"Authorization: Bearer {self.token}"]
        argv += [a.replace("http://127.0.0.1:5000", self.url) for a in args]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=30, cwd=cwd,
                             check=True).stdout
        body, _, status = out.rpartition("\n")
        return int(status), json.loads(body) if body.strip() else None


@pytest.fixture
def daemon(tmp_path):
    state_dir = tmp_path / "state"
    config = tmp_path / "empty.toml"
    config.write_text("")
    proc = subprocess.Popen(
        [sys.executable, "-m", "apr_sched", "serve", "--host", "127.0.0.1", "--port", "0",
         "--state-dir", str(state_dir), "--config", str(config), "--stop-jobs-on-exit"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        owner = wait_until_sync(lambda: (read_owner(state_dir) or {}).get("url")
                                and read_owner(state_dir), timeout=20)
        token = (state_dir / "token").read_text().strip()
        yield Curl(owner["url"], token)
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, output


def seed_hosts() -> list[dict]:
    hosts = tomllib.loads((EXAMPLES / "hosts.toml").read_text())["hosts"]
    for host in hosts:
        host.pop("executor_prefix", None)  # never reach 10.0.0.x from a test
    return hosts


def test_seed_sections_2_to_5(daemon, tmp_path):
    curl = daemon
    # 2. health
    status, health = curl("-X", "GET", "http://127.0.0.1:5000/scheduler/health")
    assert status == 200 and health["status"] == "ok"

    # 3. register five servers, heartbeat
    for host in seed_hosts():
        status, reply = curl("-X", "POST", "http://127.0.0.1:5000/scheduler/hosts/register",
                             "-H", "Content-Type: application/json", "-d", json.dumps(host))
        assert status == 201 and reply["host_id"] == host["host_id"]
    status, beat = curl("-X", "POST", "http://127.0.0.1:5000/scheduler/hosts/host-a/heartbeat")
    assert status == 200 and beat["host_id"] == "host-a" and beat["state"] == "ONLINE"

    # 4.1 one job, exactly the seed's body
    job_body = """{
    "project": "P1",
    "design": "top",
    "owner": "cad_user",
    "priority": 2,
    "timeout_sec": 3600,
    "retry_limit": 1,
    "workdir": "/tmp",
    "command": "bash -lc \\"echo start && sleep 5 && echo done\\"",
    "resource_request": {
      "cpu": 4,
      "memory_gb": 8,
      "slots": 1,
      "host_labels": {"tool": "innovus"}
    }
  }"""
    status, job = curl("-X", "POST", "http://127.0.0.1:5000/scheduler/jobs",
                       "-H", "Content-Type: application/json", "-d", job_body)
    assert status == 201 and job["status"] in ("PENDING", "RUNNING")
    job_id = job["job_id"]

    # 4.2 the batch file, and a generated batch of 100
    status, batch = curl("-X", "POST", "http://127.0.0.1:5000/scheduler/jobs/batch",
                         "-H", "Content-Type: application/json",
                         "-d", f"@{EXAMPLES / 'batch_jobs.json'}")
    assert status == 201 and batch["count"] == 100
    subprocess.run([sys.executable, str(EXAMPLES / "gen_batch_jobs.py"), "--count", "100",
                    "--output", "batch_jobs_100.json"], cwd=tmp_path, check=True, timeout=30)
    status, batch = curl("-X", "POST", "http://127.0.0.1:5000/scheduler/jobs/batch",
                         "-H", "Content-Type: application/json", "-d", "@batch_jobs_100.json",
                         cwd=tmp_path)
    assert status == 201 and batch["count"] == 100

    # 5. monitor and control
    def running() -> bool:
        status, listing = curl("-X", "GET",
                               "http://127.0.0.1:5000/scheduler/jobs?status=RUNNING")
        return status == 200 and job_id in [j["job_id"] for j in listing["jobs"]]

    wait_until_sync(running, timeout=20)
    status, detail = curl("-X", "GET", f"http://127.0.0.1:5000/scheduler/jobs/{job_id}")
    assert status == 200 and detail["events"][0]["to_status"] == "PENDING"
    wait_until_sync(lambda: curl(
        "-X", "GET", f"http://127.0.0.1:5000/scheduler/jobs/{job_id}/logs?tail=200"
    )[1]["lines"] == ["start"], timeout=10)
    for action, expected in [("pause", "PAUSED"), ("resume", "RUNNING"), ("stop", None)]:
        status, reply = curl("-X", "POST",
                             f"http://127.0.0.1:5000/scheduler/jobs/{job_id}/{action}")
        assert status == 200, (action, reply)
        if expected:
            assert reply["status"] == expected
    wait_until_sync(lambda: curl("-X", "GET", f"http://127.0.0.1:5000/scheduler/jobs/{job_id}")
                    [1]["status"] == "STOPPED", timeout=15)
    status, rerun = curl("-X", "POST", f"http://127.0.0.1:5000/scheduler/jobs/{job_id}/rerun")
    assert status == 200 and rerun["attempt"] == 2
    status, metrics = curl("-X", "GET", "http://127.0.0.1:5000/scheduler/metrics/summary")
    assert status == 200 and metrics["jobs_total"] == 201 and metrics["hosts_online"] == 6
