"""The main screen: summary, hosts, jobs, log; every single-key action lives here.

Actions apply to the marked jobs when some are marked (``space``), else to the job under
the cursor. ``check_action`` greys out keys that apply to none of them, so the footer shows
what can be done now. Anything the scheduler refuses becomes a notification with its
reason.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input

from apr_sched.models import Host, Job, JobStatus
from apr_tui.actions import APPLIES
from apr_tui.backend import Backend
from apr_tui.columns import Row, cell_builder, column_specs, sort_key
from apr_tui.query import QueryError
from apr_tui.rows import JobFilter, StatusFilter, id_order, outcome
from apr_tui.settings import Settings
from apr_tui.widgets.filter import FilterBar
from apr_tui.widgets.footer import KeysFooter
from apr_tui.widgets.hosts import HostsPane, hosts_trouble
from apr_tui.widgets.jobs import JobsTable
from apr_tui.widgets.log import LogPane
from apr_tui.widgets.summary import SummaryData, SummaryHeader

if TYPE_CHECKING:
    from apr_tui.app import AprTui

LOG_SWITCH_DELAY = 0.08
"""Holding a cursor key does not reload the log for every job passed over."""
FILTER_DELAY = 0.15
MAX_REASON_REFRESH = 30
"""Pending reasons change without events: re-read at most this many visible ones at a time."""


class MainScreen(Screen[None]):
    # compact layout classes for 80x24 (see app.tcss); Textual types these itself
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]  # noqa: RUF012
    BINDINGS: ClassVar[list[BindingType]] = [
        # footer order = importance; narrow terminals show it on two lines (app.tcss)
        Binding("p", "control('pause')", "Pause", tooltip="Pause: hold a pending job, "
                "SIGSTOP a running one"),
        Binding("r", "control('resume')", "Resume", tooltip="Resume a held or paused job"),
        Binding("s", "stop", "Stop", tooltip="Stop (asks first): SIGTERM, then SIGKILL"),
        Binding("R", "control('rerun')", "Rerun", tooltip="Rerun a finished job"),
        Binding("space", "mark", "Mark", key_display="␣", tooltip="Mark or unmark the job; "
                "actions apply to all marked jobs"),
        Binding("enter", "detail", "Detail", tooltip="Spec, attempts and event timeline"),
        Binding("f", "follow", "Follow", tooltip="Follow the end of the log, or stop"),
        Binding("question_mark", "help", "Help", tooltip="Every key"),
        Binding("q", "quit", "Quit", tooltip="Quit (asks when jobs are running or pending)"),
        Binding("slash", "filter", "Filter", tooltip="Filter: words (name, project, "
                "design, reason, command...), status:FAILED owner:alice host:apr03, "
                "!word excludes"),
        Binding("n", "new_job", "New", tooltip="Submit a new job"),
        Binding("b", "batch", "Batch", tooltip="Submit a batch of jobs from a JSON file"),
        Binding("h", "toggle_hosts", "Hosts", tooltip="Show (and select) or hide the hosts "
                "pane (hidden at first on short terminals); tab moves between the panes"),
        Binding("c", "columns", "Columns", tooltip="Choose and order the jobs table's "
                "columns (remembered in the settings file)"),
        Binding("l", "focus_log", "Select the log pane (/ search, n N, e E errors, w wrap, "
                "y path)", show=False),
        Binding("asterisk", "mark_all", "Mark every job shown", show=False),
        Binding("v", "invert_marks", "Invert the marks (among the jobs shown)", show=False),
        Binding("1", "view('all')", "View all jobs", show=False),
        Binding("2", "view('pending')", "View pending and held jobs", show=False),
        Binding("3", "view('running')", "View running and paused jobs", show=False),
        Binding("4", "view('failed')", "View failed and timed-out jobs", show=False),
        Binding("5", "view('done')", "View succeeded and stopped jobs", show=False),
        Binding("o", "sort_next", "Sort by the next column", show=False),
        Binding("O", "sort_reverse", "Reverse the sort order", show=False),
        Binding("left_square_bracket", "attempt(-1)", "Log of the earlier attempt",
                show=False),
        Binding("right_square_bracket", "attempt(1)", "Log of the later attempt", show=False),
        Binding("escape", "clear", "Clear the marks, else the filter", show=False),
    ]

    def __init__(self, backend: Backend, settings: Settings) -> None:
        super().__init__(id="main")
        # kept, not queried: the app's timers may call in while the screen is torn down
        self.summary = SummaryHeader(id="summary")
        self.hosts = HostsPane(id="hosts")
        self.column_keys = settings.columns
        self._cells_of = cell_builder(self.column_keys)
        self.jobs = JobsTable(column_specs(self.column_keys), sort_key=self._sort_value,
                              id="jobs")
        self.log_pane = LogPane(backend, settings.log, id="log")
        self.filter_bar = FilterBar(id="filter")
        self.job_filter = JobFilter()
        self.filter_error = ""
        """Why the filter bar's text cannot be read (the table keeps the last filter)."""
        self._log_timer: Timer | None = None
        self._filter_timer: Timer | None = None
        self._bindings_signature: tuple[object, ...] = ()

    @property
    def tui(self) -> AprTui:
        return cast("AprTui", self.app)

    def compose(self) -> ComposeResult:
        yield self.summary
        yield self.hosts
        yield self.jobs
        yield self.log_pane
        yield self.filter_bar
        yield KeysFooter(show_command_palette=False, compact=True)

    def on_mount(self) -> None:
        self.hosts.border_title = "hosts"
        self.hosts.border_subtitle = ""
        self.set_focus(self.jobs)
        self._update_title()
        self.update_summary()
        self.tui.start_following()

    # widgets -------------------------------------------------------------------------
    def _cells(self, job: Job) -> Row:
        book = self.tui.book
        return self._cells_of(job, book.since.get(job.job_id), book.notes.get(job.job_id))

    def show_columns(self, keys: tuple[str, ...]) -> None:
        """Show these columns, in this order (rows are made again)."""
        if keys == self.column_keys:
            return
        self.column_keys = keys
        self._cells_of = cell_builder(keys)
        self.jobs.set_columns(column_specs(keys))
        self.reload_jobs()

    def _sort_value(self, key: str, column: str) -> object:
        book = self.tui.book
        return sort_key(column, book.jobs[key], book.since.get(key))

    # data in (called by the app) -----------------------------------------------------
    def reload_jobs(self) -> None:
        """Show every job of the book that passes the filter (load, or a new filter)."""
        match, notes = self.job_filter.matches, self.tui.book.notes
        self.jobs.set_now(self.tui.clock())
        self.jobs.set_rows((job.job_id, self._cells(job)) for job in
                           self.tui.book.jobs.values() if match(job, notes.get(job.job_id)))
        self._after_change(None)

    def jobs_changed(self, job_ids: set[str]) -> None:
        """Touch only the rows of these jobs: update, add or drop them. New rows are added
        in submit order (``job_ids`` is a set: a batch came scrambled)."""
        book, table, match = self.tui.book, self.jobs, self.job_filter.matches
        upserts: list[tuple[str, Row]] = []
        removals: list[str] = []
        for job_id in sorted(job_ids, key=id_order):
            job = book.get(job_id)
            if job is not None and match(job, book.notes.get(job_id)):
                upserts.append((job_id, self._cells(job)))
            elif table.has_row(job_id):
                removals.append(job_id)
        table.upsert_rows(upserts)
        table.remove_rows(removals)
        self._after_change(job_ids)

    def _after_change(self, job_ids: set[str] | None) -> None:
        self._update_title()
        self.update_summary()
        cursor = self.jobs.cursor_key
        if job_ids is None or cursor in job_ids:
            self._show_log(now=True)
        self._refresh_bindings_if_changed()

    def show_hosts(self, hosts: list[Host]) -> None:
        self.hosts.update_hosts(hosts)

    def update_summary(self) -> None:
        tui = self.tui
        self.summary.data = SummaryData(
            where=tui.backend.description,
            mode=tui.backend.mode,
            http_url=tui.backend.http_url,
            now=tui.clock(),
            counts=dict(tui.book.counts),
            metrics=tui.metrics,
            connection=tui.connection,
            stale=tui.stale,
            host_trouble=hosts_trouble(tui.hosts),
        )

    def tick(self, now: datetime) -> None:
        self.jobs.set_now(now)
        self.update_summary()

    def visible_waiting_jobs(self) -> list[str]:
        book = self.tui.book
        return [key for key in self.jobs.visible_keys()
                if (job := book.get(key)) is not None
                and job.status is JobStatus.PENDING][:MAX_REASON_REFRESH]

    def _update_title(self) -> None:
        table = self.jobs
        title = f"jobs · {table.row_count:,} shown of {len(self.tui.book):,}"
        if view := self.job_filter.describe():
            title += f" · {view}"
        if table.sort_column:
            title += f" · sort {table.sort_column}{' desc' if table.sort_reverse else ''}"
        if table.marked:
            title += f" · {len(table.marked)} marked"
        if self.filter_error:
            title += f" · filter error: {self.filter_error}"
        table.border_title = title
        table.empty_message = self._empty_message()

    def _empty_message(self) -> str:
        """What an empty table says, so a filter that matches nothing says so."""
        if not len(self.tui.book):
            return "no jobs yet: n submits one, b a batch from a JSON file"
        text = self.job_filter.text.strip()
        view = self.job_filter.status
        if text:
            where = "" if view is StatusFilter.ALL else f" among {view.value} jobs"
            return f"no job matches /{text}{where} (esc clears the filter)"
        return f"no {view.value} jobs (1 shows all)"

    # selection -----------------------------------------------------------------------
    def target_jobs(self) -> list[Job]:
        """The marked jobs in table order, or else the job under the cursor."""
        book, table = self.tui.book, self.jobs
        if table.marked:
            return [job for key in sorted(table.marked, key=table.index_of)
                    if (job := book.get(key)) is not None]
        job = book.get(table.cursor_key)
        return [job] if job is not None else []

    def cursor_job(self) -> Job | None:
        return self.tui.book.get(self.jobs.cursor_key)

    def on_jobs_table_highlighted(self, event: JobsTable.Highlighted) -> None:
        self._show_log(now=False)
        self._refresh_bindings_if_changed()

    def on_jobs_table_sorted(self, event: JobsTable.Sorted) -> None:
        self._update_title()

    def on_jobs_table_selected(self, event: JobsTable.Selected) -> None:
        self.action_detail()

    def _show_log(self, *, now: bool) -> None:
        if self._log_timer is not None:
            self._log_timer.stop()
            self._log_timer = None
        if now:
            self._switch_log()
        else:
            self._log_timer = self.set_timer(LOG_SWITCH_DELAY, self._switch_log)

    def _switch_log(self) -> None:
        self._log_timer = None
        job = self.cursor_job()
        if job is None:
            self.log_pane.show(None, 0, False)
        elif job.status in (JobStatus.PENDING, JobStatus.HELD) and job.attempt == 1:
            # no log yet: the pane says in full why it waits (the REASON cell may be cut)
            self.log_pane.show_note(job.job_id, f"{job.status.value}: "
                                    f"{job.pending_reason or 'waiting for dispatch'}")
        else:
            live = not job.status.is_final and job.status is not JobStatus.HELD
            self.log_pane.show(job.job_id, job.attempt, live)
        self.log_pane.border_subtitle = self._state_line(job)

    def _state_line(self, job: Job | None) -> str:
        """The cursor job's state and why, uncut by column widths (the log's lower border)."""
        if job is None:
            return ""
        reason = job.pending_reason if job.status in (JobStatus.PENDING, JobStatus.HELD) \
            else self.tui.book.notes.get(job.job_id) or outcome(job)
        return f"job {job.job_id} {job.status.value}" + (f": {reason}" if reason else "")

    # keys that apply ---------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("control", "stop"):
            name = str(parameters[0]) if parameters else "stop"
            applies = APPLIES[name]
            return True if any(status in applies for status in self._target_statuses()) \
                else None
        if action in ("mark_all", "invert_marks"):
            return True if self.jobs.row_count else None
        if action in ("detail", "mark", "follow"):
            return True if self.cursor_job() is not None else None
        if action == "attempt":
            job = self.cursor_job()
            return True if job is not None and job.attempt > 1 else None
        if action == "clear":
            return True if self.jobs.marked or self.job_filter.text.strip() else None
        return True

    def _target_statuses(self) -> set[JobStatus]:
        """The states of the jobs an action would apply to (no need to order them)."""
        book, table = self.tui.book, self.jobs
        if table.marked:
            return {job.status for key in table.marked if (job := book.get(key)) is not None}
        job = book.get(table.cursor_key)
        return {job.status} if job is not None else set()

    def _refresh_bindings_if_changed(self) -> None:
        """Footer work only when what applies has changed, not on every cursor step."""
        cursor = self.cursor_job()
        signature = (tuple(sorted(self._target_statuses())), cursor is not None,
                     bool(self.jobs.marked), bool(self.jobs.row_count),
                     cursor is not None and cursor.attempt > 1)
        if signature != self._bindings_signature:
            self._bindings_signature = signature
            self.refresh_bindings()

    # actions -------------------------------------------------------------------------
    def action_control(self, name: str) -> None:
        self.tui.request_action(name, self.target_jobs(), from_marks=bool(self.jobs.marked))

    def action_stop(self) -> None:
        self.action_control("stop")

    def action_mark(self) -> None:
        key = self.jobs.cursor_key
        if key is None:
            return
        self.jobs.toggle_mark(key)
        self.jobs.action_cursor(1)
        self._update_title()
        self._refresh_bindings_if_changed()

    def action_mark_all(self) -> None:
        self.jobs.mark_all()
        self._marks_changed()

    def action_invert_marks(self) -> None:
        self.jobs.invert_marks()
        self._marks_changed()

    def clear_marks(self) -> None:
        self.jobs.clear_marks()
        self._marks_changed()

    def _marks_changed(self) -> None:
        self._update_title()
        self._refresh_bindings_if_changed()

    def action_clear(self) -> None:
        """esc: the marks first (as before), then the text filter."""
        if self.jobs.marked:
            self.clear_marks()
        elif self.job_filter.text:
            self.clear_filter()

    def clear_filter(self) -> None:
        bar = self.filter_bar
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        with bar.prevent(Input.Changed):
            bar.value = ""
        bar.remove_class("-active", "-invalid")
        self.filter_error = ""
        self.job_filter = JobFilter(self.job_filter.status, "")
        self.reload_jobs()

    def action_view(self, name: str) -> None:
        self.job_filter = JobFilter(StatusFilter(name), self.job_filter.text)
        self.reload_jobs()
        if text := self.job_filter.text.strip():
            self.notify(f"filter /{text} still applies (esc clears it)", timeout=3)

    def action_sort_next(self) -> None:
        table, keys = self.jobs, self.column_keys
        index = keys.index(table.sort_column) + 1 if table.sort_column in keys else 0
        column = keys[index] if index < len(keys) else None
        table.sort_by(column, table.sort_reverse if column else False)
        self._update_title()

    def action_sort_reverse(self) -> None:
        table = self.jobs
        table.sort_by(table.sort_column or "id", not table.sort_reverse)
        self._update_title()

    def action_filter(self) -> None:
        bar = self.filter_bar
        bar.add_class("-active")
        self.set_focus(bar)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "filter":
            return
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._filter_timer = self.set_timer(FILTER_DELAY, self._apply_text_filter)

    def _apply_text_filter(self) -> None:
        """Take the filter bar's text; text that cannot be read keeps the last filter and
        says what is wrong (title and bar)."""
        self._filter_timer = None
        text = self.filter_bar.value
        try:
            wanted = JobFilter(self.job_filter.status, text)
        except QueryError as exc:
            self.filter_error = str(exc)
        else:
            self.filter_error = ""
            if text != self.job_filter.text:
                self.job_filter = wanted
                self.reload_jobs()
        self.filter_bar.set_class(bool(self.filter_error), "-invalid")
        self._update_title()

    def on_filter_bar_closed(self, event: FilterBar.Closed) -> None:
        bar = self.filter_bar
        if event.cleared or not bar.value:
            bar.remove_class("-active")
        if self._filter_timer is not None:
            self._filter_timer.stop()
        self._apply_text_filter()
        self.set_focus(self.jobs)

    def action_detail(self) -> None:
        from apr_tui.screens.detail import JobDetailScreen

        job = self.cursor_job()
        if job is not None:
            self.app.push_screen(JobDetailScreen(job.job_id))

    def action_toggle_hosts(self) -> None:
        """Hidden: show the hosts pane and select it; shown: hide it."""
        shown = self.hosts.display
        self.set_class(not shown, "-show-hosts")
        self.set_class(shown, "-hide-hosts")
        if shown:
            if self.focused is self.hosts or self.focused is None:
                self.set_focus(self.jobs)
        else:
            self.call_after_refresh(self.set_focus, self.hosts)

    def action_focus_log(self) -> None:
        self.set_focus(self.log_pane.view)

    def on_log_pane_wrap_changed(self, event: LogPane.WrapChanged) -> None:
        self.tui.update_settings(self.tui.settings.with_wrap(event.wrap))

    def action_columns(self) -> None:
        from apr_tui.screens.columns import ColumnsScreen

        def chosen(keys: tuple[str, ...] | None) -> None:
            if keys:
                self.tui.update_settings(self.tui.settings.with_columns(keys))
                self.show_columns(keys)

        self.app.push_screen(ColumnsScreen(self.column_keys), chosen)

    def filter_text(self, text: str) -> None:
        """Set the ``/`` filter to ``text`` (as if typed), shown in the bar and the title."""
        bar = self.filter_bar
        if self._filter_timer is not None:
            self._filter_timer.stop()
            self._filter_timer = None
        with bar.prevent(Input.Changed):
            bar.value = text
        bar.set_class(bool(text), "-active")
        self._apply_text_filter()

    def on_hosts_pane_show_jobs(self, event: HostsPane.ShowJobs) -> None:
        self.filter_text(f"host:{event.host_id}")
        self.set_focus(self.jobs)
        self.notify(f"jobs on {event.host_id} (esc clears the filter)", timeout=3)

    def on_hosts_pane_describe(self, event: HostsPane.Describe) -> None:
        from apr_tui.screens.host_detail import HostDetailScreen

        self.app.push_screen(HostDetailScreen(event.host_id))

    def action_follow(self) -> None:
        pane = self.log_pane
        pane.follow = not pane.follow

    def action_attempt(self, delta: int) -> None:
        if not self.log_pane.step_attempt(delta):
            self.notify("no such attempt", timeout=2)

    def action_new_job(self) -> None:
        from apr_tui.screens.new_job import NewJobScreen

        def submitted(job: Job | None) -> None:
            if job is None:
                return
            self.tui.book.upsert(job)
            self.tui.jobs_changed([job.job_id])
            self.jobs.move_cursor_to_key(job.job_id)
            self.notify(f"submitted job {job.job_id}", timeout=3)

        self.app.push_screen(NewJobScreen(owner=self.tui.default_owner), submitted)

    def action_batch(self) -> None:
        from apr_tui.screens.batch import BatchScreen

        def submitted(job_ids: list[str] | None) -> None:
            if job_ids:
                span = job_ids[0] if len(job_ids) == 1 else f"{job_ids[0]}-{job_ids[-1]}"
                self.notify(f"queued {len(job_ids)} job(s): {span}", timeout=4)

        self.app.push_screen(BatchScreen(), submitted)

    def action_help(self) -> None:
        from apr_tui.screens.help import HelpScreen

        self.app.push_screen(HelpScreen())

    def action_quit(self) -> None:
        self.request_quit()

    def request_quit(self) -> None:
        """With jobs running or pending, ask (in-process and attached alike); else quit.
        Attached, detaching only disconnects, and stopping stops the user's own jobs."""
        from apr_tui.screens.quit import QuitScreen

        tui = self.tui
        if isinstance(self.app.screen, QuitScreen):
            return
        attached = tui.backend.attached
        running, waiting = tui.unfinished_counts()
        if not running and not waiting:
            tui.leave("disconnect" if attached else "detach")
            return

        def decided(choice: str | None) -> None:
            if choice == "detach":
                tui.leave("disconnect" if attached else "detach")
            elif choice == "stop":
                tui.leave("stop")

        self.app.push_screen(QuitScreen(
            running, waiting, hands_off=tui.backend.hands_off,
            attached_to=tui.backend.description if attached else None,
            mine=tui.unfinished_counts(tui.default_owner)), decided)
