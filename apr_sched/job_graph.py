"""The graph around a job, read from the edges: what ``graph`` shows and what a rerun re-arms.

Answers only, from lookups the caller passes (the store's edges and statuses, the jobs in
memory): ``walk`` gathers a job's upstream and downstream jobs level by level, a bounded
number of them; ``rearmable`` picks the cancelled part of the graph below a job that a
``rerun --with-dependents`` starts again; ``never_holds`` says which of a job's own
dependencies can never hold now (a rerun of such a job is refused).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from apr_sched.dependencies import Condition, Edge, Verdict, cancel_reason, verdict
from apr_sched.eligibility import StatusOf, job_upstream
from apr_sched.models import GraphEdge, GraphNode, JobGraph, JobStatus
from apr_sched.states import id_order

NODE_LIMIT = 500
"""The most jobs one graph reply holds (named in it, with ``truncated``)."""
MAX_DEPTH = 100
"""The deepest a graph may be asked for, each way."""

Links = Callable[[str], list[tuple[str, str]]]
"""A job's neighbours one way: ``(other job id, condition)``."""


@dataclass(frozen=True, slots=True)
class Node:
    job_id: str
    name: str | None
    status: JobStatus | None
    pending_reason: str | None = None


def walk(job_id: str, depth: int, *, upstreams: Links, dependents: Links,
         describe: Callable[[Sequence[str]], dict[str, Node]],
         node_limit: int = NODE_LIMIT) -> JobGraph:
    """Up to ``depth`` levels of upstream jobs and of dependents around ``job_id``, the
    nearest first, at most ``node_limit`` jobs in all."""
    depths = {job_id: 0}
    edges: dict[tuple[str, str, str], None] = {}
    truncated = False
    for sign, links in ((-1, upstreams), (1, dependents)):
        level = [job_id]
        for step in range(1, depth + 1):
            following: list[str] = []
            for current in level:
                for other, condition in links(current):
                    if other not in depths:
                        if len(depths) >= node_limit:
                            truncated = True
                            continue
                        depths[other] = sign * step
                        following.append(other)
                    upstream, dependent = (other, current) if sign < 0 else (current, other)
                    edges[(upstream, dependent, condition)] = None
            level = following
            if not level:
                break
    nodes = describe(list(depths))
    graph_nodes = [_graph_node(job_id, depths[job_id], nodes.get(job_id)) for job_id in depths]
    statuses = {node.job_id: node.status for node in graph_nodes}
    return JobGraph(
        job_id=job_id, depth=depth, node_limit=node_limit, truncated=truncated,
        nodes=sorted(graph_nodes, key=lambda node: (node.depth, id_order(node.job_id))),
        edges=[GraphEdge(upstream=upstream, job_id=dependent, condition=condition,
                         state=_state(Condition(condition), statuses.get(upstream)))
               for (upstream, dependent, condition) in edges
               if upstream in depths and dependent in depths])


def _graph_node(job_id: str, depth: int, node: Node | None) -> GraphNode:
    if node is None:
        return GraphNode(job_id=job_id, status=None, depth=depth)
    return GraphNode(job_id=job_id, name=node.name, status=node.status, depth=depth,
                     pending_reason=node.pending_reason)


def _state(condition: Condition, status: JobStatus | None) -> str:
    if status is None:
        return "never"
    return verdict(condition, job_upstream(status)).value


def never_holds(edges: Iterable[Edge], status_of: StatusOf,
                rising: frozenset[str] = frozenset()) -> str | None:
    """Why one of ``edges`` can never hold now (``dependency 12 FAILED``), else None.
    Upstreams in ``rising`` are about to run again: their edges may still hold."""
    for edge in edges:
        if edge.upstream in rising:
            continue
        status = status_of(edge.upstream)
        if status is None:
            return f"dependency {edge.upstream} no longer exists"
        upstream = job_upstream(status)
        if verdict(edge.condition, upstream) is Verdict.NEVER:
            return cancel_reason(edge, upstream)
    return None


def rearmable(root: str, *, dependents: Links, upstreams: Links,
              status_of: StatusOf) -> list[str]:
    """The CANCELLED jobs below ``root`` (through CANCELLED jobs only) that may run again
    once ``root`` does: those none of whose other dependencies can never hold, in the
    order found (nearest first). One left CANCELLED (its other upstream FAILED) keeps its
    own dependents on it cancelled too."""
    found: dict[str, None] = {}
    todo = deque([root])
    while todo:
        for dependent, _ in dependents(todo.popleft()):
            if dependent != root and dependent not in found and (
                    status_of(dependent) is JobStatus.CANCELLED):
                found[dependent] = None
                todo.append(dependent)
    rising = {root, *found}
    changed = True
    while changed:  # each pass may doom others: they depended on one left cancelled
        changed = False
        for dependent in list(found):
            edges = [Edge(Condition(condition), upstream)
                     for upstream, condition in upstreams(dependent)]
            if never_holds(edges, status_of, frozenset(rising)) is not None:
                del found[dependent]
                rising.discard(dependent)
                changed = True
    return list(found)
