"""The exceptions apr_sched raises, one tree so callers can catch by meaning.

    AprError                    anything apr_sched refuses or cannot do
    ├── InvalidInput            bad field values; ``details`` lists each field and reason (400)
    ├── NotFound                unknown job, host or attempt (404)
    ├── AuthFailed              a missing or wrong bearer token (401)
    ├── Forbidden               the caller may not do this: not the job's owner, not an admin (403)
    ├── IllegalTransition       an action that does not apply to the current state (409)
    ├── HostBusy                unregistering a host that still runs jobs (409)
    ├── StateDirLocked          another scheduler already owns the state dir
    └── StoreUnavailable        the database cannot be written (disk full, read-only) (503)

Every error carries a short ``code``, a human ``message`` and JSON-able ``details``, which is
exactly what the HTTP layer sends back as ``{"error": {...}}``.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:  # pydantic loads with the models; a client that only talks HTTP needs neither
    from collections.abc import Mapping
    from typing import Any, ClassVar, TypeVar

    from pydantic import BaseModel, ValidationError

    M = TypeVar("M", bound=BaseModel)


class AprError(Exception):
    """Base of every error apr_sched raises on purpose."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(AprError):
    """Input that fails validation; ``details`` is a list of ``{"field", "message"}``."""

    code = "invalid_input"
    http_status = 400

    @classmethod
    def from_validation(cls, exc: ValidationError, prefix: str = "") -> InvalidInput:
        details = field_errors(exc, prefix)
        summary = "; ".join(f"{d['field']}: {d['message']}" for d in details[:5])
        if len(details) > 5:
            summary += f"; and {len(details) - 5} more"
        return cls(summary or "invalid input", details)


class NotFound(AprError):
    code = "not_found"
    http_status = 404


class AuthFailed(AprError):
    """The HTTP endpoint refused the bearer token (missing or wrong)."""

    code = "unauthorized"
    http_status = 401


class Forbidden(AprError):
    """The caller is known but may not do this (another user's job, an admin-only action);
    nothing was changed. ``details`` names the field or the job and its owner."""

    code = "forbidden"
    http_status = 403


class IllegalTransition(AprError):
    """An action refused because of the current state; ``details`` names that state."""

    code = "illegal_transition"
    http_status = 409


class HostBusy(AprError):
    code = "host_busy"
    http_status = 409


class StateDirLocked(AprError):
    code = "state_dir_locked"
    http_status = 409


class StoreUnavailable(AprError):
    """A write to the state database failed; nothing was changed. ``details.cause`` says why
    (disk full, read-only ...). Retrying once the cause is fixed works: no restart needed."""

    code = "store_unavailable"
    http_status = 503


def field_errors(exc: ValidationError, prefix: str = "") -> list[dict[str, str]]:
    """Flatten pydantic's errors into ``field`` paths like ``jobs[3].resource_request.cpu``."""
    out = []
    for err in exc.errors(include_url=False):
        path = prefix
        message = err["msg"]
        for part in err["loc"]:
            if part == "[key]":
                message = f"invalid key: {message}"
            elif isinstance(part, int):
                path += f"[{part}]"
            else:
                path += f".{part}" if path else str(part)
        if err["type"] == "extra_forbidden":
            message = "unknown field"
        out.append({"field": path or "(body)", "message": message})
    return out


def validated(model: type[M], value: M | Mapping[str, Any], prefix: str = "") -> M:
    """``value`` as a ``model``, or InvalidInput naming every bad field (under ``prefix``)."""
    from pydantic import ValidationError

    if isinstance(value, model):
        return value
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InvalidInput.from_validation(exc, prefix) from None
