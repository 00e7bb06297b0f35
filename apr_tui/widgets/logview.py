"""The lines of a log, as a window on the file: at most ``max_lines`` lines, each with the
byte offset it starts at, so the pane can read what comes before or after by offset.

A Line API ``ScrollView``: only the rows on screen are rendered (and cached). Lines can be
cut at the width (scroll sideways) or wrapped; matches of the pane's search are highlighted
and the line of the current match is marked. When the view is scrolled to its top (or its
bottom, away from the end of the log) it posts ``NeedMore`` so the pane reads the next piece.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from rich.cells import cell_len, chop_cells
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

Spans = Callable[[str], list[tuple[int, int]]]

_CONTROL = {code: None for code in range(32) if code != 9} | {127: None}
"""Control characters are dropped from shown lines (tabs are expanded)."""


def clean(line: str) -> str:
    return line.expandtabs(8).translate(_CONTROL) if not line.isprintable() else line


class LogView(ScrollView, can_focus=True):
    """Lines with offsets; ``replace``, ``append`` and ``prepend`` keep it under
    ``max_lines`` by dropping lines from the far end."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {"log-view--match", "log-view--hit"}
    DEFAULT_CSS = """
    LogView {
        background: $surface;
        color: $foreground;
    }
    LogView > .log-view--match {
        background: $warning 60%;
        color: $text;
        text-style: bold;
    }
    LogView > .log-view--hit {
        background: $accent 25%;
    }
    """

    class NeedMore(Message):
        """Scrolled to an edge: read the lines before (``direction`` -1) or after (+1)."""

        def __init__(self, direction: int) -> None:
            super().__init__()
            self.direction = direction

    def __init__(self, max_lines: int, *, wrap: bool = False, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_lines = max_lines
        self.wrap = wrap
        self.lines: list[str] = []
        self.offsets: list[int] = []
        self.end_offset = 0
        """Where the byte after the last line is."""
        self.auto_scroll = True
        """Keep the end in view when lines are appended."""
        self.spans: Spans | None = None
        """What to highlight in each line (the pane's search)."""
        self.hit_line: int | None = None
        """Index of the line of the current match."""
        self._spans_version = 0
        self._rows: list[int] = [0]
        """Wrapped: ``_rows[i]`` is the first screen row of line ``i`` (one more entry)."""
        self._laid_out_for = -1
        self._widest = 0
        self._strips: LRUCache[tuple[Any, ...], Strip] = LRUCache(512)
        self._styles: dict[str, Style] = {}
        self._moving = False
        """Scrolling on our own (new lines, a jump): not the user reaching an edge."""

    # reading ---------------------------------------------------------------------------
    @property
    def line_count(self) -> int:
        return len(self.lines)

    @property
    def first_offset(self) -> int:
        return self.offsets[0] if self.offsets else self.end_offset

    def index_of_offset(self, offset: int) -> int | None:
        """The line starting at ``offset``, if held."""
        index = bisect_right(self.offsets, offset) - 1
        return index if index >= 0 and self.offsets[index] == offset else None

    def line_at_top(self) -> int:
        """Index of the first line shown (0 when empty)."""
        if not self.lines:
            return 0
        top = int(self.scroll_offset.y)
        return min(len(self.lines) - 1, bisect_right(self._rows, top) - 1 if self.wrap else top)

    # changing --------------------------------------------------------------------------
    def replace(self, lines: Sequence[str], offsets: Sequence[int], end: int) -> None:
        self.lines = [clean(line) for line in lines]
        self.offsets = list(offsets)
        self.end_offset = end
        self.hit_line = None
        self._trim(keep_end=True)
        self._relayout()
        if self.auto_scroll:
            self.stick_to_end()
        else:
            self._jump(0, 0)

    def clear(self) -> None:
        self.replace([], [], 0)

    def append(self, lines: Sequence[str], offsets: Sequence[int], end: int) -> None:
        """Lines that follow the last one; the end stays in view when ``auto_scroll``."""
        added = [clean(line) for line in lines]
        self.lines.extend(added)
        self.offsets.extend(offsets)
        self.end_offset = end
        extra = len(self.lines) - self.max_lines
        dropped_rows = 0
        if extra > 0:
            width = self._width()
            dropped_rows = sum(self._line_rows(line, width) for line in self.lines[:extra]) \
                if self.wrap else extra
            self._trim(keep_end=True)
            self._relayout()
            if not self.auto_scroll:  # what is shown stays in view
                self._jump(y=max(0, self.scroll_offset.y - dropped_rows))
        else:
            if self.wrap:
                width, total = self._laid_out_for, self._rows[-1]
                for line in added:
                    total += self._line_rows(line, width)
                    self._rows.append(total)
            self._note_widths(added)
            self._resize()
        if self.auto_scroll:
            self.stick_to_end()
        self.refresh()

    def stick_to_end(self) -> None:
        """The last line in view, now and once a pending layout has settled (``_jump``
        forces it: without, a log opened while following could stay at its top)."""
        self._jump(y=self.max_scroll_y)
        self.scroll_end(animate=False, immediate=True, force=True, x_axis=False)

    def prepend(self, lines: Sequence[str], offsets: Sequence[int]) -> None:
        """Lines that come before the first one; what is shown stays where it is."""
        if not lines:
            return
        top_rows = self.scroll_offset.y
        self.lines[:0] = [clean(line) for line in lines]
        self.offsets[:0] = offsets
        if self.hit_line is not None:
            self.hit_line += len(lines)
        self._trim(keep_end=False)
        self._relayout()
        self._jump(y=top_rows + self._row_of(len(lines)))

    def _trim(self, *, keep_end: bool) -> int:
        """Drop lines beyond ``max_lines`` from the start (``keep_end``) or the end; how many
        were dropped from the start."""
        extra = len(self.lines) - self.max_lines
        if extra <= 0:
            return 0
        if keep_end:
            del self.lines[:extra], self.offsets[:extra]
            if self.hit_line is not None:
                self.hit_line = self.hit_line - extra if self.hit_line >= extra else None
            return extra
        self.end_offset = self.offsets[self.max_lines]
        del self.lines[self.max_lines:], self.offsets[self.max_lines:]
        if self.hit_line is not None and self.hit_line >= self.max_lines:
            self.hit_line = None
        return 0

    def set_wrap(self, wrap: bool) -> None:
        if wrap == self.wrap:
            return
        top = self.line_at_top()
        self.wrap = wrap
        self._relayout()
        self._jump(0, self._row_of(top))

    def set_spans(self, spans: Spans | None) -> None:
        self.spans = spans
        self._spans_version += 1
        self._strips.clear()
        self.refresh()

    def show_line(self, index: int, column: int = 0) -> None:
        """Scroll so line ``index`` is in view (a third from the top), and its ``column``
        (characters) too when lines are cut."""
        height = max(1, self.size.height)
        self._jump(y=max(0, self._row_of(index) - height // 3))
        if not self.wrap:
            x = cell_len(self.lines[index][:column]) if 0 <= index < len(self.lines) else 0
            left, width = int(self.scroll_offset.x), max(1, self.size.width)
            if not left <= x < left + width - 8:
                self._jump(x=max(0, x - width // 3))
        self.refresh()

    def mark_hit(self, index: int | None) -> None:
        self.hit_line = index
        self._strips.clear()
        self.refresh()

    # layout ----------------------------------------------------------------------------
    def _width(self) -> int:
        return max(1, self.scrollable_content_region.width)

    def _line_rows(self, line: str, width: int) -> int:
        if not line:
            return 1
        if line.isascii():
            return -(-len(line) // width)
        return max(1, len(chop_cells(line, width)))

    def _relayout(self) -> None:
        self._laid_out_for = self._width()
        self._strips.clear()
        if self.wrap:
            width = self._laid_out_for
            rows = [0]
            total = 0
            for line in self.lines:
                total += self._line_rows(line, width)
                rows.append(total)
            self._rows = rows
        self._widest = 0
        self._note_widths(self.lines)
        self._resize()
        self.refresh()

    def _note_widths(self, lines: Sequence[str]) -> None:
        if self.wrap:
            return
        widest = max((len(line) for line in lines), default=0)
        self._widest = max(self._widest, widest)

    def _resize(self) -> None:
        if self.wrap:
            self.virtual_size = Size(self._width(), self._rows[-1])
        else:
            self.virtual_size = Size(self._widest, len(self.lines))

    def _row_of(self, index: int) -> int:
        if not self.wrap:
            return index
        return self._rows[max(0, min(index, len(self._rows) - 1))]

    def on_resize(self) -> None:
        if self._width() != self._laid_out_for:
            self._relayout()
        if self.auto_scroll:
            self.stick_to_end()

    # rendering -------------------------------------------------------------------------
    def _component(self, name: str) -> Style:
        style = self._styles.get(name)
        if style is None:
            style = self._styles[name] = self.get_component_rich_style(name)
        return style

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._styles.clear()
        self._strips.clear()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        if self._laid_out_for != self._width():
            self._relayout()
        row = scroll_y + y
        width = self.size.width
        if self.wrap:
            index = bisect_right(self._rows, row) - 1
            piece = row - self._rows[index] if 0 <= index < len(self.lines) else 0
        else:
            index, piece = row, 0
        if not 0 <= index < len(self.lines):
            return Strip.blank(width, self.rich_style)
        strip = self._line_strip(index, piece)
        if self.wrap:
            return strip.extend_cell_length(width, self.rich_style).crop(0, width)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _line_strip(self, index: int, piece: int) -> Strip:
        wrap_width = self._laid_out_for if self.wrap else 0
        hit = index == self.hit_line
        key = (self.offsets[index], self.lines[index], piece, wrap_width, hit,
               self._spans_version)
        strip = self._strips.get(key)
        if strip is not None:
            return strip
        line = self.lines[index]
        base = self.rich_style + self._component("log-view--hit") if hit else self.rich_style
        text = Text(line, style=base, end="")
        if self.spans is not None:
            match = self._component("log-view--match")
            for start, end in self.spans(line):
                text.stylize(match, start, end)
        if wrap_width:
            text = self._piece(text, line, piece, wrap_width)
        segments = [Segment(part.text, part.style) for part in
                    text.render(self.app.console)]
        strip = self._strips[key] = Strip(segments)
        return strip

    def _piece(self, text: Text, line: str, piece: int, width: int) -> Text:
        if line.isascii():
            cuts = list(range(width, len(line), width))
        else:
            cuts, pos = [], 0
            for part in chop_cells(line, width)[:-1]:
                pos += len(part)
                cuts.append(pos)
        parts = text.divide(cuts) if cuts else [text]
        return parts[piece] if piece < len(parts) else Text("")

    def _jump(self, x: float | None = None, y: float | None = None) -> None:
        """Scroll at once, as the view's own move (no ``NeedMore``). ``force``: right after
        the lines changed, Textual may not yet have decided a scrollbar is needed."""
        self._moving = True
        try:
            self.scroll_to(x, y, animate=False, immediate=True, force=True)
        finally:
            self._moving = False

    # edges -----------------------------------------------------------------------------
    def action_scroll_up(self) -> None:
        if self.scroll_offset.y <= 0:
            self.post_message(self.NeedMore(-1))
        else:
            super().action_scroll_up()

    def action_page_up(self) -> None:
        if self.scroll_offset.y <= 0:
            self.post_message(self.NeedMore(-1))
        else:
            super().action_page_up()

    def action_scroll_down(self) -> None:
        if self.scroll_offset.y >= self.max_scroll_y:
            self.post_message(self.NeedMore(1))
        else:
            super().action_scroll_down()

    def action_page_down(self) -> None:
        if self.scroll_offset.y >= self.max_scroll_y:
            self.post_message(self.NeedMore(1))
        else:
            super().action_page_down()

    def watch_scroll_y(self, old: float, new: float) -> None:
        super().watch_scroll_y(old, new)
        if self._moving:
            return
        if new < old and new <= 0 and self.lines:
            self.post_message(self.NeedMore(-1))
        elif new > old and new >= self.max_scroll_y and self.lines:
            self.post_message(self.NeedMore(1))
