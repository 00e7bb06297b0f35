"""The scheduler for scripts that are not async: a private event loop on one thread.

    with BlockingScheduler(state_dir) as s:
        job = s.submit({"command": "make place"})
        print(s.wait(job.job_id).status)

Its methods are the Scheduler's, with the same arguments and return types, and the same as
the daemon client's (``SchedulerClient``): a flow written against one runs on the other.
``apr_sched.connect()`` picks between them.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

from apr_sched import futures
from apr_sched.errors import NotFound
from apr_sched.futures import JobHandle, JobRef
from apr_sched.idempotency import submit_batch_once, submit_once
from apr_sched.models import (
    Event,
    Host,
    HostLoad,
    HostSpec,
    Job,
    JobGraph,
    JobPage,
    JobSpec,
    JobStatus,
    LogTail,
    MetricsSummary,
    PurgeReport,
)
from apr_sched.scheduler import Scheduler

T = TypeVar("T")


class BlockingScheduler:
    """Wraps a Scheduler; each method blocks until the scheduler's loop has done it.

    Takes the Scheduler's arguments. ``start()`` (or ``with``) takes the state dir and
    starts dispatching; ``close()`` gives it up (running jobs keep running unless
    ``stop_jobs``).
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="apr_sched",
                                        daemon=True)
        self._scheduler_args = (args, kwargs)
        self.scheduler: Scheduler | None = None

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> None:
        """Start the scheduler (once: a started one is left as it is)."""
        if self.scheduler is not None:
            return
        self._thread.start()
        args, kwargs = self._scheduler_args

        async def make() -> Scheduler:
            scheduler = Scheduler(*args, **kwargs)
            await scheduler.start()
            return scheduler

        try:
            self.scheduler = self._call(make())
        except BaseException:
            self._stop_loop()
            raise

    def close(self, *, stop_jobs: bool = False) -> None:
        if self.scheduler is not None:
            self._call(self.scheduler.close(stop_jobs=stop_jobs))
            self.scheduler = None
        self._stop_loop()

    def _stop_loop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
        if not self._loop.is_closed():
            self._loop.close()

    def __enter__(self) -> BlockingScheduler:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        if self.scheduler is None:
            return "BlockingScheduler(not started)"
        return f"BlockingScheduler(in-process, state dir {str(self.scheduler.state_dir)!r})"

    @property
    def _s(self) -> Scheduler:
        if self.scheduler is None:
            raise RuntimeError("BlockingScheduler not started: use 'with BlockingScheduler()'")
        return self.scheduler

    # hosts -------------------------------------------------------------------------------
    def register_host(self, spec: HostSpec | Mapping[str, Any]) -> tuple[Host, bool]:
        """Register or update a host; True when it is new."""
        return self._call(self._s.register_host(spec))

    def heartbeat(self, host_id: str, load: HostLoad | Mapping[str, Any] | None = None
                  ) -> Host:
        return self._call(self._s.heartbeat(host_id, load))

    def unregister_host(self, host_id: str) -> Host:
        return self._call(self._s.unregister_host(host_id))

    def list_hosts(self) -> list[Host]:
        return self._call(self._s.list_hosts())

    def get_host(self, host_id: str) -> Host:
        return self._call(self._s.get_host(host_id))

    # jobs --------------------------------------------------------------------------------
    def submit(self, spec: JobSpec | Mapping[str, Any], *,
               idempotency_key: str | None = None) -> Job:
        """Queue one job. With ``idempotency_key``, the same spec under the same key returns
        the job created the first time (also across restarts, as over HTTP)."""
        if idempotency_key is None:
            return self._call(self._s.submit(spec))
        return self._call(submit_once(self._s, spec, idempotency_key))

    def submit_batch(self, specs: Iterable[JobSpec | Mapping[str, Any]], *,
                     idempotency_key: str | None = None) -> list[Job]:
        """All or nothing: one bad spec rejects the batch, naming its index and field."""
        if idempotency_key is None:
            return self._call(self._s.submit_batch(list(specs)))
        return self._call(submit_batch_once(self._s, list(specs), idempotency_key))

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
        return self._call(self._s.list_jobs(
            status=status, project=project, design=design, owner=owner, host=host,
            ids=None if ids is None else list(ids), limit=limit, offset=offset))

    def _jobs_by_id(self, job_ids: Sequence[str]) -> list[Job]:
        return self._call(_jobs_by_id(self._s, job_ids))

    def job_statuses(self, job_ids: Iterable[str]) -> dict[str, JobStatus]:
        """Each job's status, in the order given; NotFound for an unknown one."""
        wanted = list(job_ids)
        return {job.job_id: job.status for job in self._jobs_by_id(wanted)}

    def get_job(self, job_id: str) -> Job:
        return self._call(self._s.get_job(job_id))

    def tail_log(self, job_id: str, n: int = 200, attempt: int | None = None) -> LogTail:
        return self._call(self._s.tail_log(job_id, n, attempt))

    def read_log(self, job_id: str, offset: int, attempt: int | None = None,
                 max_bytes: int = 1 << 20) -> LogTail:
        return self._call(self._s.read_log(job_id, offset, attempt, max_bytes))

    def pause(self, job_id: str) -> Job:
        return self._call(self._s.pause(job_id))

    def resume(self, job_id: str) -> Job:
        return self._call(self._s.resume(job_id))

    def stop(self, job_id: str) -> Job:
        return self._call(self._s.stop(job_id))

    def rerun(self, job_id: str, *, with_dependents: bool = False) -> Job:
        return self._call(self._s.rerun(job_id, with_dependents=with_dependents))

    def modify(self, job_id: str, changes: Mapping[str, Any]) -> Job:
        return self._call(self._s.modify(job_id, changes))

    def top(self, job_id: str) -> Job:
        return self._call(self._s.top(job_id))

    def bottom(self, job_id: str) -> Job:
        return self._call(self._s.bottom(job_id))

    def graph(self, job_id: str, depth: int = 2) -> JobGraph:
        return self._call(self._s.graph(job_id, depth))

    def purge(self, before: datetime, *, host_events: bool = True) -> PurgeReport:
        return self._call(self._s.purge(before, host_events=host_events))

    # metrics and events ------------------------------------------------------------------
    def metrics_summary(self) -> MetricsSummary:
        return self._call(self._s.metrics_summary())

    def events_since(self, seq: int, *, wait: float = 0.0, limit: int = 1000) -> list[Event]:
        return self._call(self._s.events_since(seq, wait=wait, limit=limit))

    def _event_cursor(self) -> int:
        return self._call(_last_event_seq(self._s))

    # waiting -----------------------------------------------------------------------------
    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Block until the job is final (TimeoutError after ``timeout`` seconds)."""
        return self._call(self._s.wait(job_id, timeout))

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
        return JobHandle(self, self.submit(spec, idempotency_key=idempotency_key))

    def handle(self, job: JobRef) -> JobHandle:
        """A handle on an existing job (an id, a Job or a handle)."""
        return JobHandle(self, job)


async def _last_event_seq(scheduler: Scheduler) -> int:
    return scheduler.last_event_seq


async def _jobs_by_id(scheduler: Scheduler, job_ids: Sequence[str]) -> list[Job]:
    page = await scheduler.list_jobs(ids=job_ids)
    found = {job.job_id: job for job in page.jobs}
    for job_id in job_ids:
        if job_id not in found:
            raise NotFound(f"no job {job_id!r}", {"job_id": job_id})
    return [found[job_id] for job_id in job_ids]
