"""Every key, generated from the bindings themselves so the list can never drift."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Static

TAB_KEYS: list[BindingType] = [
    Binding("tab", "focus_next", "Next pane: jobs, log, hosts (when shown)"),
    Binding("shift+tab", "focus_previous", "Previous pane"),
]
"""The screen's own focus keys (Textual binds them), listed so help shows them too."""
KEY_NAMES = {"slash": "/", "question_mark": "?", "left_square_bracket": "[",
             "right_square_bracket": "]", "escape": "esc", "pageup": "pgup",
             "pagedown": "pgdn", "asterisk": "*"}


def key_label(key: str) -> str:
    """Names people type, not glyphs: ``enter``, ``space``, ``/``, ``ctrl+q``."""
    return KEY_NAMES.get(key, key)


def key_rows(bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
    """(keys, what they do) per action; several keys for one action share a row."""
    rows = []
    for binding in Binding.make_bindings(bindings):
        rows.append((key_label(binding.key), binding.tooltip or binding.description))
    merged: dict[str, list[str]] = {}
    for keys, text in rows:
        merged.setdefault(text, []).append(keys)
    return [(" / ".join(keys), text) for text, keys in merged.items()]


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,q,question_mark", "dismiss", "Close"),
    ]

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")

    def compose(self) -> ComposeResult:
        from apr_tui.app import AprTui
        from apr_tui.screens.main import MainScreen
        from apr_tui.widgets.hosts import HostsPane
        from apr_tui.widgets.jobs import JobsTable
        from apr_tui.widgets.log import LogPane

        table: DataTable[str] = DataTable(cursor_type="none", zebra_stripes=True,
                                          id="help-keys")
        table.add_columns("key", "does")
        sections = (MainScreen.BINDINGS, JobsTable.BINDINGS, LogPane.BINDINGS,
                    HostsPane.BINDINGS, AprTui.BINDINGS, TAB_KEYS)
        for section in sections:
            table.add_rows(key_rows(section))
        with Vertical(classes="dialog help"):
            yield Static("[b]apr_tui keys[/b]  (esc, q or ? closes)", classes="question")
            yield table
            yield Static("Actions apply to the marked jobs when any are marked, else to the "
                         "job under the cursor. Keys that apply to none of them are greyed "
                         "out in the footer.", classes="hint")
