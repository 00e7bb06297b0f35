"""The Unix socket and its permissions, with an in-process scheduler and real local users.

Who may connect depends on whether jobs run as their owners: by default only the daemon's
account (and root), since another user's job would run as the daemon's account. Every route
is checked for a user who owns nothing and is no admin, against a table kept here (not
derived from the server's own OpenAPI document).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import socket
import stat
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from apr_sched import Scheduler
from apr_sched.client import DaemonUnreachable, SchedulerClient, find_daemon
from apr_sched.http.api import SchedulerApi
from apr_sched.http.service import HttpService
from apr_sched.models import JobStatus
from apr_sched.unix_socket import connect_unix, reachable_path
from tests.conftest import host, wait_until
from tests.identity_helpers import USER_A, USER_B, as_user, local_user, open_dir

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: test users, setuid")


@contextlib.asynccontextmanager
async def serving(state_dir: Path, *, run_as_owner: bool = False,
                  **options: Any) -> AsyncIterator[tuple[Scheduler, HttpService]]:
    scheduler = Scheduler(state_dir, hosts=[host("h1")], stop_grace_sec=1.0,
                          run_as_owner=run_as_owner)
    await scheduler.start()
    service = HttpService(scheduler, port=0, **options)
    try:
        await service.start()
        yield scheduler, service
    finally:
        await service.close()
        await scheduler.close(stop_jobs=True)


def sock_of(service: HttpService) -> str:
    url = service.socket_url
    assert url is not None
    return url


async def is_running(scheduler: Scheduler, job_id: str) -> bool:
    return (await scheduler.get_job(job_id)).status is JobStatus.RUNNING


async def run_as(user: str, action: Any) -> Any:
    """``as_user`` off the loop: the daemon under test runs on this very loop."""
    return await asyncio.to_thread(as_user, user, action)


def raw_exchange(path: Path, requests: list[tuple[str, str, Any]]) -> list[int]:
    """Each request on its own connection to the socket; the statuses."""
    statuses = []
    for method, target, body in requests:
        conn = http.client.HTTPConnection("localhost", timeout=30)
        conn.sock = connect_unix(path, 30)
        payload = None if body is None else json.dumps(body).encode()
        conn.request(method, target, body=payload,
                     headers={"Content-Type": "application/json"} if payload else {})
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
        conn.close()
    return statuses


async def test_socket_is_for_the_daemon_account_unless_jobs_run_as_owners() -> None:
    local_user(USER_A)
    with open_dir() as root:
        async with serving(root / "state") as (_, service):
            path = root / "state" / "apr_sched.sock"
            assert stat.S_IMODE(path.stat().st_mode) == 0o600
            assert stat.S_IMODE((root / "state").stat().st_mode) == 0o700  # left as it was

            def health() -> Any:
                with SchedulerClient(sock_of(service)) as client:
                    return client.health()["status"]

            refused = (await run_as(USER_A, health)).refused("DaemonUnreachable")
            assert "Permission denied" in refused.message

            def as_root() -> str:  # root: the daemon's own account
                with SchedulerClient(sock_of(service)) as mine:
                    return mine.submit({"command": "true"}).owner

            assert await asyncio.to_thread(as_root) == "root"


async def test_a_chosen_socket_mode_lets_others_in_as_themselves() -> None:
    local_user(USER_A)
    with open_dir() as root:
        async with serving(root / "state", socket_mode=0o666) as (_, service):
            assert stat.S_IMODE((root / "state").stat().st_mode) == 0o711

            def submit_and_stop() -> Any:
                with SchedulerClient(sock_of(service)) as client:
                    job = client.submit({"command": "sleep 30", "workdir": "/tmp"})
                    client.stop(job.job_id)
                    return job.owner

            assert (await run_as(USER_A, submit_and_stop)).value == USER_A


async def test_auth_off_leaves_tcp_callers_unrestricted_but_the_socket_still_knows(
        ) -> None:
    local_user(USER_A)
    with open_dir() as root:
        async with serving(root / "state", auth=False, socket_mode=0o666) as (
                scheduler, service):
            job = await scheduler.submit({"command": "sleep 30", "owner": "somebody"})
            await wait_until(lambda: is_running(scheduler, job.job_id))

            def stop_over_socket() -> Any:
                with SchedulerClient(sock_of(service)) as client:
                    return client.stop(job.job_id).status.value

            (await run_as(USER_A, stop_over_socket)).refused("Forbidden")

            def stop_over_tcp() -> Any:
                with SchedulerClient(service.url) as client:  # no token: auth is off
                    named = client.submit({"command": "true", "owner": "anyone"}).owner
                    client.stop(job.job_id)
                    return named

            assert (await run_as(USER_A, stop_over_tcp)).value == "anyone"


async def test_every_route_for_a_user_who_owns_nothing_and_is_no_admin() -> None:
    local_user(USER_A)
    local_user(USER_B)
    with open_dir() as root:
        async with serving(root / "state", socket_mode=0o666) as (scheduler, service):
            path = root / "state" / "apr_sched.sock"

            def submit() -> Any:
                with SchedulerClient(sock_of(service)) as client:
                    return client.submit({"command": "sleep 30", "workdir": "/tmp"}).job_id

            job_id = (await run_as(USER_A, submit)).value
            await wait_until(lambda: is_running(scheduler, job_id))
            s = "/scheduler"
            host_spec = {"host_id": "b1", "total_slots": 1, "total_cpu": 1,
                         "total_memory_gb": 1}
            expected: dict[tuple[str, str], tuple[Any, int]] = {
                ("GET", f"{s}/health"): (None, 200),
                ("GET", f"{s}/openapi.json"): (None, 200),
                ("POST", f"{s}/hosts/register"): (host_spec, 403),
                ("GET", f"{s}/hosts"): (None, 200),
                ("GET", f"{s}/hosts/h1"): (None, 200),
                ("DELETE", f"{s}/hosts/h1"): (None, 403),
                ("POST", f"{s}/hosts/h1/heartbeat"): (None, 403),
                ("POST", f"{s}/jobs"): ({"command": "true", "workdir": "/tmp"}, 201),
                ("POST", f"{s}/jobs/batch"): ({"jobs": [{"command": "true"}]}, 201),
                ("GET", f"{s}/jobs"): (None, 200),
                ("GET", f"{s}/jobs/{job_id}"): (None, 200),
                ("GET", f"{s}/jobs/{job_id}/logs"): (None, 200),
                ("POST", f"{s}/jobs/{job_id}/pause"): (None, 403),
                ("POST", f"{s}/jobs/{job_id}/resume"): (None, 403),
                ("POST", f"{s}/jobs/{job_id}/stop"): (None, 403),
                ("POST", f"{s}/jobs/{job_id}/rerun"): (None, 403),
                ("PATCH", f"{s}/jobs/{job_id}"): ({"priority": 5}, 403),
                ("POST", f"{s}/jobs/{job_id}/top"): (None, 403),
                ("POST", f"{s}/jobs/{job_id}/bottom"): (None, 403),
                ("GET", f"{s}/jobs/{job_id}/graph"): (None, 200),
                ("GET", f"{s}/metrics/summary"): (None, 200),
                ("POST", f"{s}/purge"): ({"before": "2000-01-01T00:00:00+00:00"}, 403),
                ("GET", f"{s}/events"): (None, 200),
            }
            api = SchedulerApi(scheduler, token=None)
            templates = {(r.method, r.template.replace("{job_id}", job_id)
                          .replace("{host_id}", "h1")) for r in api.routes}
            assert templates == set(expected), "classify every route here"
            requests = [(m, p, body) for (m, p), (body, _) in expected.items()]
            statuses = (await run_as(USER_B, lambda: raw_exchange(path, requests))).value
            got = dict(zip(expected, statuses, strict=True))
            assert got == {key: status for key, (_, status) in expected.items()}
            # the refused requests changed nothing
            assert await is_running(scheduler, job_id)
            assert [h.host_id for h in await scheduler.list_hosts()] == ["h1"]


async def test_a_long_state_dir_path_a_stale_socket_and_a_clean_close(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("APR_SCHED_URL", "APR_SCHED_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    with open_dir() as root:
        deep = root / ("d" * 60) / ("e" * 60)
        deep.mkdir(parents=True, mode=0o700)
        path = deep / "state" / "apr_sched.sock"
        assert len(os.fsencode(path)) > 107  # over sun_path: reached via /proc/self/fd
        (deep / "state").mkdir(mode=0o700)
        stale = socket.socket(socket.AF_UNIX)  # what a daemon killed by -9 leaves behind
        with stale, reachable_path(path) as address:
            stale.bind(address)
        assert stat.S_ISSOCK(path.stat().st_mode)
        async with serving(deep / "state"):
            url, token = find_daemon(None, None, None, deep / "state")
            assert (url, token) == (f"unix:{path}", None)

            def health() -> Any:
                with SchedulerClient(url) as client:
                    return client.health()["status"]

            assert await asyncio.to_thread(health) == "ok"
        assert not path.exists()  # removed at close
        with pytest.raises(DaemonUnreachable, match="no such socket"), \
                SchedulerClient(f"unix:{path}") as client:
            client.health()
