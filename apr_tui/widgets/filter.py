"""The ``/`` filter bar: text typed here narrows the jobs table as you type
(``apr_tui.query`` reads it)."""

from __future__ import annotations

from typing import ClassVar

from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Input


class FilterBar(Input):
    """Hidden until ``/``; enter keeps the filter, escape clears it. Posts ``Closed``."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    class Closed(Message):
        """The bar is done: ``cleared`` when escape emptied it."""

        def __init__(self, cleared: bool) -> None:
            super().__init__()
            self.cleared = cleared

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(placeholder="filter: words, status:FAILED owner:alice host:apr03 "
                                     "project: design: name: id:, !negates (enter keeps, "
                                     "esc clears)", id=id)

    def action_clear_filter(self) -> None:
        self.value = ""
        self.post_message(self.Closed(cleared=True))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.post_message(self.Closed(cleared=False))
