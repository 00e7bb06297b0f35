"""One client API: Scheduler (async), BlockingScheduler and SchedulerClient (daemon) expose
the same methods, arguments and return types, and one flow runs unchanged on either sync
client, which is what ``apr_sched.connect()`` hands out."""

from __future__ import annotations

import inspect
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

import apr_sched
from apr_sched import AprError, BlockingScheduler, Job, JobStatus, NotFound, Scheduler
from apr_sched.client import SchedulerClient
from apr_sched.statedir import StateDirLock
from tests.conftest import wait_until_sync
from tests.daemon_process import DaemonProcess, running_daemon

if TYPE_CHECKING:
    from apr_sched.connection import Client

CANONICAL = [
    "register_host", "heartbeat", "unregister_host", "list_hosts", "get_host",
    "submit", "submit_batch", "list_jobs", "get_job", "tail_log", "read_log",
    "pause", "resume", "stop", "rerun", "modify", "top", "bottom", "graph", "purge",
    "metrics_summary", "events_since", "wait",
]
"""The Scheduler's names: every client has each, with the Scheduler's signature."""

SYNC_ONLY = ["wait_all", "as_completed", "submit_handle", "handle", "job_statuses"]
"""Futures-style helpers: the two sync clients alike (asyncio has gather and as_completed)."""

IN_PROCESS_ONLY = {
    ("read_log", "max_bytes"): "the daemon reads at most 1 MiB per call",
    ("purge", "host_events"): "the daemon's purge always includes host events",
}
"""Arguments the daemon's HTTP API does not take: the daemon client leaves them out."""

KEY_TYPE = {("submit", "idempotency_key"), ("submit_batch", "idempotency_key")}
"""The Scheduler takes the HTTP layer's caller-scoped key; the sync clients a string."""


def shape(cls: type, name: str, *, drop: set[str] = frozenset(),  # type: ignore[assignment]
          untyped: set[str] = frozenset()) -> tuple[Any, ...]:  # type: ignore[assignment]
    """A method's parameters (name, kind, default, annotation) and return annotation;
    annotations are the source text (every module uses postponed annotations)."""
    sig = inspect.signature(getattr(cls, name))
    params = tuple(
        (p.name, p.kind, p.default, None if p.name in untyped else p.annotation)
        for p in sig.parameters.values() if p.name not in drop)
    return params, sig.return_annotation


@pytest.mark.parametrize("name", CANONICAL)
def test_every_client_has_the_schedulers_method(name: str) -> None:
    assert inspect.iscoroutinefunction(getattr(Scheduler, name))
    only_here = {param for (method, param) in IN_PROCESS_ONLY if method == name}
    untyped = {param for (method, param) in KEY_TYPE if method == name}
    expected = shape(Scheduler, name, untyped=untyped)
    assert shape(BlockingScheduler, name, untyped=untyped) == expected
    assert shape(SchedulerClient, name, untyped=untyped) == shape(
        Scheduler, name, drop=only_here, untyped=untyped)
    for cls in (BlockingScheduler, SchedulerClient):
        assert not inspect.iscoroutinefunction(getattr(cls, name))


@pytest.mark.parametrize("name", sorted(KEY_TYPE))
def test_the_sync_clients_take_the_same_idempotency_key(name: tuple[str, str]) -> None:
    method, param = name
    for cls in (BlockingScheduler, SchedulerClient):
        annotation = inspect.signature(getattr(cls, method)).parameters[param].annotation
        assert annotation == "str | None"


@pytest.mark.parametrize("name", SYNC_ONLY)
def test_the_sync_clients_share_the_helpers(name: str) -> None:
    assert shape(BlockingScheduler, name) == shape(SchedulerClient, name)


@pytest.mark.parametrize("cls", [BlockingScheduler, SchedulerClient])
def test_both_sync_clients_are_context_managers(cls: type) -> None:
    assert all(callable(getattr(cls, name, None)) for name in ("close", "__enter__", "__exit__"))


def test_the_daemon_clients_short_names_still_work_and_say_what_replaced_them() -> None:
    for old, new in [("job", "get_job"), ("jobs", "list_jobs"), ("logs", "tail_log"),
                     ("hosts", "list_hosts"), ("host", "get_host"),
                     ("metrics", "metrics_summary"), ("events", "events_since")]:
        doc = getattr(SchedulerClient, old).__doc__ or ""
        assert doc.startswith("Deprecated") and new in doc, old


def test_the_package_exports_the_clients_and_connect() -> None:
    assert apr_sched.SchedulerClient is SchedulerClient
    assert {"connect", "JobHandle", "SchedulerClient", "DaemonUnreachable"} <= set(
        apr_sched.__all__)


# one flow, two places --------------------------------------------------------------------
def flow(client: Client, workdir: Path) -> dict[str, Any]:
    """A small flow using the whole sync API; what it returns must not depend on where the
    scheduler runs."""
    spec = {"workdir": str(workdir), "resource_request": {"cpu": 1, "memory_gb": 0.1}}
    place = client.submit_handle({**spec, "name": "place", "command": "echo placed"})
    assert isinstance(place, apr_sched.JobHandle)
    placed = place.result(timeout=30)
    batch = client.submit_batch([{**spec, "name": f"route{n}", "command": f"echo r{n}; exit {n}"}
                                 for n in range(3)], idempotency_key="flow-routes")
    again = client.submit_batch([{**spec, "name": f"route{n}", "command": f"echo r{n}; exit {n}"}
                                 for n in range(3)], idempotency_key="flow-routes")
    assert [j.job_id for j in again] == [j.job_id for j in batch]
    finished = [job.name for job in client.as_completed(batch, timeout=30)]
    routes = client.wait_all([job.job_id for job in batch], timeout=30)
    sleeper = client.submit_handle({**spec, "name": "long", "command": "sleep 60"})
    with pytest.raises(TimeoutError, match=f"job {sleeper.job_id} not final"):
        client.wait_all([placed, sleeper], timeout=0.3)
    stopped = sleeper.stop()
    page = client.list_jobs(ids=[j.job_id for j in routes], status=["FAILED"])
    statuses = client.job_statuses([routes[1].job_id, placed.job_id])
    events = client.events_since(0, limit=10_000)
    with pytest.raises(NotFound):
        client.get_job("99999")
    return {
        "place": (placed.status, client.tail_log(placed.job_id, 1).lines),
        "routes": [(j.name, j.status, j.exit_code, client.tail_log(j.job_id).lines)
                   for j in routes],
        "finished": sorted(finished),
        "failed": sorted(j.name or "" for j in page.jobs),
        "statuses": list(statuses.values()),
        "stop": (stopped.job_id == sleeper.job_id,
                 sleeper.result(timeout=30).status, sleeper.done()),
        "job": type(client.get_job(placed.job_id)).__name__,
        "events_are_models": all(hasattr(e, "seq") for e in events) and len(events) > 10,
        "hosts": [h.host_id for h in client.list_hosts()],
        "metrics": client.metrics_summary().jobs_total,
        "read_log": client.read_log(placed.job_id, 0).lines,
    }


EXPECTED = {
    "place": (JobStatus.SUCCEEDED, ["placed"]),
    "routes": [("route0", JobStatus.SUCCEEDED, 0, ["r0"]),
               ("route1", JobStatus.FAILED, 1, ["r1"]),
               ("route2", JobStatus.FAILED, 2, ["r2"])],
    "finished": ["route0", "route1", "route2"],
    "failed": ["route1", "route2"],
    "statuses": [JobStatus.FAILED, JobStatus.SUCCEEDED],
    "stop": (True, JobStatus.STOPPED, True),
    "job": "Job",
    "events_are_models": True,
    "hosts": ["local"],
    "metrics": 5,
    "read_log": ["placed"],
}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DaemonProcess]:
    with running_daemon(tmp_path_factory.mktemp("one_api")) as process:
        yield process


def test_the_flow_runs_in_process(tmp_path: Path) -> None:
    hosts = [apr_sched.HostSpec(host_id="local", total_slots=4, total_cpu=4,
                                total_memory_gb=4)]
    with apr_sched.connect(tmp_path / "state", hosts=hosts, stop_grace_sec=2) as client:
        assert isinstance(client, BlockingScheduler)
        assert flow(client, tmp_path) == EXPECTED


def test_the_same_flow_runs_against_a_daemon(daemon: DaemonProcess, tmp_path: Path) -> None:
    with apr_sched.connect(daemon.state_dir, hosts=["ignored: a daemon runs"]) as client:
        assert isinstance(client, SchedulerClient)
        assert client.url.startswith("unix:")  # the state dir's socket: no token needed
        assert flow(client, tmp_path) == EXPECTED


def test_waiting_on_the_daemon_is_a_long_poll_not_a_polling_loop(daemon: DaemonProcess,
                                                                    tmp_path: Path) -> None:
    with apr_sched.connect(daemon.state_dir) as client:
        handle = client.submit_handle({"command": "sleep 60", "workdir": str(tmp_path)})
        before = len(daemon.requests())
        with pytest.raises(TimeoutError):
            handle.result(timeout=1.5)
        # The long poll is logged when it is answered: wait for that line, then count.
        served = wait_until_sync(
            lambda: (r := daemon.requests()[before:]) and r[-1].startswith("GET /scheduler/"
                                                                             "events") and r)
        handle.stop()
    # the cursor (health), the job (GET /jobs?id=) and one long poll for the whole wait
    assert len(served) <= 4, served


def test_connect_follows_a_url(daemon: DaemonProcess, tmp_path: Path) -> None:
    url = (daemon.state_dir / "scheduler.json").read_text()
    http_url = url.split('"url": "')[1].split('"')[0]
    with apr_sched.connect(tmp_path / "elsewhere", url=http_url,
                           token=(daemon.state_dir / "token").read_text().strip()) as client:
        assert isinstance(client, SchedulerClient) and client.url == http_url
        assert client.list_hosts()[0].host_id == "local"


def test_connect_waits_for_a_starting_daemon_to_record_its_url(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    state_dir = tmp_path / "state"
    with StateDirLock(state_dir) as lock:  # a daemon between taking the dir and listening
        timer = threading.Timer(0.3, lambda: lock.update(url="http://127.0.0.1:9"))
        timer.start()
        try:
            client = apr_sched.connect(state_dir)
        finally:
            timer.cancel()
        assert isinstance(client, SchedulerClient) and client.url == "http://127.0.0.1:9"
        client.close()


def test_connect_refuses_an_owner_that_serves_no_api(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from apr_sched import connection

    monkeypatch.setattr(connection, "DAEMON_START_GRACE_SEC", 0.2)
    state_dir = tmp_path / "state"
    with StateDirLock(state_dir), pytest.raises(AprError, match="serves no API"):
        apr_sched.connect(state_dir)


def test_in_process_idempotency_keys_mean_what_they_mean_over_http(tmp_path: Path) -> None:
    with apr_sched.connect(tmp_path / "state") as client:
        first = client.submit({"command": "true", "workdir": "/tmp"}, idempotency_key="k-1")
        again = client.submit({"command": "true", "workdir": "/tmp"}, idempotency_key="k-1")
        assert again.job_id == first.job_id
        with pytest.raises(AprError, match="different request"):
            client.submit({"command": "false", "workdir": "/tmp"}, idempotency_key="k-1")
        with pytest.raises(apr_sched.InvalidInput, match="idempotency_key"):
            client.submit({"command": "true"}, idempotency_key="two words")
        assert client.list_jobs().total == 1


def test_a_key_used_in_process_is_honoured_by_the_daemon_later(tmp_path: Path) -> None:
    spec = {"command": "true", "workdir": "/tmp", "name": "once"}
    with apr_sched.connect(tmp_path / "state") as client:  # running_daemon's state dir
        first = client.submit(spec, idempotency_key="step-1")
    with running_daemon(tmp_path) as daemon, apr_sched.connect(daemon.state_dir) as client:
        assert isinstance(client, SchedulerClient)
        assert client.submit(spec, idempotency_key="step-1").job_id == first.job_id
        assert client.list_jobs().total == 1


def test_a_handle_on_an_unknown_job_says_so(tmp_path: Path) -> None:
    with apr_sched.connect(tmp_path / "state") as client:
        with pytest.raises(NotFound):
            client.handle("12345").done()
        with pytest.raises(NotFound):
            client.wait_all(["12345"])
        job: Job = client.submit({"command": "true", "workdir": "/tmp"})
        assert client.handle(job).result(timeout=30).status is JobStatus.SUCCEEDED
