"""The log pane: the selected job's log, live, following the end unless told not to.

It reads through the backend it is given: the last lines of an attempt, then every
``POLL_SEC`` the complete lines appended since (a byte offset), like ``tail -f``.
Earlier attempts are one key away (``[`` and ``]``).

With the pane selected (``tab`` or ``l``): ``/`` searches the whole log (``n``/``N`` next and
previous, wrapping around), ``e``/``E`` jump to the first/last error line (the settings'
error patterns), ``w`` wraps long lines, ``y`` copies the log's path. Nothing reads a log
whole: the search scans it in 1 MB chunks in a worker (``apr_tui.logsearch``), the view
holds at most ``MAX_LINES`` lines, and scrolling past either end reads the next piece by
offset. A match far from the end replaces the view with the lines around it; ``f`` goes
back to following the end.
"""

from __future__ import annotations

import textwrap
import time
from typing import ClassVar

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.message import Message
from textual.reactive import reactive
from textual.widgets import Input

from apr_sched.errors import AprError
from apr_tui.backend import Backend
from apr_tui.logsearch import (
    Finder,
    Hit,
    LiteralFinder,
    LogReader,
    PatternFinder,
    read_after,
    read_before,
    read_window,
    search_backward,
    search_forward,
)
from apr_tui.settings import LogSettings
from apr_tui.widgets.logview import LogView

TAIL_LINES = 500
POLL_SEC = 0.5
MAX_LINES = 5000
PROGRESS_EVERY_SEC = 0.1


class SearchBar(Input):
    """Where ``/`` text is typed; enter searches, escape closes. Posts ``Done``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Close the search bar", show=False),
    ]

    class Done(Message):
        def __init__(self, text: str | None) -> None:
            super().__init__()
            self.text = text

    def action_close(self) -> None:
        self.post_message(self.Done(None))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Done(self.value))


def _offsets_before(lines: list[str], end: int) -> list[int]:
    """Start offsets of ``lines``, which end at byte ``end`` (each had its newline)."""
    offsets = [0] * len(lines)
    pos = end
    for index in range(len(lines) - 1, -1, -1):
        pos -= len(lines[index].encode()) + 1
        offsets[index] = max(0, pos)
    return offsets


def _offsets_after(lines: list[str], start: int) -> list[int]:
    offsets, pos = [], start
    for line in lines:
        offsets.append(pos)
        pos += len(line.encode()) + 1
    return offsets


class LogPane(Vertical):
    """Shows one attempt of one job; ``show`` switches, ``follow`` sticks to the end."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # shown in the footer while the pane is selected, in place of the screen's / and n
        Binding("slash", "search", "Search", tooltip="Log pane: search the whole log "
                "(n/N: next/previous, wrapping around)"),
        Binding("n", "search_next(1)", "Next", tooltip="Log pane: next match"),
        Binding("N", "search_next(-1)", "Log pane: previous match", show=False),
        Binding("e", "error(1)", "Error", tooltip="Log pane: first error line "
                "(settings: log.error_patterns)"),
        Binding("E", "error(-1)", "Log pane: last error line", show=False),
        Binding("w", "toggle_wrap", "Wrap", tooltip="Log pane: wrap long lines, or cut "
                "them (remembered)"),
        Binding("y", "copy_path", "Log pane: show the log's path and copy it", show=False),
        Binding("escape", "stop_search", "Log pane: stop the search, then its highlight",
                show=False),
    ]

    follow: reactive[bool] = reactive(True)

    class WrapChanged(Message):
        """``w`` was pressed: remember it."""

        def __init__(self, wrap: bool) -> None:
            super().__init__()
            self.wrap = wrap

    def __init__(self, backend: Backend, settings: LogSettings | None = None, *,
                 id: str | None = None) -> None:
        super().__init__(id=id)
        self.backend = backend
        self.settings = settings or LogSettings()
        self.job_id: str | None = None
        self.attempt = 0
        self.latest_attempt = 0
        self.live = False
        """The attempt can still grow (its job is active or about to be)."""
        self.at_tail = True
        """The view ends where the log ends: new lines are appended as they come."""
        self._offset = 0
        self._generation = 0
        self._drained = False
        self._loading = False
        self._reader: LogReader | None = None
        self.note: str | None = None
        """Shown instead of a log, wrapped to the pane (a waiting job has none yet)."""
        self.finder: Finder | None = None
        """The search ``n``/``N`` go on with (typed text, or the error patterns)."""
        self.hit: Hit | None = None
        self.searching = False
        self.search_state = ""
        """For the title: ``searching 37 %``, ``not found``, ``wrapped``."""
        self._extending = False
        self.view = LogView(MAX_LINES, wrap=self.settings.wrap, id="log-lines")
        self.search_bar = SearchBar(placeholder="search the log: text (case-insensitive "
                                                "unless it has a capital); enter searches, "
                                                "esc closes", id="log-search")

    def compose(self) -> ComposeResult:
        yield self.view
        yield self.search_bar

    @property
    def lines(self) -> list[str]:
        return list(self.view.lines)

    def on_mount(self) -> None:
        self.set_interval(POLL_SEC, self._poll)
        self._update_title()

    # which log -------------------------------------------------------------------------
    def show(self, job_id: str | None, latest_attempt: int, live: bool,
             attempt: int | None = None) -> None:
        """Show ``attempt`` (default: the latest) of ``job_id``; reload only when that
        changes. ``live`` says whether the attempt may still grow."""
        if self.note is not None:
            self.note = None
            self.job_id = None  # a log is wanted now: load it
        self.live = live
        wanted = attempt or latest_attempt
        following_latest = self.attempt == self.latest_attempt
        if job_id == self.job_id and latest_attempt != self.latest_attempt and following_latest:
            wanted = latest_attempt
        self.latest_attempt = latest_attempt
        if job_id == self.job_id and wanted == self.attempt:
            if live:
                self._drained = False
            self._update_title()
            return
        self.job_id, self.attempt = job_id, wanted
        self._reader = None
        self._start_over()
        if job_id is not None:
            self._load(self._generation, job_id, wanted)

    def _start_over(self) -> None:
        """Forget the current view: a new log, or back to following its end."""
        self.workers.cancel_group(self, "log-search")
        self.workers.cancel_group(self, "log-extend")
        self.searching = self._extending = False
        self.hit, self.search_state = None, ""
        self._generation += 1
        self._offset = 0
        self._drained = False
        self.at_tail = True
        self.view.clear()
        self._update_title()

    def show_note(self, job_id: str, note: str) -> None:
        """Show ``note`` for ``job_id`` instead of a log (it has none yet); nothing is read."""
        if (job_id, note) == (self.job_id, self.note):
            return
        self.job_id, self.note, self.attempt, self.latest_attempt = job_id, note, 0, 0
        self.live = False
        self._reader = None
        self._start_over()
        self._write_note()
        self._update_title()

    def _write_note(self) -> None:
        width = max(20, self.view.scrollable_content_region.width - 1)
        lines = textwrap.wrap(self.note or "", width) or [""]
        self.view.replace(lines, list(range(len(lines))), len(lines))

    def step_attempt(self, delta: int) -> bool:
        """Show the previous (-1) or next (+1) attempt; False when there is none."""
        if self.job_id is None:
            return False
        target = self.attempt + delta
        if not 1 <= target <= self.latest_attempt:
            return False
        self.show(self.job_id, self.latest_attempt, self.live and target == self.latest_attempt,
                  attempt=target)
        return True

    def watch_follow(self, follow: bool) -> None:
        if not self.is_mounted:
            return
        self.view.auto_scroll = follow
        if follow and not self.at_tail and self.job_id is not None and self.note is None:
            self._start_over()  # a window far from the end is shown: read the end again
            self._load(self._generation, self.job_id, self.attempt)
        elif follow:
            self._to_end()
        self._update_title()

    def _update_title(self) -> None:
        if self.job_id is None:
            self.border_title = "log"
            return
        if self.note is not None:
            self.border_title = f"log · job {self.job_id} · no log yet"
            return
        title = f"log · job {self.job_id}"
        if self.finder is not None:
            title += f" · {self.finder.label}"
            if self.search_state:
                title += f": {self.search_state}"
        title += " · following" if self.follow else " · paused (f to follow)"
        if self.view.wrap:
            title += " · wrap"
        title += f" · attempt {self.attempt}"
        if self.latest_attempt > 1:
            title += f" of {self.latest_attempt} ([ ] other attempts)"
        self.border_title = title

    # reading the end -------------------------------------------------------------------
    @work(group="log-load", exclusive=True, exit_on_error=False)
    async def _load(self, generation: int, job_id: str, attempt: int) -> None:
        self._loading = True
        try:
            tail = await self.backend.tail_log(job_id, TAIL_LINES, attempt)
        except AprError as exc:
            if generation == self._generation:
                self.view.replace([f"(no log: {exc.message})"], [0], 0)
            return
        finally:
            if generation == self._generation:
                self._loading = False
        if generation != self._generation:
            return
        self._offset = tail.offset
        self.view.replace(tail.lines, _offsets_before(tail.lines, tail.offset), tail.offset)
        if self.follow:
            self._to_end()

    def _poll(self) -> None:
        if self.job_id is None or self.note is not None or self._loading \
                or not self.at_tail or (self._drained and not self.live):
            return
        self._read_more(self._generation, self.job_id, self.attempt, self._offset)

    @work(group="log-poll", exclusive=True, exit_on_error=False)
    async def _read_more(self, generation: int, job_id: str, attempt: int, offset: int) -> None:
        try:
            more = await self.backend.read_log(job_id, offset, attempt)
        except AprError:
            return
        if generation != self._generation or offset != self._offset or not self.at_tail:
            return
        self._offset = more.offset
        if more.lines:
            # Following: the end stays in view (a resize that shortened the pane must not
            # leave it behind; the view scrolls itself, not only when it was at the end).
            self.view.append(more.lines, _offsets_after(more.lines, offset), more.offset)
        elif not self.live:
            self._drained = True

    def on_resize(self) -> None:
        if self.note is not None:
            self.call_after_refresh(self._write_note)
        elif self.follow:
            self.call_after_refresh(self._to_end)

    def _to_end(self) -> None:
        self.view.stick_to_end()

    # reading elsewhere -----------------------------------------------------------------
    def _reader_now(self) -> LogReader | None:
        if self.job_id is None or self.note is not None:
            return None
        if self._reader is None:
            self._reader = self.backend.log_reader(self.job_id, self.attempt)
        return self._reader

    def on_log_view_need_more(self, event: LogView.NeedMore) -> None:
        event.stop()
        if self._extending or self._loading or self._reader_now() is None:
            return
        if event.direction < 0 and self.view.first_offset > 0:
            self._extending = True
            self._extend(self._generation, -1)
        elif event.direction > 0 and not self.at_tail:
            self._extending = True
            self._extend(self._generation, 1)

    @work(group="log-extend", exclusive=True, exit_on_error=False)
    async def _extend(self, generation: int, direction: int) -> None:
        """Read the piece before the first line shown, or after the last one."""
        reader = self._reader_now()
        try:
            if reader is None:
                return
            if direction < 0:
                window = await read_before(reader, self.view.first_offset)
                if generation == self._generation and window.lines:
                    if self.follow:
                        self.follow = False  # reading back: the end must not pull the view
                    self.view.prepend(window.lines, window.offsets)
            else:
                window = await read_after(reader, self.view.end_offset)
                if generation == self._generation:
                    self.view.append(window.lines, window.offsets, window.end)
                    if window.at_end:
                        self.at_tail, self._offset, self._drained = True, window.end, False
        except (AprError, OSError) as exc:
            self.notify(f"cannot read the log: {getattr(exc, 'message', exc)}",
                        severity="error", timeout=5)
        finally:
            if generation == self._generation:
                self._extending = False

    # search ----------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "stop_search":  # else esc is the screen's (marks, filter)
            return True if self.searching or self.finder is not None else None
        return True

    def action_search(self) -> None:
        bar = self.search_bar
        if isinstance(self.finder, LiteralFinder):
            bar.value = self.finder.text
        bar.add_class("-active")
        self.screen.set_focus(bar)  # now, not later: keys typed next go to the bar

    def on_search_bar_done(self, event: SearchBar.Done) -> None:
        event.stop()
        self.search_bar.remove_class("-active")
        self.screen.set_focus(self.view)
        if event.text:
            self._set_finder(LiteralFinder(event.text))
            self._search_from("view", 1)

    def _set_finder(self, finder: Finder) -> None:
        self.finder = finder
        self.hit = None
        self.view.mark_hit(None)
        self.view.set_spans(finder.spans)

    def action_search_next(self, direction: int) -> None:
        if self.finder is None:
            self.notify("no search yet: / searches the log, e and E find error lines",
                        timeout=4)
            return
        self._search_from("hit" if self.hit is not None else "view", direction)

    def action_error(self, direction: int) -> None:
        self._set_finder(PatternFinder(self.settings.error_patterns))
        self._search_from("start" if direction > 0 else "end", direction)

    def action_stop_search(self) -> None:
        if self.searching:
            self.workers.cancel_group(self, "log-search")
            self.searching = False
            self.search_state = "stopped"
        else:
            self.finder = self.hit = None
            self.search_state = ""
            self.view.mark_hit(None)
            self.view.set_spans(None)
        self._update_title()

    def _search_from(self, origin: str, direction: int) -> None:
        if self._reader_now() is None or self.finder is None:
            self.notify("this job has no log yet", timeout=3)
            return
        self.searching = True
        self.search_state = "searching"
        self._update_title()
        self._search(self._generation, self.finder, origin, direction)

    def _origin(self, origin: str, direction: int, size: int) -> int:
        """Where a search starts: the log's start or end, after (before) the current
        match, or the first line shown."""
        if origin == "start":
            return 0
        if origin == "end":
            return size
        if origin == "hit" and self.hit is not None:
            return min(size, self.hit.line_end + 1) if direction > 0 else self.hit.line_start
        view = self.view
        if not view.lines:
            return 0 if direction > 0 else size
        return min(size, view.offsets[view.line_at_top()])

    @work(group="log-search", exclusive=True, exit_on_error=False)
    async def _search(self, generation: int, finder: Finder, origin: str,
                      direction: int) -> None:
        reader = self._reader_now()
        if reader is None:
            return
        try:
            size = await reader.size()
            start = self._origin(origin, direction, size)
            hit, wrapped = await self._scan(reader, finder, start, size, direction,
                                            wrap=origin in ("view", "hit"))
        except (AprError, OSError) as exc:
            if generation == self._generation:
                self.searching = False
                self.search_state = f"cannot read: {getattr(exc, 'message', exc)}"
                self._update_title()
            return
        if generation != self._generation or finder is not self.finder:
            return
        if hit is None:
            self.search_state = "not found"
            self.notify(f"{finder.label}: not found in the log", timeout=3)
        else:
            self.search_state = "wrapped around" if wrapped else ""
            try:
                await self._show_hit(reader, hit, generation)
            except (AprError, OSError) as exc:
                self.search_state = f"cannot read: {getattr(exc, 'message', exc)}"
        self.searching = False  # only now: the match is on screen
        self._update_title()

    async def _scan(self, reader: LogReader, finder: Finder, start: int, size: int,
                    direction: int, *, wrap: bool) -> tuple[Hit | None, bool]:
        total = max(1, size)
        scanned = [0.0]

        def progress(pos: int) -> None:
            now = time.monotonic()
            if now - scanned[0] >= PROGRESS_EVERY_SEC:
                scanned[0] = now
                done = (pos - start if direction > 0 else start - pos) % (total + 1)
                self.search_state = f"searching {min(99, 100 * done // total)} %"
                self._update_title()

        if direction > 0:
            hit = await search_forward(reader, finder, start, size, progress)
            if hit is None and wrap and start > 0:
                return await search_forward(reader, finder, 0, start, progress), True
            return hit, False
        hit = await search_backward(reader, finder, start, 0, progress)
        if hit is None and wrap and start < size:
            return await search_backward(reader, finder, size, start, progress), True
        return hit, False

    async def _show_hit(self, reader: LogReader, hit: Hit, generation: int) -> None:
        """Mark the matching line and scroll it into view, reading the lines around it
        when the view does not hold it (unless another log was chosen meanwhile)."""
        view = self.view
        window = None
        if view.index_of_offset(hit.line_start) is None:
            window = await read_window(reader, hit.line_start)
            if generation != self._generation:
                return
        if self.follow:
            self.follow = False  # new lines must not pull the match out of view
        index = view.index_of_offset(hit.line_start)
        if index is None and window is not None:
            self._generation += 1  # polls in flight were for the old view
            view.replace(window.lines, window.offsets, window.end)
            self.at_tail = window.at_end
            self._offset, self._drained = window.end, False
            index = view.index_of_offset(hit.line_start)
        self.hit = hit
        if index is None:  # the log changed under us (trimmed, replaced)
            return
        view.mark_hit(index)
        spans = self.finder.spans(view.lines[index]) if self.finder is not None else []
        view.show_line(index, spans[0][0] if spans else 0)

    # wrap, path ------------------------------------------------------------------------
    def action_toggle_wrap(self) -> None:
        self.view.set_wrap(not self.view.wrap)
        self.post_message(self.WrapChanged(self.view.wrap))
        self._update_title()

    def action_copy_path(self) -> None:
        if self.job_id is None or self.note is not None:
            self.notify("this job has no log yet", timeout=3)
            return
        self._copy_path(self.job_id, self.attempt)

    @work(group="log-path", exclusive=True, exit_on_error=False)
    async def _copy_path(self, job_id: str, attempt: int) -> None:
        path = await self.backend.log_location(job_id, attempt)
        if path is None:
            self.notify(f"the log of job {job_id} is on the scheduler's machine; its path is "
                        f"not known here (apr-sched logs {job_id} reads it)", timeout=8)
            return
        self.app.copy_to_clipboard(path)
        self.notify(f"log path (copied to the clipboard): {path}", timeout=10)
