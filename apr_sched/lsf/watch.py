"""Following jobs from a client by long poll on the daemon's events: no asking again and
again, and a daemon restart is ridden out (its event numbers continue from its database).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, TextIO

from apr_sched.client import MAX_POLL_SEC, DaemonUnreachable, SchedulerClient
from apr_sched.states import JobStatus

if TYPE_CHECKING:  # annotations only: pydantic loads with the first reply
    from apr_sched.models import Job

__all__ = ["JobWatch", "exit_code_of"]

RECONNECT_MAX_SEC = 2.0
LOG_POLL_SEC = 0.5
"""While streaming a log, the longest wait between reads (any event for the job ends it)."""


def exit_code_of(job: Job) -> int:
    """The shell's view of a final job: its exit code, 128+N for signal N, and for ends the
    command did not choose: 140 TIMEOUT, 143 STOPPED (SIGTERM's), 125 could not start."""
    if job.status is JobStatus.SUCCEEDED:
        return 0
    if job.status is JobStatus.TIMEOUT:
        return 140
    if job.status is JobStatus.STOPPED:
        return 143
    if job.signal:
        number = _signal_number(job.signal)
        return 128 + number if number else 1
    if job.exit_code is not None:
        return job.exit_code if 0 < job.exit_code < 256 else 1
    return 125


def _signal_number(name: str) -> int | None:
    import signal

    try:
        return int(signal.Signals[name if name.startswith("SIG") else f"SIG{name}"])
    except KeyError:
        return int(name) if name.isdigit() else None


class JobWatch:
    """Changes of some jobs, as they happen."""

    def __init__(self, client: SchedulerClient, job_ids: list[str], *,
                 timeout: float | None = None) -> None:
        self.client, self.job_ids = client, list(job_ids)
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.since = 0

    def _left(self, most: float) -> float:
        if self.deadline is None:
            return most
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the jobs did not end in time")
        return min(most, left)

    def _retrying(self, call: str, *args: object) -> object:
        """A client call, retried across a daemon restart until the deadline."""
        pause = 0.1
        while True:
            try:
                return getattr(self.client, call)(*args)
            except DaemonUnreachable:
                time.sleep(min(pause, self._left(RECONNECT_MAX_SEC)))
                pause = min(pause * 2, RECONNECT_MAX_SEC)

    def _events(self, wait: float) -> set[str]:
        """Ids of watched jobs with events after ``since`` (waits up to ``wait``)."""
        pause = 0.1
        while True:
            try:
                page = self.client.events(since=self.since, wait=wait)
                break
            except DaemonUnreachable:
                time.sleep(min(pause, self._left(RECONNECT_MAX_SEC)))
                pause = min(pause * 2, RECONNECT_MAX_SEC)
        self.since = int(page.get("last_seq", self.since))
        watched = set(self.job_ids)
        return {e["job_id"] for e in page.get("events", [])
                if e.get("job_id") in watched}

    def _job(self, job_id: str) -> Job:
        from apr_sched.models import Job

        job = self._retrying("job", job_id)
        assert isinstance(job, Job)
        return job

    def changes(self) -> Iterator[Job]:
        """Each job now, then again whenever it changes, until every one is final."""
        health = self._retrying("health")
        assert isinstance(health, dict)
        self.since = int(health.get("last_event_seq", 0))
        open_ids = set()
        for job_id in self.job_ids:
            job = self._job(job_id)
            yield job
            if not job.status.is_final:
                open_ids.add(job_id)
        while open_ids:
            for job_id in sorted(self._events(self._left(MAX_POLL_SEC)) & open_ids):
                job = self._job(job_id)
                yield job
                if job.status.is_final:
                    open_ids.discard(job_id)

    def stream_output(self, job_id: str, out: TextIO) -> Job:
        """Write the job's latest attempt's output to ``out`` as it grows, until the job is
        final and its log drained; returns the final job."""
        health = self._retrying("health")
        assert isinstance(health, dict)
        self.since = int(health.get("last_event_seq", 0))
        job = self._job(job_id)
        attempt, offset = job.attempt, 0
        while True:
            reply = self._retrying("logs", job_id, 0, attempt, offset)
            assert isinstance(reply, dict)
            offset = int(reply.get("offset", offset))
            if reply.get("lines"):
                out.write("".join(f"{line}\n" for line in reply["lines"]))
                out.flush()
                continue
            if job.status.is_final and attempt == job.attempt:
                return job
            if attempt < job.attempt:
                attempt, offset = job.attempt, 0
                continue
            if self._events(self._left(LOG_POLL_SEC)):
                job = self._job(job_id)
