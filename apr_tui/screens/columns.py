"""The column chooser (``c``, like htop's F2 columns setup): which job columns show, in which
order. Enter keeps the choice (and the app saves it to the settings file)."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from apr_tui.columns import COLUMN_CATALOG, DEFAULT_COLUMNS

if TYPE_CHECKING:
    from apr_tui.app import AprTui


class ColumnList(OptionList):
    """The columns, one option each: enter keeps the choice, space shows/hides one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("enter", "screen.keep", "Keep this choice", show=False),
        Binding("space", "screen.toggle_column", "Show or hide the column", show=False),
    ]


class ColumnsScreen(ModalScreen[tuple[str, ...] | None]):
    """Returns the columns to show, in order, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "dismiss(None)", "Cancel"),
        Binding("K,shift+up", "move(-1)", "Move the column up"),
        Binding("J,shift+down", "move(1)", "Move the column down"),
        Binding("d", "defaults", "Back to the default columns"),
    ]

    def __init__(self, shown: tuple[str, ...]) -> None:
        super().__init__(classes="dialog-screen")
        self.order: list[str] = [*shown, *(k for k in COLUMN_CATALOG if k not in shown)]
        self.shown: set[str] = set(shown)
        self.problem = ""

    @property
    def choice(self) -> tuple[str, ...]:
        return tuple(key for key in self.order if key in self.shown)

    def compose(self) -> ComposeResult:
        path = cast("AprTui", self.app).settings_file.path
        where = f"saved in {path}" if path else "kept until you quit"
        with Vertical(classes="dialog columns"):
            yield Static("[b]Columns[/b] of the jobs table", classes="question")
            yield ColumnList(id="columns-list")
            yield Static("", id="columns-problem")
            yield Static(f"space shows or hides · K/J (shift+↑/↓) move · d defaults · "
                         f"enter keeps ({where}) · esc cancels. Narrow screens hide some "
                         "columns first.", classes="hint")

    def on_mount(self) -> None:
        self._show(0)

    def _prompt(self, key: str) -> Text:
        spec = COLUMN_CATALOG[key].spec
        text = Text("[x] " if key in self.shown else "[ ] ",
                    style="bold" if key in self.shown else "dim")
        text.append(f"{spec.label:<12}", style="bold" if key in self.shown else "")
        text.append(f" {spec.about}", style="dim")
        return text

    def _show(self, highlighted: int) -> None:
        options = self.query_one(ColumnList)
        options.set_options(Option(self._prompt(key), id=key) for key in self.order)
        options.highlighted = highlighted
        self.query_one("#columns-problem", Static).update(self.problem)

    @property
    def _cursor(self) -> int:
        return self.query_one(ColumnList).highlighted or 0

    def action_toggle_column(self) -> None:
        key = self.order[self._cursor]
        self.problem = ""
        if key not in self.shown:
            self.shown.add(key)
        elif len(self.shown) > 1:
            self.shown.discard(key)
        else:
            self.problem = "at least one column stays shown"
        self._show(self._cursor)

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.action_toggle_column()  # a click

    def action_move(self, delta: int) -> None:
        index = self._cursor
        target = index + delta
        if 0 <= target < len(self.order):
            self.order[index], self.order[target] = self.order[target], self.order[index]
            self._show(target)

    def action_defaults(self) -> None:
        self.order = [*DEFAULT_COLUMNS, *(k for k in COLUMN_CATALOG if k not in DEFAULT_COLUMNS)]
        self.shown = set(DEFAULT_COLUMNS)
        self.problem = ""
        self._show(0)

    def action_keep(self) -> None:
        self.dismiss(self.choice)
