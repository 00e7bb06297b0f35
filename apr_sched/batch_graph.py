"""A batch as a graph: entries may depend on one another by ``name``.

So a whole flow (synth -> place -> route per design) goes in one all-or-nothing request.
A dependency names either an existing job id or the ``name`` of an entry of the same
batch; entries may come in any order. Refused, naming the entry and the reference:
a reference that is neither; one that is both (a name that is also a job id); a name
that several entries share; an entry that depends on itself; a cycle (named in full).
Pure: the caller says which ids exist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from apr_sched.dependencies import Condition

__all__ = ["BatchRef", "GraphError", "Target", "resolve_batch"]


@dataclass(frozen=True)
class BatchRef:
    """A dependency on entry ``index`` of the same batch (its id is not known yet)."""

    index: int


Target = str | BatchRef
"""An existing job id, or an entry of the batch."""


class GraphError(ValueError):
    """A batch's dependencies cannot be accepted; ``field`` names where (``jobs[3]...``)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def resolve_batch(
    entries: Sequence[tuple[str | None, Mapping[str, Sequence[str]]]],
    job_exists: Callable[[str], bool],
    *,
    prefix: str = "jobs",
) -> list[list[tuple[Condition, Target]]]:
    """Each entry's dependencies with batch names turned into ``BatchRef``s.

    ``entries`` are ``(name, depends_on)`` in batch order. Raises ``GraphError`` for the
    first problem found, in batch order, so the same batch always gets the same answer.
    """
    by_name: dict[str, list[int]] = {}
    for index, (name, _) in enumerate(entries):
        if name is not None:
            by_name.setdefault(name, []).append(index)
    resolved: list[list[tuple[Condition, Target]]] = []
    for index, (_, depends_on) in enumerate(entries):
        edges: list[tuple[Condition, Target]] = []
        for condition in Condition:
            for position, ref in enumerate(depends_on.get(condition.value, ())):
                field = f"{prefix}[{index}].depends_on.{condition.value}[{position}]"
                edges.append((condition, _target(ref, index, field, by_name, job_exists)))
        resolved.append(edges)
    _refuse_cycles(entries, resolved, prefix)
    return resolved


def _target(ref: str, index: int, field: str, by_name: Mapping[str, list[int]],
            job_exists: Callable[[str], bool]) -> Target:
    named = by_name.get(ref, [])
    exists = job_exists(ref)
    if named and exists:
        raise GraphError(field, f"{ref!r} is both job {ref} and the name of "
                         f"{_entries(named)} of this batch; rename the entry")
    if len(named) > 1:
        raise GraphError(field, f"{ref!r} names {_entries(named)}; names that others "
                         "depend on must be unique in the batch")
    if named:
        if named[0] == index:
            raise GraphError(field, f"entry {index} ({ref!r}) depends on itself")
        return BatchRef(named[0])
    if exists:
        return ref
    raise GraphError(field, f"{ref!r} is no job id and no entry name of this batch")


def _entries(indices: Sequence[int]) -> str:
    if len(indices) == 1:
        return f"entry {indices[0]}"
    return "entries " + ", ".join(str(index) for index in indices)


def _refuse_cycles(entries: Sequence[tuple[str | None, Mapping[str, Sequence[str]]]],
                   resolved: Sequence[Sequence[tuple[Condition, Target]]],
                   prefix: str) -> None:
    """Iterative depth-first search over batch edges (a 10,000-entry chain must not
    overflow the stack); the first cycle found is named entry by entry."""
    upstreams = [sorted({t.index for _, t in edges if isinstance(t, BatchRef)})
                 for edges in resolved]
    done = [False] * len(entries)
    for root in range(len(entries)):
        if done[root]:
            continue
        path: list[int] = [root]
        on_path = {root}
        cursors = [0]
        while path:
            node = path[-1]
            if cursors[-1] < len(upstreams[node]):
                nxt = upstreams[node][cursors[-1]]
                cursors[-1] += 1
                if nxt in on_path:
                    cycle = [*path[path.index(nxt):], nxt]
                    raise GraphError(f"{prefix}[{cycle[0]}].depends_on",
                                     "a cycle: " + " waits for ".join(
                                         _label(entries, i) for i in cycle))
                if not done[nxt]:
                    path.append(nxt)
                    on_path.add(nxt)
                    cursors.append(0)
                continue
            done[node] = True
            on_path.discard(node)
            path.pop()
            cursors.pop()


def _label(entries: Sequence[tuple[str | None, Mapping[str, Sequence[str]]]],
           index: int) -> str:
    name = entries[index][0]
    return f"{index} ({name})" if name is not None else str(index)
