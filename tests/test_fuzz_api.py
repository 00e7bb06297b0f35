"""The /scheduler API fuzzed by schemathesis against the OpenAPI document a live daemon serves.

A real daemon (``python -m apr_sched serve``) on 127.0.0.1 with one host whose
``executor_prefix`` is ``true``: every job the fuzzer submits runs as ``true '<script>'``, so
no generated command ever runs. A ``before_call`` hook keeps it that way for hosts the fuzzer
registers (see ``neutralise``). Bounded: a fixed number of examples per operation, well
under a minute on a 2-core machine.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

from apr_sched.client import SchedulerClient  # noqa: E402
from apr_sched.statedir import read_owner  # noqa: E402
from tests.conftest import wait_until_sync  # noqa: E402

EXAMPLES_PER_OPERATION = int(os.environ.get("APR_FUZZ_EXAMPLES", "25"))
"""Generated cases per operation and mode; raise it (``APR_FUZZ_EXAMPLES=500``) for a long run."""

CONFIG = textwrap.dedent("""
    [scheduler]
    stop_grace_sec = 1

    [[hosts]]
    host_id = "neutral"
    total_slots = 8
    total_cpu = 8
    total_memory_gb = 16
    executor_prefix = "true"
""")

LONG_POLL_CAP_SEC = 0.1
"""``GET /events?wait=60`` (and ``/logs?offset=0&wait=60``) is legal; the fuzzer's waits
are cut to this to stay bounded."""


@dataclass
class FuzzDaemon:
    url: str
    token: str
    state_dir: Path
    refused_port: int
    """A loopback port bound but never listening: SSH hosts the fuzzer registers point here."""


@pytest.fixture(scope="module")
def fuzz_daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FuzzDaemon]:
    root = tmp_path_factory.mktemp("fuzz")
    (root / "hosts.toml").write_text(CONFIG)
    state_dir = root / "state"
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    with open(root / "daemon.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apr_sched", "serve", "--state-dir", str(state_dir),
             "--config", str(root / "hosts.toml"), "--port", "0", "--stop-jobs-on-exit"],
            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until_sync(lambda: (read_owner(state_dir) or {}).get("url")
                        or proc.poll() is not None, timeout=15)
        assert proc.poll() is None, (root / "daemon.log").read_text()
        url = (read_owner(state_dir) or {})["url"]
        token = (state_dir / "token").read_text().strip()
        yield FuzzDaemon(url, token, state_dir, holder.getsockname()[1])
    finally:
        holder.close()
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log_text = (root / "daemon.log").read_text(errors="replace")
        print(f"\n--- fuzzed daemon log (last 4000 chars) ---\n{log_text[-4000:]}")


@pytest.fixture(scope="module")
def live_schema(fuzz_daemon: FuzzDaemon) -> Any:
    config = schemathesis.Config.from_dict({
        "headers": {"Authorization": f"Bearer {fuzz_daemon.token}"},
        "generation": {"mode": "all", "max-examples": EXAMPLES_PER_OPERATION,
                       "database": "none"},
    })
    schema = schemathesis.openapi.from_url(
        f"{fuzz_daemon.url}/scheduler/openapi.json", config=config,
        headers={"Authorization": f"Bearer {fuzz_daemon.token}"}, timeout=10)
    _NEUTRAL_PORT[0] = fuzz_daemon.refused_port
    return schema


_NEUTRAL_PORT = [0]
"""The fuzz daemon's refusing port, for the hook (hooks are global and see no fixtures)."""


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    neutralise(case)


def neutralise(case: Any) -> None:
    """Keep generated input from running anything or reaching anywhere but 127.0.0.1.

    A registered host always runs jobs through ``executor_prefix = "true"``; one with an
    ``ssh`` address is pointed at a loopback port that refuses connections (so it stays
    OFFLINE and gets no jobs). Long polls are cut short.
    """
    path = case.operation.path
    if case.method.upper() == "POST" and path.endswith("/hosts/register") \
            and isinstance(case.body, dict):
        body = dict(case.body)
        if body.get("ssh") is not None:
            body["ssh"] = f"fuzz@127.0.0.1:{_NEUTRAL_PORT[0]}"
            body.pop("executor_prefix", None)
        else:
            body["executor_prefix"] = "true"
        case.body = body
    long_poll = path.endswith("/events") or path.endswith("/logs")
    if long_poll and isinstance(case.query, dict) and "wait" in case.query:
        try:
            wait = float(case.query["wait"])
        except (TypeError, ValueError):
            return
        if LONG_POLL_CAP_SEC < wait <= 60:
            case.query = {**case.query, "wait": LONG_POLL_CAP_SEC}


CHECKS = (
    "not_a_server_error", "status_code_conformance", "content_type_conformance",
    "response_headers_conformance", "response_schema_conformance", "negative_data_rejection",
    "use_after_free", "ensure_resource_availability", "unsupported_method",
    "missing_required_header", "allow_header_conformance",
)
"""Every schemathesis check but ``positive_data_acceptance``: the OpenAPI document states
what the server enforces, but JSON Schema cannot say everything the server refuses (lone
UTF-16 surrogates in strings, which are not UTF-8; control characters in paths; an absolute
workdir), and those refusals are right; and ``ignored_auth``, which reports the routes that
take an ``Idempotency-Key`` as accepting bad credentials although the server answers 401
(its replayed request keeps the fixture's valid header). tests/test_http_auth.py checks
every route without a token and with wrong ones, against its own table."""


def checks_for(case: Any) -> list[Any]:
    from schemathesis import checks

    return [getattr(checks, name) for name in CHECKS]


schema = schemathesis.pytest.from_fixture("live_schema")


@schema.parametrize()
@settings(deadline=None, suppress_health_check=list(HealthCheck))
@pytest.mark.timeout(120 + 3 * EXAMPLES_PER_OPERATION)
def test_api_has_no_server_errors(case: Any) -> None:
    case.call_and_validate(checks=checks_for(case))


def test_fuzzed_input_never_ran_a_command(fuzz_daemon: FuzzDaemon, tmp_path: Path) -> None:
    """After the fuzz: the daemon still serves, every host is neutral, every job log left is
    empty (``true`` prints nothing; the fuzzer may have purged some), and a job that would
    print and write a file does neither."""
    marker = tmp_path / "ran"
    with SchedulerClient(fuzz_daemon.url, fuzz_daemon.token) as client:
        assert client.health()["status"] == "ok"
        for host in client.hosts():
            assert host.executor_prefix == "true" or (
                host.ssh == f"fuzz@127.0.0.1:{fuzz_daemon.refused_port}"), host
        client.register_host({"host_id": "probe", "total_slots": 1, "total_cpu": 1,
                              "total_memory_gb": 0, "executor_prefix": "true",
                              "labels": {"fuzz": "probe"}})
        job = client.submit({"command": f"echo ran; touch {marker}",
                             "resource_request": {"cpu": 0, "memory_gb": 0,
                                                  "host_labels": {"fuzz": "probe"}}})
        done = wait_until_sync(lambda: (j := client.job(job.job_id)).status.is_final and j,
                               timeout=10)
        assert done.status.value == "SUCCEEDED"
        assert client.logs(job.job_id)["lines"] == []
    assert not marker.exists()
    logs = sorted((fuzz_daemon.state_dir / "logs").rglob("*.log"))
    assert [log for log in logs if log.stat().st_size] == []
