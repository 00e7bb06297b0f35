"""What the client command handlers share: the daemon they talk to, and the small helpers
that print replies and read input files the same way in every command."""

from __future__ import annotations

import json
import sys

from apr_sched.errors import InvalidInput
from apr_sched.rawclient import RawClient
from apr_sched.states import is_valid_id

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Any

    from apr_sched.client import SchedulerClient

__all__ = ["Context", "dict_field", "error", "json_object_file", "print_json",
           "read_json_file", "valid_ids"]


class Context:
    """One client command's daemon: ``client`` answers with raw JSON (what most commands
    print); ``models()`` gives a ``SchedulerClient`` for those that need the models (and
    pay for pydantic), on a connection of its own."""

    __slots__ = ("_models", "client", "state_dir")

    def __init__(self, client: RawClient, state_dir: str) -> None:
        self.client = client
        self.state_dir = state_dir
        self._models: SchedulerClient | None = None

    def models(self) -> SchedulerClient:
        if self._models is None:
            from apr_sched.client import SchedulerClient

            self._models = SchedulerClient(self.client.url, self.client.token,
                                           self.client.timeout)
        return self._models

    def close(self) -> None:
        self.client.close()
        if self._models is not None:
            self._models.close()


def error(message: str) -> None:
    print(f"apr-sched: {message}", file=sys.stderr, flush=True)


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def read_json_file(name: str) -> Any:
    try:
        if name == "-":
            text = sys.stdin.read()
        else:
            with open(name, encoding="utf-8") as file:
                text = file.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidInput(f"{name}: {reason}", [{"field": "(file)", "message": reason}]
                           ) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{name}: not valid JSON: {exc}",
                           [{"field": "(file)", "message": str(exc)}]) from None


def json_object_file(name: str, what: str) -> dict[str, Any]:
    data = read_json_file(name)
    if not isinstance(data, dict):
        raise InvalidInput(f"{name}: expected a JSON object ({what})",
                           [{"field": "(file)", "message": "must be a JSON object"}])
    return data


def dict_field(spec: dict[str, Any], field: str) -> dict[str, Any]:
    value = spec.get(field) or {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object",
                           [{"field": field, "message": "must be a JSON object"}])
    return dict(value)


def valid_ids(job_ids: Iterable[str]) -> list[str]:
    ids = list(dict.fromkeys(job_ids))
    bad = [job_id for job_id in ids if not is_valid_id(job_id)]
    if bad:
        raise InvalidInput(f"{bad[0]!r} is not a valid job id",
                           [{"field": "job_id", "message": "not a valid id"} for _ in bad])
    return ids
