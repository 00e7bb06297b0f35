"""Retention: when finished jobs and old host events are purged, and their log files removed.

A daemon runs for months, and memory and disk must not grow with every job it ever ran
(DESIGN.md, "Bounded by design"). The policy (``RetentionConfig``: days to keep finished
jobs and host events) is applied at start and then every ``purge_every_sec`` by a
housekeeping timer, not a poll. This module decides when and up to which time; the
Scheduler does the deleting (``purge_jobs`` and ``purge_host_events``, given when it builds
the timer), one short transaction per chunk.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime, timedelta
from pathlib import Path

from apr_sched.config import RetentionConfig
from apr_sched.errors import StoreUnavailable
from apr_sched.models import utcnow

log = logging.getLogger("apr_sched")


def cutoffs(policy: RetentionConfig, now: datetime) -> tuple[datetime | None, datetime | None]:
    """Finished jobs, and host events, from before these times are purged (None: kept)."""
    jobs = policy.finished_job_days
    events = policy.host_event_days
    return (None if jobs is None else now - timedelta(days=jobs),
            None if events is None else now - timedelta(days=events))


def remove_logs(state_dir: Path, job_ids: Iterable[str]) -> None:
    """Delete purged jobs' log directories (run in a thread: a job may have many files)."""
    for job_id in job_ids:
        shutil.rmtree(state_dir / "logs" / job_id, ignore_errors=True)


class RetentionTimer:
    """Applies the policy at start and every ``purge_every_sec``; ``spawn`` runs a purge in
    the background (it takes the loop in chunks)."""

    def __init__(self, policy: RetentionConfig, *,
                 purge_jobs: Callable[[datetime], Awaitable[object]],
                 purge_host_events: Callable[[datetime], object],
                 spawn: Callable[[Awaitable[None]], None]) -> None:
        self.policy = policy
        self._purge_jobs = purge_jobs
        self._purge_host_events = purge_host_events
        self._spawn = spawn
        self._timer: asyncio.TimerHandle | None = None
        self._stopped = False

    def soon(self, delay: float) -> None:
        """Apply the policy in ``delay`` seconds (nothing, if it keeps everything)."""
        policy = self.policy
        if self._stopped or (policy.finished_job_days is None
                             and policy.host_event_days is None):
            return
        self._timer = asyncio.get_running_loop().call_later(delay, self._due)

    def stop(self) -> None:
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _due(self) -> None:
        self._timer = None
        if not self._stopped:
            self._spawn(self._apply())

    async def _apply(self) -> None:
        jobs_before, events_before = cutoffs(self.policy, utcnow())
        try:
            if jobs_before is not None:
                await self._purge_jobs(jobs_before)
            if events_before is not None:
                self._purge_host_events(events_before)
        except StoreUnavailable as exc:
            log.warning("purge postponed: %s", exc.message)
        finally:
            self.soon(self.policy.purge_every_sec)
