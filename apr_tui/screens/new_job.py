"""The new-job form (``n``): every JobSpec field, each error shown beside its field.

Checked by ``apr_tui.forms.parse_form`` (the same JobSpec the scheduler validates with)
before anything is sent; whatever the scheduler still refuses is mapped back to fields.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Static

from apr_sched.errors import AprError, InvalidInput
from apr_sched.models import Job, JobSpec
from apr_tui.forms import FORM_FIELDS, default_values, field_messages, parse_form

if TYPE_CHECKING:
    from apr_tui.app import AprTui


class NewJobScreen(ModalScreen[Job | None]):
    """Dismisses with the submitted Job, or None when cancelled."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "submit", "Submit"),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, owner: str) -> None:
        super().__init__(classes="dialog-screen")
        self.defaults = default_values(owner)
        self.errors: dict[str, str] = {}

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog form"):
            yield Static("[b]New job[/b]  enter or ctrl+s submits, esc cancels",
                         classes="question")
            with VerticalScroll(id="form-fields"):
                for field in FORM_FIELDS:
                    with Horizontal(classes="form-row"):
                        yield Label(field.label, classes="form-label")
                        yield Input(self.defaults.get(field.name, ""),
                                    placeholder=field.placeholder, id=f"field-{field.name}",
                                    compact=True)
                        yield Label("", id=f"error-{field.name}", classes="form-error")
            yield Static("", id="form-error")
            with Horizontal(classes="buttons"):
                yield Button("Submit", variant="primary", id="submit", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        self.set_focus(self.query_one("#field-command", Input))

    def values(self) -> dict[str, str]:
        return {field.name: self.query_one(f"#field-{field.name}", Input).value
                for field in FORM_FIELDS}

    def show_errors(self, errors: dict[str, str]) -> None:
        self.errors = errors
        for field in FORM_FIELDS:
            message = errors.get(field.name, "")
            self.query_one(f"#error-{field.name}", Label).update(message)
            self.query_one(f"#field-{field.name}", Input).set_class(bool(message), "error")
        self.query_one("#form-error", Static).update(errors.get("", ""))
        first = next((f.name for f in FORM_FIELDS if f.name in errors), None)
        if first is not None:
            self.set_focus(self.query_one(f"#field-{first}", Input))

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_submit()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "submit":
            self.action_submit()
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)

    def action_submit(self) -> None:
        spec, errors = parse_form(self.values())
        self.show_errors(errors)
        if spec is not None:
            self._send(spec)

    @work(group="submit", exclusive=True, exit_on_error=False)
    async def _send(self, spec: JobSpec) -> None:
        tui = cast("AprTui", self.app)
        try:
            job = await tui.backend.submit(spec)
        except InvalidInput as exc:
            errors = field_messages(exc.details)
            self.show_errors(errors or {"": exc.message})
            return
        except AprError as exc:
            self.show_errors({"": exc.message})
            return
        self.dismiss(job)
