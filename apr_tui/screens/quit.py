"""Quitting with jobs running or pending: detach (the default), stop them, or stay.

The same dialog in-process and attached: in-process, Stop all stops every job of this
scheduler; attached, the daemon runs other people's jobs too, so Stop mine stops yours.
"""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static


def jobs_phrase(running: int, waiting: int) -> str:
    """``3 running and 34 pending jobs``, ``1 running job``, ``2 pending jobs``."""
    parts = [f"{count} {what}" for count, what in ((running, "running"), (waiting, "pending"))
             if count]
    total = running + waiting
    return f"{' and '.join(parts) or 'no'} job{'' if total == 1 else 's'}"


class QuitScreen(ModalScreen[str]):
    """Dismisses with ``detach``, ``stop`` or ``cancel``; enter picks the focused Detach."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "choose('detach')", "Detach"),
        Binding("s", "choose('stop')", "Stop all"),
        Binding("c,escape", "choose('cancel')", "Cancel"),
    ]

    def __init__(self, running: int, waiting: int = 0, *, hands_off: bool = False,
                 attached_to: str | None = None, mine: tuple[int, int] = (0, 0)) -> None:
        super().__init__(classes="dialog-screen")
        self.running = running
        self.waiting = waiting
        self.hands_off = hands_off
        """Detach starts a background daemon (in-process mode with a state dir to hand)."""
        self.attached_to = attached_to
        """The daemon's address when attached: quitting only disconnects from it."""
        self.mine = mine
        """(running or paused, pending or held) of the unfinished jobs that are yours."""

    @property
    def can_stop(self) -> bool:
        return self.attached_to is None or any(self.mine)

    def question(self) -> str:
        unfinished = jobs_phrase(self.running, self.waiting)
        if self.attached_to is not None:
            return self._attached_question(unfinished)
        if self.hands_off:
            detach = ("Detach: a background scheduler (apr-sched serve) takes them over: "
                      "running jobs go on, pending ones start as hosts free up; plain "
                      "apr-tui attaches to it again.")
        else:
            detach = ("Detach: running jobs go on, but nothing starts pending ones until "
                      "this scheduler runs again.")
        return (f"This scheduler still has {unfinished}.\n\n{detach}\n\n"
                f"Stop all: stop all {unfinished} (SIGTERM to running ones, SIGKILL after "
                "the grace period; pending ones never start), then quit.")

    def _attached_question(self, unfinished: str) -> str:
        question = (f"The scheduler at {self.attached_to} still has {unfinished}.\n\n"
                    "Detach: they go on; that scheduler keeps running them and starts "
                    "pending ones as hosts free up (apr-tui attaches to it again).")
        if not self.can_stop:
            return question + "\n\nNone of them is yours to stop."
        yours = jobs_phrase(*self.mine)
        return (f"{question}\n\nStop mine: stop your {yours} (SIGTERM to running ones, "
                "SIGKILL after the grace period; pending ones never start), then quit. "
                "Other people's jobs are left alone.")

    def compose(self) -> ComposeResult:
        stop = "Stop all (s)" if self.attached_to is None else "Stop mine (s)"
        with Vertical(classes="dialog"):
            yield Static(self.question(), classes="question")
            with Horizontal(classes="buttons"):
                yield Button("Detach (d)", variant="primary", id="detach")
                if self.can_stop:
                    yield Button(stop, variant="error", id="stop")
                yield Button("Cancel (c)", id="cancel")

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#detach", Button))

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        if choice == "stop" and not self.can_stop:
            return
        self.dismiss(choice)
