"""The one async interface the UI talks to, whether the scheduler is in-process or remote.

``InProcessBackend`` wraps a ``Scheduler`` running on the UI's own event loop and follows
``scheduler.subscribe()``; ``AttachedBackend`` speaks the ``/scheduler`` HTTP API and
follows the events long-poll. Screens and widgets never know which one they have.

A ``Feed`` delivers events after a snapshot. It is opened *before* the snapshot is read, so
nothing falls between the two; events it delivers that the snapshot already reflects are
harmless (they carry resulting states). ``Resync`` means events were lost: read a new
snapshot and open a new feed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apr_sched.errors import AprError, InvalidInput, NotFound
from apr_sched.events import Subscription, SubscriptionLagged
from apr_sched.http.service import HttpService
from apr_sched.logs import attempt_files
from apr_sched.models import (
    Event,
    Host,
    HostEvent,
    Job,
    JobEvent,
    JobSpec,
    JobStatus,
    LogTail,
    MetricsSummary,
    is_valid_id,
)
from apr_sched.scheduler import Scheduler
from apr_tui.apiclient import ApiClient
from apr_tui.handoff import DaemonHandoff, Handover
from apr_tui.logsearch import BackendLogReader, FileLogReader, LogReader

log = logging.getLogger("apr_tui")

LONG_POLL_SEC = 20.0
PROBE_TIMEOUT_SEC = 5.0
EVENT_PAGE = 1000


class Resync(Exception):
    """The feed lost events (fell behind, or reconnected): re-read the snapshot."""


class FeedClosed(Exception):
    """The scheduler behind the feed has shut down."""


@dataclass(slots=True)
class Snapshot:
    jobs: list[Job]
    hosts: list[Host]
    metrics: MetricsSummary


class Feed(ABC):
    @abstractmethod
    async def next(self) -> list[Event]:
        """The next events, oldest first (at least one). Raises ``Resync`` when events were
        lost, ``FeedClosed`` when the scheduler has gone, ``AprError`` when unreachable."""

    @abstractmethod
    async def close(self) -> None: ...


class Backend(ABC):
    """What the TUI can ask of a scheduler. Errors are ``AprError``s with a message fit for
    a notification (``IllegalTransition`` names the current state)."""

    attached: bool = False
    """True when the scheduler runs elsewhere: quitting only disconnects."""
    mode: str = "in-process"
    """Shown in the header: ``in-process``, ``attached`` or ``demo``."""

    @property
    @abstractmethod
    def description(self) -> str:
        """Where the jobs live, for the header: a state dir or a URL."""

    @property
    def http_url(self) -> str | None:
        """The HTTP endpoint this TUI serves, if any."""
        return None

    @property
    def hands_off(self) -> bool:
        """True when ``detach`` starts a background daemon that takes the jobs over."""
        return False

    @property
    def last_answer(self) -> float | None:
        """``time.monotonic()`` of the scheduler's last answer; None when it cannot go
        quiet (in-process) or has not answered yet."""
        return None

    @abstractmethod
    async def start(self) -> None:
        """Connect or start; idempotent."""

    @abstractmethod
    async def close(self, *, stop_jobs: bool = False) -> None:
        """Disconnect, or shut the scheduler down (``stop_jobs``: stop every unfinished job
        first, pending and held ones included, so none starts at the next open)."""

    async def detach(self) -> Handover | None:
        """Leave with every job left as it is; what took them over, if anything had to."""
        await self.close()
        return None

    @abstractmethod
    async def open_feed(self) -> Feed: ...

    @abstractmethod
    async def snapshot(self) -> Snapshot: ...

    @abstractmethod
    async def jobs_after(self, count: int) -> list[Job]:
        """Jobs in submit order after the first ``count`` (newly submitted ones)."""

    @abstractmethod
    async def get_job(self, job_id: str) -> Job:
        """One job with its attempts and event timeline."""

    async def get_jobs(self, job_ids: Iterable[str]) -> list[Job]:
        """Fresh views of some jobs (without timelines); unknown ids are skipped."""
        jobs = []
        for job_id in job_ids:
            with contextlib.suppress(NotFound):
                job = await self.get_job(job_id)
                job.events, job.attempts = [], []
                jobs.append(job)
        return jobs

    @abstractmethod
    async def hosts(self) -> list[Host]: ...

    @abstractmethod
    async def metrics(self) -> MetricsSummary: ...

    @abstractmethod
    async def tail_log(self, job_id: str, lines: int, attempt: int | None = None) -> LogTail: ...

    @abstractmethod
    async def read_log(self, job_id: str, offset: int,
                       attempt: int | None = None) -> LogTail: ...

    def log_reader(self, job_id: str, attempt: int) -> LogReader:
        """Bytes of an attempt's log by offset, for searching and browsing it."""
        return BackendLogReader(self, job_id, attempt)

    async def log_location(self, job_id: str, attempt: int) -> str | None:
        """Where the attempt's log file is, when that is known here."""
        return None

    @abstractmethod
    async def control(self, action: str, job_id: str) -> Job:
        """``pause``, ``resume``, ``stop`` or ``rerun`` one job."""

    @abstractmethod
    async def submit(self, spec: JobSpec) -> Job: ...

    @abstractmethod
    async def submit_batch(self, specs: Sequence[Any]) -> list[str]:
        """All or nothing; returns the new job ids."""


ACTIONS = ("pause", "resume", "stop", "rerun")
WAITING = (JobStatus.PENDING, JobStatus.HELD)
"""Unfinished jobs without a process: nothing but a scheduler will ever start them."""
UNFINISHED = (*WAITING, JobStatus.RUNNING, JobStatus.PAUSED)
STOP_PAGE = 500


# in-process --------------------------------------------------------------------------------
class _SubscriptionFeed(Feed):
    def __init__(self, subscription: Subscription) -> None:
        self._subscription = subscription

    async def next(self) -> list[Event]:
        try:
            event = await self._subscription.get()
        except SubscriptionLagged:
            raise Resync("fell behind the scheduler's events") from None
        if event is None:
            raise FeedClosed("the scheduler has shut down")
        return [event]

    async def close(self) -> None:
        self._subscription.close()


class InProcessBackend(Backend):
    """A ``Scheduler`` on this event loop, optionally also served over HTTP (``http``).

    ``start`` starts both unless already started; ``close`` closes both. With ``handoff``,
    ``detach`` gives unfinished jobs to a background daemon instead of leaving them
    unscheduled until the next start.
    """

    def __init__(self, scheduler: Scheduler, http: HttpService | None = None, *,
                 handoff: DaemonHandoff | None = None) -> None:
        self.scheduler = scheduler
        self.http = http
        self.handoff = handoff
        self._started = False
        self._http_started = False
        self._closed = False

    @property
    def description(self) -> str:
        return str(self.scheduler.state_dir)

    @property
    def http_url(self) -> str | None:
        if self.http is None or not self._http_started:
            return None
        return self.http.url

    @property
    def hands_off(self) -> bool:
        return self.handoff is not None

    async def start(self) -> None:
        await self.scheduler.start()
        self._started = True
        if self.http is not None and not self._http_started:
            await self.http.start()
            self._http_started = True

    async def close(self, *, stop_jobs: bool = False) -> None:
        if self._closed:
            return
        self._closed = True
        await self._close_http()  # first: nothing new arrives while we stop what is there
        if stop_jobs:
            await self._stop_waiting_jobs()
        # Jobs dispatched meanwhile are running now: close(stop_jobs) stops those too, and
        # dispatches nothing more.
        await self.scheduler.close(stop_jobs=stop_jobs)

    async def detach(self) -> Handover | None:
        """Close, then start the daemon if any job is unfinished (nothing to do otherwise)."""
        if self._closed:
            return None
        await self._close_http()
        unfinished = self._started and (await self.scheduler.list_jobs(
            status=UNFINISHED, limit=1)).total > 0
        await self.close()
        if self.handoff is None or not unfinished:
            return None
        return await self.handoff.start()

    async def _close_http(self) -> None:
        http, self.http = self.http, None
        if http is not None:
            await http.close()

    async def _stop_waiting_jobs(self) -> None:
        """PENDING and HELD jobs -> STOPPED, a page at a time, yielding between pages."""
        refused: set[str] = set()
        while self._started:
            page = await self.scheduler.list_jobs(status=WAITING, limit=STOP_PAGE)
            todo = [job.job_id for job in page.jobs if job.job_id not in refused]
            if not todo:
                return
            for job_id in todo:
                try:
                    await self.scheduler.stop(job_id)
                except AprError as exc:  # e.g. it started meanwhile: close() stops it
                    refused.add(job_id)
                    log.warning("could not stop job %s on quit: %s", job_id, exc.message)
            await asyncio.sleep(0)  # let the screen say what is going on

    async def open_feed(self) -> Feed:
        return _SubscriptionFeed(self.scheduler.subscribe())

    async def snapshot(self) -> Snapshot:
        page = await self.scheduler.list_jobs()
        return Snapshot(page.jobs, await self.scheduler.list_hosts(),
                        await self.scheduler.metrics_summary())

    async def jobs_after(self, count: int) -> list[Job]:
        return (await self.scheduler.list_jobs(offset=count)).jobs

    async def get_job(self, job_id: str) -> Job:
        return await self.scheduler.get_job(job_id)

    async def get_jobs(self, job_ids: Iterable[str]) -> list[Job]:
        return (await self.scheduler.list_jobs(ids=list(job_ids))).jobs

    async def hosts(self) -> list[Host]:
        return await self.scheduler.list_hosts()

    async def metrics(self) -> MetricsSummary:
        return await self.scheduler.metrics_summary()

    async def tail_log(self, job_id: str, lines: int, attempt: int | None = None) -> LogTail:
        return await self.scheduler.tail_log(job_id, lines, attempt)

    async def read_log(self, job_id: str, offset: int, attempt: int | None = None) -> LogTail:
        return await self.scheduler.read_log(job_id, offset, attempt)

    def _log_file(self, job_id: str, attempt: int) -> Path:
        return attempt_files(self.scheduler.state_dir, _id(job_id), attempt).log

    def log_reader(self, job_id: str, attempt: int) -> LogReader:
        """The file itself: the scan reads it in a worker thread, off the event loop."""
        return FileLogReader(self._log_file(job_id, attempt))

    async def log_location(self, job_id: str, attempt: int) -> str | None:
        return str(self._log_file(job_id, attempt))

    async def control(self, action: str, job_id: str) -> Job:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        method = getattr(self.scheduler, action)
        job: Job = await method(job_id)
        return job

    async def submit(self, spec: JobSpec) -> Job:
        return await self.scheduler.submit(spec)

    async def submit_batch(self, specs: Sequence[Any]) -> list[str]:
        return [job.job_id for job in await self.scheduler.submit_batch(specs)]


# attached ----------------------------------------------------------------------------------
def parse_event(data: dict[str, Any]) -> Event:
    if data.get("kind") == "host":
        return HostEvent.model_validate(data)
    return JobEvent.model_validate(data)


class _LongPollFeed(Feed):
    def __init__(self, client: ApiClient, since: int, wait: float) -> None:
        self._client = client
        self.since = since
        self.wait = wait

    async def next(self) -> list[Event]:
        while True:
            data = await self._client.request(
                "GET", "/events",
                query={"since": self.since, "wait": self.wait, "limit": EVENT_PAGE},
                timeout=self.wait + 10)
            events = [parse_event(item) for item in data.get("events", [])]
            if events:
                self.since = max(self.since, int(data.get("last_seq", events[-1].seq)))
                return events

    async def close(self) -> None:
        """Nothing to release: the client's connections are closed with the backend."""


class AttachedBackend(Backend):
    """A daemon reached over HTTP at ``url`` (with ``token`` unless it runs without auth).

    ``long_poll_sec`` is how long one events request may wait for news; a daemon shutting
    down waits for requests in flight, so shorter polls let it stop sooner. ``state_dir``:
    the daemon's state dir when it is on this machine (then logs have a path, and are read
    directly when this user may read them).
    """

    attached = True
    mode = "attached"

    def __init__(self, url: str, token: str | None = None, timeout: float = 30.0, *,
                 long_poll_sec: float = LONG_POLL_SEC,
                 probe_timeout: float = PROBE_TIMEOUT_SEC,
                 state_dir: Path | None = None) -> None:
        self.client = ApiClient(url, token, timeout)
        self.long_poll_sec = long_poll_sec
        self.probe_timeout = probe_timeout
        self.state_dir = state_dir

    @property
    def description(self) -> str:
        return self.client.url

    @property
    def last_answer(self) -> float | None:
        return self.client.last_answer

    async def start(self) -> None:
        """Is it there? Asked with a short timeout: reconnecting to a daemon that has
        stopped answering must not wait as long as a request may."""
        await self.client.request("GET", "/health", timeout=self.probe_timeout)

    async def close(self, *, stop_jobs: bool = False) -> None:
        await self.client.close()

    async def open_feed(self) -> Feed:
        return _LongPollFeed(self.client, await self._head_seq(), self.long_poll_sec)

    async def _head_seq(self) -> int:
        """The newest event's seq, so the feed follows from now on."""
        health = await self.client.request("GET", "/health")
        return int(health.get("last_event_seq", 0))

    async def snapshot(self) -> Snapshot:
        jobs = await self._jobs_page(0)
        return Snapshot(jobs, await self.hosts(), await self.metrics())

    async def _jobs_page(self, offset: int) -> list[Job]:
        data = await self.client.request("GET", "/jobs", query={"offset": offset or None})
        return [Job.model_validate(item) for item in data.get("jobs", [])]

    async def jobs_after(self, count: int) -> list[Job]:
        return await self._jobs_page(count)

    async def get_job(self, job_id: str) -> Job:
        return Job.model_validate(await self.client.request("GET", f"/jobs/{_id(job_id)}"))

    async def get_jobs(self, job_ids: Iterable[str]) -> list[Job]:
        ids = ",".join(_id(job_id) for job_id in job_ids)
        if not ids:
            return []
        data = await self.client.request("GET", "/jobs", query={"id": ids})
        return [Job.model_validate(item) for item in data.get("jobs", [])]

    async def hosts(self) -> list[Host]:
        data = await self.client.request("GET", "/hosts")
        return [Host.model_validate(item) for item in data.get("hosts", [])]

    async def metrics(self) -> MetricsSummary:
        return MetricsSummary.model_validate(await self.client.request("GET", "/metrics/summary"))

    async def tail_log(self, job_id: str, lines: int, attempt: int | None = None) -> LogTail:
        data = await self.client.request("GET", f"/jobs/{_id(job_id)}/logs",
                                         query={"tail": lines, "attempt": attempt})
        return LogTail.model_validate(data)

    async def read_log(self, job_id: str, offset: int, attempt: int | None = None) -> LogTail:
        data = await self.client.request("GET", f"/jobs/{_id(job_id)}/logs",
                                         query={"offset": offset, "attempt": attempt})
        return LogTail.model_validate(data)

    def _log_file(self, job_id: str, attempt: int) -> Path | None:
        if self.state_dir is None:
            return None
        return attempt_files(self.state_dir, _id(job_id), attempt).log

    def log_reader(self, job_id: str, attempt: int) -> LogReader:
        path = self._log_file(job_id, attempt)
        if path is not None and os.access(path, os.R_OK):
            return FileLogReader(path)
        return BackendLogReader(self, job_id, attempt)

    async def log_location(self, job_id: str, attempt: int) -> str | None:
        path = self._log_file(job_id, attempt)
        return None if path is None else str(path)

    async def control(self, action: str, job_id: str) -> Job:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}")
        return Job.model_validate(
            await self.client.request("POST", f"/jobs/{_id(job_id)}/{action}"))

    async def submit(self, spec: JobSpec) -> Job:
        return Job.model_validate(await self.client.request("POST", "/jobs", body=spec))

    async def submit_batch(self, specs: Sequence[Any]) -> list[str]:
        data = await self.client.request("POST", "/jobs/batch", body={"jobs": list(specs)})
        return [str(job_id) for job_id in data.get("job_ids", [])]


def _id(job_id: str) -> str:
    """Refuse anything but a plain id before it becomes part of a URL path."""
    if not is_valid_id(job_id):
        raise InvalidInput(f"not a valid job id: {job_id!r}",
                           [{"field": "job_id", "message": "not a valid id"}])
    return job_id
