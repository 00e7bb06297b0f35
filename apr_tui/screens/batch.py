"""Batch submit (``b``): a JSON file of jobs, all queued or none."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from apr_sched.errors import AprError, InvalidInput
from apr_tui.forms import load_batch_file

if TYPE_CHECKING:
    from apr_tui.app import AprTui

SHOWN_PROBLEMS = 6


class BatchScreen(ModalScreen[list[str] | None]):
    """Dismisses with the new job ids; a rejected batch keeps the dialog open and says why
    (each bad job by index and field)."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self) -> None:
        super().__init__(classes="dialog-screen")

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Static('[b]Batch submit[/b]  a JSON file: {"jobs": [...]} or a list of '
                         "jobs. Enter submits, esc cancels.", classes="question")
            yield Input(placeholder="path/to/batch_jobs.json", id="batch-path")
            yield Static("", id="batch-error")

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#batch-path", Input))

    def action_cancel(self) -> None:
        self.dismiss(None)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        path = event.value.strip()
        if not path:
            self._error("give the path of a JSON file")
            return
        try:
            specs = load_batch_file(path)
        except ValueError as exc:
            self._error(str(exc))
            return
        self._send(specs)

    def _error(self, message: str) -> None:
        self.query_one("#batch-error", Static).update(message)

    @work(group="batch", exclusive=True, exit_on_error=False)
    async def _send(self, specs: list[object]) -> None:
        tui = cast("AprTui", self.app)
        self._error(f"submitting {len(specs)} job(s)…")
        try:
            job_ids = await tui.backend.submit_batch(specs)
        except InvalidInput as exc:
            details = exc.details if isinstance(exc.details, list) else []
            lines = [f"{d.get('field')}: {d.get('message')}" for d in details[:SHOWN_PROBLEMS]
                     if isinstance(d, dict)]
            if len(details) > SHOWN_PROBLEMS:
                lines.append(f"... and {len(details) - SHOWN_PROBLEMS} more")
            self._error("batch rejected, nothing queued:\n" + "\n".join(lines or [exc.message]))
            return
        except AprError as exc:
            self._error(exc.message)
            return
        self.dismiss(job_ids)
