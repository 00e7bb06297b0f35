"""``apr-sched jobs``, ``job``, ``status`` and ``logs``: reading jobs, from raw replies.

Nothing here builds a model: the replies are printed as they came (``--json``), read for a
few fields (``status``), or shown through ``views.JobView``; rich is loaded only to draw a
table on a terminal. So a flow's status poll or a look at one job starts fast.
"""

from __future__ import annotations

import json
import sys

from apr_sched.cli_common import Context, error, print_json
from apr_sched.rawclient import json_object
from apr_sched.states import JobStatus, is_valid_id

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    import argparse
    from typing import Any

__all__ = ["STATUS_WORDS", "UNKNOWN_JOB_WORD", "run_job", "run_jobs", "run_logs",
           "run_status"]

STATUS_WORDS = {
    JobStatus.PENDING: "running", JobStatus.HELD: "running", JobStatus.RUNNING: "running",
    JobStatus.PAUSED: "running", JobStatus.SUCCEEDED: "success", JobStatus.FAILED: "failed",
    JobStatus.TIMEOUT: "failed", JobStatus.STOPPED: "failed", JobStatus.CANCELLED: "failed",
}
"""``apr-sched status``: the one word generic cluster executors of workflow engines expect."""
UNKNOWN_JOB_WORD = "failed"
"""What ``status`` says of a job the daemon does not know (never was, or purged): a flow
engine then treats it as ended badly instead of waiting forever."""
STATUS_IDS_PER_REQUEST = 200


def run_jobs(ctx: Context, args: argparse.Namespace) -> int:
    statuses = [part.strip() for value in args.status or [] for part in value.split(",")
                if part.strip()]
    query = {"status": ",".join(statuses) or None, "project": args.project,
             "design": args.design, "owner": args.owner, "host": args.host,
             "limit": args.limit, "offset": args.offset}
    reply = json_object(ctx.client.request("GET", "/jobs", query=query)[1])
    if args.json:
        print_json(reply)
        return 0
    from apr_sched import cli_format
    from apr_sched.views import job_views

    jobs = job_views(reply)
    total = int(reply.get("total", len(jobs)))
    cli_format.print_jobs(jobs, args.output, header=not args.noheader)
    if len(jobs) != total or not jobs:
        note = f"{len(jobs)} of {total} matching jobs shown"
        if cli_format.is_terminal():
            cli_format.print_table([cli_format.Column("")], [[(note, "dim")]], header=False)
        else:
            print(note, file=sys.stderr)
    return 0


def run_job(ctx: Context, args: argparse.Namespace) -> int:
    reply = ctx.client.job_dict(args.job_id)
    if args.json:
        print_json(reply)
        return 0
    from apr_sched.cli_format import print_job
    from apr_sched.views import JobView

    print_job(JobView(reply))
    return 0


def run_status(ctx: Context, args: argparse.Namespace) -> int:
    """One word per job, read from the raw reply."""
    ids = list(args.job_ids)
    known: dict[str, JobStatus] = {}
    valid = [job_id for job_id in dict.fromkeys(ids) if is_valid_id(job_id)]
    for start in range(0, len(valid), STATUS_IDS_PER_REQUEST):
        chunk = valid[start:start + STATUS_IDS_PER_REQUEST]
        found = ctx.client.job_dicts(chunk)
        known.update((job_id, JobStatus(item["status"])) for job_id, item in found.items())
    if args.json:
        print_json({job_id: (known[job_id].value if job_id in known else None)
                    for job_id in ids})
        return 0
    words = []
    for job_id in ids:
        status = known.get(job_id)
        if status is None:
            error(f"no job {job_id!r}")
            words.append("UNKNOWN" if args.detail else UNKNOWN_JOB_WORD)
        else:
            words.append(status.value if args.detail else STATUS_WORDS[status])
    sys.stdout.write("".join(f"{word}\n" for word in words))
    sys.stdout.flush()
    return 0


def run_logs(ctx: Context, args: argparse.Namespace) -> int:
    if not args.follow:
        return _show_log(ctx, args)
    import signal  # only to follow: a plain look at a log sets no handler

    # Let Ctrl-C end a follow from its first read, even when we were started with SIGINT
    # ignored (a shell starts ``cmd &`` so, and nohup-style launchers and test runners pass
    # it on): between the first read and the follow's own handlers a SIGINT would be lost.
    try:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    except ValueError:  # not the main thread: signals are not ours to handle
        return _show_log(ctx, args)
    try:
        return _show_log(ctx, args)
    finally:
        signal.signal(signal.SIGINT, previous)


def _show_log(ctx: Context, args: argparse.Namespace) -> int:
    reply = ctx.client.logs(args.job_id, tail=args.tail, attempt=args.attempt)
    _emit_log(reply, args.json)
    if not args.follow:
        return 0
    from apr_sched.waiting import follow_log

    return follow_log(ctx.client, args.job_id, int(reply["attempt"]), int(reply["offset"]),
                      output=sys.stdout, pinned=args.attempt is not None,
                      json_lines=args.json)


def _emit_log(reply: dict[str, Any], as_json: bool) -> None:
    lines = reply.get("lines") or []
    if as_json:
        print(json.dumps(reply), flush=True)
    elif lines:
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()
