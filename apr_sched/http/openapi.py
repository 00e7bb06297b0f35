"""OpenAPI 3.1 for the /scheduler routes, with schemas generated from the pydantic models.

Input models are described as they validate (strict, no unknown fields), output models as
they serialise, so a client generated from this document agrees with the server.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from apr_sched.models import (
    Host,
    HostEvent,
    HostLoad,
    HostSpec,
    Job,
    JobEvent,
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


ERROR = _object({"error": _object({
    "code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
    required=["code", "message"])})
EVENT = {"oneOf": [_ref("JobEvent"), _ref("HostEvent")],
         "discriminator": {"propertyName": "kind"}}
HEALTH = _object({"status": {"enum": ["ok", "degraded"]},
                  "degraded_reason": {"type": ["string", "null"]},
                  "version": {"type": "string"},
                  "uptime_sec": {"type": "number"}, "hosts_online": {"type": "integer"},
                  "jobs_pending": {"type": "integer"}, "jobs_running": {"type": "integer"},
                  "last_event_seq": {"type": "integer"}})
HEARTBEAT = _object({"host_id": {"type": "string"}, "state": {"type": "string"},
                     "last_heartbeat": {"type": ["string", "null"], "format": "date-time"}})
BATCH_REPLY = _object({"job_ids": _array({"type": "string"}), "count": {"type": "integer"}})
BATCH_BODY = {"oneOf": [_object({"jobs": _array(_ref("JobSpec"))}), _array(_ref("JobSpec"))]}

_ID = {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema,
            "description": description}


# (method, path after /scheduler): summary, request body, {status: reply schema}, query params
OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("GET", "/health"): {"summary": "Liveness and headline counts (no auth)",
                         "replies": {200: HEALTH}},
    ("GET", "/openapi.json"): {"summary": "This document", "replies": {200: {"type": "object"}}},
    ("POST", "/hosts/register"): {"summary": "Register or update a host", "body": _ref("HostSpec"),
                                  "replies": {201: _ref("Host"), 200: _ref("Host")}},
    ("GET", "/hosts"): {"summary": "All hosts with state and usage", "replies": {
        200: _object({"hosts": _array(_ref("Host")), "total": {"type": "integer"}})}},
    ("GET", "/hosts/{host_id}"): {"summary": "One host", "replies": {200: _ref("Host")}},
    ("DELETE", "/hosts/{host_id}"): {"summary": "Remove a host (409 while it runs jobs)",
                                     "replies": {200: _ref("Host")}},
    ("POST", "/hosts/{host_id}/heartbeat"): {
        "summary": "A host is alive, optionally with load figures",
        "body": _ref("HostLoad"), "body_required": False, "replies": {200: HEARTBEAT}},
    ("POST", "/jobs"): {"summary": "Submit one job", "body": _ref("JobSpec"),
                        "replies": {201: _ref("Job")}},
    ("POST", "/jobs/batch"): {"summary": "Submit many jobs, all or nothing", "body": BATCH_BODY,
                              "replies": {201: BATCH_REPLY}},
    ("GET", "/jobs"): {"summary": "Jobs in submit order, filtered and paged", "replies": {
        200: _object({"jobs": _array(_ref("Job")), "total": {"type": "integer"}})},
        "query": [
            _query("status", {"type": "string"}, "one status or several, comma-separated"),
            _query("project", {"type": "string"}, "exact project"),
            _query("design", {"type": "string"}, "exact design"),
            _query("owner", {"type": "string"}, "exact owner"),
            _query("host", {"type": "string"}, "host the job runs or ran on"),
            _query("id", {"type": "string"}, "only these job ids, comma-separated"),
            _query("limit", {"type": "integer", "minimum": 0, "maximum": 5000,
                             "default": 500}, "page size (default 500, at most 5,000)"),
            _query("offset", {"type": "integer", "minimum": 0}, "jobs to skip")]},
    ("GET", "/jobs/{job_id}"): {"summary": "One job with its events and attempts",
                                "replies": {200: _ref("Job")}},
    ("GET", "/jobs/{job_id}/logs"): {
        "summary": "Tail of an attempt's log, or the lines after a byte offset",
        "replies": {200: _ref("LogTail")}, "text": True, "query": [
            _query("tail", {"type": "integer", "minimum": 0}, "last N lines (default 200)"),
            _query("attempt", {"type": "integer", "minimum": 1}, "attempt (default: latest)"),
            _query("offset", {"type": "integer", "minimum": 0},
                   "lines appended after this byte offset (follow a log)"),
            _query("format", {"enum": ["json", "text"]}, "text for plain text")]},
    ("POST", "/purge"): {
        "summary": "Forget finished jobs (attempts, events, logs) and host events from "
                   "before a time; unfinished jobs are never purged",
        "body": _object({"before": {"type": "string", "format": "date-time"}},
                        required=["before"]),
        "replies": {200: _ref("PurgeReport")}},
    ("GET", "/metrics/summary"): {"summary": "Jobs, hosts, usage, wait and run times",
                                  "replies": {200: _ref("MetricsSummary")}},
    ("GET", "/events"): {"summary": "Events after a sequence number (long poll)", "replies": {
        200: _object({"events": _array(EVENT), "last_seq": {"type": "integer"}})}, "query": [
            _query("since", {"type": "integer", "minimum": 0}, "last sequence number seen"),
            _query("wait", {"type": "number", "minimum": 0, "maximum": 60},
                   "seconds to wait for a new event"),
            _query("limit", {"type": "integer", "minimum": 1, "maximum": 10000}, "at most")]},
}
for _action in ("pause", "resume", "stop", "rerun"):
    OPERATIONS[("POST", f"/jobs/{{job_id}}/{_action}")] = {
        "summary": f"{_action.capitalize()} a job (409 when it does not apply)",
        "replies": {200: _ref("Job")}}

ERROR_STATUSES = {400: "Invalid input", 401: "Missing or wrong bearer token",
                  404: "Unknown path, job, host or attempt", 405: "Method not allowed",
                  409: "Not allowed in the current state", 413: "Body too large",
                  431: "Request head too large"}


def component_schemas() -> dict[str, Any]:
    models: list[tuple[type[BaseModel], Any]] = [
        (JobSpec, "validation"), (HostSpec, "validation"), (HostLoad, "validation"),
        (Job, "serialization"), (Host, "serialization"), (LogTail, "serialization"),
        (MetricsSummary, "serialization"), (PurgeReport, "serialization"),
        (JobEvent, "serialization"),
        (HostEvent, "serialization"),
    ]
    _, top = models_json_schema(models, ref_template=REF)
    schemas: dict[str, Any] = top["$defs"]
    schemas["Error"] = ERROR
    return schemas


def build_openapi(routes: Sequence[_Route], version: str, prefix: str = "/scheduler") -> dict[
        str, Any]:
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
        params += spec.get("query", [])
        if params:
            operation["parameters"] = params
        if "body" in spec:
            operation["requestBody"] = {"required": spec.get("body_required", True),
                                        "content": {"application/json": {"schema": spec["body"]}}}
        for status, schema in spec["replies"].items():
            content = {"application/json": {"schema": schema}}
            if spec.get("text"):
                content["text/plain"] = {"schema": {"type": "string"}}
            operation["responses"][str(status)] = {"description": "OK", "content": content}
        for status, text in ERROR_STATUSES.items():
            operation["responses"][str(status)] = {
                "description": text, "content": {"application/json": {"schema": _ref("Error")}}}
        if route.auth:
            operation["security"] = [{"bearer": []}]
        else:
            operation["security"] = []
        paths.setdefault(route.template, {})[route.method.lower()] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "apr_sched", "version": version,
                 "description": "Job scheduler for APR runs: the /scheduler contract."},
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"bearer": []}],
    }
