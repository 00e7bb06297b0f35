"""``apr-sched submit``, ``submit-batch`` and ``wait``: queue jobs, and block on them.

``submit --wait`` needs no second look at the job: the submit reply says what it is and
carries, in its ``Last-Event-Seq`` header, the daemon's event number from just before it,
and the events after that number say everything that happens to it (the two requests a
``curl`` user makes: submit, long poll). An older daemon's reply (or a replayed one) has no
such header: then the wait asks ``/health`` for the number and reads the job once.
"""

from __future__ import annotations

import sys

from apr_sched.cli_common import (
    Context,
    dict_field,
    error,
    json_object_file,
    print_json,
    read_json_file,
    valid_ids,
)
from apr_sched.cli_env import current_umask, current_workdir, submitter_env
from apr_sched.errors import InvalidInput
from apr_sched.rawclient import json_object
from apr_sched.states import JobStatus
from apr_sched.views import JobView

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from apr_sched.interrupts import Signals

__all__ = ["job_spec", "run_submit", "run_submit_batch", "run_wait"]


def job_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The JobSpec JSON: the --json FILE if given, with every flag given on top, and the
    submitter's environment, directory and umask (``cli_env``)."""
    spec = json_object_file(args.json_file, "a job spec") if args.json_file else {}
    words = list(args.words)
    if words and words[0] == "--":
        words.pop(0)
    if words:
        if len(words) == 1:
            spec["command"] = words[0]
        else:
            import shlex  # for several words only

            spec["command"] = shlex.join(words)
    elif "command" not in spec:
        raise InvalidInput(
            "nothing to run: give the command after the options "
            "(apr-sched submit --cpu 4 -- innovus -init run.tcl) or --json FILE",
            [{"field": "command", "message": "Field required"}])
    for field in ("name", "project", "design", "owner", "priority", "timeout_sec",
                  "retry_limit", "workdir"):
        if (value := getattr(args, field)) is not None:
            spec[field] = value
    if not args.json_file:
        spec.setdefault("workdir", current_workdir())
    spec.setdefault("umask", current_umask())
    mode = args.env_mode if args.env_mode is not None else (
        "none" if args.json_file else "all")
    env = submitter_env(mode, args.env)
    for note in env.warnings():
        error(note)
    if env.env:
        spec["env"] = {**dict_field(spec, "env"), **env.env}
    resources = dict_field(spec, "resource_request")
    for field in ("cpu", "memory_gb", "slots"):
        if (value := getattr(args, field)) is not None:
            resources[field] = value
    if args.label:
        resources["host_labels"] = {**dict_field(resources, "host_labels"), **dict(args.label)}
    if resources:
        spec["resource_request"] = resources
    if args.allow_pending:
        spec["allow_pending"] = True
    add_start(spec, args)
    return spec


def add_start(spec: dict[str, Any], args: argparse.Namespace) -> None:
    """``--after`` and its kin, ``--hold``, ``--begin``: on top of a --json spec's own."""
    depends_on = dict_field(spec, "depends_on")
    for condition in ("after_ok", "after_any", "after_failed"):
        ids = [part.strip() for value in getattr(args, condition) for part in value.split(",")
               if part.strip()]
        if ids:
            depends_on[condition] = [*depends_on.get(condition, []), *ids]
    if depends_on:
        spec["depends_on"] = depends_on
    if args.hold:
        spec["hold"] = True
    if args.begin is not None:
        spec["begin_at"] = begin_time(args.begin)


def begin_time(text: str) -> str | None:
    """``--begin``: an ISO time without a zone is the submitter's local time (the daemon
    may keep another zone), so the zone is added here; ``+2h`` and ``none`` go as given."""
    from datetime import datetime

    if text.strip().lower() == "none":
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return text  # +2h, or a mistake the daemon names
    return (when.astimezone() if when.tzinfo is None else when).isoformat()


def run_submit(ctx: Context, args: argparse.Namespace) -> int:
    spec = job_spec(args)
    if not args.wait:
        return _submit(ctx, args, spec, None)
    from apr_sched.interrupts import Signals

    # Installed before the submit: a Ctrl-C (SIGTERM, SIGHUP) that comes before the wait
    # has begun is kept, and stops the job once its id is known, as one during the wait does.
    with Signals() as signals:
        return _submit(ctx, args, spec, signals)


def _submit(ctx: Context, args: argparse.Namespace, spec: dict[str, Any],
            signals: Signals | None) -> int:
    reply, since = ctx.client.submit_dict(spec)
    job = JobView(reply)
    if args.json:
        print_json(reply)
    elif not args.wait:
        print(job.job_id, flush=True)
    label = job.name or "/".join(part for part in (job.project, job.design) if part)
    if not (args.wait and args.quiet):
        print(f"{'apr-sched: ' if args.wait else ''}submitted job {job.job_id} ({label}, "
              f"priority {job.priority}, {job.status}): {_short(job.command, 60)}",
              file=sys.stderr, flush=True)
    if not args.wait:
        return 0
    if since is None:  # an older daemon, or a replayed submit: the waiter asks and looks
        return _wait_for(ctx, args, [job.job_id], first_attempt=1, signals=signals)
    return _wait_for(ctx, args, [job.job_id], first_attempt=1, since=since,
                     known={job.job_id: job}, signals=signals)


def run_wait(ctx: Context, args: argparse.Namespace) -> int:
    return _wait_for(ctx, args, valid_ids(args.job_ids), first_attempt=None)


def _wait_for(ctx: Context, args: argparse.Namespace, job_ids: list[str], *,
              first_attempt: int | None, since: int | None = None,
              known: dict[str, JobView] | None = None,
              signals: Signals | None = None) -> int:
    from apr_sched.waiting import exit_code_for, wait_for_jobs  # only to wait

    result = wait_for_jobs(ctx.client, job_ids, output=None if args.quiet else sys.stdout,
                           stop_on_interrupt=args.stop_on_interrupt,
                           reconnect_timeout=args.reconnect_timeout,
                           first_attempt=first_attempt, since=since, known=known,
                           signals=signals)
    if args.json and args.command == "wait":
        print_json({"exit_code": result.code, "interrupted_by": result.interrupted,
                    "jobs": {job_id: None if job is None else {
                        "status": job.status.value, "exit_code": job.exit_code,
                        "signal": job.signal, "outcome": exit_code_for(job)}
                        for job_id, job in result.jobs.items()}})
    for job_id, job in result.jobs.items():
        if job is not None and job.status is not JobStatus.SUCCEEDED:
            from apr_sched.cli_format import reason

            how = reason(job) or next(
                (a.reason for a in reversed(job.attempts) if a.reason), "")
            error(f"job {job_id} {job.status.value}" + (f" ({how})" if how else ""))
    return result.code


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def run_submit_batch(ctx: Context, args: argparse.Namespace) -> int:
    data = read_json_file(args.file)
    specs = data.get("jobs") if isinstance(data, dict) else data
    if not isinstance(specs, list):
        raise InvalidInput(f'{args.file}: expected a JSON list of jobs or {{"jobs": [...]}}',
                           [{"field": "jobs", "message": "must be a list"}])
    if args.allow_pending:
        specs = [{"allow_pending": True, **spec} if isinstance(spec, dict) else spec
                 for spec in specs]
    reply = json_object(ctx.client.request("POST", "/jobs/batch", body={"jobs": specs})[1])
    job_ids = [str(job_id) for job_id in reply.get("job_ids", [])]
    if args.json:
        print_json(reply)
    elif not job_ids:
        print("submitted 0 jobs")
    else:
        span = job_ids[0] if len(job_ids) == 1 else f"{job_ids[0]}..{job_ids[-1]}"
        print(f"submitted {len(job_ids)} job{'s' if len(job_ids) != 1 else ''}: {span}")
    return 0
