"""LSF dependency expressions (``done(12) && (ended(13) || exit(14))``), parsed once and
judged against job states with three answers: holds, can never hold, not yet.

The third answer is what keeps ``bwait`` from waiting forever on a condition that an
upstream failure already made impossible.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from apr_sched.lsf.bsub import LsfUsageError
from apr_sched.states import JobStatus

__all__ = ["Condition", "parse_condition"]

Verdict = bool | None
"""True: holds; False: can never hold; None: not decided yet."""

_TOKEN = re.compile(r"\s*(?:(&&|\|\||!|\(|\))|(done|ended|exit|started)\s*\(\s*"
                    r"\"?([A-Za-z0-9_.-]+)\"?\s*\))")
_STARTED = frozenset({JobStatus.RUNNING, JobStatus.PAUSED})


@dataclass(frozen=True, slots=True)
class _Test:
    kind: str
    job_id: str

    def evaluate(self, states: Mapping[str, JobStatus]) -> Verdict:
        status = states[self.job_id]
        final, ok = status.is_final, status is JobStatus.SUCCEEDED
        if self.kind == "done":
            return True if ok else (False if final else None)
        if self.kind == "exit":
            return False if ok else (True if final else None)
        if self.kind == "ended":
            return True if final else None
        return True if final or status in _STARTED else None  # started

    def job_ids(self) -> set[str]:
        return {self.job_id}


@dataclass(frozen=True, slots=True)
class _Not:
    inner: Condition

    def evaluate(self, states: Mapping[str, JobStatus]) -> Verdict:
        verdict = self.inner.evaluate(states)
        return None if verdict is None else not verdict

    def job_ids(self) -> set[str]:
        return self.inner.job_ids()


@dataclass(frozen=True, slots=True)
class _All:
    parts: tuple[Condition, ...]

    def evaluate(self, states: Mapping[str, JobStatus]) -> Verdict:
        verdicts = [p.evaluate(states) for p in self.parts]
        if False in verdicts:
            return False
        return True if all(v is True for v in verdicts) else None

    def job_ids(self) -> set[str]:
        return set().union(*(p.job_ids() for p in self.parts))


@dataclass(frozen=True, slots=True)
class _Any:
    parts: tuple[Condition, ...]

    def evaluate(self, states: Mapping[str, JobStatus]) -> Verdict:
        verdicts = [p.evaluate(states) for p in self.parts]
        if True in verdicts:
            return True
        return False if all(v is False for v in verdicts) else None

    def job_ids(self) -> set[str]:
        return set().union(*(p.job_ids() for p in self.parts))


Condition = _Test | _Not | _All | _Any


def parse_condition(text: str) -> Condition:
    """``done(ID)``, ``ended(ID)``, ``exit(ID)``, ``started(ID)`` joined by ``&&``, ``||``,
    ``!`` and parentheses (``&&`` binds tighter, as in LSF)."""
    tokens: list[tuple[str, str]] = []
    position = 0
    while position < len(text.rstrip()):
        match = _TOKEN.match(text, position)
        if match is None:
            raise LsfUsageError(f"cannot read the condition at {text[position:].strip()!r}; "
                                "use done(ID), ended(ID), exit(ID), started(ID) with && || !")
        op, kind, job_id = match.groups()
        tokens.append(("op", op) if op else (kind, job_id))
        position = match.end()
    if not tokens:
        raise LsfUsageError("the condition is empty")
    parser = _Parser(tokens)
    condition = parser.either()
    if parser.index != len(tokens):
        raise LsfUsageError(f"unexpected {tokens[parser.index][1]!r} in the condition")
    return condition


class _Parser:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.tokens, self.index = tokens, 0

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def _take(self, op: str) -> bool:
        if self._peek() == ("op", op):
            self.index += 1
            return True
        return False

    def either(self) -> Condition:
        parts = [self.both()]
        while self._take("||"):
            parts.append(self.both())
        return parts[0] if len(parts) == 1 else _Any(tuple(parts))

    def both(self) -> Condition:
        parts = [self.single()]
        while self._take("&&"):
            parts.append(self.single())
        return parts[0] if len(parts) == 1 else _All(tuple(parts))

    def single(self) -> Condition:
        token = self._peek()
        if token is None:
            raise LsfUsageError("the condition ends too early")
        if self._take("!"):
            return _Not(self.single())
        if self._take("("):
            inner = self.either()
            if not self._take(")"):
                raise LsfUsageError("a ( in the condition is not closed")
            return inner
        if token[0] == "op":
            raise LsfUsageError(f"unexpected {token[1]!r} in the condition")
        self.index += 1
        return _Test(token[0], token[1])
