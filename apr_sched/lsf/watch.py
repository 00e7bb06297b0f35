"""Following jobs from a client by long poll on the daemon's events: no asking again and
again, and a daemon restart is ridden out (its event numbers continue from its database).
Jobs are read as raw replies (``views.JobView``): a shim builds no models.
"""

from __future__ import annotations

import time

from apr_sched.rawclient import DaemonUnreachable, RawClient
from apr_sched.views import JobView

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import TypeVar

    T = TypeVar("T")

__all__ = ["JobWatch"]

RECONNECT_MAX_SEC = 2.0
MAX_POLL_SEC = 30.0
"""The longest single long poll, as ``futures.MAX_POLL_SEC`` (not imported from there: it
loads typing, which a shim's start does without)."""


class JobWatch:
    """Changes of some jobs, as they happen. ``since`` (an event number taken before the
    jobs were submitted) and ``known`` (their submit replies) save the first reads."""

    def __init__(self, client: RawClient, job_ids: list[str], *,
                 timeout: float | None = None, since: int | None = None,
                 known: Iterable[JobView] = ()) -> None:
        self.client, self.job_ids = client, list(job_ids)
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.since = since
        self.known = {job.job_id: job for job in known} if since is not None else {}

    def _left(self, most: float) -> float:
        if self.deadline is None:
            return most
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the jobs did not end in time")
        return min(most, left)

    def _retrying(self, call: Callable[[], T]) -> T:
        """A client call, retried across a daemon restart until the deadline."""
        pause = 0.1
        while True:
            try:
                return call()
            except DaemonUnreachable:
                time.sleep(min(pause, self._left(RECONNECT_MAX_SEC)))
                pause = min(pause * 2, RECONNECT_MAX_SEC)

    def _events(self, wait: float) -> set[str]:
        """Ids of watched jobs with events after ``since`` (waits up to ``wait``)."""
        since = self.since or 0
        page = self._retrying(lambda: self.client.events(since=since, wait=wait))
        self.since = int(page.get("last_seq", since))
        watched = set(self.job_ids)
        return {e["job_id"] for e in page.get("events", [])
                if e.get("job_id") in watched}

    def _job(self, job_id: str) -> JobView:
        return self._retrying(lambda: JobView(self.client.job_dict(job_id)))

    def changes(self) -> Iterator[JobView]:
        """Each job now, then again whenever it changes, until every one is final."""
        if self.since is None:
            health = self._retrying(self.client.health)
            self.since = int(health.get("last_event_seq", 0))
        open_ids = set()
        for job_id in self.job_ids:
            job = self.known.get(job_id) or self._job(job_id)
            yield job
            if not job.status.is_final:
                open_ids.add(job_id)
        while open_ids:
            for job_id in sorted(self._events(self._left(MAX_POLL_SEC)) & open_ids):
                job = self._job(job_id)
                yield job
                if job.status.is_final:
                    open_ids.discard(job_id)
