"""The scheduler for scripts that are not async: a private event loop on one thread.

    with BlockingScheduler(state_dir) as s:
        job = s.submit({"command": "make place"})
        print(s.wait(job.job_id).status)
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from apr_sched.models import Host, HostSpec, Job, JobPage, JobSpec, LogTail, MetricsSummary
from apr_sched.scheduler import Scheduler

T = TypeVar("T")


class BlockingScheduler:
    """Wraps a Scheduler; each method blocks until the scheduler's loop has done it."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="apr_sched",
                                        daemon=True)
        self._scheduler_args = (args, kwargs)
        self.scheduler: Scheduler | None = None

    def _call(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def start(self) -> None:
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
        self._loop.close()

    def __enter__(self) -> BlockingScheduler:
        self.start()
        return self

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    @property
    def _s(self) -> Scheduler:
        if self.scheduler is None:
            raise RuntimeError("BlockingScheduler not started: use 'with BlockingScheduler()'")
        return self.scheduler

    def submit(self, spec: JobSpec | Mapping[str, Any]) -> Job:
        return self._call(self._s.submit(spec))

    def submit_batch(self, specs: Iterable[JobSpec | Mapping[str, Any]]) -> list[Job]:
        return self._call(self._s.submit_batch(list(specs)))

    def wait(self, job_id: str, timeout: float | None = None) -> Job:
        return self._call(self._s.wait(job_id, timeout))

    def get_job(self, job_id: str) -> Job:
        return self._call(self._s.get_job(job_id))

    def list_jobs(self, **filters: Any) -> JobPage:
        return self._call(self._s.list_jobs(**filters))

    def tail_log(self, job_id: str, n: int = 200, attempt: int | None = None) -> LogTail:
        return self._call(self._s.tail_log(job_id, n, attempt))

    def pause(self, job_id: str) -> Job:
        return self._call(self._s.pause(job_id))

    def resume(self, job_id: str) -> Job:
        return self._call(self._s.resume(job_id))

    def stop(self, job_id: str) -> Job:
        return self._call(self._s.stop(job_id))

    def rerun(self, job_id: str) -> Job:
        return self._call(self._s.rerun(job_id))

    def register_host(self, spec: HostSpec | Mapping[str, Any]) -> Host:
        return self._call(self._s.register_host(spec))[0]

    def list_hosts(self) -> list[Host]:
        return self._call(self._s.list_hosts())

    def metrics_summary(self) -> MetricsSummary:
        return self._call(self._s.metrics_summary())
