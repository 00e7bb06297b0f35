"""The log pane: the selected job's log, live, following the end unless told not to.

It reads through the backend it is given: the last lines of an attempt, then every
``POLL_SEC`` the complete lines appended since (a byte offset), like ``tail -f``.
Earlier attempts are one key away (``[`` and ``]``).
"""

from __future__ import annotations

import textwrap

from textual import work
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.reactive import reactive
from textual.widgets import Log

from apr_sched.errors import AprError
from apr_tui.backend import Backend

TAIL_LINES = 500
POLL_SEC = 0.5
MAX_LINES = 5000


class LogPane(Vertical):
    """Shows one attempt of one job; ``show`` switches, ``follow`` sticks to the end."""

    follow: reactive[bool] = reactive(True)

    def __init__(self, backend: Backend, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.backend = backend
        self.job_id: str | None = None
        self.attempt = 0
        self.latest_attempt = 0
        self.live = False
        """The attempt can still grow (its job is active or about to be)."""
        self._offset = 0
        self._generation = 0
        self._drained = False
        self._loading = False
        self.note: str | None = None
        """Shown instead of a log, wrapped to the pane (a waiting job has none yet)."""
        self.view = Log(max_lines=MAX_LINES, auto_scroll=True, id="log-lines")

    def compose(self) -> ComposeResult:
        yield self.view

    @property
    def lines(self) -> list[str]:
        return list(self.view.lines)

    def on_mount(self) -> None:
        self.set_interval(POLL_SEC, self._poll)
        self._update_title()

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
        self._generation += 1
        self._offset = 0
        self._drained = False
        self.view.clear()
        self._update_title()
        if job_id is not None:
            self._load(self._generation, job_id, wanted)

    def show_note(self, job_id: str, note: str) -> None:
        """Show ``note`` for ``job_id`` instead of a log (it has none yet); nothing is read."""
        if (job_id, note) == (self.job_id, self.note):
            return
        self.job_id, self.note, self.attempt, self.latest_attempt = job_id, note, 0, 0
        self.live = False
        self._generation += 1
        self._write_note()
        self._update_title()

    def _write_note(self) -> None:
        self.view.clear()
        width = max(20, self.view.scrollable_content_region.width - 1)
        self.view.write_lines(textwrap.wrap(self.note or "", width) or [""])

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
        if follow:
            self._to_end()
        self._update_title()

    def _update_title(self) -> None:
        if self.job_id is None:
            self.border_title = "log"
            return
        if self.note is not None:
            self.border_title = f"log · job {self.job_id} · no log yet"
            return
        title = f"log · job {self.job_id} · attempt {self.attempt}"
        if self.latest_attempt > 1:
            title += f" of {self.latest_attempt} ([ ] other attempts)"
        title += " · following" if self.follow else " · paused (f to follow)"
        self.border_title = title

    @work(group="log-load", exclusive=True, exit_on_error=False)
    async def _load(self, generation: int, job_id: str, attempt: int) -> None:
        self._loading = True
        try:
            tail = await self.backend.tail_log(job_id, TAIL_LINES, attempt)
        except AprError as exc:
            if generation == self._generation:
                self.view.write_line(f"(no log: {exc.message})")
            return
        finally:
            if generation == self._generation:
                self._loading = False
        if generation != self._generation:
            return
        self._offset = tail.offset
        self._write(tail.lines)

    def _poll(self) -> None:
        if self.job_id is None or self.note is not None or self._loading \
                or (self._drained and not self.live):
            return
        self._read_more(self._generation, self.job_id, self.attempt, self._offset)

    @work(group="log-poll", exclusive=True, exit_on_error=False)
    async def _read_more(self, generation: int, job_id: str, attempt: int, offset: int) -> None:
        try:
            more = await self.backend.read_log(job_id, offset, attempt)
        except AprError:
            return
        if generation != self._generation or offset != self._offset:
            return
        self._offset = more.offset
        if more.lines:
            self._write(more.lines)
        elif not self.live:
            self._drained = True

    def _write(self, lines: list[str]) -> None:
        if lines:
            # Log.write_lines scrolls only when the view was at its end already, which a
            # resize (a shorter pane) ends: following then froze. Following is ours to keep.
            self.view.write_lines(lines, scroll_end=False)
            if self.follow:
                self._to_end()

    def on_resize(self) -> None:
        if self.note is not None:
            self.call_after_refresh(self._write_note)
        elif self.follow:
            self.call_after_refresh(self._to_end)

    def _to_end(self) -> None:
        self.view.scroll_end(animate=False, immediate=True, x_axis=False)
