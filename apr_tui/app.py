"""The Textual app: owns the backend, the local job book, and the flow of events into views.

Events from the backend are collected as they come and applied at most every
``flush_interval`` seconds (50 ms): the book is updated, then only the rows of jobs that
changed are touched, inside one ``batch_update``. Slower facts (host usage, metrics,
pending reasons of visible jobs) are re-read on their own timers. Screens ask the app's
``backend``; nothing but the app's workers feeds the book.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from textual import events, work
from textual.app import App
from textual.binding import Binding, BindingType
from textual.worker import Worker, WorkerState

from apr_sched.errors import AprError
from apr_sched.models import (
    FINAL_STATUSES,
    Host,
    Job,
    JobEvent,
    JobStatus,
    MetricsSummary,
    current_user,
    utcnow,
)
from apr_tui import actions
from apr_tui.backend import Backend, Feed, FeedClosed, Resync, Snapshot
from apr_tui.book import JobBook
from apr_tui.handoff import Handover
from apr_tui.keyorder import settle, split_escape
from apr_tui.screens.main import MainScreen
from apr_tui.screens.quit import jobs_phrase
from apr_tui.settings import Settings, SettingsFile

log = logging.getLogger("apr_tui")

Clock = Callable[[], datetime]

STALE_AFTER_SEC = 10.0
"""An attached daemon answers at least every hosts_interval (5 s) while all is well: this
long without an answer, the screen is marked stale and the feed reconnects."""
NEW_JOBS_BY_ID = 50
"""Fetch up to this many unknown jobs one by one; more means a batch: page them in."""


class AprTui(App[str]):
    """htop/k9s for APR jobs. Build it with ``make_app``."""

    CSS_PATH = "app.tcss"
    TITLE = "apr_tui"
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, backend: Backend, *, clock: Clock | None = None,
                 flush_interval: float = 0.05, tick_interval: float = 1.0,
                 hosts_interval: float = 5.0, reasons_interval: float = 2.0,
                 stale_after: float = STALE_AFTER_SEC,
                 notice: str | None = None, owner: str | None = None,
                 settings: SettingsFile | None = None) -> None:
        super().__init__()
        self.backend = backend
        self.settings_file = settings or SettingsFile(None)
        self.clock: Clock = clock or utcnow
        self.default_owner = owner or current_user()
        """Pre-filled owner of new jobs."""
        self.book = JobBook()
        self.hosts: list[Host] = []
        self.metrics: MetricsSummary | None = None
        self.connection = ""
        self.loaded = asyncio.Event()
        """Set once the first snapshot is on screen."""
        self.flush_interval = flush_interval
        self.tick_interval = tick_interval
        self.hosts_interval = hosts_interval
        self.reasons_interval = reasons_interval
        self.stale_after = stale_after
        self.stale = ""
        """Empty while the scheduler answers; else how long it has not (attached)."""
        self._reconnecting = False
        self._notice = notice
        self._inbox: list[Any] = []
        self._hosts_wanted = False
        self._hosts_read_at = 0.0
        self._leaving = False
        self.handover: Handover | None = None
        """Set on detach from an in-process scheduler: which daemon took the jobs over."""
        self.farewell: str | None = None
        """What to print on the terminal once the screen is gone."""
        self._fetch_lock = asyncio.Lock()
        self._main = MainScreen(backend, self.settings_file.settings)
        self._resolved_keys: weakref.WeakSet[events.Key] = weakref.WeakSet()
        """Keys whose bindings were looked up when typed (``on_event``), not again later."""

    @property
    def main(self) -> MainScreen:
        return self._main

    def get_default_screen(self) -> MainScreen:
        return self._main

    def on_mount(self) -> None:
        self.set_interval(self.flush_interval, self.flush)
        self.set_interval(self.tick_interval, self._tick)
        self.set_interval(min(0.5, self.hosts_interval), self._maybe_read_hosts)
        self.set_interval(self.reasons_interval, self._read_visible_reasons)
        if self._notice:
            self.notify(self._notice, timeout=8)
        if self.settings_file.notice:
            self.notify(self.settings_file.notice, severity="warning", timeout=12)

    # settings ------------------------------------------------------------------------
    @property
    def settings(self) -> Settings:
        return self.settings_file.settings

    def update_settings(self, settings: Settings) -> None:
        """Take new settings and save them; a file that cannot be written is a notice."""
        problem = self.settings_file.update(settings)
        if problem:
            self.notify(problem, severity="warning", timeout=10)

    # job actions -----------------------------------------------------------------------
    def request_action(self, action: str, jobs: Sequence[Job], *, from_marks: bool) -> None:
        """``action`` on the jobs it applies to; stop asks first, with counts by state.
        ``from_marks``: the jobs were the marked ones (the marks go once it is done)."""
        from apr_tui.screens.confirm import ConfirmScreen

        if not jobs:
            return
        targets = actions.applicable(action, jobs)
        if not targets:
            self.notify(actions.nothing_to_do(action, jobs), severity="warning", timeout=5)
            return
        ids = [job.job_id for job in targets]
        left = actions.left_out(action, jobs)
        if action not in actions.ASKS_FIRST:
            self.control(action, ids, from_marks, left)
            return

        def decided(confirmed: bool | None) -> None:
            if confirmed:
                self.control(action, ids, from_marks, left)

        self.push_screen(ConfirmScreen(actions.question(action, jobs),
                                       confirm_label=action.capitalize()), decided)

    @work(group="control", exit_on_error=False)
    async def control(self, action: str, job_ids: list[str], from_marks: bool,
                      left: str = "") -> None:
        """``left``: what the done notice adds about jobs the action did not apply to."""
        done: list[str] = []
        refusals: list[str] = []
        for job_id in job_ids:
            try:
                job = await self.backend.control(action, job_id)
            except AprError as exc:
                refusals.append(exc.message)
                continue
            self.book.upsert(job)
            done.append(job_id)
        if from_marks and done:
            self.main.clear_marks()
        self.jobs_changed(done)
        if done:
            which = f"job {done[0]}" if len(done) == 1 else f"{len(done)} jobs"
            self.notify(f"{actions.DONE_VERB[action]} {which}{left}", timeout=4)
        if refusals:
            more = f" (and {len(refusals) - 3} more)" if len(refusals) > 3 else ""
            self.notify("\n".join(refusals[:3]) + more, title=f"{action} refused",
                        severity="error", timeout=8)

    # keys, in order ------------------------------------------------------------------
    async def on_event(self, event: events.Event) -> None:
        """A typed key waits for the ones before it to be handled (``apr_tui.keyorder``)."""
        if isinstance(event, events.Key) and not event.is_forwarded \
                and self.screen.maximized is None:
            for key in split_escape(event):
                await self._key_in_order(key)
            return
        await super().on_event(event)

    async def _key_in_order(self, event: events.Key) -> None:
        await settle(self)
        self.app_focus = True
        if await self._check_bindings(event.key, priority=True) \
                or await self._check_bindings(event.key):
            return
        self._resolved_keys.add(event)
        (self.focused or self.screen)._forward_event(event)

    async def _on_key(self, event: events.Key) -> None:
        if event in self._resolved_keys:
            event.prevent_default()  # bubbled back up: its bindings were already looked up

    # the feed ------------------------------------------------------------------------
    def start_following(self) -> None:
        """Called by the main screen once its widgets exist."""
        self._follow()

    @work(group="feed", exclusive=True, exit_on_error=False)
    async def _follow(self) -> None:
        """Snapshot, then events, forever; re-snapshot after a gap; retry when unreachable."""
        delay = 0.5
        while not self._leaving:
            feed: Feed | None = None
            try:
                await self.backend.start()
                feed = await self.backend.open_feed()
                self._load(await self.backend.snapshot())
                self._reconnecting = False
                self._set_connection("")
                delay = 0.5
                while True:
                    events = await feed.next()  # not inbox.extend(await ...): flush swaps lists
                    self._inbox.extend(events)
            except Resync:
                continue
            except FeedClosed:
                return
            except AprError as exc:
                if self._leaving:
                    return
                if not self.backend.attached and not self.loaded.is_set():
                    self.exit(return_code=2, message=f"apr-tui: {exc.message}")
                    return
                self._set_connection(f"disconnected: {exc.message}; retrying")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            finally:
                if feed is not None:
                    await feed.close()

    def _load(self, snapshot: Snapshot) -> None:
        # Rows for thousands of jobs are hundreds of thousands of small objects: with the
        # cyclic GC on, its collections while they are made (each scanning every job
        # already held) took about half the time of this load at 10,000 jobs.
        gc.disable()
        try:
            self._inbox.clear()
            self.book.replace_all(snapshot.jobs)
            self.hosts, self.metrics = snapshot.hosts, snapshot.metrics
            self._hosts_read_at = time.monotonic()
            with self.batch_update():
                self.main.reload_jobs()
                self.main.show_hosts(self.hosts)
                self.main.update_summary()
        finally:
            gc.enable()
        self.loaded.set()
        # Thousands of long-lived jobs: keep the cyclic GC from re-scanning them on every
        # full collection (120-200 ms pauses at 10,000 jobs, seen as key-latency spikes).
        gc.freeze()

    def on_unmount(self) -> None:
        gc.unfreeze()

    def flush(self) -> None:
        """Apply the events collected since the last flush (called every 50 ms)."""
        if not self._inbox:
            return
        events, self._inbox = self._inbox, []
        changed: set[str] = set()
        unknown: set[str] = set()
        ended: set[str] = set()
        for event in events:
            if isinstance(event, JobEvent):
                (changed if self.book.apply(event) else unknown).add(event.job_id)
                if event.to_status in FINAL_STATUSES:
                    ended.add(event.job_id)
            else:
                self._hosts_wanted = True
        unknown -= changed
        if unknown:
            self._fetch_new(unknown)
        if ended & changed:
            self._read_run_times(sorted(ended & changed))
        if changed:
            self._hosts_wanted = True
            self.jobs_changed(changed)

    def jobs_changed(self, job_ids: Iterable[str]) -> None:
        """The book changed for these jobs: let the views catch up, in one repaint."""
        with self.batch_update():
            self.main.jobs_changed(set(job_ids))

    @work(group="fetch-new", exit_on_error=False)
    async def _fetch_new(self, job_ids: set[str]) -> None:
        async with self._fetch_lock:
            job_ids = {job_id for job_id in job_ids if job_id not in self.book}
            if not job_ids:
                return
            try:
                if len(job_ids) > NEW_JOBS_BY_ID:
                    jobs = [job for job in await self.backend.jobs_after(len(self.book))
                            if job.job_id not in self.book]
                    missing = job_ids - {job.job_id for job in jobs}
                    jobs += await self.backend.get_jobs(sorted(missing)[:NEW_JOBS_BY_ID])
                else:
                    jobs = await self.backend.get_jobs(sorted(job_ids))
            except AprError as exc:
                log.warning("fetching new jobs failed: %s", exc.message)
                return
            for job in jobs:
                if job.job_id not in self.book:
                    self.book.upsert(job)
            self.jobs_changed(job.job_id for job in jobs)

    # slower facts --------------------------------------------------------------------
    def _tick(self) -> None:
        self._check_stale()
        self.main.tick(self.clock())

    def _check_stale(self) -> None:
        """Attached and no answer for ``stale_after``: say so, and reconnect once (a new
        feed: a health probe with a short timeout, then a fresh snapshot)."""
        heard = self.backend.last_answer
        quiet = 0.0 if heard is None or self._leaving else time.monotonic() - heard
        if quiet <= self.stale_after:
            self.stale = ""
            return
        self.stale = f"STALE: no answer for {quiet:.0f} s, reconnecting"
        if not self._reconnecting:
            self._reconnecting = True
            log.warning("no answer from %s for %.0f s: reconnecting",
                        self.backend.description, quiet)
            self._follow()  # exclusive: replaces the feed that waits on a silent daemon

    def _maybe_read_hosts(self) -> None:
        stale = time.monotonic() - self._hosts_read_at > self.hosts_interval
        if (self._hosts_wanted or stale) and self.loaded.is_set() and not self._leaving:
            self._hosts_wanted = False
            self._hosts_read_at = time.monotonic()
            self._read_hosts()

    @work(group="hosts", exclusive=True, exit_on_error=False)
    async def _read_hosts(self) -> None:
        try:
            hosts = await self.backend.hosts()
            metrics = await self.backend.metrics()
        except AprError as exc:
            log.warning("reading hosts failed: %s", exc.message)
            return
        self.hosts, self.metrics = hosts, metrics
        with self.batch_update():
            self.main.show_hosts(hosts)
            self.main.update_summary()

    def _read_visible_reasons(self) -> None:
        if self.loaded.is_set() and not self._leaving:
            job_ids = self.main.visible_waiting_jobs()
            if job_ids:
                self._refresh_jobs(job_ids)

    @work(group="reasons", exclusive=True, exit_on_error=False)
    async def _refresh_jobs(self, job_ids: list[str]) -> None:
        """Re-read a few jobs (why pending jobs wait changes without an event)."""
        try:
            jobs = await self.backend.get_jobs(job_ids)
        except AprError:
            return
        changed = []
        for job in jobs:
            old = self.book.get(job.job_id)
            if old is not None and old.status is job.status \
                    and old.pending_reason != job.pending_reason:
                old.pending_reason = job.pending_reason
                changed.append(job.job_id)
        if changed:
            self.jobs_changed(changed)

    @work(group="run-times", exit_on_error=False)
    async def _read_run_times(self, job_ids: list[str]) -> None:
        """Take the scheduler's running time and exit of jobs that just ended: it counts to
        when the process ended, the event is when the scheduler noticed (and carries no exit
        code)."""
        try:
            jobs = await self.backend.get_jobs(job_ids)
        except AprError:
            return
        changed = []
        for job in jobs:
            old = self.book.get(job.job_id)
            if old is not None and (old.status, old.attempt) == (job.status, job.attempt) \
                    and (old.run_sec, old.finished_at, old.exit_code, old.signal) != (
                        job.run_sec, job.finished_at, job.exit_code, job.signal):
                old.run_sec, old.resumed_at = job.run_sec, job.resumed_at
                old.finished_at = job.finished_at
                old.exit_code, old.signal = job.exit_code, job.signal
                changed.append(job.job_id)
        if changed:
            self.jobs_changed(changed)

    def _set_connection(self, text: str) -> None:
        if text != self.connection:
            self.connection = text
            self.main.update_summary()

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """A bug in a worker must not pass silently, nor take the app down."""
        if event.state is WorkerState.ERROR:
            error = event.worker.error
            log.error("worker %s failed", event.worker.name, exc_info=error)
            self.notify(f"internal error in {event.worker.name}: {error!r}",
                        severity="error", timeout=10)

    # leaving -------------------------------------------------------------------------
    async def action_quit(self) -> None:
        self.main.request_quit()

    def leave(self, choice: str) -> None:
        """Quit once: ``detach`` (jobs go on: in-process, a background daemon takes them
        over), ``stop`` (stop every unfinished job first; attached, the user's own), or
        ``disconnect`` (attached). Asking again while leaving changes nothing."""
        if self._leaving:
            return
        self._leaving = True
        self._leave_now(choice)

    @work(group="shutdown", exit_on_error=False)
    async def _leave_now(self, choice: str) -> None:
        return_code = 0
        try:
            if choice == "stop" and self.backend.attached:
                await self._stop_mine()
                await self.backend.close()
            elif choice == "stop":
                self.notify(f"stopping {jobs_phrase(*self.unfinished_counts())}…", timeout=30)
                await self.backend.close(stop_jobs=True)
            elif choice == "detach" and not self.backend.attached:
                if self.backend.hands_off and any(self.unfinished_counts()):
                    self.notify("handing the jobs to a background scheduler…", timeout=30)
                self.handover = await self.backend.detach()
                if self.handover is not None:
                    self.farewell = self.handover.farewell()
                    return_code = 0 if self.handover.ok else 1
            else:
                await self.backend.close()
        except Exception:  # leaving must not fail: log it, exit anyway
            log.exception("closing the backend failed")
        for worker in self.workers:
            if worker.group in ("feed", "hosts", "reasons", "fetch-new", "run-times"):
                worker.cancel()
        with contextlib.suppress(Exception):
            self.exit(choice, return_code=return_code)

    def unfinished_counts(self, owner: str | None = None) -> tuple[int, int]:
        """(running or paused, pending or held) as this TUI last saw them; of ``owner``'s
        jobs only, when given."""
        if owner is None:
            return self.book.active_count(), self.book.waiting_count()
        mine = [job for job in self.book.jobs.values() if job.owner == owner]
        return (sum(1 for job in mine if job.status.is_active),
                sum(1 for job in mine if job.status in (JobStatus.PENDING, JobStatus.HELD)))

    async def _stop_mine(self) -> None:
        """Attached: ask the daemon to stop this user's unfinished jobs (it carries the stops
        out after we are gone: they are persisted intents there)."""
        mine = [job.job_id for job in self.book.jobs.values()
                if job.owner == self.default_owner and not job.status.is_final]
        self.notify(f"stopping {jobs_phrase(*self.unfinished_counts(self.default_owner))}…",
                    timeout=30)
        for job_id in mine:
            try:
                await self.backend.control("stop", job_id)
            except AprError as exc:  # e.g. it ended meanwhile
                log.warning("could not stop job %s on quit: %s", job_id, exc.message)


def make_app(backend: Backend, *, clock: Clock | None = None, notice: str | None = None,
             owner: str | None = None, settings_path: Path | None = None,
             **intervals: float) -> AprTui:
    """The app over ``backend`` (started on mount if it is not yet). Used by the CLI and
    by the tests; ``clock`` and ``owner`` are injectable so screenshots are reproducible.
    ``settings_path``: the settings file (the CLI passes the user's; None keeps settings
    in memory only)."""
    return AprTui(backend, clock=clock, notice=notice, owner=owner,
                  settings=SettingsFile.load(settings_path), **intervals)
