"""A small synchronous client for a running daemon's ``/scheduler`` API, returning models.

    with SchedulerClient(*find_daemon(None, None, None, state_dir)) as c:
        job = c.submit({"command": "innovus -init place.tcl", "priority": 2})
        print(c.job(job.job_id).status)

The daemon is reached over its Unix socket (``unix:<state_dir>/apr_sched.sock``, where it
knows the caller by uid and needs no token) or over HTTP with a bearer token.
``SchedulerClient`` has the Scheduler's method names, arguments and return types (the
pydantic models, loaded with the first reply that needs them); the transport, error
mapping and raw replies are ``RawClient``'s (``rawclient.py``), what the CLI uses directly.
An error reply raises the matching ``AprError``; a daemon that cannot be reached raises
``DaemonUnreachable``, a refused token ``AuthFailed``.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from apr_sched import futures
from apr_sched.discovery import (
    DEFAULT_URL,
    TOKEN_ENV,
    TOKEN_FILE,
    URL_ENV,
    DaemonUrl,
    find_daemon,
    find_token,
    find_url,
    normalize_url,
    parse_daemon_url,
)
from apr_sched.errors import AuthFailed, InvalidInput, NotFound
from apr_sched.futures import MAX_POLL_SEC
from apr_sched.rawclient import (
    DaemonUnreachable,
    RawClient,
    encode_json,
    error_from_reply,
    json_object,
    valid_id,
)
from apr_sched.states import JobStatus

if TYPE_CHECKING:  # the models (and pydantic) load on the first reply that needs them
    from pydantic import TypeAdapter

    from apr_sched.futures import JobHandle, JobRef
    from apr_sched.models import (
        Event,
        Host,
        HostLoad,
        HostSpec,
        Job,
        JobGraph,
        JobPage,
        JobSpec,
        LogTail,
        MetricsSummary,
        PurgeReport,
    )

__all__ = [
    "DEFAULT_URL",
    "MAX_POLL_SEC",
    "TOKEN_ENV",
    "TOKEN_FILE",
    "URL_ENV",
    "AuthFailed",
    "DaemonUnreachable",
    "DaemonUrl",
    "SchedulerClient",
    "encode_json",
    "error_from_reply",
    "find_daemon",
    "find_token",
    "find_url",
    "normalize_url",
    "parse_daemon_url",
]

LIST_PAGE = 1000
"""Jobs per request when ``list_jobs`` reads every match (the daemon allows up to 5,000)."""
_MAX_IDS_QUERY = 6000
"""Bytes of comma-joined ids in one request's query, well under the daemon's 16 KiB head."""
T = TypeVar("T")


class SchedulerClient(RawClient):
    """Talks to one daemon at ``url``: ``http://host:port`` (optionally with a path prefix),
    or ``unix:/path/apr_sched.sock``.

    ``token`` is sent as ``Authorization: Bearer``; ``timeout`` bounds connecting and each
    read. Every call returns the parsed model where one fits; ``last_json`` keeps the raw
    JSON of the last reply (what ``apr-sched ... --json`` prints). ``logs``, ``events`` and
    ``health`` return the raw replies. Not thread-safe: use one client per thread.
    """

    def __enter__(self) -> SchedulerClient:
        return self

    def clone(self) -> SchedulerClient:
        return SchedulerClient(self.url, self.token, self.timeout)

    # hosts (the Scheduler's names and types) ---------------------------------------------
    def register_host(self, spec: HostSpec | Mapping[str, Any]) -> tuple[Host, bool]:
        """Register or update a host; True when it is new (201)."""
        from apr_sched.models import Host

        status, data = self.request("POST", "/hosts/register", body=spec)
        return Host.model_validate(data), status == 201

    def heartbeat(self, host_id: str, load: HostLoad | Mapping[str, Any] | None = None
                  ) -> Host:
        """A host says it is alive (optionally with load figures); the host afterwards.
        Two requests: the heartbeat reply holds only the host's state."""
        path = f"/hosts/{valid_id(host_id, 'host_id')}/heartbeat"
        self.request("POST", path, body=load)
        return self.get_host(host_id)

    def unregister_host(self, host_id: str) -> Host:
        from apr_sched.models import Host

        path = f"/hosts/{valid_id(host_id, 'host_id')}"
        return Host.model_validate(self.request("DELETE", path)[1])

    def list_hosts(self) -> list[Host]:
        from apr_sched.models import Host

        data = json_object(self.request("GET", "/hosts")[1])
        return [Host.model_validate(item) for item in data.get("hosts", [])]

    def get_host(self, host_id: str) -> Host:
        from apr_sched.models import Host

        return Host.model_validate(self.request("GET", f"/hosts/{valid_id(host_id, 'host_id')}")[1])

    # jobs --------------------------------------------------------------------------------
    def submit(self, spec: JobSpec | Mapping[str, Any], *,
               idempotency_key: str | None = None) -> Job:
        """Queue one job. With ``idempotency_key`` (e.g. a UUID), sending the same spec again
        with the same key returns the job created the first time instead of a new one."""
        from apr_sched.models import Job

        return Job.model_validate(self.request("POST", "/jobs", body=spec,
                                               headers=_idempotency(idempotency_key))[1])

    def submit_batch(self, specs: Iterable[JobSpec | Mapping[str, Any]], *,
                     idempotency_key: str | None = None) -> list[Job]:
        """All or nothing: one bad spec rejects the batch, naming its index and field.
        ``idempotency_key`` as in ``submit``: a retried batch is not queued twice. The daemon
        replies with ids; the jobs are then read back (``submit_batch_ids`` skips that)."""
        job_ids = self.submit_batch_ids(specs, idempotency_key=idempotency_key)
        return self._jobs_by_id(job_ids) if job_ids else []

    def submit_batch_ids(self, specs: Iterable[JobSpec | Mapping[str, Any]], *,
                         idempotency_key: str | None = None) -> list[str]:
        """``submit_batch`` in one request: the new jobs' ids only."""
        data = json_object(self.request("POST", "/jobs/batch", body={"jobs": list(specs)},
                                    headers=_idempotency(idempotency_key))[1])
        return [str(job_id) for job_id in data.get("job_ids", [])]

    def list_jobs(
        self,
        *,
        status: JobStatus | str | Iterable[JobStatus | str] | None = None,
        project: str | None = None,
        design: str | None = None,
        owner: str | None = None,
        host: str | None = None,
        ids: Iterable[str] | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> JobPage:
        """Jobs in submit order, filtered; ``total`` counts all matches before paging.
        ``limit=None`` means all of them, as in-process: read in pages of LIST_PAGE jobs."""
        from apr_sched.models import JobPage

        query: dict[str, Any] = {
            "status": _statuses(status), "project": project, "design": design,
            "owner": owner, "host": host}
        if ids is not None:
            wanted = list(ids)
            if not wanted:
                return JobPage(jobs=[], total=0)
            query["id"] = _ids_query(wanted)
        if limit is not None:
            return self._job_page(query, limit, offset)
        page = self._job_page(query, LIST_PAGE, offset)
        jobs, total = list(page.jobs), page.total
        while page.jobs and offset + len(jobs) < total:
            page = self._job_page(query, LIST_PAGE, offset + len(jobs))
            jobs.extend(page.jobs)
        return JobPage(jobs=jobs, total=total)

    def _job_page(self, query: dict[str, Any], limit: int, offset: int) -> JobPage:
        from apr_sched.models import JobPage

        reply = self.request("GET", "/jobs", query={**query, "limit": limit,
                                                    "offset": offset or None})[1]
        return JobPage.model_validate(reply)

    def _jobs_by_id(self, job_ids: Sequence[str]) -> list[Job]:
        """These jobs (as listed: no timelines), in the order given; NotFound for one that
        does not exist. As many requests as the ids need (each under the head limit)."""
        found: dict[str, Job] = {}
        for chunk in _id_chunks(job_ids):
            page = self._job_page({"id": ",".join(chunk)}, len(chunk), 0)
            found.update((job.job_id, job) for job in page.jobs)
        return [_found(found, job_id) for job_id in job_ids]

    def job_statuses(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        """Each job's status, in the order given; NotFound for an unknown one. No models are
        built (pydantic is not even loaded), so a status poll from a script starts fast."""
        wanted = list(job_ids)
        found: dict[str, JobStatus] = {}
        for chunk in _id_chunks(wanted):
            reply = json_object(self.request("GET", "/jobs", query={
                "id": ",".join(chunk), "limit": len(chunk)})[1])
            found.update((str(item["job_id"]), JobStatus(item["status"]))
                         for item in reply.get("jobs", []))
        return {job_id: _found(found, job_id) for job_id in wanted}

    def get_job(self, job_id: str) -> Job:
        """The job with its attempts and event timeline."""
        from apr_sched.models import Job

        return Job.model_validate(self.request("GET", f"/jobs/{valid_id(job_id, 'job_id')}")[1])

    def tail_log(self, job_id: str, n: int = 200, attempt: int | None = None) -> LogTail:
        """The last ``n`` lines of an attempt's log (the current attempt by default)."""
        from apr_sched.models import LogTail

        return LogTail.model_validate(self._log_reply(job_id, {"tail": n, "attempt": attempt}))

    def read_log(self, job_id: str, offset: int, attempt: int | None = None) -> LogTail:
        """Complete lines appended after byte ``offset`` (to follow a log; continue from the
        reply's ``offset``). The daemon reads at most 1 MiB per call."""
        from apr_sched.models import LogTail

        reply = self._log_reply(job_id, {"offset": offset, "attempt": attempt})
        return LogTail.model_validate(reply)

    def _log_reply(self, job_id: str, query: dict[str, Any]) -> dict[str, Any]:
        path = f"/jobs/{valid_id(job_id, 'job_id')}/logs"
        return json_object(self.request("GET", path, query=query)[1])

    def pause(self, job_id: str) -> Job:
        return self._action(job_id, "pause")

    def resume(self, job_id: str) -> Job:
        return self._action(job_id, "resume")

    def stop(self, job_id: str) -> Job:
        return self._action(job_id, "stop")

    def rerun(self, job_id: str, *, with_dependents: bool = False) -> Job:
        """A new attempt of a finished job; ``with_dependents`` also re-arms the jobs below
        it that were CANCELLED."""
        from apr_sched.models import Job

        path = f"/jobs/{valid_id(job_id, 'job_id')}/rerun"
        body = {"with_dependents": True} if with_dependents else None
        return Job.model_validate(self.request("POST", path, body=body)[1])

    def modify(self, job_id: str, changes: Mapping[str, Any]) -> Job:
        """Change a job's name, priority, timeout_sec, begin_at or resource_request
        (``PATCH``; ``Scheduler.modify`` says what may change when)."""
        from apr_sched.models import Job

        body = {name: value.isoformat() if isinstance(value, datetime) else value
                for name, value in changes.items()}
        return Job.model_validate(self.request("PATCH", f"/jobs/{valid_id(job_id, 'job_id')}",
                                               body=body)[1])

    def top(self, job_id: str) -> Job:
        """Move a pending job to the front of its priority."""
        return self._action(job_id, "top")

    def bottom(self, job_id: str) -> Job:
        """Move a pending job to the back of its priority."""
        return self._action(job_id, "bottom")

    def graph(self, job_id: str, depth: int = 2) -> JobGraph:
        """The jobs ``job_id`` waits for and those waiting for it, with their states."""
        from apr_sched.models import JobGraph

        reply = self.request("GET", f"/jobs/{valid_id(job_id, 'job_id')}/graph",
                             query={"depth": depth})[1]
        return JobGraph.model_validate(reply)

    def purge(self, before: datetime) -> PurgeReport:
        """Forget finished jobs (attempts, events, logs) and host events from before then."""
        from apr_sched.models import PurgeReport

        reply = self.request("POST", "/purge", body={"before": before.isoformat()})[1]
        return PurgeReport.model_validate(reply)

    def _action(self, job_id: str, action: str) -> Job:
        from apr_sched.models import Job

        path = f"/jobs/{valid_id(job_id, 'job_id')}/{action}"
        return Job.model_validate(self.request("POST", path)[1])

    # metrics and events ------------------------------------------------------------------
    def metrics_summary(self) -> MetricsSummary:
        from apr_sched.models import MetricsSummary

        return MetricsSummary.model_validate(self.request("GET", "/metrics/summary")[1])

    def events_since(self, seq: int, *, wait: float = 0.0, limit: int = 1000) -> list[Event]:
        """Events after ``seq`` (oldest first), waiting up to ``wait`` seconds for one: a
        long poll, answered as soon as there is an event."""
        page = self.events(seq, wait, limit)
        return _event_list().validate_python(page.get("events", []))

    def _event_cursor(self) -> int:
        """The newest event's number: what to follow from (``futures`` needs it)."""
        return int(self.health().get("last_event_seq", 0))

    # waiting -----------------------------------------------------------------------------
    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is final (as ``Scheduler.wait``; TimeoutError after
        ``timeout`` seconds). Follows the daemon's events by long poll: one request per
        burst of events or per MAX_POLL_SEC of quiet, never a polling loop."""
        return futures.wait_one(self, job_id, timeout)

    def wait_all(self, jobs: Iterable[JobRef], timeout: float | None = None) -> list[Job]:
        """Every job once final, in the order given (TimeoutError naming those unfinished)."""
        return futures.wait_all(self, jobs, timeout)

    def as_completed(self, jobs: Iterable[JobRef], timeout: float | None = None
                     ) -> Iterator[Job]:
        """Each job as it becomes final, in the order they finish."""
        return futures.as_completed(self, jobs, timeout)

    def submit_handle(self, spec: JobSpec | Mapping[str, Any], *,
                      idempotency_key: str | None = None) -> JobHandle:
        """``submit``, returning a handle to wait on or stop the job."""
        return futures.JobHandle(self, self.submit(spec, idempotency_key=idempotency_key))

    def handle(self, job: JobRef) -> JobHandle:
        """A handle on an existing job (an id, a Job or a handle)."""
        return futures.JobHandle(self, job)

    # deprecated short names ----------------------------------------------------------------
    def hosts(self) -> list[Host]:
        """Deprecated: ``list_hosts``."""
        return self.list_hosts()

    def host(self, host_id: str) -> Host:
        """Deprecated: ``get_host``."""
        return self.get_host(host_id)

    def jobs(
        self,
        status: str | Sequence[str] | None = None,
        project: str | None = None,
        design: str | None = None,
        owner: str | None = None,
        host: str | None = None,
        limit: int | None = None,
        offset: int | None = None,
    ) -> JobPage:
        """Deprecated: ``list_jobs`` (which reads every match when ``limit`` is None; this
        one request gets the daemon's default page of 500)."""
        from apr_sched.models import JobPage

        query = {"status": _statuses(status), "project": project, "design": design,
                 "owner": owner, "host": host, "limit": limit, "offset": offset}
        return JobPage.model_validate(self.request("GET", "/jobs", query=query)[1])

    def job(self, job_id: str) -> Job:
        """Deprecated: ``get_job``."""
        return self.get_job(job_id)

    def logs(self, job_id: str, tail: int = 200, attempt: int | None = None,
             offset: int | None = None, wait: float | None = None) -> dict[str, Any]:
        """Deprecated: ``tail_log`` / ``read_log`` (which return a LogTail). The raw reply
        ``{"job_id", "attempt", "lines", "offset"}``: the last ``tail`` lines, or with
        ``offset`` the complete lines appended after that byte offset (``wait``: a long
        poll for them)."""
        return super().logs(job_id, tail, attempt, offset, wait)

    def events(self, since: int = 0, wait: float = 0, limit: int | None = None
               ) -> dict[str, Any]:
        """Deprecated: ``events_since`` (which returns Event models). The raw reply
        ``{"events": [...], "last_seq"}``; ``wait`` > 0 long-polls for the next event."""
        return super().events(since, wait, limit)

    def metrics(self) -> MetricsSummary:
        """Deprecated: ``metrics_summary``."""
        return self.metrics_summary()


# helpers ---------------------------------------------------------------------------------
def _idempotency(key: str | None) -> dict[str, str]:
    return {} if key is None else {"Idempotency-Key": key}


def _found(found: Mapping[str, T], job_id: str) -> T:
    try:
        return found[job_id]
    except KeyError:
        raise NotFound(f"no job {job_id!r}", {"job_id": job_id}) from None


def _statuses(status: str | Iterable[str] | None) -> str | None:
    """One comma-separated ``status`` query value (JobStatus members are strings)."""
    if status is None or isinstance(status, str):
        return status
    return ",".join(str(item) for item in status)


def _ids_query(job_ids: Sequence[str]) -> str:
    """The ``id`` query value, refused here rather than by the daemon's head limit."""
    text = ",".join(valid_id(job_id, "ids") for job_id in job_ids)
    if len(text) > _MAX_IDS_QUERY:
        raise InvalidInput(
            f"ids: {len(job_ids)} ids are too many for one request over HTTP (at most "
            f"{_MAX_IDS_QUERY} characters comma-joined); ask in parts",
            [{"field": "ids", "message": "too many ids for one request"}])
    return text


def _id_chunks(job_ids: Sequence[str]) -> Iterator[list[str]]:
    """Distinct ids in groups whose comma-joined query fits in one request."""
    chunk: list[str] = []
    size = 0
    for job_id in dict.fromkeys(job_ids):
        valid_id(job_id, "job_id")
        if chunk and size + len(job_id) + 1 > _MAX_IDS_QUERY:
            yield chunk
            chunk, size = [], 0
        chunk.append(job_id)
        size += len(job_id) + 1
    if chunk:
        yield chunk


@functools.cache
def _event_list() -> TypeAdapter[list[Event]]:
    from pydantic import TypeAdapter

    from apr_sched.models import Event

    return TypeAdapter(list[Event])
