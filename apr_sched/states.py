"""Job and host states, and what a valid id is: plain Python, no pydantic.

Kept apart from ``models`` so that the client side of the CLI (``apr-sched status ID``)
can name a state or check an id without paying for pydantic's import; ``models``
re-exports all of it. Nor does it load ``datetime`` (until ``utcnow`` is called) or compile
a regex: every client command imports this module.
"""

from __future__ import annotations

from enum import StrEnum

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from datetime import datetime

__all__ = ["FINAL_STATUSES", "ID_PATTERN", "HostState", "JobStatus", "id_order", "is_valid_id",
           "utcnow"]

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
"""For pydantic and JSON Schema, where ``$`` is the end of the text; Python's ``$`` also
matches before a final newline, so Python code checks ids with ``is_valid_id`` instead."""
MAX_ID_LENGTH = 64
_ID_PUNCTUATION = str.maketrans("._-", "aaa")
"""What an id may hold besides letters and digits, mapped to a letter to test the rest."""


def is_valid_id(value: str) -> bool:
    """True for a string that may be used as a job or host id (checked before any lookup):
    ``ID_PATTERN`` in plain code. For ASCII text ``isalnum`` means ``[A-Za-z0-9]``."""
    return (0 < len(value) <= MAX_ID_LENGTH and value.isascii() and value[0].isalnum()
            and value.translate(_ID_PUNCTUATION).isalnum())


def id_order(job_id: str) -> tuple[float | str, ...]:
    """Sort key for job ids in submit order: ``9`` < ``10`` < ``11.2`` < ``11.10``; an id
    that is not made of numbers sorts after those, by its text."""
    try:
        return tuple(float(int(part)) for part in job_id.split("."))
    except ValueError:
        return (float("inf"), job_id)


def utcnow() -> datetime:
    from datetime import UTC, datetime  # at first use, not for every client command

    return datetime.now(UTC)


class JobStatus(StrEnum):
    PENDING = "PENDING"
    HELD = "HELD"
    RUNNING = "RUNNING"
    PAUSED = "PAUSED"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    TIMEOUT = "TIMEOUT"
    STOPPED = "STOPPED"
    CANCELLED = "CANCELLED"
    """Never ran: a dependency it needed can no longer hold (``dependency 12 FAILED``)."""

    @property
    def is_final(self) -> bool:
        return self in FINAL_STATUSES

    @property
    def is_active(self) -> bool:
        """Holds resources on a host: the process exists."""
        return self in (JobStatus.RUNNING, JobStatus.PAUSED)


FINAL_STATUSES = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.STOPPED,
     JobStatus.CANCELLED}
)


class HostState(StrEnum):
    ONLINE = "ONLINE"
    OFFLINE = "OFFLINE"
    DRAINING = "DRAINING"
    CLOSED = "CLOSED"


ACTIONS: dict[str, frozenset[JobStatus]] = {
    "pause": frozenset({JobStatus.PENDING, JobStatus.RUNNING}),
    "resume": frozenset({JobStatus.HELD, JobStatus.PAUSED}),
    "stop": frozenset({JobStatus.PENDING, JobStatus.HELD, JobStatus.RUNNING, JobStatus.PAUSED}),
    "rerun": FINAL_STATUSES,
    "modify": frozenset({JobStatus.PENDING, JobStatus.HELD, JobStatus.RUNNING,
                         JobStatus.PAUSED}),
    "top": frozenset({JobStatus.PENDING}),
    "bottom": frozenset({JobStatus.PENDING}),
}
"""action -> statuses a job must be in for it."""
