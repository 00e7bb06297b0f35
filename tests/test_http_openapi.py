"""The OpenAPI document states what the server enforces: each rule is checked twice, once in
the document (a body the schema refuses) and once on the live server (the same body, 400)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from apr_sched import JobStatus
from apr_sched.http.api import LIST_MAX_LIMIT, MAX_EVENTS_LIMIT, MAX_TAIL_LINES
from apr_sched.http.limits import ApiLimits
from apr_sched.http.openapi import MAX_INT64
from apr_sched.http.service import HttpService
from tests.http_helpers import Api, request

HOST = {"host_id": "new", "total_slots": 1, "total_cpu": 1, "total_memory_gb": 1}


@pytest.fixture
async def served(make_scheduler) -> AsyncIterator[tuple[dict[str, Any], Api]]:
    scheduler = await make_scheduler()
    async with HttpService(scheduler, "127.0.0.1", 0,
                           api_limits=ApiLimits(max_batch_jobs=7)) as service:
        token = (scheduler.state_dir / "token").read_text().strip()
        doc = await asyncio.to_thread(request, service.url, "GET", "/scheduler/openapi.json",
                                      token=token)
        yield doc.data, Api(service.url, token)


def valid(doc: dict[str, Any], schema: dict[str, Any], value: Any) -> bool:
    return Draft202012Validator({**schema, "components": doc["components"]}).is_valid(value)


def body_schema(doc: dict[str, Any], path: str) -> dict[str, Any]:
    operation = doc["paths"][f"/scheduler{path}"]["post"]
    schema: dict[str, Any] = operation["requestBody"]["content"]["application/json"]["schema"]
    return schema


def query(doc: dict[str, Any], path: str, name: str) -> dict[str, Any]:
    parameters = doc["paths"][f"/scheduler{path}"]["get"]["parameters"]
    schema: dict[str, Any] = next(p for p in parameters if p["name"] == name)["schema"]
    return schema


@pytest.mark.parametrize("path, body, accepted", [
    ("/jobs", {"command": "true", "env": {"1BAD": "v"}}, False),
    ("/jobs", {"command": "true", "env": {"A-B": "v"}}, False),
    ("/jobs", {"command": "true", "env": {"_OK_1": "v"}}, True),
    ("/hosts/register", {**HOST, "ssh": "a@b", "executor_prefix": "ssh b"}, False),
    ("/hosts/register", {**HOST, "ssh": None, "executor_prefix": "sh -c"}, True),
    ("/hosts/register", {**HOST, "ssh": "u@127.0.0.1:22"}, True),
    ("/jobs/batch", {"jobs": [{"command": "true"}] * 8}, False),
    ("/jobs/batch", [{"command": "true"}] * 7, True),
    ("/jobs/batch", {"jobs": []}, False),
    ("/jobs/batch", {"jobs": [{"command": "true"}], "extra": 1}, False),
])
async def test_document_and_server_agree_on_bodies(served, path: str, body: Any,
                                                   accepted: bool) -> None:
    doc, api = served
    assert valid(doc, body_schema(doc, path), body) is accepted
    reply = await api.post(f"/scheduler{path}", body)
    assert (reply.status < 300) is accepted, (reply.status, reply.data)


async def test_document_states_the_batch_limit_and_its_413(served) -> None:
    doc, api = served
    operation = doc["paths"]["/scheduler/jobs/batch"]["post"]
    assert "More than 7 jobs" in operation["responses"]["413"]["description"]
    reply = await api.post("/scheduler/jobs/batch", {"jobs": [{"command": "true"}] * 8})
    assert reply.status == 413 and reply.data["error"]["details"]["limit"] == 7


async def test_document_states_query_bounds_and_status_enum(served) -> None:
    doc, api = served
    bounds = {("/jobs", "limit"): (0, LIST_MAX_LIMIT), ("/jobs", "offset"): (0, MAX_INT64),
              ("/jobs/{job_id}/logs", "tail"): (0, MAX_TAIL_LINES),
              ("/jobs/{job_id}/logs", "offset"): (0, MAX_INT64),
              ("/jobs/{job_id}/logs", "attempt"): (1, MAX_INT64),
              ("/events", "since"): (0, MAX_INT64), ("/events", "limit"): (1, MAX_EVENTS_LIMIT)}
    for (path, name), (low, high) in bounds.items():
        schema = query(doc, path, name)
        assert (schema["minimum"], schema["maximum"]) == (low, high), (path, name)
    over = await api.get(f"/scheduler/jobs?limit={LIST_MAX_LIMIT + 1}")
    assert over.status == 400
    assert (await api.get(f"/scheduler/jobs?limit={LIST_MAX_LIMIT}")).status == 200
    status = query(doc, "/jobs", "status")
    enum = doc["components"]["schemas"][status["items"]["$ref"].rsplit("/", 1)[1]]["enum"]
    assert enum == [s.value for s in JobStatus]
    assert (await api.get("/scheduler/jobs?status=RUNNING,HELD")).status == 200
    assert (await api.get("/scheduler/jobs?status=SLEEPING")).status == 400


async def test_document_maps_the_event_discriminator(served) -> None:
    doc, _ = served
    reply = doc["paths"]["/scheduler/events"]["get"]["responses"]["200"]
    events = reply["content"]["application/json"]["schema"]["properties"]["events"]["items"]
    assert events["discriminator"] == {"propertyName": "kind", "mapping": {
        "job": "#/components/schemas/JobEvent", "host": "#/components/schemas/HostEvent"}}
    for kind in ("job", "host"):
        name = events["discriminator"]["mapping"][kind].rsplit("/", 1)[1]
        assert doc["components"]["schemas"][name]["properties"]["kind"]["const"] == kind


async def test_allow_header_of_every_path_is_documented(served) -> None:
    doc, api = served
    for template, item in doc["paths"].items():
        path = template.replace("{job_id}", "1").replace("{host_id}", "h1")
        reply = await api.call("PUT", path)
        assert reply.status == 405, path
        assert item["description"] == f"Other methods: 405 with `Allow: {reply.headers['allow']}`."


async def test_document_says_whether_it_needs_the_token(served) -> None:
    doc, api = served
    assert "this document included" in doc["info"]["description"]
    assert doc["paths"]["/scheduler/openapi.json"]["get"]["security"] == [{"bearer": []}]
    assert doc["paths"]["/scheduler/health"]["get"]["security"] == []
    assert (await api.get("/scheduler/openapi.json", token=None)).status == 401
