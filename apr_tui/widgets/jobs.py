"""The jobs table: keyed rows updated in place, rendered line by line.

Why not ``DataTable``: any ``update_cell`` there invalidates every cached row and its
line-offset index, so each repaint re-renders all visible cells and walks all rows; with
10,000 rows and 50 changes a second that is about 125 ms p50 / 260-300 ms p95 from key
press to screen on a 2-core machine (``bench/bench_tui.py`` measures it as the floor). Here rows are
keyed, each row has a version, only changed rows are re-rendered, and only the lines they
occupy are refreshed; a key press redraws two lines.

Rows are tuples of ``Cell``/``Since`` (``apr_tui.rows``). ``Since`` cells are formatted at
render time against ``now``, so a ticking clock repaints only what is visible.
Messages up: ``Highlighted`` when the cursor lands on another job, ``Selected`` on a
double click, ``Sorted`` when the sort changed (the title names it).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, ClassVar

from rich.cells import cell_len, set_cell_size
from rich.segment import Segment
from rich.style import Style
from textual import events
from textual.binding import Binding, BindingType
from textual.cache import LRUCache
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from apr_tui.columns import ColumnSpec, Row, layout_widths
from apr_tui.rows import Cell, Since, resolve_style

SortKey = Callable[[str, str], Any]
"""(row key, column key) -> a sortable value."""

MARK = "●"


class JobsTable(ScrollView, can_focus=True):
    """Rows keyed by job id; ``upsert_rows``/``remove_rows`` change only what differs."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "jobs-table--header",
        "jobs-table--cursor",
        "jobs-table--marked",
    }
    DEFAULT_CSS = """
    JobsTable {
        background: $surface;
        color: $foreground;
    }
    JobsTable > .jobs-table--header {
        text-style: bold;
        background: $panel;
        color: $foreground;
    }
    JobsTable > .jobs-table--cursor {
        background: $block-cursor-blurred-background;
    }
    JobsTable:focus > .jobs-table--cursor {
        background: $block-cursor-background;
        color: $block-cursor-foreground;
    }
    JobsTable > .jobs-table--marked {
        background: $secondary 30%;
        text-style: bold;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First job", show=False),
        Binding("end", "edge(1)", "Last job", show=False),
        Binding("left", "scroll_left", "Scroll left", show=False),
        Binding("right", "scroll_right", "Scroll right", show=False),
    ]

    class Highlighted(Message):
        """The cursor is on another job (or on none)."""

        def __init__(self, job_id: str | None) -> None:
            super().__init__()
            self.job_id = job_id

    class Sorted(Message):
        """The sort changed (a header was clicked, or ``sort_by`` was called)."""

    class Selected(Message):
        """A job was double-clicked."""

        def __init__(self, job_id: str) -> None:
            super().__init__()
            self.job_id = job_id

    def __init__(self, columns: Sequence[ColumnSpec], *, sort_key: SortKey | None = None,
                 name: str | None = None, id: str | None = None,
                 classes: str | None = None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.columns: tuple[ColumnSpec, ...] = ()
        self._column_index: dict[str, int] = {}
        self._growing: list[int] = []
        self._content: list[int] = []
        """The longest text seen per column (growing columns only; 0 for the others)."""
        self._sort_key_of = sort_key
        self.sort_column: str | None = None
        self.sort_reverse = False
        self.now = datetime.now(UTC)
        self._rows: dict[str, Row] = {}
        self._versions: dict[str, int] = {}
        self._order: list[str] = []
        self._position: dict[str, int] = {}
        self._reorder = False
        self.marked: set[str] = set()
        self.cursor_key: str | None = None
        self._cursor_index = 0
        self._widths: list[int] = []
        self._set_columns(columns)
        self._strips: LRUCache[tuple[Any, ...], Strip] = LRUCache(1024)
        self._styles: dict[str, Style] = {}
        self._now_second = 0
        self._laid_out_for = -1
        self.empty_message = ""
        """Shown (dim) where the first row would be when there is none."""

    # reading ---------------------------------------------------------------------------
    @property
    def row_count(self) -> int:
        return len(self._order)

    @property
    def cursor_row(self) -> int:
        return self._cursor_index

    @property
    def keys(self) -> list[str]:
        """Row keys in display order."""
        return list(self._order)

    def has_row(self, key: str) -> bool:
        return key in self._rows

    def get_row(self, key: str) -> Row:
        return self._rows[key]

    def index_of(self, key: str) -> int:
        """Where the row is shown (top is 0); -1 when it is not."""
        return self._position.get(key, -1)

    def row_version(self, key: str) -> int:
        """How many times the row's cells changed since it was added (0: never)."""
        return self._versions[key]

    def cell_text(self, key: str, column: str) -> str:
        """What the cell shows now (``Since`` cells rendered against ``now``)."""
        cell = self._rows[key][self._column_index[column]]
        return (cell.render(self.now) if isinstance(cell, Since) else cell).text

    def column_width(self, column: str) -> int:
        """Cells the column has at the current width (0: hidden)."""
        return self._widths[self._column_index[column]]

    def visible_keys(self) -> list[str]:
        top = int(self.scroll_offset.y)
        return self._order[top: top + max(0, self.size.height - 1)]

    # changing --------------------------------------------------------------------------
    def set_rows(self, rows: Iterable[tuple[str, Row]]) -> None:
        """Replace every row (a new filter, or a full reload); the cursor stays on its job
        when that job is still shown."""
        self._rows = dict(rows)
        self._versions = dict.fromkeys(self._rows, 0)
        self._order = list(self._rows)
        self.marked &= self._rows.keys()
        self._strips.clear()
        self._content = [0] * len(self.columns)
        self._measure(self._rows.values())
        self._reorder = True
        self._layout_columns(self._laid_out_for)
        self._settle(full=True)

    def set_columns(self, columns: Sequence[ColumnSpec]) -> None:
        """Show other columns; rows must then be given again (``set_rows``) in their order.
        A sort by a column no longer shown is dropped."""
        self._set_columns(columns)
        if self.sort_column not in self._column_index:
            self.sort_column, self.sort_reverse = None, False
        self._rows = {}
        self._strips.clear()

    def _set_columns(self, columns: Sequence[ColumnSpec]) -> None:
        self.columns = tuple(columns)
        self._column_index = {c.key: i for i, c in enumerate(self.columns)}
        self._growing = [i for i, c in enumerate(self.columns) if c.grow]
        self._content = [0] * len(self.columns)
        self._widths = layout_widths(self.columns, 160, self._content)

    def _measure(self, rows: Iterable[Row]) -> bool:
        """Note the longest text of each growing column; True when one got longer than its
        column is now (then the layout may give it more room)."""
        content, growing, widths = self._content, self._growing, self._widths
        wider = False
        for cells in rows:
            for index in growing:
                cell = cells[index]
                length = len(cell.text) if isinstance(cell, Cell) else 0
                if length > content[index]:
                    content[index] = length
                    wider = wider or length > widths[index]
        return wider

    def upsert_rows(self, rows: Iterable[tuple[str, Row]]) -> None:
        """Add new rows and change the cells that differ; repaint only changed lines."""
        sort_index = self._column_index.get(self.sort_column or "", -1)
        changed: list[str] = []
        added = False
        for key, cells in rows:
            old = self._rows.get(key)
            if old is None:
                self._position[key] = len(self._order)
                self._order.append(key)
                self._versions[key] = 0
                added = True
                self._reorder = self._reorder or self.sort_column is not None
            elif old == cells:
                continue
            else:
                self._versions[key] += 1
                if sort_index >= 0 and old[sort_index] != cells[sort_index]:
                    self._reorder = True
            self._rows[key] = cells
            changed.append(key)
        if self._measure(self._rows[key] for key in changed) and self._laid_out_for > 0:
            self._layout_columns(self._laid_out_for)
        if self._reorder:
            self._settle(full=True)
            return
        if added:
            self._settle(full=False)
        top = int(self.scroll_offset.y)
        bottom = top + self.size.height
        for key in changed:
            position = self._position.get(key)
            if position is not None and top <= position < bottom:
                self.refresh_line(position + 1)

    def remove_rows(self, keys: Iterable[str]) -> None:
        gone = {key for key in keys if key in self._rows}
        if not gone:
            return
        for key in gone:
            del self._rows[key]
            del self._versions[key]
        self.marked -= gone
        self._order = [key for key in self._order if key not in gone]
        self._reorder = True
        self._settle(full=True)

    def sort_by(self, column: str | None, reverse: bool = False) -> None:
        """Sort rows by ``column`` (None: the order they were added)."""
        self.sort_column, self.sort_reverse = column, reverse
        self._reorder = True
        self._strips.clear()
        self._settle(full=True)
        self.post_message(self.Sorted())

    def toggle_mark(self, key: str) -> None:
        if key in self.marked:
            self.marked.discard(key)
        elif key in self._rows:
            self.marked.add(key)
        self._refresh_key(key)

    def clear_marks(self) -> None:
        keys, self.marked = self.marked, set()
        for key in keys:
            self._refresh_key(key)

    def mark_all(self) -> None:
        """Mark every row shown."""
        self.marked = set(self._order)
        self.refresh()

    def invert_marks(self) -> None:
        """Marked rows become unmarked and the others marked."""
        self.marked = set(self._order) - self.marked
        self.refresh()

    def set_now(self, now: datetime) -> None:
        """Advance the clock the ``Since`` cells are shown against; repaints visible rows."""
        self.now = now
        second = int(now.timestamp())
        if second != self._now_second:
            self._now_second = second
            self.refresh()

    # cursor ----------------------------------------------------------------------------
    def move_cursor_to(self, index: int) -> None:
        if not self._order:
            self._set_cursor(0, None)
            return
        index = max(0, min(index, len(self._order) - 1))
        self._set_cursor(index, self._order[index])
        self._scroll_to_cursor()

    def move_cursor_to_key(self, key: str) -> bool:
        position = self._position.get(key)
        if position is None:
            return False
        self.move_cursor_to(position)
        return True

    def action_cursor(self, delta: int) -> None:
        self.move_cursor_to(self._cursor_index + delta)

    def action_page(self, direction: int) -> None:
        self.move_cursor_to(self._cursor_index + direction * max(1, self.size.height - 2))

    def action_edge(self, end: int) -> None:
        self.move_cursor_to(len(self._order) - 1 if end else 0)

    def _set_cursor(self, index: int, key: str | None) -> None:
        old_index, old_key = self._cursor_index, self.cursor_key
        self._cursor_index, self.cursor_key = index, key
        if old_index != index:
            self._refresh_index(old_index)
            self._refresh_index(index)
        if old_key != key:
            self.post_message(self.Highlighted(key))

    def _scroll_to_cursor(self) -> None:
        visible = max(1, self.size.height - 1)
        top = int(self.scroll_offset.y)
        index = self._cursor_index
        if index < top:
            self.scroll_to(y=index, animate=False, immediate=True)
        elif index >= top + visible:
            self.scroll_to(y=index - visible + 1, animate=False, immediate=True)

    # layout and rendering --------------------------------------------------------------
    def _settle(self, *, full: bool) -> None:
        """After rows came, went or moved: order, positions, cursor, size, repaint."""
        if self._reorder:
            self._reorder = False
            if self.sort_column is not None and self._sort_key_of is not None:
                column, key_of = self.sort_column, self._sort_key_of
                self._order.sort(key=lambda key: key_of(key, column), reverse=self.sort_reverse)
            self._position = {key: index for index, key in enumerate(self._order)}
        self._restore_cursor()
        self._update_virtual_size()
        if full:
            self.refresh()

    def _restore_cursor(self) -> None:
        key = self.cursor_key
        if key is not None and key in self._position:
            index = self._position[key]
            if index != self._cursor_index:
                self._cursor_index = index
                self._scroll_to_cursor()
            return
        self.move_cursor_to(self._cursor_index)

    def _update_virtual_size(self) -> None:
        self.virtual_size = Size(self._total_width(), len(self._order) + 1)

    def _total_width(self) -> int:
        return 2 + sum(w + 1 for w in self._widths if w)

    def on_resize(self, event: events.Resize) -> None:
        self._layout_columns(self.scrollable_content_region.width)

    def _layout_columns(self, width: int) -> None:
        """Narrow screens hide the least useful columns; spare width goes to the columns
        whose values are cut, then to the fill column."""
        if width <= 0:
            return
        self._laid_out_for = width
        widths = layout_widths(self.columns, width, self._content)
        if widths != self._widths:
            self._widths = widths
            self._strips.clear()
            self._update_virtual_size()
            self.refresh()

    def _refresh_key(self, key: str) -> None:
        position = self._position.get(key)
        if position is not None:
            self._refresh_index(position)

    def _refresh_index(self, index: int) -> None:
        top = int(self.scroll_offset.y)
        if top <= index < top + self.size.height:
            self.refresh_line(index + 1)

    def _style(self, spec: str) -> Style:
        style = self._styles.get(spec)
        if style is None:
            resolved = resolve_style(spec, dark=self.app.current_theme.dark)
            style = self._styles[spec] = Style.parse(resolved) if resolved else Style()
        return style

    def on_mount(self) -> None:
        self.app.theme_changed_signal.subscribe(self, self._theme_changed)

    def _theme_changed(self, _theme: object) -> None:
        """State colours differ between dark and light themes: draw every row again."""
        self._styles.clear()
        self._strips.clear()
        self.refresh()

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.size.width
        if self._laid_out_for != self.scrollable_content_region.width:
            self._layout_columns(self.scrollable_content_region.width)
        if y == 0:
            strip = self._header_strip()
        else:
            index = scroll_y + y - 1
            if not self._order and y == 1 and self.empty_message:
                return Strip([Segment("  " + self.empty_message,
                                      self.rich_style + Style(dim=True))]).crop_extend(
                    0, width, self.rich_style)
            if index >= len(self._order):
                return Strip.blank(width, self.rich_style)
            strip = self._row_strip(index)
        return strip.crop_extend(scroll_x, scroll_x + width, self.rich_style)

    def _header_strip(self) -> Strip:
        style = self.get_component_rich_style("jobs-table--header")
        key = ("header", self.sort_column, self.sort_reverse, tuple(self._widths), style)
        strip = self._strips.get(key)
        if strip is None:
            segments = [Segment("  ", style)]
            for column, width in zip(self.columns, self._widths, strict=True):
                if not width:
                    continue
                label = column.label
                if column.key == self.sort_column:
                    label += "▼" if self.sort_reverse else "▲"
                segments.append(Segment(_fit(label, width, column.justify) + " ", style))
            strip = self._strips[key] = Strip(segments, self._total_width())
        return strip

    def _row_strip(self, index: int) -> Strip:
        key = self._order[index]
        cursor = index == self._cursor_index
        marked = key in self.marked
        cache_key = (key, self._versions[key], cursor, marked, self.has_focus, self._now_second,
                     tuple(self._widths))
        strip = self._strips.get(cache_key)
        if strip is not None:
            return strip
        base = self.rich_style
        if marked:
            base += self.get_component_rich_style("jobs-table--marked")
        if cursor:
            base += self.get_component_rich_style("jobs-table--cursor")
        segments = [Segment(MARK + " " if marked else "  ", base)]
        for column, width, value in zip(self.columns, self._widths, self._rows[key],
                                        strict=True):
            if not width:
                continue
            cell = value.render(self.now) if isinstance(value, Since) else value
            style = base + self._style(cell.style) if cell.style else base
            segments.append(Segment(_fit(cell.text, width, column.justify), style))
            segments.append(Segment(" ", base))
        strip = self._strips[cache_key] = Strip(segments, self._total_width())
        return strip

    def on_focus(self, event: events.Focus) -> None:
        self._refresh_index(self._cursor_index)

    def on_blur(self, event: events.Blur) -> None:
        self._refresh_index(self._cursor_index)

    # mouse -----------------------------------------------------------------------------
    def on_click(self, event: events.Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        if offset.y == 0:
            column = self._column_at(offset.x + int(self.scroll_offset.x))
            if column is not None:
                reverse = not self.sort_reverse if column == self.sort_column else False
                self.sort_by(column, reverse)
            return
        index = int(self.scroll_offset.y) + offset.y - 1
        if 0 <= index < len(self._order):
            self.move_cursor_to(index)
            if event.chain >= 2 and self.cursor_key is not None:
                self.post_message(self.Selected(self.cursor_key))

    def _column_at(self, x: int) -> str | None:
        left = 2
        for column, width in zip(self.columns, self._widths, strict=True):
            if not width:
                continue
            if left <= x < left + width + 1:
                return column.key
            left += width + 1
        return None


def _fit(text: str, width: int, justify: str = "left") -> str:
    """Pad or cut ``text`` to exactly ``width`` cells, with an ellipsis when cut."""
    if width <= 0:
        return ""
    text = text.replace("\n", " ")
    length = cell_len(text)
    if length > width:
        return set_cell_size(text, width - 1) + "…"
    if justify == "right":
        return " " * (width - length) + text
    return text + " " * (width - length)


def blank_cells(count: int) -> Row:
    return tuple(Cell("") for _ in range(count))
