"""The Scheduler: the one owner of state, on one asyncio loop.

Everything that changes a job or a host is a method here that checks the transition is
legal, writes it to the store with its event in one transaction, and only once that has
committed changes memory and wakes the dispatcher and the followers. A write that fails
changes nothing and raises ``StoreUnavailable``. HTTP routes, the TUI and flow scripts
only ask.

The rules live beside it, each asked with what it needs and none importing this module:
``transitions`` (what is legal and what each change writes), ``journal`` (how it is
written), ``hosts`` (registration, liveness, host state changes), ``runs`` (live
attempts), ``eligibility`` (may a job wait in the queue), ``order`` (its key),
``resources`` (what a job holds; does it fit), ``submission`` (what a submit must pass),
``jobs`` and ``reading`` (jobs in memory; answers that change nothing), ``health`` and
``retention`` (housekeeping). They answer; the Scheduler applies the answers.

Dispatch is event-driven: a submit, a job's end or a host appearing schedules one dispatch
pass on the next loop iteration (coalesced), never a polling sleep.
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import suppress
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

from apr_sched import reading, transitions
from apr_sched.batches import STAGE_ABOVE, BatchWriter, LongLivedObjects, StagedBatch
from apr_sched.cascade import Cascade
from apr_sched.config import (
    LogsConfig,
    RetentionConfig,
    SchedulerConfig,
    local_host_spec,
    resolve_state_dir,
)
from apr_sched.eligibility import Eligibility
from apr_sched.errors import (
    AprError,
    InvalidInput,
    StoreUnavailable,
    validated,
)
from apr_sched.events import EventHub, Subscription
from apr_sched.executors.base import ExitStatus
from apr_sched.executors.ssh import HostUnavailable
from apr_sched.health import DiskFloor, RetryTimer, degraded_reason
from apr_sched.hosts import (
    HostChange,
    HostRegistry,
    executor_unreachable,
    heartbeat_state,
    reachability_state,
    silence_state,
)
from apr_sched.job_changes import JobChanges
from apr_sched.jobs import Book, FinalWaiters, JobTable, seconds_between
from apr_sched.journal import Journal, PgidSaver
from apr_sched.logs import attempt_files
from apr_sched.metrics import TimingSamples, summarize
from apr_sched.models import (
    Event,
    Host,
    HostEvent,
    HostLoad,
    HostSpec,
    HostState,
    Job,
    JobEvent,
    JobGraph,
    JobPage,
    JobSpec,
    JobStatus,
    LogTail,
    MetricsSummary,
    PurgeReport,
    utcnow,
)
from apr_sched.order import QueueOrder
from apr_sched.placement import HostPool
from apr_sched.queue import PendingQueue
from apr_sched.resources import Resources
from apr_sched.retention import RetentionTimer, remove_logs
from apr_sched.runs import Run, RunSupervisor, launch_of, never_ran
from apr_sched.statedir import StateDirLock
from apr_sched.store import IdempotencyKey, Store
from apr_sched.submission import Accepted, Intake, new_book, new_jobs

log = logging.getLogger("apr_sched")

DB_NAME = "apr_sched.db"
PURGE_CHUNK = 1000
"""Finished jobs deleted per transaction by a purge."""
CONFIG_OPTIONS = ("state_dir", "stop_grace_sec", "heartbeat_timeout_sec", "host_lost_after_sec",
                  "min_free_disk_mb", "retention", "durability", "run_as_owner", "job_cgroups",
                  "logs")
"""Scheduler options ``from_config`` takes from a SchedulerConfig as they are (and hosts)."""


class Scheduler:
    """Schedules jobs on hosts; the only writer of apr_sched state.

    Keyword options:
        hosts: host specs registered (or updated) at start. ``None`` means the embedded
            default, one host ``local`` sized from this machine.
        stop_grace_sec: time between SIGTERM and SIGKILL when stopping or timing out a job.
        heartbeat_timeout_sec: a host that has sent heartbeats goes OFFLINE when they stop
            for this long (counted from startup too, so a host that died while the
            scheduler was down does not stay ONLINE).
        host_lost_after_sec: jobs on an SSH host that stays unreachable this long are
            declared lost (requeued if their retry limit allows).
        min_free_disk_mb: below this much free space on the state dir's disk, dispatch
            pauses and health says ``degraded`` (logs and the database live there).
        durability: ``"full"`` (default) fsyncs every commit; ``"normal"`` survives a
            killed process but not an OS crash (see ``apr_sched.store``).
        retention: when finished jobs and host events are purged (``RetentionConfig``;
            default 30 days, checked hourly and at start).
        lock_info: extra facts recorded in the state-dir lock (e.g. the HTTP URL).
        run_as_owner: run each job on local hosts as its owner's account (the daemon must
            be root); a job whose owner has no local account is refused at submit.
        job_cgroups: a cgroup per local attempt where the host allows it (else the
            APR_SCHED_RUN marker alone finds a job's processes).
        logs: the per-attempt log size limit (``LogsConfig``; default 1024 MB, head and
            tail kept).
    """

    def __init__(
        self,
        state_dir: str | Path | None = None,
        *,
        hosts: Sequence[HostSpec] | None = None,
        stop_grace_sec: float = 10.0,
        heartbeat_timeout_sec: float = 30.0,
        host_lost_after_sec: float = 300.0,
        min_free_disk_mb: float = 64.0,
        retention: RetentionConfig | None = None,
        durability: str = "full",
        lock_info: Mapping[str, Any] | None = None,
        run_as_owner: bool = False,
        job_cgroups: bool = True,
        logs: LogsConfig | None = None,
    ) -> None:
        if run_as_owner and os.geteuid() != 0:
            raise InvalidInput("run_as_owner needs the daemon to run as root: only root can "
                               "start a job as another account",
                               [{"field": "run_as_owner", "message": "needs root"}])
        self.state_dir = resolve_state_dir(state_dir)
        self.run_as_owner = run_as_owner
        self.job_cgroups = job_cgroups
        self.stop_grace_sec = stop_grace_sec
        self.heartbeat_timeout_sec = heartbeat_timeout_sec
        self.host_lost_after_sec = host_lost_after_sec
        self.min_free_disk_mb = min_free_disk_mb
        self.retention = retention or RetentionConfig()
        self.durability = durability
        self._initial_hosts = list(hosts) if hosts is not None else None
        self._lock = StateDirLock(self.state_dir)
        self._lock_info = dict(lock_info or {})
        self._store: Store | None = None
        self._table = JobTable(lambda: self.store, self._pending_reason)
        self._jobs, self._books = self._table.jobs, self._table.books  # the same dicts
        self.logs = logs or LogsConfig()
        self._runs = RunSupervisor(stop_grace_sec=stop_grace_sec, on_started=self._started_run,
                                   on_end=self._finish, on_timeout=self._timed_out,
                                   log_limit=self.logs.limit(), on_log_note=self._log_note)
        pool = HostPool()  # hosts' capacity: the registry sets totals, resources use
        self._registry = HostRegistry(
            pool, run_as_owner=run_as_owner, job_cgroups=job_cgroups,
            heartbeat_timeout_sec=heartbeat_timeout_sec, host_lost_after_sec=host_lost_after_sec,
            on_reachable=self._host_reachable, on_silent=self._heartbeat_missed,
            on_lost=self._host_lost)
        self._hosts, self._executors = self._registry.hosts, self._registry.executors
        self._resources = Resources(pool)
        self._eligibility = Eligibility(self._status_of, call_later=self._call_later,
                                        on_due=self._begun)
        self._order = QueueOrder()
        self._queue = PendingQueue()
        self._hub = EventHub()
        self._batches = BatchWriter(lambda: self.store)
        self._waiters = FinalWaiters()
        self._samples = TimingSamples()
        self._intake = Intake(self._resources, run_as_owner=run_as_owner,
                              statuses=self._table.statuses)
        self._journal = Journal(lambda: self.store, self._hub)
        self._cascade = Cascade(self._journal, self._table, self._eligibility,
                                enqueue=self._enqueue, ended=self._ended, wake=self._wake,
                                soon=self._soon, on_refused=self._schedule_store_retry)
        self._changes = JobChanges(
            self._journal, self._table, lambda: self.store, self._order, self._queue,
            self._eligibility, status_of=self._status_of, arrive=self._arrive,
            enqueue=self._enqueue, retime=self._retime, wake=self._wake,
            check_runnable=lambda spec: self._resources.check_runnable([spec], batch=False))
        self._dispatch_scheduled = False
        self._unrecorded: dict[str, tuple[Run, ExitStatus, str | None]] = {}
        """Attempts that ended while the store refused writes: recorded once it accepts."""
        self._store_retry = RetryTimer(self._retry_store)
        self._disk = DiskFloor(self.state_dir, min_free_disk_mb)
        self._retention = RetentionTimer(
            self.retention, purge_jobs=lambda before: self.purge(before, host_events=False),
            purge_host_events=self._purge_host_events, spawn=self._runs.spawn)
        self._pgids = PgidSaver(self._journal, lambda: self.store, self._jobs,
                                on_refused=self._schedule_store_retry)
        self._started = False
        self._closing = False
        self._loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def from_config(cls, config: SchedulerConfig, **overrides: Any) -> Scheduler:
        options: dict[str, Any] = {name: getattr(config, name) for name in CONFIG_OPTIONS}
        options["hosts"] = config.hosts or None
        options.update(overrides)
        return cls(**options)

    # lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def start(self) -> None:
        """Take the state dir, restore everything, find running jobs again, start dispatching."""
        if self._started:
            return
        self._loop = asyncio.get_running_loop()
        self._lock.acquire(self._lock_info)
        try:
            self._store = Store(self.state_dir / DB_NAME, synchronous=self.durability.upper())
            self._restore()
            for spec in self._initial_hosts if self._initial_hosts is not None else [
                local_host_spec()
            ]:
                await self.register_host(spec)
            await self._recover_runs()
            self._registry.start_countdowns()
        except BaseException:
            await self._runs.close()
            self._registry.liveness.close()
            if self._store is not None:
                self._store.close()
                self._store = None
            self._lock.release()
            raise
        self._started = True
        self._retention.soon(0.0)
        log.info("scheduler started on %s: %d hosts, %d jobs (%d pending, %d running)",
                 self.state_dir, len(self._hosts), len(self._jobs), len(self._queue),
                 len(self._runs))
        self._wake()

    async def close(self, *, stop_jobs: bool = False) -> None:
        """Stop scheduling. Running jobs keep running (found again next start) unless
        ``stop_jobs``, which stops them and waits for them to end."""
        if not self._started or self._closing:
            return
        self._closing = True  # no dispatch from here on
        self._retention.stop()
        self._eligibility.begin.close()
        if stop_jobs:
            for run in self._runs.all():
                if not self._runs.is_current(run):  # ended while another was signalled
                    continue
                try:
                    await self._stop_running(self._jobs[run.job_id], run)
                except AprError as exc:
                    log.warning("could not stop job %s on shutdown: %s", run.job_id,
                                exc.message)
            await self._runs.wait_ended(self.stop_grace_sec + 5)
        await self._runs.close()
        self._registry.liveness.close()
        self._store_retry.cancel()
        await self._registry.close_executors()
        self._waiters.cancel_all()
        self._hub.close()
        await self._batches.close()
        with suppress(StoreUnavailable):
            self._pgids.save()
        self.store.close()
        self._lock.release()
        self._started = False
        log.info("scheduler closed (%d jobs left running)", len(self._runs))

    @property
    def store(self) -> Store:
        if self._store is None:
            raise RuntimeError("scheduler not started: use 'async with Scheduler(...)'")
        return self._store

    def update_lock_info(self, **info: Any) -> None:
        """Record facts about this scheduler (e.g. its URL) for a second one to report."""
        self._lock.update(**info)

    # restore -----------------------------------------------------------------------------
    def _restore(self) -> None:
        store = self.store
        staged, published = store.recover_batches()
        if staged or published:
            log.info("after a crash: %d unpublished batch(es) removed, the events of %d "
                     "published one(s) written", staged, published)
        for host in store.load_hosts():
            self._registry.install(host)
        self._table.last_seq = store.max_job_seq()
        self._order.last_seq = store.max_queue_seq()
        self._order.first_seq = store.min_queue_seq()
        self._journal.restore(store)
        # finished jobs are read on demand; dependencies are decided once all are in memory
        self._arrive([self._table.install(row)[0] for row in store.load_unfinished_jobs()])
        self._samples.restore(store.recent_attempt_times(self._samples.keep))

    async def _recover_runs(self) -> None:
        """Find again every attempt that was running when the last scheduler stopped, and
        carry out the stop or timeout that was under way."""
        for job in list(self._jobs.values()):
            if not job.status.is_active:
                continue
            host_id = job.host_id or ""
            files = attempt_files(self.state_dir, job.job_id, job.attempt)
            run = self._runs.add(job.job_id, job.attempt, host_id, job.resource_request,
                                 self._registry.executor_for(host_id))
            if host_id not in self._hosts:
                self._runs.never_started(run)
                self._finish(run, ExitStatus(None, lost=True, detail=(
                    f"host {host_id} is no longer registered")), note="after scheduler restart")
                continue
            self._resources.allocate(host_id, job.resource_request)
            found = await run.executor.recover(job.job_id, job.attempt, files, job.pgid)
            if isinstance(found, ExitStatus):
                self._runs.never_started(run)
                if never_ran(found, job.pgid, files.log):
                    self._requeue_unstarted(run)
                else:
                    self._finish(run, found, note="after scheduler restart")
                continue
            job.pgid = found.pgid
            self._runs.adopt(run, found)
            self._journal.record(job, job.status, "found running again after scheduler restart")
            book = self._books[job.job_id]
            run.ending, run.term_sent_at = book.ending, book.term_sent_at
            if run.ending is None:
                if job.status is JobStatus.RUNNING:
                    self._arm_timeout(job, run)
            elif run.term_sent_at is None:  # decided, but SIGTERM may never have gone out
                self._runs.spawn(self._runs.keep_trying(self._send_term, run))
            else:
                due = self.stop_grace_sec - seconds_between(run.term_sent_at, utcnow())
                self._journal.record(job, job.status, f"{run.ending} under way before the "
                                     f"restart: SIGKILL in {max(0.0, due):.3g}s")
                self._runs.kill_after(run, due)

    def _requeue_unstarted(self, run: Run) -> None:
        """The attempt was committed RUNNING but its wrapper never started (the scheduler
        stopped in between): queue it again as the same attempt, spending no retry."""
        job, book = self._jobs[run.job_id], self._books[run.job_id]
        self._runs.discard(run)
        self._resources.release(run.host_id, run.request)
        self._journal.write(job, transitions.requeued_unstarted(job, book, run.host_id))
        self._enqueue(job)

    # hosts -------------------------------------------------------------------------------
    async def register_host(self, spec: HostSpec | Mapping[str, Any]) -> tuple[Host, bool]:
        """Add a host, or update an existing one's capacity, labels and prefix.
        Returns the host and whether it was new. Nothing changes unless the store has it."""
        spec = validated(HostSpec, spec)
        change = self._registry.registration(spec, utcnow(), self._runs.on_host(spec.host_id))
        if change is None:  # the same as registered
            return self._host_view(spec.host_id), False
        event = self._write_host(change)
        self._registry.install(change.host)
        self._journal.publish([event])
        self._wake()
        return self._host_view(spec.host_id), change.from_state is None

    async def heartbeat(
        self, host_id: str, load: HostLoad | Mapping[str, Any] | None = None
    ) -> Host:
        """A host says it is alive (optionally with load figures): note the time, and bring it
        back ONLINE if it was OFFLINE. Written to the store only when the state changes or
        on a host's first heartbeat (which makes it a heartbeat host across restarts)."""
        host = self._registry.get(host_id)
        figures = None if load is None else validated(HostLoad, load)
        state = heartbeat_state(host, unreachable=self._registry.is_unreachable(host_id))
        if state is not None:
            self._set_host_state(host_id, state, "heartbeat received", last_heartbeat=utcnow())
        elif host.last_heartbeat is None:
            with self._journal.transaction():
                self.store.save_host(host.model_copy(update={"last_heartbeat": utcnow()}))
        self._registry.heard_from(host_id, figures)
        return self._host_view(host_id)

    async def unregister_host(self, host_id: str) -> Host:
        """Remove a host; refused while it runs jobs (stop or let them finish first)."""
        change = self._registry.removal(host_id, self._runs.on_host(host_id))
        view = self._host_view(host_id)
        event = self._write_host(change)
        await self._registry.remove(host_id)
        self._journal.publish([event])
        self._wake()
        return view

    async def list_hosts(self) -> list[Host]:
        running = self._runs.per_host()  # one pass, all hosts
        return [self._host_view(h, running[h]) for h in sorted(self._hosts)]

    async def get_host(self, host_id: str) -> Host:
        self._registry.get(host_id)
        return self._host_view(host_id)

    def _host_view(self, host_id: str, running: int | None = None) -> Host:
        return self._registry.view(
            host_id, len(self._runs.on_host(host_id)) if running is None else running)

    def _write_host(self, change: HostChange) -> HostEvent:
        """Write a host transition with its event in one transaction; the caller applies it
        to memory and publishes the event once this has returned."""
        event = self._journal.host_event(change.host_id, change.from_state, change.to_state,
                                         change.reason)
        with self._journal.transaction():
            if change.to_state is None:
                self.store.delete_host(change.host_id)
            else:
                self.store.save_host(change.host)
            self.store.insert_events([event])
        return event

    def _set_host_state(self, host_id: str, state: HostState | None, reason: str,
                        last_heartbeat: datetime | None = None) -> None:
        """Record a host's new state (``hosts`` decides what that means for it); a host
        already in ``state``, or ``state`` None, only gets the new reason."""
        change = self._registry.state_change(host_id, state, reason, last_heartbeat)
        if change is None:
            self._registry.note(host_id, reason)
            return
        event = self._write_host(change)
        self._registry.apply_state(change)
        self._journal.publish([event])
        if change.to_state is HostState.ONLINE:
            self._wake()

    def _host_reachable(self, host_id: str, reachable: bool, reason: str) -> None:
        """Called by an SSH executor when its connection comes up or goes down."""
        host = self._hosts.get(host_id)
        if host is None or self._closing or self._store is None:
            return
        try:
            self._set_host_state(host_id, reachability_state(host, reachable), reason)
        except StoreUnavailable as exc:
            log.warning("host %s: %s; state not recorded: %s", host_id, reason, exc.message)

    def _heartbeat_missed(self, host_id: str) -> None:
        host = self._hosts.get(host_id)
        state = None if host is None or self._closing else silence_state(host)
        if state is not None:
            try:
                self._set_host_state(host_id, state,
                                     f"no heartbeat for {self.heartbeat_timeout_sec:g}s")
            except StoreUnavailable:
                self._registry.liveness.heard_from(host_id)  # count down again; try then

    def _host_lost(self, host_id: str) -> None:
        """The host stayed unreachable too long: its attempts are lost (and may retry)."""
        if self._closing:
            return
        for run in [r for r in self._runs.all() if r.host_id == host_id]:
            self._runs.abandon(run)
            self._finish(run, ExitStatus(None, lost=True, detail=(
                f"host {host_id} unreachable for {self.host_lost_after_sec:g}s")))

    # submit ------------------------------------------------------------------------------
    async def submit(self, spec: JobSpec | Mapping[str, Any], *,
                     idempotency_key: IdempotencyKey | None = None) -> Job:
        """Queue one job; returns once it is committed to the store (with the reply of
        ``idempotency_key``, if given, in the same transaction)."""
        (job,) = self._add_jobs([self._intake.one(spec)], idempotency_key)
        return job.model_copy()

    async def submit_batch(self, specs: Iterable[JobSpec | Mapping[str, Any]], *,
                           idempotency_key: IdempotencyKey | None = None) -> list[Job]:
        """Queue many jobs: all of them, or (on any bad job, or a failed write) none.
        Returns once they are committed; a large batch is built and written in steps
        (``batches``), never partly visible."""
        specs = list(specs)
        if len(specs) <= STAGE_ABOVE:
            accepted = await self._intake.batch(specs)
            valid = accepted.bind(self._table.last_seq + 1)
            return [job.model_copy() for job in self._add_jobs(valid, idempotency_key)]
        with LongLivedObjects():
            accepted = await self._intake.batch(specs)
            return await self._add_staged_jobs(accepted, idempotency_key)

    def _add_jobs(self, specs: list[JobSpec],
                  idempotency_key: IdempotencyKey | None = None) -> list[Job]:
        """Queue validated specs; one transaction however many there are."""
        now = utcnow()
        new = new_jobs(specs, self._table.last_seq + 1, self._order.last_seq + 1, now)
        held = {job.job_id for job in new.jobs if job.status is JobStatus.HELD}
        with self._journal.transaction():
            events = [self._journal.job_event(job, None, job.status, "submitted", now)
                      for job in new.jobs]
            self.store.insert_jobs(new.rows)
            self.store.insert_first_attempts([job.job_id for job in new.jobs], now.isoformat(),
                                             held)
            self.store.insert_edges(new.edges)
            self.store.insert_events(events)
            if idempotency_key is not None:
                self.store.save_idempotent_reply(idempotency_key, new.jobs)
        self._table.last_seq += len(specs)
        self._order.last_seq += len(specs)
        self._journal.counts[JobStatus.PENDING] += len(new.jobs) - len(held)
        self._journal.counts[JobStatus.HELD] += len(held)
        for job, book in zip(new.jobs, new.books, strict=True):
            self._table.add(job, book)
        self._journal.publish(events)
        self._arrive(new.jobs)  # after: a cancellation's event follows the submit's
        self._wake()
        return new.jobs

    async def _add_staged_jobs(self, accepted: Accepted,
                               idempotency_key: IdempotencyKey | None) -> list[Job]:
        """Queue a large batch: staged in steps, published by one short transaction, and
        applied to memory at once after it (``batches`` says how and why)."""
        first, first_queue = self._table.last_seq + 1, self._order.reserve(len(accepted.specs))
        self._table.last_seq += len(accepted.specs)  # reserved: a failed batch leaves a gap
        specs = await accepted.bind_aside(first)
        accepted.specs = []  # consumed while staged
        batch = await self._batches.stage(specs, first, first_queue, utcnow(), new_book)
        try:
            with self._journal.transaction():
                events = self._batches.publish(batch, self._journal.last_seq + 1, idempotency_key)
                self._journal.last_seq += len(events)
        except BaseException:
            self._batches.discard(batch)
            raise
        copies = batch.copies
        self._install_batch(batch, events)
        return copies

    def _install_batch(self, batch: StagedBatch[Book], events: Sequence[JobEvent]) -> None:
        """A published batch in memory, right after its commit (no await in between):
        every job is known at once; they are queued in steps while dispatch waits."""
        self._jobs.update(batch.jobs)
        self._books.update(batch.books)
        self._journal.counts[JobStatus.PENDING] += len(batch.jobs) - len(batch.held)
        self._journal.counts[JobStatus.HELD] += len(batch.held)
        self._journal.publish(events)
        self._eligibility.expect(job.job_id for job in batch.jobs.values()
                                 if job.depends_on or job.begin_at)
        self._batches.settle(batch, self._queue_published, self._wake)

    def _queue_published(self, jobs: Sequence[Job]) -> None:
        """A published batch's jobs arrive, a step at a time: those still pending (or
        held) and not queued; a pause, stop or resume may have come first."""
        self._arrive(job for job in jobs
                     if self._jobs.get(job.job_id) is job and job.job_id not in self._queue)

    # reading -----------------------------------------------------------------------------
    async def list_jobs(
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
        ``ids`` picks those jobs only (unknown ids are left out): one call for a view's
        worth of jobs, without their timelines."""
        return await reading.list_jobs(
            self._table, self.store, status=status, project=project, design=design,
            owner=owner, host=host, ids=ids, limit=limit, offset=offset)

    async def get_job(self, job_id: str) -> Job:
        """The job with its attempts and full event timeline."""
        return reading.job_detail(self._table, self.store, job_id)

    async def tail_log(self, job_id: str, n: int = 200, attempt: int | None = None) -> LogTail:
        """The last ``n`` lines of an attempt's log (the current attempt by default)."""
        return await reading.tail_log(self._table, self.state_dir, job_id, n, attempt)

    async def read_log(self, job_id: str, offset: int, attempt: int | None = None,
                       max_bytes: int = 1 << 20) -> LogTail:
        """Complete lines appended after byte ``offset`` (to follow a log). A last line
        without its newline is held back until it is complete or the attempt has ended."""
        return reading.read_log(self._table, self.state_dir, job_id, offset, attempt,
                                max_bytes)

    def owner_of(self, job_id: str) -> str:
        """Who owns the job (NotFound if there is none): for the API's permission checks."""
        return self._table.get(job_id).owner

    def _pending_reason(self, job: Job) -> str | None:
        return self._eligibility.pending_reason(job, self._queue.reason)

    def _enqueue(self, job: Job) -> None:
        """Queue a pending job for dispatch under its order key, if eligibility admits it
        (every path into the dispatch queue comes through here)."""
        if self._eligibility.admits(job):
            priority, seq = self._order.key(job, self._books[job.job_id])
            self._queue.push(job.job_id, priority, seq, job.resource_request)

    def _arrive(self, jobs: Iterable[Job]) -> None:
        """Jobs that entered PENDING or HELD from outside (submit, restart, rerun): queued
        if nothing keeps them waiting; those whose dependency can never hold cancelled."""
        doomed = []
        for job in jobs:
            if job.status in (JobStatus.PENDING, JobStatus.HELD):
                decision = self._eligibility.arrive(job)
                if decision is not None:
                    doomed.append(decision)
                    continue
            self._enqueue(job)
        if doomed:
            self._cascade.apply(doomed)

    def _ended(self, job: Job) -> None:
        """A job reached a final status without running (the cascade cancelled it)."""
        self._eligibility.leave(job.job_id)
        self._waiters.final(job.job_id)
        self._table.forget(job)

    def _status_of(self, job_id: str) -> JobStatus | None:
        """A job's status as the transaction being written leaves it (dependencies are
        decided by it), else as committed; None for no such job."""
        return self._journal.written_status(job_id) or self._table.status(job_id)

    def _call_later(self, delay: float, callback: Callable[[], None]) -> asyncio.TimerHandle:
        assert self._loop is not None
        return self._loop.call_later(delay, callback)

    def _soon(self, callback: Callable[[], None]) -> None:
        if self._loop is not None and not self._closing:
            self._loop.call_soon(callback)

    def _begun(self, job_ids: list[str]) -> None:
        """Their begin times have come: queue them (eligibility still decides)."""
        for job_id in job_ids:
            job = self._jobs.get(job_id)
            if job is not None and job.status is JobStatus.PENDING:
                self._enqueue(job)
        self._wake()

    @property
    def last_event_seq(self) -> int:
        """The newest event's sequence number: follow from here with ``events_since``."""
        return self._journal.last_seq

    def job_counts(self) -> dict[JobStatus, int]:
        """Jobs per status, kept as transitions happen (cheap enough for a health check)."""
        return dict(self._journal.counts)

    def hosts_online(self) -> int:
        return self._registry.count(HostState.ONLINE)

    async def metrics_summary(self) -> MetricsSummary:
        return summarize(
            self.job_counts(), hosts_online=self.hosts_online(),
            hosts_offline=self._registry.count(HostState.OFFLINE), hosts_total=len(self._hosts),
            usage=self._resources.usage(), samples=self._samples,
            finished_last_hour=self._finished_last_hour(), degraded_reason=self.degraded_reason)

    async def wait(self, job_id: str, timeout: float | None = None) -> Job:
        """Return the job once it is final (retries exhausted, or succeeded/stopped)."""
        if not self._table.get(job_id).status.is_final:
            await self._waiters.until_final(job_id, timeout)
        return self._table.view(self._table.get(job_id))

    def _finished_last_hour(self) -> int:
        """Counted by the store's index, not by a bounded sample of recent ends."""
        since = datetime.fromtimestamp(time.time() - 3600, UTC).isoformat()
        return self.store.finished_since(since)

    def subscribe(self, maxsize: int = 100_000) -> Subscription:
        """Follow events live: ``async with scheduler.subscribe() as events``."""
        return self._hub.subscribe(maxsize)

    async def events_since(self, seq: int, *, wait: float = 0.0, limit: int = 1000) -> list[Event]:
        """Events after ``seq`` (oldest first), waiting up to ``wait`` seconds for one."""
        if wait > 0:
            await self._hub.wait_after(seq, wait)
        return self.store.events_after(seq, limit)

    # control -----------------------------------------------------------------------------
    async def pause(self, job_id: str) -> Job:
        """PENDING -> HELD, or RUNNING -> PAUSED by SIGSTOP to the job's process group."""
        job = self._table.get(job_id)
        transitions.require("pause", job)
        if job.status is JobStatus.PENDING:
            self._journal.record(job, JobStatus.HELD, "held by request")
            self._queue.remove(job_id)
            return self._table.view(job)
        run = transitions.control_target("pause", job, self._runs.get(job_id))
        if not await self._runs.signal(run, signal.SIGSTOP) or not self._is_live(run, job,
                                                                                 "pause"):
            raise transitions.illegal("pause", job)
        try:
            self._journal.write(job, transitions.paused(self._books[job_id], utcnow()))
        except StoreUnavailable:
            await self._runs.signal(run, signal.SIGCONT)  # as it was: running
            raise
        self._runs.disarm_timeout(run)
        return self._table.view(job)

    async def resume(self, job_id: str) -> Job:
        """HELD -> PENDING (back in its place in the queue), or PAUSED -> RUNNING by SIGCONT."""
        job = self._table.get(job_id)
        transitions.require("resume", job)
        if job.status is JobStatus.HELD:
            self._journal.record(job, JobStatus.PENDING, "released by request")
            self._enqueue(job)
            self._wake()
            return self._table.view(job)
        run = transitions.control_target("resume", job, self._runs.get(job_id))
        signalled = await self._runs.signal(run, signal.SIGCONT)
        if signalled and not self._runs.is_current(run):  # resumed, then it ended meanwhile
            return self._table.view(job)
        if not signalled or not self._is_live(run, job, "resume"):
            raise transitions.illegal("resume", job)
        try:
            self._journal.write(job, transitions.resumed(self._books[job_id], utcnow()))
        except StoreUnavailable:
            await self._runs.signal(run, signal.SIGSTOP)  # as it was: paused
            raise
        self._arm_timeout(job, run)
        return self._table.view(job)

    def _is_live(self, run: Run, job: Job, action: str) -> bool:
        """Still the same attempt, in the state the action started from, after an await."""
        return self._runs.is_current(run) and job.status in transitions.ACTIONS[action]

    async def stop(self, job_id: str) -> Job:
        """PENDING/HELD -> STOPPED at once; RUNNING/PAUSED: SIGTERM to the group, SIGKILL after
        the grace period, STOPPED when it has ended. A second stop sends SIGKILL right away.
        The intent is written before any signal goes out, so a restart carries it out."""
        job = self._table.get(job_id)
        transitions.require("stop", job)
        if job.status in (JobStatus.PENDING, JobStatus.HELD):
            self._journal.write(job, transitions.stopped_before_running(job, utcnow()))
            self._queue.remove(job_id)
            self._cascade.upstreams_ended([job_id])
            self._ended(job)
            return self._table.view(job)
        run = self._runs.get(job_id)
        if run is None:
            raise transitions.illegal("stop", job)
        await self._stop_running(job, run)
        return self._table.view(job)

    async def _stop_running(self, job: Job, run: Run) -> None:
        if run.ending == transitions.STOP:
            self._journal.record(job, job.status, "stop requested again: SIGKILL sent")
            await self._runs.kill(run)
            return
        if executor_unreachable(run.executor):
            raise HostUnavailable(
                f"host {run.host_id} is unreachable ({self._hosts[run.host_id].state_reason}):"
                f" job {job.job_id} not stopped, nothing was sent; try again when it is back",
                {"job_id": job.job_id, "host_id": run.host_id})
        previous = run.ending
        self._set_ending(job, run, transitions.STOP,
                         f"stop requested: SIGTERM sent, SIGKILL in {self.stop_grace_sec:g}s")
        try:
            await self._send_term(run)
        except AprError:
            with suppress(StoreUnavailable):  # nothing was sent: say so, undo the intent
                self._set_ending(job, run, previous, "stop not sent: host unreachable")
            raise

    def _set_ending(self, job: Job, run: Run, ending: str | None, reason: str) -> None:
        """Persist (with its event) that this attempt is being ended, or no longer is."""
        self._journal.write(job, transitions.ending_intent(job, self._books[job.job_id], run,
                                                           ending, reason))

    async def _send_term(self, run: Run) -> None:
        """SIGTERM for the attempt's ending; its time is kept so a restart knows when the
        SIGKILL is due."""
        await self._runs.terminate(run)
        book = self._books.get(run.job_id)
        if not self._runs.is_current(run) or book is None:
            return  # it ended meanwhile
        now = utcnow()
        run.term_sent_at = book.term_sent_at = now
        with suppress(StoreUnavailable), self._journal.transaction():  # lost: a restart resends
            self.store.update_job(run.job_id, term_sent_at=now)

    async def rerun(self, job_id: str, *, with_dependents: bool = False) -> Job:
        """Start a new attempt of a finished job; earlier attempts' logs and events stay.
        ``with_dependents`` also re-arms the jobs below it that were CANCELLED (because
        of it, directly or down the graph), all in one transaction. Refused for a job
        one of whose own dependencies can never hold now."""
        return self._changes.rerun(job_id, with_dependents=with_dependents)

    async def modify(self, job_id: str, changes: Mapping[str, Any]) -> Job:
        """Change a waiting job's name, priority, timeout_sec, begin_at or resources, or a
        running one's priority or timeout_sec (``apr_sched.changes`` says the rules); the
        job is queued again under its new request, its timer re-armed for a new limit."""
        return self._changes.modify(job_id, changes)

    async def top(self, job_id: str) -> Job:
        """Move a pending job to the front of its priority."""
        return self._changes.move(job_id, "top")

    async def bottom(self, job_id: str) -> Job:
        """Move a pending job to the back of its priority."""
        return self._changes.move(job_id, "bottom")

    def _retime(self, job: Job) -> None:
        """A running job's limit changed: its timer counts down the new one."""
        run = self._runs.get(job.job_id)
        if run is not None and run.ending is None:
            self._runs.disarm_timeout(run)
            self._arm_timeout(job, run)

    async def graph(self, job_id: str, depth: int = 2) -> JobGraph:
        """The jobs ``job_id`` waits for and those waiting for it, ``depth`` levels each
        way, with their states (at most ``job_graph.NODE_LIMIT`` jobs)."""
        return reading.job_graph(self._table, self.store, job_id, depth)

    # running -----------------------------------------------------------------------------
    def _wake(self) -> None:
        """Ask for a dispatch pass on the next loop iteration (many wakes, one pass)."""
        if self._dispatch_scheduled or self._closing or self._loop is None:
            return
        self._dispatch_scheduled = True
        self._loop.call_soon(self._dispatch)

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        if self._batches.queueing:
            return  # a published batch is being queued: it wakes us once all of it is
        if self._closing or self._unrecorded:
            return  # degraded: _retry_store wakes us once writes work again
        if self._disk.check():  # below the free-space floor: likewise
            self._schedule_store_retry()
            return
        placements = self._queue.dispatch_pass(self._resources)
        if not placements:
            return
        now = utcnow()
        try:
            with self._journal.transaction():
                for job_id, host_id in placements:
                    self._journal.write(self._jobs[job_id], transitions.started(
                        self._jobs[job_id], self._books[job_id], host_id, now))
        except StoreUnavailable as exc:
            log.warning("dispatch postponed: %s", exc.message)
            for job_id, host_id in placements:  # as they were: queued, nothing allocated
                job = self._jobs[job_id]
                self._resources.release(host_id, job.resource_request)
                self._enqueue(job)
            self._schedule_store_retry()
            return
        for job_id, host_id in placements:
            self._samples.started(seconds_between(self._books[job_id].queued_at, now))
            self._launch(self._jobs[job_id], host_id)

    def _launch(self, job: Job, host_id: str) -> None:
        run = self._runs.add(job.job_id, job.attempt, host_id, job.resource_request,
                             self._registry.executor_for(host_id))
        self._arm_timeout(job, run)
        self._runs.launch(run, launch_of(job, host_id, attempt_files(
            self.state_dir, job.job_id, run.attempt)))

    def _started_run(self, run: Run) -> None:
        assert run.handle is not None
        self._jobs[run.job_id].pgid = run.handle.pgid
        self._pgids.soon(run.job_id)

    def _log_note(self, run: Run, text: str) -> None:
        """A note on the timeline about the attempt's log (it reached its size limit)."""
        job = self._jobs.get(run.job_id)
        if job is None or job.attempt != run.attempt:
            return
        log.info("job %s attempt %d: %s", run.job_id, run.attempt, text)
        try:
            self._journal.record(job, job.status, text)
        except StoreUnavailable as exc:
            log.warning("job %s: note not recorded: %s", run.job_id, exc.message)

    def _arm_timeout(self, job: Job, run: Run) -> None:
        if job.timeout_sec is None:
            return
        book = self._books[job.job_id]
        used = book.running_sec(utcnow())
        self._runs.arm_timeout(run, job.timeout_sec - used)

    def _timed_out(self, run: Run) -> None:
        """The attempt's running time is up: persist the intent, then SIGTERM. The limit is
        enforced even when the store refuses the write (the outcome is recorded later)."""
        job = self._jobs[run.job_id]
        try:
            self._set_ending(job, run, transitions.TIMEOUT,
                             f"timeout_sec={job.timeout_sec:g} reached: SIGTERM sent, "
                             f"SIGKILL in {self.stop_grace_sec:g}s")
        except StoreUnavailable as exc:
            log.warning("job %s timed out; intent not recorded: %s", run.job_id, exc.message)
            run.ending = transitions.TIMEOUT
        self._runs.spawn(self._runs.keep_trying(self._send_term, run))

    def _finish(self, run: Run, status: ExitStatus, note: str | None = None) -> None:
        """An attempt ended: record the outcome (maybe a retry), then free its resources.
        If the store refuses the write, the attempt stays as it was (still holding its
        resources) and is recorded once writes work again: nothing is lost."""
        job = self._jobs[run.job_id]
        book = self._books[job.job_id]
        now = utcnow()
        ended = transitions.attempt_ended(job, book, run.ending, status, note, now)
        try:
            with self._journal.transaction():
                self._journal.write(job, ended.change)  # its then: before a retry's reset
                if ended.retry:
                    self._journal.write(job, transitions.retried(job, book, now,
                                                                 self._order.last_seq + 1))
        except StoreUnavailable as exc:
            log.warning("job %s ended (%s) but could not be recorded yet: %s", job.job_id,
                        ended.change.reason, exc.message)
            self._unrecorded[job.job_id] = (run, status, note)
            self._schedule_store_retry()
            return
        self._unrecorded.pop(job.job_id, None)
        if run.ending is not None:
            self._runs.sweep(run)
        self._runs.discard(run)
        if run.host_id in self._hosts:
            self._resources.release(run.host_id, run.request)
        book.run_sec, book.resumed_at = ended.run_sec, None
        if ended.retry:
            self._order.last_seq += 1
            book.retries_used += 1
            book.queue_seq, book.queued_at = self._order.last_seq, now
        self._samples.finished(ended.run_sec)
        if job.status is JobStatus.PENDING:
            self._enqueue(job)
        else:
            self._cascade.upstreams_ended([job.job_id])  # while its status is in memory
            self._waiters.final(job.job_id)
            self._table.forget(job)
        self._wake()

    # retention ---------------------------------------------------------------------------
    async def purge(self, before: datetime, *, host_events: bool = True) -> PurgeReport:
        """Forget finished jobs that finished before ``before``, with their attempts, events
        and log files, and host events older than it. A job that has not finished is never
        purged. Done in chunks of PURGE_CHUNK jobs, one transaction each, yielding between
        them, so a large purge never stalls the loop."""
        if before.tzinfo is None:
            raise InvalidInput("before must include a time zone",
                               [{"field": "before", "message": "must include a time zone"}])
        cutoff = before.astimezone(UTC).isoformat()
        jobs = 0
        while True:
            found = [(job_id, status) for job_id, status
                     in self.store.finished_before(cutoff, PURGE_CHUNK)
                     if job_id not in self._jobs]
            if not found:
                break
            with self._journal.transaction():
                self.store.delete_jobs([job_id for job_id, _ in found])
            for _, status in found:
                self._journal.counts[JobStatus(status)] -= 1
            jobs += len(found)
            await asyncio.to_thread(remove_logs, self.state_dir, [job_id for job_id, _ in found])
        events = self._purge_host_events(before) if host_events else 0
        if jobs or events:
            log.info("purged %d finished jobs and %d host events from before %s", jobs,
                     events, cutoff)
        return PurgeReport(before=before, jobs_purged=jobs, host_events_purged=events)

    def _purge_host_events(self, before: datetime) -> int:
        with self._journal.transaction():
            return self.store.delete_host_events_before(before.astimezone(UTC).isoformat())

    # degraded store and disk -------------------------------------------------------------
    @property
    def degraded_reason(self) -> str | None:
        """Why the scheduler cannot do its work right now (None when healthy): the store
        refuses writes, or the state disk is below its free-space floor."""
        return degraded_reason(self._store, self._disk)

    def _schedule_store_retry(self) -> None:
        if self._loop is not None and not self._closing:
            self._store_retry.arm(self._loop)

    def _retry_store(self) -> None:
        """Record what ended while writes failed; then dispatch again (a backoff while
        degraded, not a poll: nothing runs here while the store and disk are healthy)."""
        if self._closing:
            return
        for run, status, note in list(self._unrecorded.values()):
            self._finish(run, status, note)
        self._cascade.retry()
        if self._pgids:
            with suppress(StoreUnavailable):
                self._pgids.save()
        if self._unrecorded or self.degraded_reason:
            if self._store is not None and self._store.failure and not self._unrecorded:
                with suppress(StoreUnavailable), self._journal.transaction():
                    self.store.touch()  # a harmless write: does the store take writes again?
            self._schedule_store_retry()
        self._wake()
