"""The /scheduler routes: check the request, ask the Scheduler, shape the reply.

Routes only ask; the Scheduler changes state. Every error is an ``AprError`` turned into
``{"error": {"code", "message", "details"}}`` with its status, so a rejected request has
changed nothing and the server keeps serving.

Auth comes before routing: a request without a valid token learns nothing but 401, whatever
its path, method or ids (only ``GET /scheduler/health`` is public). ``admit`` is that check;
the server calls it on each request head before reading the body, and ``__call__`` calls it
again so the handler is safe on its own.

Every request but health is made by someone (``apr_sched.identity``): over the Unix socket
the kernel says who, over TCP the bearer token does. The caller owns what it submits; only
the owner or an admin may pause, resume, stop or rerun a job; other users see a job's
environment values redacted; hosts and purge are for admins (403 ``forbidden`` otherwise).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import unquote

from pydantic import TypeAdapter

from apr_sched import __version__
from apr_sched.errors import AprError, AuthFailed, Forbidden, InvalidInput, NotFound
from apr_sched.http.limits import ApiLimits, ClientTurns
from apr_sched.http.logwait import LogWaits
from apr_sched.http.openapi import MAX_INT64, build_openapi
from apr_sched.http.server import Admission, Request, Response, error_response
from apr_sched.identity import NO_AUTH, Identity, daemon_user, redacted_env, socket_identity
from apr_sched.job_graph import MAX_DEPTH
from apr_sched.models import Event, Host, Job, JobStatus, is_valid_id
from apr_sched.scheduler import Scheduler
from apr_sched.store import IdempotencyKey, Store, StoredReply
from apr_sched.tokens import identify_token

PREFIX = "/scheduler"
MAX_WAIT_SEC = 60.0
MAX_TAIL_LINES = 1_000_000
MAX_EVENTS_LIMIT = 10_000
LIST_EXCLUDE = {"events", "attempts"}
_JOB_LIST = TypeAdapter(list[Job])
_IDEMPOTENCY_KEY = re.compile(r"[\x21-\x7e]{1,255}")
"""1 to 255 visible ASCII characters, e.g. a UUID."""
LAST_EVENT_SEQ_HEADER = "Last-Event-Seq"
"""On a fresh submit's reply: the daemon's last event number from before the job's first
event, so ``GET /events?since=<it>`` holds every event of the job (a header, not a field:
the body stays a Job, which strict clients validate with no unknown field allowed)."""

RouteHandler = Callable[..., Awaitable[Response]]
Reply = Callable[[list[Job]], tuple[int, bytes]]

LIST_DEFAULT_LIMIT = 500
"""Jobs in one GET /scheduler/jobs reply unless ``limit`` says otherwise; ``total`` tells
how many match, ``offset`` pages on."""
LIST_MAX_LIMIT = 5_000
"""The largest page; it is built and serialised in steps of LIST_DUMP_CHUNK jobs."""
LIST_DUMP_CHUNK = 200


class MethodNotAllowed(AprError):
    code = "method_not_allowed"
    http_status = 405


class BatchTooLarge(AprError):
    code = "batch_too_large"
    http_status = 413


class IdempotencyKeyReused(AprError):
    """The key was used for a different request: replaying its reply would be wrong."""

    code = "idempotency_key_reused"
    http_status = 422


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str
    handler: RouteHandler
    auth: bool = True

    @property
    def parts(self) -> list[str]:
        return self.template.strip("/").split("/")


def job_json(job: Job) -> dict[str, Any]:
    return job.model_dump(mode="json")


def host_json(host: Host) -> dict[str, Any]:
    return host.model_dump(mode="json")


def event_json(event: Event) -> dict[str, Any]:
    return event.model_dump(mode="json")


class SchedulerApi:
    """An h11 server handler serving the /scheduler contract for one Scheduler.

    ``token`` is the state dir's admin token; per-user tokens are looked up in the store.
    ``token=None`` turns auth off for TCP (the daemon only does that when asked explicitly);
    socket callers are still known by their uid.
    """

    def __init__(self, scheduler: Scheduler, *, token: str | None,
                 limits: ApiLimits | None = None) -> None:
        self.scheduler = scheduler
        self.limits = limits = limits or ApiLimits()
        self._turns = ClientTurns(limits.max_busy_per_client)
        self._token = token.encode() if token else None
        self._started = time.monotonic()
        s = PREFIX
        self.routes = [
            Route("GET", f"{s}/health", self.health, auth=False),
            Route("GET", f"{s}/openapi.json", self.openapi),
            Route("POST", f"{s}/hosts/register", self.register_host),
            Route("GET", f"{s}/hosts", self.list_hosts),
            Route("GET", f"{s}/hosts/{{host_id}}", self.get_host),
            Route("DELETE", f"{s}/hosts/{{host_id}}", self.unregister_host),
            Route("POST", f"{s}/hosts/{{host_id}}/heartbeat", self.heartbeat),
            Route("POST", f"{s}/jobs", self.submit),
            Route("POST", f"{s}/jobs/batch", self.submit_batch),
            Route("GET", f"{s}/jobs", self.list_jobs),
            Route("GET", f"{s}/jobs/{{job_id}}", self.get_job),
            Route("PATCH", f"{s}/jobs/{{job_id}}", self.modify),
            Route("GET", f"{s}/jobs/{{job_id}}/graph", self.graph),
            Route("GET", f"{s}/jobs/{{job_id}}/logs", self.logs),
            Route("POST", f"{s}/jobs/{{job_id}}/pause", self.pause),
            Route("POST", f"{s}/jobs/{{job_id}}/resume", self.resume),
            Route("POST", f"{s}/jobs/{{job_id}}/stop", self.stop),
            Route("POST", f"{s}/jobs/{{job_id}}/rerun", self.rerun),
            Route("POST", f"{s}/jobs/{{job_id}}/top", self.top),
            Route("POST", f"{s}/jobs/{{job_id}}/bottom", self.bottom),
            Route("GET", f"{s}/metrics/summary", self.metrics),
            Route("POST", f"{s}/purge", self.purge),
            Route("GET", f"{s}/events", self.events),
        ]
        self._openapi = json.dumps(build_openapi(
            self.routes, __version__, max_batch_jobs=limits.max_batch_jobs)).encode()
        self._closing = asyncio.Event()
        self.log_waits = LogWaits(scheduler)
        """Held ``GET /jobs/{id}/logs?offset=&wait=`` requests (``http/logwait.py``)."""

    def shutdown(self) -> None:
        """Answer long polls now, so the server can close without waiting them out."""
        self._closing.set()
        self.log_waits.close()

    def admit(self, request: Request) -> Admission | Response:
        """PUBLIC for the routes that need no token, AUTHENTICATED once the caller is known
        (``request.identity``: a valid token, the socket's uid, or auth off), else the 401 to
        send: before routing, so nothing else is learnt."""
        segments = _segments(request)
        if any(not route.auth and route.method == request.method
               and _match_parts(route.parts, segments) is not None for route in self.routes):
            return Admission.PUBLIC
        try:
            request.identity = self.identify(request)
        except AuthFailed as exc:
            response = error_response(401, exc.code, exc.message, exc.details)
            response.headers.append(("WWW-Authenticate", 'Bearer realm="apr_sched"'))
            return response
        return Admission.AUTHENTICATED

    async def __call__(self, request: Request) -> Response:
        admission = self.admit(request)
        if isinstance(admission, Response):
            return admission
        try:
            route, params = self._match(request)
            if route.handler in (self.events, self.logs):  # long polls: wait outside
                return await route.handler(request, **params)  # their turn, then take one
            async with self._turns.turn(_address(request)):
                return await route.handler(request, **params)
        except MethodNotAllowed as exc:
            response = error_response(405, exc.code, exc.message, exc.details)
            response.headers.append(("Allow", ", ".join(exc.details["allow"])))
            return response
        except AprError as exc:
            return error_response(exc.http_status, exc.code, exc.message, exc.details)

    # routing -----------------------------------------------------------------------------
    def _match(self, request: Request) -> tuple[Route, dict[str, str]]:
        segments = _segments(request)
        matches = [(route, params) for route in self.routes
                   if (params := _match_parts(route.parts, segments)) is not None]
        if any(not params for _, params in matches):  # a literal path beats a template
            matches = [(route, params) for route, params in matches if not params]
        allowed: list[str] = []
        for route, params in matches:
            if route.method == request.method:
                return route, _checked_ids(params)
            allowed.append(route.method)
        if allowed:
            raise MethodNotAllowed(
                f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}",
                {"allow": sorted(set(allowed))},
            )
        raise NotFound(f"no such endpoint: {request.method} {request.path}",
                       {"path": request.path})

    # identity ----------------------------------------------------------------------------
    def identify(self, request: Request) -> Identity:
        """Who sent ``request``: the kernel's word over the Unix socket, else the bearer
        token (nobody in particular with auth off); AuthFailed without a valid token."""
        if request.peer is not None:
            return socket_identity(request.peer)
        if self._token is None:
            return NO_AUTH
        header = request.header("authorization") or ""
        scheme, _, credentials = header.partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            raise AuthFailed("missing bearer token: send 'Authorization: Bearer <token>' "
                               "(the token is in <state_dir>/token)")
        if hmac.compare_digest(credentials.encode("utf-8", "surrogateescape"), self._token):
            return Identity(daemon_user(), admin=True, via="admin-token")
        identity = identify_token(self.scheduler.store, credentials)
        if identity is None:
            raise AuthFailed("wrong bearer token")
        return identity

    def _caller(self, request: Request) -> Identity:
        return request.identity if request.identity is not None else self.identify(request)

    def _require_admin(self, request: Request, action: str) -> None:
        caller = self._caller(request)
        if not caller.admin:
            raise Forbidden(f"{caller.describe()} may not {action}: only an admin may",
                            {"user": caller.user, "action": action})

    def _require_owner(self, request: Request, job_id: str, action: str) -> None:
        """Only the job's owner or an admin may act on it (404 first for an unknown job)."""
        caller = self._caller(request)
        if caller.admin:
            return
        owner = self.scheduler.owner_of(job_id)
        if owner != caller.user:
            raise Forbidden(
                f"user {caller.user!r} may not {action} job {job_id}: it belongs to "
                f"{owner!r}, and only its owner or an admin may",
                {"job_id": job_id, "owner": owner, "user": caller.user, "action": action})

    def _claim(self, request: Request, specs: list[Any], fields: list[str]) -> None:
        """Make the caller the owner of each submitted spec that names none; a spec that
        names someone else is refused unless the caller is an admin (403 naming the field).
        With auth off (nobody known) the specs stay as they are."""
        caller = self._caller(request)
        if caller.via == "no-auth":
            return
        refused = []
        for spec, field in zip(specs, fields, strict=True):
            if not isinstance(spec, dict):
                continue  # validation names it
            if "owner" not in spec:
                spec["owner"] = caller.user
            elif spec["owner"] != caller.user and not caller.admin:
                refused.append({"field": field, "message": f"only an admin may submit for "
                                f"another user than {caller.user!r}"})
        if refused:
            raise Forbidden(f"{refused[0]['field']}: user {caller.user!r} may not submit jobs "
                            f"for another owner; leave owner out (it is you) or ask an admin",
                            refused)

    def _visible(self, request: Request, job: Job) -> Job:
        """``job`` as the caller may see it: another user's env values are redacted."""
        if job.env and not self._caller(request).may_act_for(job.owner):
            job.env = redacted_env(job.env)
        return job

    # endpoints ---------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        counts = self.scheduler.job_counts()
        degraded = self.scheduler.degraded_reason
        return Response.json(200, {
            "status": "degraded" if degraded else "ok",
            "degraded_reason": degraded,
            "version": __version__,
            "uptime_sec": round(time.monotonic() - self._started, 3),
            "hosts_online": self.scheduler.hosts_online(),
            "jobs_pending": counts[JobStatus.PENDING],
            "jobs_running": counts[JobStatus.RUNNING],
            "last_event_seq": self.scheduler.last_event_seq,
        })

    async def openapi(self, request: Request) -> Response:
        return Response(200, self._openapi)

    async def register_host(self, request: Request) -> Response:
        self._require_admin(request, "register hosts")
        host, created = await self.scheduler.register_host(_json_object(request))
        return Response.json(201 if created else 200, host_json(host))

    async def list_hosts(self, request: Request) -> Response:
        hosts = await self.scheduler.list_hosts()
        return Response.json(200, {"hosts": [host_json(h) for h in hosts], "total": len(hosts)})

    async def get_host(self, request: Request, host_id: str) -> Response:
        return Response.json(200, host_json(await self.scheduler.get_host(host_id)))

    async def unregister_host(self, request: Request, host_id: str) -> Response:
        self._require_admin(request, "unregister hosts")
        return Response.json(200, host_json(await self.scheduler.unregister_host(host_id)))

    async def heartbeat(self, request: Request, host_id: str) -> Response:
        self._require_admin(request, "send host heartbeats")
        load = _json_object(request) if request.body.strip() else None
        host = await self.scheduler.heartbeat(host_id, load)
        return Response.json(200, {
            "host_id": host.host_id, "state": host.state.value,
            "last_heartbeat": host.last_heartbeat.isoformat() if host.last_heartbeat else None,
        })

    async def submit(self, request: Request) -> Response:
        key = self._idempotency_key(request, "submit", _submit_reply)
        if key is not None and (replay := self._replay(key)) is not None:
            return replay
        spec = _json_object(request)
        self._claim(request, [spec], ["owner"])
        # The event number from before the job's first event: a client that waits for the job
        # long-polls the events after it, with no /health call first (a replay has none).
        before = self.scheduler.last_event_seq
        job = await self.scheduler.submit(spec, idempotency_key=key)
        return Response(*_submit_reply([job]), headers=[(LAST_EVENT_SEQ_HEADER, str(before))])

    async def submit_batch(self, request: Request) -> Response:
        key = self._idempotency_key(request, "batch", _batch_reply)
        if key is not None and (replay := self._replay(key)) is not None:
            return replay
        body = _json_body(request)
        if isinstance(body, dict):
            unknown = sorted(set(body) - {"jobs"})
            if unknown or "jobs" not in body:
                raise InvalidInput(
                    'batch body must be {"jobs": [...]} or a list of jobs',
                    [{"field": k, "message": "unknown field"} for k in unknown]
                    or [{"field": "jobs", "message": "Field required"}],
                )
            body = body["jobs"]
        if not isinstance(body, list):
            raise InvalidInput('batch body must be {"jobs": [...]} or a list of jobs',
                               [{"field": "jobs", "message": "must be a list"}])
        limit = self.limits.max_batch_jobs
        if len(body) > limit:
            raise BatchTooLarge(
                f"batch of {len(body)} jobs is over the limit of {limit} jobs per batch; "
                "split it", {"field": "jobs", "limit": limit, "count": len(body)})
        await asyncio.sleep(0)  # parsing 10,000 jobs took ~12 ms: the claims take another 14
        self._claim(request, body, [f"jobs[{index}].owner" for index in range(len(body))])
        jobs = await self.scheduler.submit_batch(body, idempotency_key=key)
        return Response(*_batch_reply(jobs))

    # idempotency ---------------------------------------------------------------------------
    def _idempotency_key(self, request: Request, action: str,
                         reply: Reply) -> IdempotencyKey | None:
        """The request's ``Idempotency-Key`` (None without one), scoped to the caller and
        fingerprinted with the action and the exact body."""
        raw = request.header("idempotency-key")
        if raw is None:
            return None
        key = raw.strip()
        if not _IDEMPOTENCY_KEY.fullmatch(key):
            raise InvalidInput("Idempotency-Key must be 1 to 255 visible ASCII characters "
                               "(one key, no spaces), e.g. a UUID",
                               [{"field": "Idempotency-Key",
                                 "message": "1 to 255 visible ASCII characters"}])
        return IdempotencyKey(self._caller(request).user, key,
                              idempotency_fingerprint(action, request.body), reply)

    def _replay(self, key: IdempotencyKey) -> Response | None:
        """The first reply to this key, if there was one; refused for another request."""
        stored = stored_reply(self.scheduler.store, key, field="Idempotency-Key",
                              other="body or endpoint")
        if stored is None:
            return None
        return Response(stored.status, stored.body,
                        headers=[("Idempotent-Replayed", "true")])

    async def list_jobs(self, request: Request) -> Response:
        q = request.query
        unknown = sorted(set(q) - {"status", "project", "design", "owner", "host", "id",
                                   "limit", "offset"})
        if unknown:
            raise InvalidInput(f"unknown query parameter {unknown[0]!r}",
                               [{"field": k, "message": "unknown query parameter"}
                                for k in unknown])
        statuses = [part for value in q.get("status", []) for part in value.split(",") if part]
        ids = [part for value in q.get("id", []) for part in value.split(",") if part]
        for name, given in (("status", statuses), ("id", ids)):
            if name in q and not given:
                raise InvalidInput(f"{name} is empty: name at least one, or leave it out",
                                   [{"field": name, "message": "must not be empty"}])
        for job_id in ids:
            if not is_valid_id(job_id):
                raise InvalidInput(f"id {job_id!r} is not a valid id",
                                   [{"field": "id", "message": "not a valid id"}])
        page = await self.scheduler.list_jobs(
            status=statuses or None, ids=ids if "id" in q else None,
            project=_one(q, "project"), design=_one(q, "design"), owner=_one(q, "owner"),
            host=_one(q, "host"),
            limit=_int(q, "limit", LIST_DEFAULT_LIMIT, 0, LIST_MAX_LIMIT),
            offset=_int(q, "offset", 0, 0, MAX_INT64) or 0,
        )
        # Serialised by pydantic-core straight to JSON bytes, the hot path of every list
        # view; a big page in steps, so the loop runs other work between them.
        parts = []
        for start in range(0, len(page.jobs), LIST_DUMP_CHUNK):
            if start:
                await asyncio.sleep(0)
            chunk = [self._visible(request, job)
                     for job in page.jobs[start:start + LIST_DUMP_CHUNK]]
            parts.append(_JOB_LIST.dump_json(chunk, exclude={"__all__": LIST_EXCLUDE})[1:-1])
        jobs = b"[" + b",".join(parts) + b"]"
        return Response(200, b'{"jobs":' + jobs + b',"total":%d}' % page.total)

    async def get_job(self, request: Request, job_id: str) -> Response:
        job = await self.scheduler.get_job(job_id)
        return Response.json(200, job_json(self._visible(request, job)))

    async def logs(self, request: Request, job_id: str) -> Response:
        """The last ``tail`` lines, or the lines after ``offset``; with ``offset`` and
        ``wait`` a long poll (``LogWaits``), held outside the caller's turn."""
        q = request.query
        attempt = _int(q, "attempt", None, 1, MAX_INT64)
        offset = _int(q, "offset", None, 0, MAX_INT64)
        wait = _float(q, "wait", 0.0, 0.0, MAX_WAIT_SEC)
        if wait and offset is None:
            raise InvalidInput("wait needs offset: a long poll waits for lines after an "
                               "offset", [{"field": "wait", "message": "needs offset"}])
        fmt = _one(q, "format")
        if fmt not in (None, "json", "text"):
            raise InvalidInput("format must be json or text",
                               [{"field": "format", "message": "must be json or text"}])
        turn = functools.partial(self._turns.turn, _address(request))
        if offset is not None:
            log = await self.log_waits.read(job_id, offset, attempt, wait, turn=turn,
                                            gone=request.client_gone)
        else:
            tail = _int(q, "tail", 200, 0, MAX_TAIL_LINES) or 0
            async with turn():
                log = await self.scheduler.tail_log(job_id, tail, attempt)
        accept = request.header("accept") or ""
        if fmt == "text" or (fmt is None and "text/plain" in accept
                             and "application/json" not in accept):
            text = "".join(line + "\n" for line in log.lines)
            return Response(200, text.encode(), content_type="text/plain; charset=utf-8",
                            headers=[("X-Log-Offset", str(log.offset)),
                                     ("X-Log-Attempt", str(log.attempt))])
        return Response.json(200, log.model_dump(mode="json"))

    async def pause(self, request: Request, job_id: str) -> Response:
        self._require_owner(request, job_id, "pause")
        return Response.json(200, job_json(await self.scheduler.pause(job_id)))

    async def resume(self, request: Request, job_id: str) -> Response:
        self._require_owner(request, job_id, "resume")
        return Response.json(200, job_json(await self.scheduler.resume(job_id)))

    async def stop(self, request: Request, job_id: str) -> Response:
        self._require_owner(request, job_id, "stop")
        return Response.json(200, job_json(await self.scheduler.stop(job_id)))

    async def rerun(self, request: Request, job_id: str) -> Response:
        self._require_owner(request, job_id, "rerun")
        body = _json_object(request) if request.body.strip() else {}
        unknown = sorted(set(body) - {"with_dependents"})
        with_dependents = body.get("with_dependents", False)
        if unknown or not isinstance(with_dependents, bool):
            raise InvalidInput('rerun takes no body or {"with_dependents": true|false}', [
                {"field": name, "message": "unknown field"} for name in unknown] or [
                {"field": "with_dependents", "message": "must be true or false"}])
        job = await self.scheduler.rerun(job_id, with_dependents=with_dependents)
        return Response.json(200, job_json(job))

    async def modify(self, request: Request, job_id: str) -> Response:
        self._require_owner(request, job_id, "modify")
        changes = _json_object(request)
        return Response.json(200, job_json(await self.scheduler.modify(job_id, changes)))

    async def top(self, request: Request, job_id: str) -> Response:
        self._require_owner(request, job_id, "move")
        return Response.json(200, job_json(await self.scheduler.top(job_id)))

    async def bottom(self, request: Request, job_id: str) -> Response:
        self._require_owner(request, job_id, "move")
        return Response.json(200, job_json(await self.scheduler.bottom(job_id)))

    async def graph(self, request: Request, job_id: str) -> Response:
        q = request.query
        unknown = sorted(set(q) - {"depth"})
        if unknown:
            raise InvalidInput(f"unknown query parameter {unknown[0]!r}",
                               [{"field": k, "message": "unknown query parameter"}
                                for k in unknown])
        depth = _int(q, "depth", 2, 0, MAX_DEPTH) or 0
        graph = await self.scheduler.graph(job_id, depth)
        return Response.json(200, graph.model_dump(mode="json"))

    async def purge(self, request: Request) -> Response:
        self._require_admin(request, "purge jobs")
        body = _json_object(request)
        unknown = sorted(set(body) - {"before"})
        if unknown or not isinstance(body.get("before"), str):
            raise InvalidInput("purge takes {\"before\": \"<ISO date-time with zone>\"}", [
                {"field": name, "message": "unknown field"} for name in unknown] or [
                {"field": "before", "message": "required: an ISO 8601 date-time string"}])
        try:
            before = datetime.fromisoformat(body["before"])
        except ValueError:
            raise InvalidInput(f"before: {body['before']!r} is not an ISO 8601 date-time", [
                {"field": "before", "message": "not an ISO 8601 date-time"}]) from None
        report = await self.scheduler.purge(before)
        return Response.json(200, report.model_dump(mode="json"))

    async def metrics(self, request: Request) -> Response:
        summary = await self.scheduler.metrics_summary()
        return Response.json(200, summary.model_dump(mode="json"))

    async def events(self, request: Request) -> Response:
        q = request.query
        since = _int(q, "since", 0, 0, MAX_INT64) or 0
        wait = _float(q, "wait", 0.0, 0.0, MAX_WAIT_SEC)
        limit = _int(q, "limit", 1000, 1, MAX_EVENTS_LIMIT) or 1000
        if wait and not self._closing.is_set():
            poll = asyncio.ensure_future(self.scheduler.events_since(since, wait=wait,
                                                                      limit=limit))
            closing = asyncio.ensure_future(self._closing.wait())
            await asyncio.wait([poll, closing], return_when=asyncio.FIRST_COMPLETED)
            closing.cancel()
            if not poll.done():  # the server is shutting down: answer now, not in `wait`
                poll.cancel()
        async with self._turns.turn(_address(request)):
            events = await self.scheduler.events_since(since, limit=limit)
            last = events[-1].seq if events else max(since, 0)
            return Response.json(200, {"events": [event_json(e) for e in events],
                                       "last_seq": last})


def _json_bytes(data: Any) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()


def _submit_reply(jobs: list[Job]) -> tuple[int, bytes]:
    return 201, _json_bytes(job_json(jobs[0]))


def idempotency_fingerprint(action: str, body: bytes) -> str:
    """What a key is bound to: the action and the exact request body."""
    return hashlib.sha256(action.encode() + b"\n" + body).hexdigest()


def stored_reply(store: Store, key: IdempotencyKey, *, field: str,
                 other: str) -> StoredReply | None:
    """The first reply to ``key`` (None if the key is new); a key used for a different
    request (``other`` says what differed) is refused, naming ``field``."""
    stored = store.idempotent_reply(key.caller, key.key)
    if stored is not None and not hmac.compare_digest(stored.fingerprint, key.fingerprint):
        raise IdempotencyKeyReused(
            f"{field} {key.key!r} was used for a different request (another {other}); use "
            "a new key for a new submit", {"field": field, "key": key.key})
    return stored


def _batch_reply(jobs: list[Job]) -> tuple[int, bytes]:
    return 201, _json_bytes({"job_ids": [j.job_id for j in jobs], "count": len(jobs)})


# request parsing ---------------------------------------------------------------------------
def _address(request: Request) -> str:
    """Whose turn a request takes: its client's address, or over the socket its uid."""
    if request.client:
        return request.client[0]
    return f"uid {request.peer.uid}" if request.peer is not None else "(unknown)"


def _segments(request: Request) -> list[str]:
    return request.path.strip("/").split("/")


def _match_parts(template: list[str], segments: list[str]) -> dict[str, str] | None:
    if len(template) != len(segments):
        return None
    params = {}
    for want, got in zip(template, segments, strict=True):
        if want.startswith("{"):
            params[want[1:-1]] = got
        elif want != got:
            return None
    return params


def _checked_ids(params: dict[str, str]) -> dict[str, str]:
    """Percent-decode path ids and refuse anything that is not a plain id: such a string
    never reaches a lookup, a path or a shell."""
    checked = {}
    for name, raw in params.items():
        value = unquote(raw, errors="replace")
        if not is_valid_id(value):
            raise InvalidInput(f"{name} {value!r} is not a valid id",
                               [{"field": name, "message": "not a valid id: letters, digits, "
                                 "'.', '_' and '-', starting with a letter or digit"}])
        checked[name] = value
    return checked


def _json_body(request: Request) -> Any:
    if not request.body.strip():
        raise InvalidInput("request body is empty; send JSON",
                           [{"field": "(body)", "message": "empty body"}])
    try:
        text = request.body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidInput(f"request body is not valid UTF-8 (byte {exc.start})",
                           [{"field": "(body)", "message": "not valid UTF-8"}]) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInput(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} "
                           f"column {exc.colno}",
                           [{"field": "(body)", "message": f"invalid JSON: {exc.msg}"}]) from None
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        raise InvalidInput(f"request body is not acceptable JSON: {exc}",
                           [{"field": "(body)", "message": str(exc)}]) from None
    except RecursionError:
        raise InvalidInput("request body is nested too deeply",
                           [{"field": "(body)", "message": "nested too deeply"}]) from None


def _json_object(request: Request) -> dict[str, Any]:
    body = _json_body(request)
    if not isinstance(body, dict):
        raise InvalidInput("request body must be a JSON object",
                           [{"field": "(body)", "message": "must be a JSON object"}])
    return body


def _one(query: dict[str, list[str]], name: str) -> str | None:
    values = query.get(name)
    if not values:
        return None
    if len(values) > 1:
        raise InvalidInput(f"query parameter {name} given {len(values)} times",
                           [{"field": name, "message": "give it once"}])
    return values[0]


N = TypeVar("N", int, float)


def _number(query: dict[str, list[str]], name: str, default: N | None, parse: Callable[[str], N],
            low: N, high: N | None = None) -> N | None:
    """A numeric query parameter within bounds (NaN never is), or InvalidInput naming it."""
    raw = _one(query, name)
    if raw is None:
        return default
    kind = "an integer" if parse is int else "a number"
    try:
        value = parse(raw)
    except ValueError:
        raise InvalidInput(f"{name} must be {kind}, got {raw[:40]!r}",
                           [{"field": name, "message": f"must be {kind}"}]) from None
    if not (low <= value and (high is None or value <= high)):
        show = (lambda x: f"{x:g}") if parse is float else str
        bound = f">= {show(low)}" if high is None else f"between {show(low)} and {show(high)}"
        raise InvalidInput(f"{name} must be {bound}", [{"field": name,
                                                        "message": f"must be {bound}"}])
    return value


def _int(query: dict[str, list[str]], name: str, default: int | None, low: int,
         high: int) -> int | None:
    """Always bounded above: a number past 64 bits would overflow SQLite or a seek."""
    return _number(query, name, default, int, low, high)


def _float(query: dict[str, list[str]], name: str, default: float, low: float,
           high: float) -> float:
    value = _number(query, name, default, float, float(low), float(high))
    assert value is not None
    return value
