"""``apr-sched pause|resume|stop|rerun``, ``hosts``, ``register``, ``metrics``, ``purge``.

Actions on jobs named by id go out as raw requests (``stop ID`` is what a workflow engine
runs to cancel: it starts fast); by filter, and the host and metrics commands, use the
models (``SchedulerClient``).
"""

from __future__ import annotations

import sys

from apr_sched.cli_args import BULK_ACTIONS, filters_given
from apr_sched.cli_common import Context, dict_field, error, json_object_file, print_json
from apr_sched.errors import Forbidden, IllegalTransition, InvalidInput, NotFound
from apr_sched.rawclient import json_object, valid_id
from apr_sched.views import JobView

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Iterable
    from typing import Any

__all__ = ["run_action", "run_hosts", "run_metrics", "run_purge", "run_register"]

_DONE = {"pause": "paused or held", "resume": "resumed", "stop": "stopped"}


def run_action(ctx: Context, args: argparse.Namespace) -> int:
    if args.command in BULK_ACTIONS and (filters_given(args) or args.all):
        if args.job_ids:
            raise InvalidInput(f"{args.command}: give job ids or filters, not both",
                               [{"field": "job_ids", "message": "ids and filters given"}])
        return _bulk(ctx, args)
    if not args.job_ids:
        raise InvalidInput(
            f"{args.command}: which jobs? give ids, filters (--owner, --status, --name, "
            "--project, --design, --host), or --all",
            [{"field": "job_ids", "message": "no ids and no filter"}])
    refused = False
    replies: list[dict[str, Any]] = []
    for job_id in args.job_ids:
        try:
            if getattr(args, "with_dependents", False):
                reply = json_object(ctx.client.request(
                    "POST", f"/jobs/{valid_id(job_id, 'job_id')}/rerun",
                    body={"with_dependents": True})[1])
            else:
                reply = ctx.client.act(job_id, args.command)
        except (NotFound, IllegalTransition, InvalidInput, Forbidden) as exc:
            refused = True
            message = exc.message
            if not message.startswith("cannot "):
                message = f"cannot {args.command} job {job_id}: {message}"
            error(message)
            continue
        if args.json:
            replies.append(reply)
            continue
        job = JobView(reply)
        note = ""
        if args.command == "stop" and not job.status.is_final:
            note = " (stop requested: SIGTERM sent)"
        print(f"{job.job_id}: {job.status.value}{note}", flush=True)
    if args.json:
        print_json(replies[0] if len(args.job_ids) == 1 and replies else replies)
    return 1 if refused else 0


def _bulk(ctx: Context, args: argparse.Namespace) -> int:
    from apr_sched.cli_bulk import run_bulk

    client = ctx.models()
    act: Callable[[str], Any] = getattr(client, args.command)
    outcome = run_bulk(client, args, act)
    for job_id, why in outcome.refused[:10]:
        error(f"cannot {args.command} job {job_id}: {why}")
    if len(outcome.refused) > 10:
        error(f"and {len(outcome.refused) - 10} more refused")
    if args.json:
        print_json({"action": args.command, "job_ids": outcome.touched,
                    "refused": [job_id for job_id, _ in outcome.refused]})
    else:
        count = len(outcome.touched)
        print(f"{_DONE[args.command]} {count} job{'s' if count != 1 else ''}"
              + (f": {', '.join(outcome.touched)}" if 0 < count <= 20 else ""), flush=True)
    return 1 if outcome.refused else 0


def run_hosts(ctx: Context, args: argparse.Namespace) -> int:
    from apr_sched import cli_format

    client = ctx.models()
    hosts = client.list_hosts()
    if args.json:
        print_json(client.last_json)
        return 0
    cli_format.print_hosts(hosts, header=not args.noheader)
    if not hosts:
        print("no hosts registered", file=sys.stderr)
    return 0


def run_register(ctx: Context, args: argparse.Namespace) -> int:
    spec = json_object_file(args.json_file, "a host spec") if args.json_file else {}
    for flag, field in (("host_id", "host_id"), ("slots", "total_slots"),
                        ("cpu", "total_cpu"), ("memory_gb", "total_memory_gb"),
                        ("executor_prefix", "executor_prefix")):
        if (value := getattr(args, flag)) is not None:
            spec[field] = value
    if args.label:
        spec["labels"] = {**dict_field(spec, "labels"), **dict(args.label)}
    missing = [f"--{flag.replace('_', '-')}" for flag, field in
               (("host_id", "host_id"), ("slots", "total_slots"), ("cpu", "total_cpu"),
                ("memory_gb", "total_memory_gb")) if field not in spec]
    if missing:
        raise InvalidInput(f"register needs {_join(missing)} (or --json FILE)",
                           [{"field": m.lstrip("-"), "message": "required"} for m in missing])
    client = ctx.models()
    host, created = client.register_host(spec)
    if args.json:
        print_json(client.last_json)
        return 0
    print(f"{host.host_id}: {'registered' if created else 'updated'} ({host.state.value}, "
          f"{host.total_slots} slots, {host.total_cpu} cpu, {host.total_memory_gb:g} GB)")
    return 0


def _join(items: Iterable[str]) -> str:
    words = list(items)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


def run_metrics(ctx: Context, args: argparse.Namespace) -> int:
    from apr_sched import cli_format

    client = ctx.models()
    summary = client.metrics_summary()
    if args.json:
        print_json(client.last_json)
        return 0
    cli_format.print_fields(cli_format.describe_metrics(summary))
    return 0


def run_purge(ctx: Context, args: argparse.Namespace) -> int:
    client = ctx.models()
    report = client.purge(args.before)
    if args.json:
        print_json(client.last_json)
    else:
        print(f"purged {report.jobs_purged} finished jobs and {report.host_events_purged} "
              f"host events from before {report.before.isoformat()}")
    return 0
