"""``apr-sched modify``, ``top``, ``bottom`` and ``graph``: raw requests, plain output."""

from __future__ import annotations

import argparse

from apr_sched.cli_common import Context, error, print_json
from apr_sched.cli_submit import begin_time
from apr_sched.errors import AprError, InvalidInput
from apr_sched.rawclient import json_object, valid_id

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from typing import Any

__all__ = ["changes_of", "graph_lines", "run_graph", "run_modify", "run_move"]


def changes_of(args: argparse.Namespace) -> dict[str, Any]:
    """The PATCH body the flags ask for (InvalidInput when they ask for nothing)."""
    changes: dict[str, Any] = {}
    if args.name is not None:
        changes["name"] = None if args.name.lower() == "none" else args.name
    if args.priority is not None:
        changes["priority"] = args.priority
    if args.timeout_sec is not None:
        from apr_sched.durations import parse_duration

        text = args.timeout_sec.strip()
        try:
            changes["timeout_sec"] = None if text.lower() == "none" else parse_duration(text)
        except ValueError as exc:
            raise InvalidInput(f"--timeout-sec: {exc}",
                               [{"field": "timeout_sec", "message": str(exc)}]) from None
    if args.begin is not None:
        changes["begin_at"] = begin_time(args.begin)
    request: dict[str, Any] = {name: getattr(args, name) for name in ("cpu", "memory_gb", "slots")
                               if getattr(args, name) is not None}
    if args.label:
        request["host_labels"] = dict(args.label)
    if request:
        changes["resource_request"] = request
    if not changes:
        raise InvalidInput("modify: nothing to change; give --priority, --cpu, --memory-gb, "
                           "--slots, --label, --timeout-sec, --name or --begin",
                           [{"field": "changes", "message": "no change given"}])
    return changes


def run_modify(ctx: Context, args: argparse.Namespace) -> int:
    changes = changes_of(args)
    return _each(ctx, args, lambda job_id: json_object(ctx.client.request(
        "PATCH", f"/jobs/{valid_id(job_id, 'job_id')}", body=changes)[1]), "modified")


def run_move(ctx: Context, args: argparse.Namespace) -> int:
    where = "front" if args.command == "top" else "back"
    return _each(ctx, args, lambda job_id: ctx.client.act(job_id, args.command),
                 f"moved to the {where} of priority")


def _each(ctx: Context, args: argparse.Namespace, act: Any, done: str) -> int:
    refused = False
    replies: list[dict[str, Any]] = []
    for job_id in args.job_ids:
        try:
            reply = act(job_id)
        except AprError as exc:
            if exc.code == "unreachable":
                raise
            refused = True
            error(exc.message if exc.message.startswith("cannot ")
                  else f"cannot {args.command} job {job_id}: {exc.message}")
            continue
        replies.append(reply)
        if not args.json:
            tail = f" {reply.get('priority')}" if done.endswith("priority") else ""
            print(f"{reply['job_id']}: {done}{tail} ({reply.get('status')})", flush=True)
    if args.json:
        print_json(replies[0] if len(args.job_ids) == 1 and replies else replies)
    return 1 if refused else 0


def run_graph(ctx: Context, args: argparse.Namespace) -> int:
    path = f"/jobs/{valid_id(args.job_id, 'job_id')}/graph"
    reply = json_object(ctx.client.request("GET", path, query={"depth": args.depth})[1])
    if args.json:
        print_json(reply)
        return 0
    for line in graph_lines(reply):
        print(line)
    return 0


def graph_lines(graph: dict[str, Any]) -> list[str]:
    """The graph as text: upstream jobs above the job, indented by distance, each with the
    dependencies that link it to the one nearer; the job marked ``*``; dependents below."""
    edges = graph.get("edges") or []
    lines: list[str] = []
    nodes = graph.get("nodes") or []
    for node in sorted(nodes, key=lambda n: (n["depth"] >= 0, -abs(n["depth"])
                                             if n["depth"] < 0 else n["depth"])):
        depth = int(node["depth"])
        job_id = node["job_id"]
        if depth < 0:
            links = [f"{e['condition']} of {e['job_id']}: {e['state']}" for e in edges
                     if e["upstream"] == job_id]
        elif depth > 0:
            links = [f"{e['condition']} on {e['upstream']}: {e['state']}" for e in edges
                     if e["job_id"] == job_id]
        else:
            links = [node["pending_reason"]] if node.get("pending_reason") else []
        status = node.get("status") or "(purged)"
        name = f" {node['name']}" if node.get("name") else ""
        mark = "*" if depth == 0 else " "
        lines.append(f"{mark} {'  ' * abs(depth)}{job_id}{name} {status}"
                     + (f"  [{'; '.join(links)}]" if links else ""))
    if graph.get("truncated"):
        lines.append(f"(only the nearest {graph.get('node_limit')} jobs are shown)")
    return lines
