"""The ``/`` filter language: ``status:FAILED owner:alice host:apr03 route !blk007``.

Headless. Words are ANDed; ``!`` before a word negates it; quotes keep spaces
(``name:"soc top"``). ``status:`` takes state names or unambiguous prefixes, comma
separated (``status:fail,time``). ``owner:``, ``host:`` and ``id:`` match whole values,
``project:``, ``design:`` and ``name:`` parts of them, case-insensitively. A plain word is
looked for in id, name, project, design, owner, host, reason and command. Anything else
(``stat:x``, ``status:nope``, a lone ``!``) is a ``QueryError`` saying what is wrong.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from functools import lru_cache

from apr_sched.models import Job, JobStatus

EXACT_FIELDS = ("owner", "host", "id")
PART_FIELDS = ("project", "design", "name")
FIELDS = ("status", *EXACT_FIELDS, *PART_FIELDS)


class QueryError(ValueError):
    """The filter text cannot be read; the message says why, for the title bar."""


@dataclass(frozen=True, slots=True)
class Term:
    field: str | None
    """None: a plain word, looked for everywhere."""
    value: str
    """Lower case."""
    negated: bool = False
    statuses: frozenset[JobStatus] = frozenset()
    """For ``status:``."""

    def test(self, job: Job, reason: str) -> bool:
        """Whether the job has it (before negation)."""
        if self.field == "status":
            return job.status in self.statuses
        if self.field is None:
            return any(self.value in text.lower() for text in (
                job.job_id, job.name or "", job.project, job.design, job.owner,
                job.host_id or "", reason, job.command))
        text = _field_text(job, self.field).lower()
        return text == self.value if self.field in EXACT_FIELDS else self.value in text


def _field_text(job: Job, field: str) -> str:
    if field == "id":
        return job.job_id
    if field == "host":
        return job.host_id or ""
    if field == "name":
        return job.name or ""
    return str(getattr(job, field))


@lru_cache(maxsize=64)
def parse_query(text: str) -> tuple[Term, ...]:
    """The terms of ``text`` (cached: the table asks once per job)."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise QueryError(f"cannot read the filter: {exc}") from None
    return tuple(_term(word) for word in words)


def _term(word: str) -> Term:
    negated = word.startswith("!")
    body = word[1:] if negated else word
    if not body:
        raise QueryError("! needs a word after it (!status:SUCCEEDED, !blk007)")
    key, sep, value = body.partition(":")
    if not sep or not key.isalpha():
        return Term(None, body.lower(), negated)
    field = key.lower()
    if field not in FIELDS:
        raise QueryError(f"no filter field {key!r}: use {', '.join(FIELDS)}, or plain words")
    if not value:
        raise QueryError(f"{field}: needs a value ({field}:{_EXAMPLE[field]})")
    if field == "status":
        return Term(field, value.lower(), negated, _statuses(value))
    return Term(field, value.lower(), negated)


_EXAMPLE = {"status": "FAILED", "owner": "alice", "host": "apr03", "id": "42",
            "project": "P1", "design": "soc_top", "name": "route"}


def _statuses(value: str) -> frozenset[JobStatus]:
    found: set[JobStatus] = set()
    for part in filter(None, value.upper().split(",")):
        matches = [status for status in JobStatus if status.value.startswith(part)]
        exact = [status for status in matches if status.value == part]
        if exact:
            matches = exact
        if len(matches) != 1:
            which = "matches " + " and ".join(m.value for m in matches) if matches \
                else "is no state"
            raise QueryError(f"status:{part.lower()} {which} "
                             f"({', '.join(s.value for s in JobStatus)})")
        found.add(matches[0])
    if not found:
        raise QueryError("status: needs a value (status:FAILED)")
    return frozenset(found)


def matches(terms: tuple[Term, ...], job: Job, reason: str = "") -> bool:
    """All terms hold (a negated one must not); ``reason`` is what the REASON cell says."""
    return all(term.test(job, reason) is not term.negated for term in terms)
