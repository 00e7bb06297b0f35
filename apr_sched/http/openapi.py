"""OpenAPI 3.1 for the /scheduler routes, with schemas generated from the pydantic models.

Input models are described as they validate (strict, no unknown fields), output models as
they serialise, so a client generated from this document agrees with the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from apr_sched.http.logwait import MAX_HELD_LOG_REQUESTS
from apr_sched.models import (
    Host,
    HostEvent,
    HostLoad,
    HostSpec,
    Job,
    JobEvent,
    JobGraph,
    JobSpec,
    LogTail,
    MetricsSummary,
    PurgeReport,
)

REF = "#/components/schemas/{model}"


class _Route(Protocol):
    @property
    def method(self) -> str: ...
    @property
    def template(self) -> str: ...
    @property
    def auth(self) -> bool: ...


def _ref(name: str) -> dict[str, Any]:
    return {"$ref": REF.format(model=name)}


def _array(item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "array", "items": item}


def _object(properties: dict[str, Any], required: Sequence[str] | None = None) -> dict[str, Any]:
    return {"type": "object", "properties": properties,
            "required": list(properties if required is None else required)}


MAX_INT64 = 2**63 - 1
"""Upper bound of every integer query parameter (SQLite's and a file offset's range)."""

ERROR = _object({"error": _object({
    "code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
    required=["code", "message"])})
EVENT = {"oneOf": [_ref("JobEvent"), _ref("HostEvent")],
         "discriminator": {"propertyName": "kind",
                           "mapping": {"job": REF.format(model="JobEvent"),
                                       "host": REF.format(model="HostEvent")}}}
HEALTH = _object({"status": {"enum": ["ok", "degraded"]},
                  "degraded_reason": {"type": ["string", "null"]},
                  "version": {"type": "string"},
                  "uptime_sec": {"type": "number"}, "hosts_online": {"type": "integer"},
                  "jobs_pending": {"type": "integer"}, "jobs_running": {"type": "integer"},
                  "last_event_seq": {"type": "integer"}})
HEARTBEAT = _object({"host_id": {"type": "string"}, "state": _ref("HostState"),
                     "last_heartbeat": {"type": ["string", "null"], "format": "date-time"}})
BATCH_REPLY = _object({"job_ids": _array({"type": "string"}), "count": {"type": "integer"}})

_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}
_STATUS_LIST = {"type": "array", "items": _ref("JobStatus")}


def _batch_body(max_jobs: int) -> dict[str, Any]:
    jobs = {**_array(_ref("JobSpec")), "minItems": 1, "maxItems": max_jobs}
    return {"oneOf": [{**_object({"jobs": jobs}), "additionalProperties": False}, jobs]}


def _query(name: str, schema: dict[str, Any], description: str,
           **extra: Any) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description, **extra}


def _int_query(name: str, low: int, high: int, description: str) -> dict[str, Any]:
    return _query(name, {"type": "integer", "minimum": low, "maximum": high}, description)


IDEMPOTENCY_KEY = {
    "name": "Idempotency-Key", "in": "header", "required": False,
    "schema": {"type": "string", "pattern": "^[!-~]{1,255}$"},
    "description": "Retrying with the same key (within 24 h, same caller, same body) returns "
                   "the first reply, with `Idempotent-Replayed: true`, and creates nothing; "
                   "the same key with another body is 422. Survives a daemon restart.",
}

LAST_EVENT_SEQ = {"Last-Event-Seq": {
    "schema": {"type": "integer", "minimum": 0},
    "description": "The daemon's last event number from before this job's first event: "
                   "`GET /events?since=<it>` holds every event of the job, its `submitted` "
                   "one first (no `GET /health` needed to wait for it). Not on a replayed "
                   "reply (`Idempotent-Replayed`): read `/health`, then the job, instead."}}

# Statuses the server itself may answer on any route, before or instead of the route.
SERVER_ERRORS = {
    400: "Malformed request (HTTP syntax, a target that is not UTF-8)",
    408: "Request head not complete within the header timeout, or request within the "
         "request timeout",
    413: "Body over the size limit (sent before the body is read)",
    431: "Request head too large or too many header fields",
    503: "Too many connections, overall or from this client's address; or the state "
         "database cannot be written (`store_unavailable`)",
}
ROUTE_ERRORS = {
    400: "Invalid input: `details` names each field and why",
    401: "Missing or wrong bearer token (sent before any routing: nothing else is revealed)",
    403: "Forbidden: not the job's owner, or not an admin (nothing changed)",
    404: "Unknown job, host or attempt",
    409: "Not allowed in the current state",
    413: "Batch over the job limit",
    422: "Idempotency-Key already used for a different request",
}

# (method, path after /scheduler): summary, request body, {status: reply schema}, query
# params, and the route's own error statuses (401 is added to every route with auth).
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/health"): {"summary": "Liveness and headline counts (no auth)",
                         "replies": {200: HEALTH}, "errors": []},
    ("GET", "/openapi.json"): {"summary": "This document (needs the token)",
                               "replies": {200: {"type": "object"}}, "errors": []},
    ("POST", "/hosts/register"): {"summary": "Register or update a host (409 when changing "
                                             "how a host that runs jobs is reached)",
                                  "body": _ref("HostSpec"),
                                  "replies": {201: _ref("Host"), 200: _ref("Host")},
                                  "errors": [400, 403, 409]},
    ("GET", "/hosts"): {"summary": "All hosts with state and usage", "replies": {
        200: _object({"hosts": _array(_ref("Host")), "total": {"type": "integer"}})},
        "errors": []},
    ("GET", "/hosts/{host_id}"): {"summary": "One host", "replies": {200: _ref("Host")},
                                  "errors": [400, 404]},
    ("DELETE", "/hosts/{host_id}"): {"summary": "Remove a host (409 while it runs jobs)",
                                     "replies": {200: _ref("Host")},
                                     "errors": [400, 403, 404, 409]},
    ("POST", "/hosts/{host_id}/heartbeat"): {
        "summary": "A host is alive, optionally with load figures",
        "body": _ref("HostLoad"), "body_required": False, "replies": {200: HEARTBEAT},
        "errors": [400, 403, 404]},
    ("POST", "/jobs"): {"summary": "Submit one job", "body": _ref("JobSpec"),
                        "replies": {201: _ref("Job")}, "errors": [400, 403, 422],
                        "headers": [IDEMPOTENCY_KEY], "reply_headers": {201: LAST_EVENT_SEQ}},
    ("POST", "/jobs/batch"): {"summary": "Submit many jobs, all or nothing",
                              "replies": {201: BATCH_REPLY}, "errors": [400, 403, 413, 422],
                              "headers": [IDEMPOTENCY_KEY]},
    ("GET", "/jobs"): {"summary": "Jobs in submit order, filtered and paged", "replies": {
        200: _object({"jobs": _array(_ref("Job")), "total": {"type": "integer"}})},
        "errors": [400], "query": [
            _query("status", _STATUS_LIST, "one status or several, comma-separated",
                   style="form", explode=False),
            _query("project", {"type": "string"}, "exact project"),
            _query("design", {"type": "string"}, "exact design"),
            _query("owner", {"type": "string"}, "exact owner"),
            _query("host", {"type": "string"}, "host the job runs or ran on"),
            _query("id", {"type": "array", "items": _ID},
                   "only these job ids, comma-separated", style="form", explode=False),
            _query("limit", {"type": "integer", "minimum": 0, "maximum": 5000,
                             "default": 500}, "page size (default 500, at most 5,000)"),
            _int_query("offset", 0, MAX_INT64, "jobs to skip")]},
    ("GET", "/jobs/{job_id}"): {"summary": "One job with its events and attempts",
                                "replies": {200: _ref("Job")}, "errors": [400, 404]},
    ("GET", "/jobs/{job_id}/logs"): {
        "summary": "Tail of an attempt's log, or the lines after a byte offset (with wait: "
                   "a long poll for them)",
        "replies": {200: _ref("LogTail")}, "text": True, "errors": [400, 404], "query": [
            _int_query("tail", 0, 1_000_000, "last N lines (default 200)"),
            _int_query("attempt", 1, MAX_INT64, "attempt (default: latest)"),
            _int_query("offset", 0, MAX_INT64,
                       "lines appended after this byte offset (follow a log)"),
            _query("wait", {"type": "number", "minimum": 0, "maximum": 60},
                   "with offset: seconds to hold the request until a line past offset is "
                   "written or the attempt ends (long poll; default 0: answer at once). "
                   f"Held requests are capped ({MAX_HELD_LOG_REQUESTS}): past the cap, "
                   "answered at once"),
            _query("format", {"enum": ["json", "text"]}, "text for plain text")]},
    ("POST", "/purge"): {
        "summary": "Forget finished jobs (attempts, events, logs) and host events from "
                   "before a time; unfinished jobs are never purged",
        "body": {**_object({"before": {"type": "string", "format": "date-time"}},
                           required=["before"]), "additionalProperties": False},
        "replies": {200: _ref("PurgeReport")}, "errors": [400, 403]},
    ("GET", "/metrics/summary"): {"summary": "Jobs, hosts, usage, wait and run times",
                                  "replies": {200: _ref("MetricsSummary")}, "errors": []},
    ("GET", "/events"): {"summary": "Events after a sequence number (long poll)", "replies": {
        200: _object({"events": _array(EVENT), "last_seq": {"type": "integer"}})},
        "errors": [400], "query": [
            _int_query("since", 0, MAX_INT64, "last sequence number seen (default 0)"),
            _query("wait", {"type": "number", "minimum": 0, "maximum": 60},
                   "seconds to wait for a new event"),
            _int_query("limit", 1, 10_000, "at most this many (default 1000)")]},
}
for _action in ("pause", "resume", "stop"):
    OPERATIONS[("POST", f"/jobs/{{job_id}}/{_action}")] = {
        "summary": f"{_action.capitalize()} a job (409 when it does not apply)",
        "replies": {200: _ref("Job")}, "errors": [400, 403, 404, 409]}
OPERATIONS[("POST", "/jobs/{job_id}/rerun")] = {
    "summary": "Rerun a finished job as a new attempt; with `with_dependents`, also the jobs "
               "below it that were CANCELLED (409 when it does not apply, or when one of "
               "the job's own dependencies can never hold)",
    "body": {**_object({"with_dependents": {"type": "boolean", "default": False}},
                       required=[]), "additionalProperties": False},
    "body_required": False, "replies": {200: _ref("Job")}, "errors": [400, 403, 404, 409]}
for _action, _where in (("top", "front"), ("bottom", "back")):
    OPERATIONS[("POST", f"/jobs/{{job_id}}/{_action}")] = {
        "summary": f"Move a PENDING job to the {_where} of its priority (409 otherwise)",
        "replies": {200: _ref("Job")}, "errors": [400, 403, 404, 409]}
OPERATIONS[("PATCH", "/jobs/{job_id}")] = {
    "summary": "Change a job: PENDING or HELD, its name, priority, timeout_sec, begin_at and "
               "resource_request (cpu, memory_gb, slots merge; host_labels replaces); "
               "RUNNING or PAUSED, only priority and timeout_sec (409 for other fields); "
               "null clears name, timeout_sec, begin_at. Validated as a submit is.",
    "body": {**_object({
        "name": {"type": ["string", "null"]}, "priority": {"type": "integer"},
        "timeout_sec": {"type": ["number", "null"]},
        "begin_at": {"type": ["string", "null"],
                     "description": "ISO 8601 (local time without a zone) or +DURATION"},
        "resource_request": {**_object({
            "cpu": {"type": "integer"}, "memory_gb": {"type": "number"},
            "slots": {"type": "integer"},
            "host_labels": {"type": "object", "additionalProperties": {"type": "string"}}},
            required=[]), "additionalProperties": False}}, required=[]),
        "additionalProperties": False, "minProperties": 1},
    "replies": {200: _ref("Job")}, "errors": [400, 403, 404, 409]}
OPERATIONS[("GET", "/jobs/{job_id}/graph")] = {
    "summary": "The jobs a job waits for and those waiting for it, with their states and "
               "each edge's (at most `node_limit` jobs; `truncated` says some were left out)",
    "replies": {200: _ref("JobGraph")}, "errors": [400, 404],
    "query": [_int_query("depth", 0, 100, "levels each way (default 2)")]}

DESCRIPTION = """Job scheduler for APR runs: the /scheduler contract.

Every route but `GET /scheduler/health` needs `Authorization: Bearer <token>` (the token is in
`<state_dir>/token`, or a user's own from `apr-sched token add`), this document included: a
client without a token learns only that the daemon is alive. Over the Unix socket
`<state_dir>/apr_sched.sock` the caller is known by uid and needs no token. The caller owns
what it submits; only the owner or an admin may control a job (403 otherwise); other users see
a job's env values as "***"; hosts and purge are for admins. Auth is checked before routing,
so a request without a valid token gets 401 whatever its path, method or ids, and its body is
not read. (The document holds no secret, but it names this daemon's version and limits;
whoever has the package can build it offline.)

Statuses the server itself answers on any route: 400 (malformed HTTP), 408 (head not complete
within the header timeout, or request within the request timeout), 413 (body too large),
431 (head too large), 503 (too many connections, or too many from one address; or
`store_unavailable` when the state database cannot be written). A path that
exists with another method answers 405 with an `Allow` header listing its methods (each path's
description names them). Errors are `{"error": {"code", "message", "details"}}`; a rejected
request changes nothing.
"""


def _enforced(schemas: dict[str, Any]) -> dict[str, Any]:
    """What validators enforce beyond the generated schemas, stated in JSON Schema."""
    env = schemas["JobSpec"]["properties"]["env"]
    (key_pattern, value_schema), = env.pop("patternProperties").items()
    env["propertyNames"] = {"pattern": key_pattern}
    env["additionalProperties"] = value_schema
    schemas["HostSpec"]["not"] = {
        "required": ["ssh", "executor_prefix"],
        "properties": {"ssh": {"type": "string"}, "executor_prefix": {"type": "string"}}}
    schemas["HostSpec"]["description"] += " Give either ssh or executor_prefix, not both."
    ssh = schemas["HostSpec"]["properties"]["ssh"]
    ssh["description"] = "user@host[:port], port 1-65535"
    return schemas


def component_schemas() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [
        (JobSpec, "validation"), (HostSpec, "validation"), (HostLoad, "validation"),
        (Job, "serialization"), (Host, "serialization"), (LogTail, "serialization"),
        (MetricsSummary, "serialization"), (PurgeReport, "serialization"),
        (JobGraph, "serialization"),
        (JobEvent, "serialization"),
        (HostEvent, "serialization"),
    ]
    _, top = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = _enforced(top["$defs"])
    schemas["Error"] = ERROR
    return schemas


def _error_reply(text: str) -> dict[str, Any]:
    return {"description": text, "content": {"application/json": {"schema": _ref("Error")}}}


def route_error_statuses(method: str, suffix: str, auth: bool) -> set[int]:
    """The error statuses a route itself can answer (server-level ones come on top)."""
    return set(OPERATIONS[(method, suffix)]["errors"]) | ({401} if auth else set())


def _allowed(template: str, routes: Sequence[_Route]) -> list[str]:
    """The methods the router allows on a path of this template with an ordinary id. As in
    the router, a literal path (``/hosts/register``) beats a template it also matches."""
    segments = ["an-id" if part.startswith("{") else part for part in template.split("/")]
    literal = "{" not in template
    methods = set()
    for route in routes:
        parts = route.template.split("/")
        if literal and "{" in route.template:
            continue
        if len(parts) == len(segments) and all(
                want.startswith("{") or want == got
                for want, got in zip(parts, segments, strict=True)):
            methods.add(route.method)
    return sorted(methods)


def build_openapi(routes: Sequence[_Route], version: str, prefix: str = "/scheduler", *,
                  max_batch_jobs: int = 10_000) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in routes:
        suffix = route.template.removeprefix(prefix)
        spec = OPERATIONS[(route.method, suffix)]
        operation: dict[str, Any] = {
            "summary": spec["summary"],
            "operationId": f"{route.method.lower()}{suffix.replace('/', '_').replace('.', '_')}"
                           .replace("{", "").replace("}", ""),
            "responses": {},
        }
        params = [{"name": name[1:-1], "in": "path", "required": True, "schema": _ID}
                  for name in suffix.split("/") if name.startswith("{")]
        params += spec.get("query", []) + spec.get("headers", [])
        if params:
            operation["parameters"] = params
        body = _batch_body(max_batch_jobs) if suffix == "/jobs/batch" else spec.get("body")
        if body is not None:
            operation["requestBody"] = {"required": spec.get("body_required", True),
                                        "content": {"application/json": {"schema": body}}}
        for status, schema in spec["replies"].items():
            content = {"application/json": {"schema": schema}}
            if spec.get("text"):
                content["text/plain"] = {"schema": {"type": "string"}}
            operation["responses"][str(status)] = {"description": "OK", "content": content}
            if status in spec.get("reply_headers", {}):
                operation["responses"][str(status)]["headers"] = spec["reply_headers"][status]
        errors = {status: SERVER_ERRORS[status] for status in SERVER_ERRORS}
        for status in route_error_statuses(route.method, suffix, route.auth):
            errors[status] = ROUTE_ERRORS[status] if status not in SERVER_ERRORS else (
                f"{ROUTE_ERRORS[status]}; or: {SERVER_ERRORS[status]}")
        if suffix == "/jobs/batch":
            errors[413] = (f"More than {max_batch_jobs} jobs in the batch, or: "
                           f"{SERVER_ERRORS[413]}")
        for status in sorted(errors):
            operation["responses"][str(status)] = _error_reply(errors[status])
        operation["security"] = [{"bearer": []}] if route.auth else []
        paths.setdefault(route.template, {})[route.method.lower()] = operation
    for template, item in paths.items():
        allow = ", ".join(_allowed(template, routes))
        item["description"] = f"Other methods: 405 with `Allow: {allow}`."
    return {
        "openapi": "3.1.0",
        "info": {"title": "apr_sched", "version": version, "description": DESCRIPTION},
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "responses": {"MethodNotAllowed": {
                "description": "The path exists, the method does not",
                "headers": {"Allow": {"schema": {"type": "string"},
                                      "description": "the path's methods, e.g. `GET, DELETE`"}},
                "content": {"application/json": {"schema": _ref("Error")}}}},
        },
        "security": [{"bearer": []}],
    }
