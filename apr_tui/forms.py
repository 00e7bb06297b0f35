"""The new-job form without widgets: its fields, and text -> JobSpec with per-field errors.

Every ``JobSpec`` field has a form field. Text that is not even the right kind of value
(``priority = "high"``) is reported by the parser; the rest is checked by ``JobSpec`` itself,
so the form and the scheduler can never disagree on what is valid.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from apr_sched.errors import InvalidInput
from apr_sched.models import JobSpec


@dataclass(frozen=True, slots=True)
class FormField:
    name: str
    """Form field id; also the JobSpec path's last part (``cpu`` is ``resource_request.cpu``)."""
    label: str
    kind: str = "text"
    """text, int, float, optional_float, optional_text, pairs."""
    placeholder: str = ""


FORM_FIELDS: tuple[FormField, ...] = (
    FormField("command", "command", placeholder="innovus -init place.tcl"),
    FormField("workdir", "workdir", "optional_text", "/proj/top/run1 (absolute)"),
    FormField("name", "name", "optional_text", "top_place_01"),
    FormField("project", "project", placeholder="default"),
    FormField("design", "design", placeholder="top"),
    FormField("owner", "owner"),
    FormField("priority", "priority", "int", "0 (larger runs first)"),
    FormField("timeout_sec", "timeout_sec", "optional_float", "none (seconds)"),
    FormField("retry_limit", "retry_limit", "int", "0"),
    FormField("cpu", "cpu", "int", "1"),
    FormField("memory_gb", "memory_gb", "float", "0"),
    FormField("slots", "slots", "int", "1"),
    FormField("host_labels", "host_labels", "pairs", "tool=innovus site=a"),
    FormField("env", "env", "pairs", "LM_LICENSE_FILE=27000@lic KEY=value"),
)
RESOURCE_FIELDS = frozenset({"cpu", "memory_gb", "slots", "host_labels"})
_KIND_MESSAGE = {
    "int": "must be a whole number",
    "float": "must be a number",
    "optional_float": "must be a number (or empty for none)",
}


def default_values(owner: str) -> dict[str, str]:
    return {"project": "default", "owner": owner, "priority": "0", "retry_limit": "0",
            "cpu": "1", "memory_gb": "0", "slots": "1"}


def parse_form(values: Mapping[str, str]) -> tuple[JobSpec | None, dict[str, str]]:
    """A valid JobSpec, or None and one message per form field that is wrong."""
    data: dict[str, Any] = {}
    resources: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for field in FORM_FIELDS:
        text = values.get(field.name, "").strip() if field.name != "command" \
            else values.get(field.name, "")
        target = resources if field.name in RESOURCE_FIELDS else data
        try:
            value = _convert(field, text)
        except ValueError as exc:
            errors[field.name] = str(exc)
            continue
        if value is not None:
            target[field.name] = value
    if resources:
        data["resource_request"] = resources
    try:
        spec = JobSpec.model_validate(data)
    except ValidationError as exc:
        # fields that did not even parse were left out; report both kinds at once
        return None, {**field_messages(InvalidInput.from_validation(exc).details), **errors}
    return (None, errors) if errors else (spec, {})


def field_messages(details: Any) -> dict[str, str]:
    """``[{"field": "resource_request.cpu", "message": ...}]`` -> ``{"cpu": ...}``, keeping
    the first message per form field; anything unmatched goes under ``""``."""
    names = {f.name for f in FORM_FIELDS}
    errors: dict[str, str] = {}
    for detail in details if isinstance(details, list) else []:
        if not isinstance(detail, dict):
            continue
        path = str(detail.get("field", ""))
        parts = path.replace("[", ".").split(".")
        if parts and parts[0] == "resource_request":
            parts = parts[1:]
        name = parts[0] if parts and parts[0] in names else ""
        errors.setdefault(name, short_message(str(detail.get("message", "invalid"))))
    return errors


_SHORTER = (("Value error, ", ""), ("Input should be ", "must be "),
            ("greater than or equal to ", ">= "), ("less than or equal to ", "<= "),
            ("greater than ", "> "), ("less than ", "< "))


def short_message(message: str) -> str:
    """pydantic's wording, trimmed to fit beside a field: ``must be >= 0``."""
    for long, short in _SHORTER:
        message = message.replace(long, short)
    return message


def _convert(field: FormField, text: str) -> Any:
    if field.kind == "pairs":
        return parse_pairs(text) if text else None
    if not text:
        if field.name == "command":
            return text  # let JobSpec say what is wrong with an empty command
        return None
    try:
        if field.kind == "int":
            return int(text)
        if field.kind in ("float", "optional_float"):
            return float(text)
    except ValueError:
        raise ValueError(_KIND_MESSAGE[field.kind]) from None
    return text


def parse_pairs(text: str) -> dict[str, str]:
    """``KEY=value KEY2="two words"`` -> dict; shell-like quoting for values with spaces."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ValueError(f"cannot parse: {exc}") from None
    pairs: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=value, got {word!r}")
        pairs[key] = value
    return pairs


def load_batch_file(path: str) -> list[Any]:
    """The jobs of a batch file: ``{"jobs": [...]}`` or a bare list, as JSON."""
    file = Path(path).expanduser()
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{file}: no such file") from None
    except IsADirectoryError:
        raise ValueError(f"{file}: is a directory") from None
    except OSError as exc:
        raise ValueError(f"{file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ValueError(f"{file}: not UTF-8 (byte {exc.start})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{file}: not valid JSON: {exc.msg} at line {exc.lineno} "
                         f"column {exc.colno}") from None
    if isinstance(data, dict) and isinstance(data.get("jobs"), list):
        return list(data["jobs"])
    if isinstance(data, list):
        return data
    raise ValueError(f'{file}: expected {{"jobs": [...]}} or a list of jobs')
