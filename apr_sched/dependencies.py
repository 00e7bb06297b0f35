"""When a job may start after others: ``after_ok``, ``after_any``, ``after_failed``.

Pure rules, no I/O: the Scheduler asks and applies the answers. A dependent that waits is
kept out of the dispatch queue (its cost is here, not in every dispatch pass); when an
upstream job changes, only the edges on that job are looked at, so releasing a dependent
costs O(its edges). A condition that can never hold any more (``after_ok`` on a job that
FAILED) is answered as such at once, so the Scheduler can end the dependent instead of
leaving it pending forever, as the peers do.

Upstreams are single jobs or whole arrays, both seen as an ``Upstream``: how many jobs,
how many ended, how many of those succeeded. For an array ``after_ok`` means every element
succeeded, ``after_any`` every element ended, ``after_failed`` every element ended and at
least one did not succeed.

A met edge stays met: rerunning an upstream does not put back a dependent that was already
released (LSF and Slurm agree); the Scheduler re-arms cancelled dependents explicitly
(``rerun --with-dependents``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum, StrEnum

from apr_sched.states import id_order

__all__ = [
    "Cancelled",
    "Condition",
    "Decision",
    "DependencyIndex",
    "Edge",
    "Released",
    "Upstream",
    "Verdict",
    "cancel_reason",
    "edges_of",
    "verdict",
    "waiting_reason",
]


class Condition(StrEnum):
    AFTER_OK = "after_ok"
    AFTER_ANY = "after_any"
    AFTER_FAILED = "after_failed"

    @property
    def wanted(self) -> str:
        """What the dependent waits for, as the end of ``waiting for job 12 ...``."""
        return {"after_ok": "to succeed", "after_any": "to end",
                "after_failed": "to fail"}[self.value]


class Verdict(Enum):
    WAITING = "waiting"
    MET = "met"
    NEVER = "never"


@dataclass(frozen=True)
class Upstream:
    """What a dependent needs to know of the job (or array) it depends on."""

    total: int
    """1 for a job; the element count for an array."""
    ended: int
    """How many reached a final state."""
    succeeded: int
    """How many of those SUCCEEDED."""
    status: str
    """A job's status, or the status word of an array's worst outcome so far (for reasons)."""
    is_array: bool = False

    @property
    def all_ended(self) -> bool:
        return self.ended >= self.total

    @property
    def not_ok(self) -> int:
        return self.ended - self.succeeded


def verdict(condition: Condition, upstream: Upstream) -> Verdict:
    """Whether ``condition`` holds on ``upstream`` now, may hold later, or never will."""
    if condition is Condition.AFTER_OK:
        if upstream.not_ok:
            return Verdict.NEVER
        return Verdict.MET if upstream.all_ended else Verdict.WAITING
    if condition is Condition.AFTER_ANY:
        return Verdict.MET if upstream.all_ended else Verdict.WAITING
    if not upstream.all_ended:
        return Verdict.WAITING
    return Verdict.MET if upstream.not_ok else Verdict.NEVER


def cancel_reason(edge: Edge, upstream: Upstream) -> str:
    """Why a dependent ends: ``dependency 12 FAILED`` (what users grep for)."""
    if upstream.is_array:
        if edge.condition is Condition.AFTER_FAILED:
            return f"dependency {edge.upstream}: all {upstream.total} elements SUCCEEDED"
        return (f"dependency {edge.upstream}: {upstream.not_ok} of {upstream.total} "
                f"elements did not succeed")
    return f"dependency {edge.upstream} {upstream.status}"


def waiting_reason(edge: Edge, upstream: Upstream | None) -> str:
    if upstream is None:
        return f"waiting for job {edge.upstream} {edge.condition.wanted}"
    if upstream.is_array:
        return (f"waiting for array {edge.upstream} ({upstream.ended}/{upstream.total} "
                f"ended) {edge.condition.wanted}")
    return f"waiting for job {edge.upstream} ({upstream.status}) {edge.condition.wanted}"


@dataclass(frozen=True)
class Edge:
    condition: Condition
    upstream: str


@dataclass(frozen=True)
class Released:
    """Every condition of ``job_id`` holds: it may enter the dispatch queue."""

    job_id: str


@dataclass(frozen=True)
class Cancelled:
    """A condition of ``job_id`` can never hold: it ends (and so may its own dependents)."""

    job_id: str
    reason: str


Decision = Released | Cancelled


@dataclass
class _Waiting:
    unmet: list[Edge] = field(default_factory=list)


class DependencyIndex:
    """The unmet edges of unfinished dependents, both ways: by dependent and by upstream.

    ``upstream_of`` tells the current state of a job or array id (``None``: not known,
    e.g. purged; then the edge is judged by ``missing``). Memory holds only unmet edges of
    jobs still waiting: it does not grow with history.
    """

    def __init__(self, upstream_of: Callable[[str], Upstream | None]) -> None:
        self._upstream_of = upstream_of
        self._waiting: dict[str, _Waiting] = {}
        self._dependents: dict[str, set[str]] = {}

    def __len__(self) -> int:
        """How many dependents wait."""
        return len(self._waiting)

    def __contains__(self, job_id: object) -> bool:
        return job_id in self._waiting

    def edge_count(self) -> int:
        return sum(len(waiting.unmet) for waiting in self._waiting.values())

    def add(self, job_id: str, edges: Iterable[Edge]) -> Decision | None:
        """Track ``job_id``'s edges; its decision now, or ``None`` while it must wait."""
        if job_id in self._waiting:
            raise ValueError(f"job {job_id} is already tracked")
        unmet: list[Edge] = []
        for edge in dict.fromkeys(edges):  # the same edge twice is one edge
            upstream = self._upstream_of(edge.upstream)
            judged = verdict(edge.condition, upstream) if upstream else Verdict.NEVER
            if judged is Verdict.NEVER:
                reason = (cancel_reason(edge, upstream) if upstream
                          else f"dependency {edge.upstream} no longer exists")
                return Cancelled(job_id, reason)
            if judged is Verdict.WAITING:
                unmet.append(edge)
        if not unmet:
            return Released(job_id)
        self._waiting[job_id] = _Waiting(unmet)
        for edge in unmet:
            self._dependents.setdefault(edge.upstream, set()).add(job_id)
        return None

    def discard(self, job_id: str) -> None:
        """Forget a dependent (stopped, cancelled or released by other means)."""
        waiting = self._waiting.pop(job_id, None)
        if waiting is None:
            return
        for edge in waiting.unmet:
            dependents = self._dependents.get(edge.upstream)
            if dependents is not None:
                dependents.discard(job_id)
                if not dependents:
                    del self._dependents[edge.upstream]

    def changed(self, upstream_id: str) -> list[Decision]:
        """``upstream_id`` changed state: the dependents it released or ended.

        Costs O(edges on ``upstream_id`` + edges of the dependents it decides).
        """
        dependents = self._dependents.get(upstream_id)
        if not dependents:
            return []
        upstream = self._upstream_of(upstream_id)
        decisions: list[Decision] = []
        for job_id in sorted(dependents, key=id_order):
            waiting = self._waiting[job_id]
            still: list[Edge] = []
            cancelled: str | None = None
            for edge in waiting.unmet:
                if edge.upstream != upstream_id:
                    still.append(edge)
                    continue
                judged = verdict(edge.condition, upstream) if upstream else Verdict.NEVER
                if judged is Verdict.NEVER:
                    cancelled = (cancel_reason(edge, upstream) if upstream
                                 else f"dependency {upstream_id} no longer exists")
                    break
                if judged is Verdict.WAITING:
                    still.append(edge)
            if cancelled is not None:
                decisions.append(Cancelled(job_id, cancelled))
            elif not still:
                decisions.append(Released(job_id))
            else:
                waiting.unmet = still
        for decision in decisions:
            self.discard(decision.job_id)
        return decisions

    def reason(self, job_id: str) -> str | None:
        """``waiting for job 12 (RUNNING) to succeed`` for a waiting dependent, else None."""
        waiting = self._waiting.get(job_id)
        if waiting is None:
            return None
        edge = waiting.unmet[0]
        text = waiting_reason(edge, self._upstream_of(edge.upstream))
        more = len(waiting.unmet) - 1
        return f"{text} (and {more} more)" if more else text

    def unmet(self, job_id: str) -> list[Edge]:
        waiting = self._waiting.get(job_id)
        return list(waiting.unmet) if waiting else []

    def dependents_of(self, upstream_id: str) -> list[str]:
        return sorted(self._dependents.get(upstream_id, ()), key=id_order)


def edges_of(depends_on: Mapping[str, Sequence[str]]) -> list[Edge]:
    """``{"after_ok": ["12"]}`` -> ``[Edge(AFTER_OK, "12")]``, in condition order."""
    return [Edge(condition, upstream) for condition in Condition
            for upstream in depends_on.get(condition.value, ())]
