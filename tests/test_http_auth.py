"""Auth on every route, table-driven, over real sockets; and an expected-status table per
route kept here, independent of the server's OpenAPI document (which is checked against it,
not the other way round)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from apr_sched import Scheduler
from apr_sched.http.api import SchedulerApi
from apr_sched.http.service import HttpService
from apr_sched.http.token import ensure_token
from tests.conftest import host
from tests.http_helpers import Reply, request

UNPLACEABLE = {"command": "true", "resource_request": {"host_labels": {"tool": "none-has-it"}},
               "allow_pending": True}
NEW_HOST = {"host_id": "newhost", "total_slots": 1, "total_cpu": 1, "total_memory_gb": 1}

SERVER_LEVEL = {400, 408, 413, 431, 503}
"""What the server itself may answer on any route (malformed HTTP, slow, too large, full)."""


@dataclass(frozen=True)
class Case:
    """One route: a request that succeeds with the token, and the statuses it may answer."""

    method: str
    template: str
    path: str
    ok: set[int]
    errors: set[int] = field(default_factory=set)
    body: Any = None
    public: bool = False


J = "/scheduler/jobs"
H = "/scheduler/hosts"
# The fixture below makes: host h1 and host victim; job 1 PENDING, 2 HELD, 3 PENDING,
# 4 STOPPED. Each case's request is one a caller with the token may make.
ROUTES = [
    Case("GET", "/scheduler/health", "/scheduler/health", {200}, public=True),
    Case("GET", "/scheduler/openapi.json", "/scheduler/openapi.json", {200}, {401}),
    Case("POST", f"{H}/register", f"{H}/register", {201}, {400, 401, 403, 409}, NEW_HOST),
    Case("GET", H, H, {200}, {401}),
    Case("GET", f"{H}/{{host_id}}", f"{H}/h1", {200}, {400, 401, 404}),
    Case("DELETE", f"{H}/{{host_id}}", f"{H}/victim", {200}, {400, 401, 403, 404, 409}),
    Case("POST", f"{H}/{{host_id}}/heartbeat", f"{H}/h1/heartbeat", {200}, {400, 401, 403, 404},
         {"load_avg_1m": 1.5}),
    Case("POST", J, J, {201}, {400, 401, 403, 422}, UNPLACEABLE),
    Case("POST", f"{J}/batch", f"{J}/batch", {201}, {400, 401, 403, 413, 422},
         {"jobs": [UNPLACEABLE, UNPLACEABLE]}),
    Case("GET", J, J, {200}, {400, 401}),
    Case("GET", f"{J}/{{job_id}}", f"{J}/1", {200}, {400, 401, 404}),
    Case("GET", f"{J}/{{job_id}}/logs", f"{J}/1/logs", {200}, {400, 401, 404}),
    Case("POST", f"{J}/{{job_id}}/pause", f"{J}/1/pause", {200}, {400, 401, 403, 404, 409}),
    Case("POST", f"{J}/{{job_id}}/resume", f"{J}/2/resume", {200}, {400, 401, 403, 404, 409}),
    Case("POST", f"{J}/{{job_id}}/stop", f"{J}/3/stop", {200}, {400, 401, 403, 404, 409}),
    Case("POST", f"{J}/{{job_id}}/rerun", f"{J}/4/rerun", {200}, {400, 401, 403, 404, 409}),
    Case("PATCH", f"{J}/{{job_id}}", f"{J}/1", {200}, {400, 401, 403, 404, 409},
         {"priority": 3}),
    Case("POST", f"{J}/{{job_id}}/top", f"{J}/1/top", {200}, {400, 401, 403, 404, 409}),
    Case("POST", f"{J}/{{job_id}}/bottom", f"{J}/3/bottom", {200},
         {400, 401, 403, 404, 409}),
    Case("GET", f"{J}/{{job_id}}/graph", f"{J}/1/graph", {200}, {400, 401, 404}),
    Case("POST", "/scheduler/purge", "/scheduler/purge", {200}, {400, 401, 403},
         {"before": "2000-01-01T00:00:00+00:00"}),
    Case("GET", "/scheduler/metrics/summary", "/scheduler/metrics/summary", {200}, {401}),
    Case("GET", "/scheduler/events", "/scheduler/events", {200}, {400, 401}),
]
BY_ROUTE = {(c.method, c.template): c for c in ROUTES}


@dataclass
class World:
    scheduler: Scheduler
    url: str
    token: str

    async def call(self, method: str, path: str, body: Any = None, *,
                   token: str | None = None, headers: dict[str, str] | None = None,
                   raw_body: bytes | None = None) -> Reply:
        return await asyncio.to_thread(request, self.url, method, path, body, token=token,
                                       headers=headers, raw_body=raw_body)

    async def snapshot(self) -> tuple[Any, ...]:
        """Everything a request could change, from memory and from the database file."""
        jobs = (await self.scheduler.list_jobs()).jobs
        hosts = await self.scheduler.list_hosts()
        db = sqlite3.connect(f"file:{self.scheduler.state_dir / 'apr_sched.db'}?mode=ro",
                             uri=True)
        try:
            rows = tuple(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
                         for table in ("jobs", "hosts", "events", "attempts",
                                       "idempotency_keys"))
            statuses = tuple(db.execute("SELECT job_id, status FROM jobs ORDER BY seq"))
        finally:
            db.close()
        return (self.scheduler.last_event_seq,
                [(j.job_id, j.status, j.attempt) for j in jobs],
                [(h.host_id, h.state, h.last_heartbeat, h.load) for h in hosts],
                rows, statuses)


@pytest.fixture
async def world(make_scheduler) -> AsyncIterator[World]:
    scheduler = await make_scheduler(hosts=[host("h1"), host("victim")])
    for _ in range(4):
        await scheduler.submit(UNPLACEABLE)
    await scheduler.pause("2")
    await scheduler.stop("4")
    async with HttpService(scheduler, "127.0.0.1", 0) as service:
        token = (scheduler.state_dir / "token").read_text().strip()
        yield World(scheduler, service.url, token)


def same_length_wrong(token: str) -> str:
    last = "A" if token[-1] != "A" else "B"
    return token[:-1] + last


async def test_the_table_covers_every_route(world: World) -> None:
    routes = SchedulerApi(world.scheduler, token=None).routes
    assert {(r.method, r.template) for r in routes} == set(BY_ROUTE)
    assert {(r.method, r.template) for r in routes if not r.auth} == {
        (c.method, c.template) for c in ROUTES if c.public}


@pytest.mark.parametrize("case", ROUTES, ids=lambda c: f"{c.method} {c.template}")
async def test_without_a_valid_token_a_route_does_nothing(world: World, case: Case) -> None:
    before = await world.snapshot()
    attempts = {
        "no token": {},
        "same-length wrong token": {"Authorization": f"Bearer {same_length_wrong(world.token)}"},
        "token with a suffix": {"Authorization": f"Bearer {world.token}x"},
        "token prefix": {"Authorization": f"Bearer {world.token[:-1]}"},
        "wrong scheme": {"Authorization": f"Basic {world.token}"},
        "empty bearer": {"Authorization": "Bearer "},
    }
    for name, headers in attempts.items():
        reply = await world.call(case.method, case.path, case.body, headers=headers)
        if case.public:
            assert reply.status in case.ok, (name, reply.status)
            continue
        assert reply.status == 401, (name, reply.status, reply.data)
        assert reply.error_code() == "unauthorized"
        assert reply.headers["www-authenticate"].startswith("Bearer")
        assert await world.snapshot() == before, f"{name} changed state"
    reply = await world.call(case.method, case.path, case.body, token=world.token)
    assert reply.status in case.ok, (reply.status, reply.data)


async def test_an_unauthenticated_request_learns_nothing(world: World) -> None:
    """Paths that exist or not, wrong methods, bad or unknown ids, bad bodies: one 401."""
    probes = [
        ("GET", "/scheduler/nothing-here", None), ("PUT", "/scheduler/jobs", None),
        ("GET", "/scheduler/jobs/1/pause", None), ("GET", "/scheduler/jobs/999", None),
        ("GET", "/scheduler/jobs/..%2Fetc", None), ("GET", "/scheduler/jobs/1%0A", None),
        ("POST", "/scheduler/jobs", b'{"not json'), ("DELETE", "/scheduler/hosts/h1", None),
        ("POST", "/scheduler/health", None), ("GET", "/", None),
        ("GET", "/scheduler/events?since=-1", None),
    ]
    bodies = set()
    for method, path, raw in probes:
        reply = await world.call(method, path, raw_body=raw)
        assert reply.status == 401, (method, path, reply.status)
        assert "allow" not in reply.headers
        bodies.add(reply.raw)
    assert len(bodies) == 1, bodies
    with_token = await world.call("PUT", "/scheduler/jobs", token=world.token)
    assert with_token.status == 405 and with_token.headers["allow"] == "GET, POST"


async def test_openapi_documents_exactly_the_expected_statuses(world: World) -> None:
    doc = (await world.call("GET", "/scheduler/openapi.json", token=world.token)).data
    for case in ROUTES:
        operation = doc["paths"][case.template][case.method.lower()]
        documented = {int(status) for status in operation["responses"]}
        ok = {200, 201} if case.template.endswith("/register") else case.ok
        assert documented == ok | case.errors | SERVER_LEVEL, (case.method, case.template)
        assert (operation["security"] == []) == case.public


BAD_IDS = ["1%0A", "..", "%2E%2E", "a%00b", "x" * 65, "-1", "1%20", "%E5%BC%A0"]
BAD_BODIES = [b"", b"{", b"[]", b"[" * 100_000, b"\xff", b'{"nope": 1}', b"null",
              b'{"command": "true", "priority": 1e999}', b'"' + b"x" * 1000 + b'"']
BAD_NUMBERS = ["-1", "9223372036854775808", "99999999999999999999999", "x", "1e999",
               "nan", "", "1.5", "9" * 5000]
QUERY_NUMBERS = {"/scheduler/jobs": ["limit", "offset"],
                 "/scheduler/jobs/1/logs": ["tail", "attempt", "offset"],
                 "/scheduler/events": ["since", "limit", "wait"]}


async def test_bad_input_gets_only_the_route_s_expected_statuses(world: World) -> None:
    """A campaign of bad ids, bodies and numbers with the token: each reply is a 400 the
    table allows for that route (never a 500), and none changes anything."""
    before = await world.snapshot()
    asked: list[tuple[Case, str, bytes | None, Reply]] = []
    for case in ROUTES:
        if "{" in case.template:
            prefix, _, rest = case.template.partition("{")
            for bad in BAD_IDS:
                path = f"{prefix}{bad}{rest.partition('}')[2]}"
                asked.append((case, path, None, await world.call(case.method, path,
                                                                 token=world.token)))
        if case.body is not None:
            for raw in BAD_BODIES:
                if raw == b"" and case.template.endswith("/heartbeat"):
                    continue  # a heartbeat's body is optional
                asked.append((case, case.path, raw, await world.call(
                    case.method, case.path, raw_body=raw, token=world.token)))
    for template, names in QUERY_NUMBERS.items():
        case = next(c for c in ROUTES if c.path == template)
        for name in names:
            for value in BAD_NUMBERS:
                if (name, value) == ("wait", "1.5"):
                    continue  # a fine number of seconds
                path = f"{template}?{name}={value}"
                asked.append((case, path, None, await world.call("GET", path,
                                                                 token=world.token)))
    assert len(asked) > 150
    for case, path, raw, reply in asked:
        assert reply.status in case.errors | SERVER_LEVEL
        assert reply.status == 400, (case.method, path, (raw or b"")[:30], reply.status,
                                     reply.data)
        assert reply.data["error"]["details"], (path, reply.data)
    newline = [reply for _, path, _, reply in asked if "1%0A" in path]
    assert len(newline) == 13  # every route with an id
    assert all("not a valid id" in r.data["error"]["message"] for r in newline)
    assert await world.snapshot() == before
    assert (await world.call("GET", "/scheduler/health")).status == 200


async def test_every_reply_is_json_in_the_error_shape(world: World) -> None:
    reply = await world.call("GET", "/scheduler/events?since=9223372036854775808",
                             token=world.token)
    assert reply.status == 400
    assert reply.data["error"]["details"] == [
        {"field": "since", "message": "must be between 0 and 9223372036854775807"}]
    assert json.loads(reply.raw) == reply.data


def test_a_new_token_never_reads_as_an_option(tmp_path: Path) -> None:
    """1 in 64 random tokens started with ``-``: ``--token -x...`` then failed to parse."""
    firsts = {ensure_token(tmp_path / str(n))[0] for n in range(300)}
    assert "-" not in firsts and len(firsts) > 20
