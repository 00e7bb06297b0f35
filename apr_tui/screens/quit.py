"""Quitting with jobs running: detach (the default), stop them all, or stay."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


class QuitScreen(ModalScreen[str]):
    """Dismisses with ``detach``, ``stop`` or ``cancel``; enter picks the focused Detach."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "choose('detach')", "Detach"),
        Binding("s", "choose('stop')", "Stop all"),
        Binding("c,escape", "choose('cancel')", "Cancel"),
    ]

    def __init__(self, running: int) -> None:
        super().__init__(classes="dialog-screen")
        self.running = running

    def compose(self) -> ComposeResult:
        jobs = f"{self.running} job{'s are' if self.running != 1 else ' is'}"
        with Vertical(classes="dialog"):
            yield Static(
                f"{jobs} still running.\n\n"
                "Detach: they keep running and this scheduler finds them again at its next "
                "start.\nStop all: SIGTERM each one (SIGKILL after the grace period), then "
                "quit.", classes="question")
            with Horizontal(classes="buttons"):
                yield Button("Detach (d)", variant="primary", id="detach")
                yield Button("Stop all (s)", variant="error", id="stop")
                yield Button("Cancel (c)", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#detach", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)
