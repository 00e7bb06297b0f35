"""``apr-sched`` subcommands that talk to a running daemon over its HTTP API.

``cli.py`` adds these with ``add_client_commands(subparsers)`` and hands a parsed command in
``CLIENT_COMMANDS`` to ``run_client_command(args)``. The daemon is found as ``find_daemon``
describes: its Unix socket in the state dir (no token: it knows us by our uid) unless
``--url``/``--token`` (or the environment) say otherwise, then HTTP with a bearer token.

Exit codes: 0 done; 1 the daemon refused an action (unknown id, illegal transition, not
yours); 2 unreachable daemon, refused token or invalid input; 130 interrupted. ``wait`` and
``submit --wait`` exit with the job's outcome instead (``waiting.EXIT_CODES``). Expected
errors are one line on stderr, never a traceback. ``--json`` prints the daemon's raw JSON
reply. When stdout is not a terminal, tables are plain columns, never wrapped or cut
(``cli_format``).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apr_sched import cli_format
from apr_sched.cli_bulk import add_filter_options, filters_given, run_bulk
from apr_sched.cli_env import (
    current_umask,
    current_workdir,
    parse_env_mode,
    submitter_env,
)
from apr_sched.client import (
    TOKEN_ENV,
    TOKEN_FILE,
    AuthFailed,
    SchedulerClient,
    find_daemon,
)
from apr_sched.durations import duration_arg
from apr_sched.errors import (
    AprError,
    Forbidden,
    HostBusy,
    IllegalTransition,
    InvalidInput,
    NotFound,
)
from apr_sched.statedir import resolve_state_dir
from apr_sched.states import JobStatus, is_valid_id
from apr_sched.waiting import EXIT_CODES_HELP, exit_code_for, follow_log, wait_for_jobs

if TYPE_CHECKING:  # the models load with the first reply they parse
    from apr_sched.models import Job

__all__ = ["CLIENT_COMMANDS", "add_client_commands", "run_client_command"]

ACTIONS = ("pause", "resume", "stop", "rerun")
BULK_ACTIONS = ("pause", "resume", "stop")
CLIENT_COMMANDS = frozenset({
    "submit", "submit-batch", "jobs", "job", "status", "wait", "logs", *ACTIONS, "hosts",
    "register", "metrics", "purge",
})

STATUS_WORDS = {
    JobStatus.PENDING: "running", JobStatus.HELD: "running", JobStatus.RUNNING: "running",
    JobStatus.PAUSED: "running", JobStatus.SUCCEEDED: "success", JobStatus.FAILED: "failed",
    JobStatus.TIMEOUT: "failed", JobStatus.STOPPED: "failed",
}
"""``apr-sched status``: the one word generic cluster executors of workflow engines expect."""
UNKNOWN_JOB_WORD = "failed"
"""What ``status`` says of a job the daemon does not know (never was, or purged): a flow
engine then treats it as ended badly instead of waiting forever."""
STATUS_IDS_PER_REQUEST = 200


# parser ----------------------------------------------------------------------------------
def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key, value


class _JsonOption(argparse.Action):
    """``--json`` alone: print the raw reply; ``--json FILE``: read the spec from FILE."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        if values is None:
            namespace.json = True
        else:
            namespace.json_file = values


def _add_discovery(parser: argparse.ArgumentParser, *, json_input: bool = False,
                   json_help: str = "print the daemon's raw JSON reply") -> None:
    group = parser.add_argument_group("daemon")
    group.add_argument("--url", metavar="URL",
                       help="the daemon (default: its Unix socket in the state dir, where it "
                            "knows you by your uid; else $APR_SCHED_URL, the url the running "
                            "daemon recorded in the state dir, the config's [http], "
                            "http://127.0.0.1:5000)")
    group.add_argument("--token", metavar="TOKEN",
                       help=f"bearer token (default: ${TOKEN_ENV}, <state_dir>/{TOKEN_FILE})")
    group.add_argument("--state-dir", metavar="DIR",
                       help="the daemon's state dir, to find its url and token")
    group.add_argument("--config", metavar="FILE", help="hosts.toml: state dir and [http]")
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="more logging on stderr (-vv for debug)")
    if json_input:
        parser.add_argument("--json", nargs="?", action=_JsonOption, default=False,
                            metavar="FILE",
                            help="with FILE ('-' for stdin): read the spec as JSON from it; "
                                 "alone: print the raw JSON reply (give both to do both)")
        parser.set_defaults(json_file=None)
    else:
        parser.add_argument("--json", action="store_true", help=json_help)


def _command(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str,
             **options: Any) -> argparse.ArgumentParser:
    """A subcommand that takes no abbreviated options: ``--mem`` is not ``--memory-gb``."""
    return sub.add_parser(name, allow_abbrev=False, **options)


def _add_wait_options(parser: argparse.ArgumentParser, *, in_submit: bool) -> None:
    group = parser.add_argument_group("waiting")
    if in_submit:
        group.add_argument("--wait", action="store_true",
                           help="block until the job has ended, printing its output as it "
                                "runs (the id goes to stderr), and exit with its outcome "
                                "(see `apr-sched wait --help`)")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="do not print the job's output while waiting"
                            + (" (nor the 'submitted job' note)" if in_submit else ""))
    group.add_argument("--no-stop-on-interrupt", dest="stop_on_interrupt",
                       action="store_false",
                       help="on Ctrl-C, SIGTERM or SIGHUP leave the job running (default: "
                            "stop it, wait for it to end, exit 128+signal)")
    group.add_argument("--reconnect-timeout", type=duration_arg, default=600.0,
                       metavar="DURATION",
                       help="how long to keep trying when the daemon cannot be reached "
                            "(a restart), e.g. 90s, 10m (default 10m)")


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client subcommands to ``apr-sched``'s subparsers."""
    _add_submit(sub)

    p = _command(sub, "submit-batch", help="submit a JSON file of jobs, all or nothing")
    _add_discovery(p)
    p.add_argument("file", metavar="FILE",
                   help='a JSON list of jobs or {"jobs": [...]}; - for stdin')
    p.add_argument("--allow-pending", action="store_true",
                   help="queue jobs no registered host could ever run (set allow_pending on "
                        "each job that does not say otherwise)")

    _add_listing(sub)

    p = _command(sub, "logs", help="print a job's output")
    _add_discovery(p)
    p.add_argument("job_id", metavar="ID", help="the job")
    p.add_argument("-n", "--tail", type=int, default=200, metavar="N",
                   help="the last N lines (default 200)")
    p.add_argument("--attempt", type=int, metavar="N", help="default: the latest attempt")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new lines until the job has ended")

    for action in ACTIONS:
        bulk = action in BULK_ACTIONS
        p = _command(sub, action, help=f"{action} jobs" + (", by id or by filter" if bulk
                                                            else ""),
                     description=f"{action.capitalize()} the jobs named by id"
                                 + (", or every job the filters match (printing how many)"
                                    if bulk else "") + ".")
        _add_discovery(p)
        p.add_argument("job_ids", nargs="*" if bulk else "+", metavar="ID",
                       help="job ids" + (" (or filters below)" if bulk else ""))
        if bulk:
            add_filter_options(p, action)

    p = _command(sub, "hosts", help="list hosts")
    _add_discovery(p)
    p.add_argument("--noheader", action="store_true", help="no header line")

    _add_register(sub)

    p = _command(sub, "metrics", help="summary numbers")
    _add_discovery(p)

    p = _command(sub, "purge", help="forget finished jobs (and their logs) from before a date")
    p.add_argument("--before", required=True, type=_before, metavar="DATE",
                   help="ISO date or time, e.g. 2026-11-01 or 2026-11-01T12:00 (UTC unless "
                        "it names a zone); jobs that have not finished are never purged")
    _add_discovery(p)


def _add_submit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _command(
        sub, "submit", help="submit one job to the running daemon",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Submit one job. The command follows the options; several words are "
                    "quoted with shlex.join\nso they run as typed, one word is used as a "
                    "shell command line:\n  apr-sched submit --cpu 4 -- innovus -init run.tcl"
                    "\n\nThe job runs with your environment (see --env-mode), in your "
                    "current directory and\nwith your umask, as if started here.",
        epilog="With --wait, the exit code is the job's outcome:\n" + EXIT_CODES_HELP)
    _add_discovery(p, json_input=True)
    p.add_argument("--name", help="a short name shown in lists")
    p.add_argument("--project", help="project it belongs to (default: 'default')")
    p.add_argument("--design", help="the design it works on (shown in lists)")
    p.add_argument("--owner", help="default: you (only an admin may name someone else)")
    p.add_argument("--priority", type=int, help="larger runs first (default 0)")
    p.add_argument("--timeout", "--timeout-sec", dest="timeout_sec", type=duration_arg,
                   metavar="DURATION",
                   help="limit on running time, e.g. 90s, 4h, 1d, 1h30m or seconds; the job "
                        "ends in TIMEOUT")
    p.add_argument("--retry-limit", type=int, metavar="N",
                   help="requeue a FAILED or TIMEOUT attempt up to N times")
    p.add_argument("--workdir", metavar="DIR", help="run in DIR (default: the current directory)")
    p.add_argument("--cpu", type=int, metavar="N", help="cpus it uses on its host (default 1)")
    p.add_argument("--memory-gb", type=float, metavar="GB",
                   help="memory it uses on its host (default 0)")
    p.add_argument("--slots", type=int, metavar="N", help="host slots it takes (default 1)")
    p.add_argument("--label", action="append", type=_key_value, default=[], metavar="KEY=VAL",
                   help="a label the host must have (repeatable)")
    p.add_argument("--env-mode", type=parse_env_mode, metavar="all|none|NAME,...",
                   help="what the job takes from your environment: all of it (default; "
                        "APR_*, _, SHLVL, PWD, OLDPWD, HOME, USER, LOGNAME, XDG_RUNTIME_DIR "
                        "and the ssh agent stay), none (the host's clean base only), or only "
                        "the NAMEs listed (default with --json FILE: none)")
    p.add_argument("--env", action="append", type=_key_value, default=[], metavar="KEY=VAL",
                   help="set a variable for the job (repeatable); everyone can read a "
                        "command line, so put secrets in your environment instead")
    p.add_argument("--allow-pending", action="store_true",
                   help="queue it even if no registered host could ever run it (one may "
                        "be registered later); else such a job is refused with the reason")
    _add_wait_options(p, in_submit=True)
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="the command to run (after --)")


def _add_listing(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _command(sub, "jobs", help="list jobs",
                 description="List jobs in submit order. Piped, the table is plain columns, "
                             "one line per job, never wrapped or cut; the 'N of M shown' note "
                             "then goes to stderr.")
    _add_discovery(p)
    p.add_argument("--status", action="extend", nargs="+", metavar="STATUS",
                   help="only these states: --status RUNNING PAUSED, repeated, or "
                        "comma-separated")
    p.add_argument("--project", help="only this project's jobs")
    p.add_argument("--design", help="only this design's jobs")
    p.add_argument("--owner", help="only this user's jobs")
    p.add_argument("--host", metavar="HOST_ID", help="only jobs on this host")
    p.add_argument("--limit", type=int, metavar="N",
                   help="at most N jobs (default 500, at most 5000)")
    p.add_argument("--offset", type=int, metavar="N", help="skip the first N matching jobs")
    p.add_argument("-o", "--output", type=cli_format.job_columns, metavar="COLUMNS",
                   default=list(cli_format.DEFAULT_JOB_COLUMNS),
                   help="columns to show, comma-separated, from: "
                        f"{','.join(cli_format.JOB_COLUMNS)} (default: "
                        f"{','.join(cli_format.DEFAULT_JOB_COLUMNS)})")
    p.add_argument("--noheader", action="store_true", help="no header line")

    p = _command(sub, "job", help="one job: fields, attempts and event timeline")
    _add_discovery(p)
    p.add_argument("job_id", metavar="ID", help="the job")

    p = _command(sub, "status", help="one word per job: running, success or failed",
                 description="Print one word per job, in the order given: running (any "
                             "unfinished state: PENDING, HELD, RUNNING, PAUSED), success "
                             "(SUCCEEDED) or failed (FAILED, TIMEOUT, STOPPED), as the "
                             "cluster status commands of workflow engines expect. A job the "
                             "daemon does not know (never was, or purged) is 'failed' "
                             "(UNKNOWN with --detail), with a note on stderr. Exit 0 unless "
                             "the daemon cannot be asked.")
    _add_discovery(p, json_help="print {id: status word or null} as JSON")
    p.add_argument("job_ids", nargs="+", metavar="ID", help="job ids")
    p.add_argument("--detail", action="store_true",
                   help="print the real status word (PENDING, RUNNING, SUCCEEDED, ...)")

    p = _command(sub, "wait", help="block until jobs end; exit with their outcome",
                 formatter_class=argparse.RawDescriptionHelpFormatter,
                 description="Wait for jobs to end, printing their output as they run (each "
                             "line after\n'<id>: ' when there are several), and exit with "
                             "the outcome. A daemon restart\nmeanwhile is ridden out: no line "
                             "is lost or printed twice.",
                 epilog=EXIT_CODES_HELP)
    _add_discovery(p, json_help="at the end, print each job's status and outcome as JSON")
    p.add_argument("job_ids", nargs="+", metavar="ID", help="job ids")
    _add_wait_options(p, in_submit=False)


def _add_register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _command(sub, "register", help="register or update a host")
    _add_discovery(p, json_input=True)
    p.add_argument("--host-id", metavar="ID", help="the host's id (its name in lists)")
    p.add_argument("--slots", type=int, metavar="N", help="jobs it may run at once")
    p.add_argument("--cpu", type=int, metavar="N", help="cpus it has for jobs")
    p.add_argument("--memory-gb", type=float, metavar="GB", help="memory it has for jobs")
    p.add_argument("--label", action="append", type=_key_value, default=[], metavar="KEY=VAL",
                   help="a label jobs can ask for (repeatable), e.g. tool=innovus")
    p.add_argument("--executor-prefix", metavar="PREFIX",
                   help="run jobs as `<PREFIX> <quoted command>`, e.g. an ssh command")


# running ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _Context:
    client: SchedulerClient
    state_dir: Path


def run_client_command(args: argparse.Namespace) -> int:
    """Run one client subcommand; the exit code (see the module docstring)."""
    handler = _HANDLERS.get(args.command)
    if handler is None:
        raise ValueError(f"not a client command: {args.command!r}")
    state_dir: Path | None = None
    url = "?"
    try:
        config = None
        if args.config:
            from apr_sched.config import load_config

            config = load_config(args.config)
        state_dir = resolve_state_dir(args.state_dir or (config.state_dir if config else None))
        url, token = find_daemon(args.url, args.token, config, state_dir)
        with SchedulerClient(url, token) as client:
            return handler(_Context(client, state_dir), args)
    except AuthFailed as exc:
        where = f", or check {state_dir / TOKEN_FILE}" if state_dir else ""
        _error(f"{url} refused the token ({exc.message}); pass --token, set ${TOKEN_ENV}"
               f"{where}")
        return 2
    except (NotFound, IllegalTransition, HostBusy, Forbidden) as exc:
        _error(exc.message)
        return 1
    except AprError as exc:  # DaemonUnreachable, InvalidInput and the rest
        _error(exc.message)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit flush quiet.
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _error(message: str) -> None:
    print(f"apr-sched: {message}", file=sys.stderr, flush=True)


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2))


def _read_json_file(name: str) -> Any:
    try:
        text = sys.stdin.read() if name == "-" else Path(name).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise InvalidInput(f"{name}: {reason}", [{"field": "(file)", "message": reason}]
                           ) from None
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InvalidInput(f"{name}: not valid JSON: {exc}",
                           [{"field": "(file)", "message": str(exc)}]) from None


def _json_object_file(name: str, what: str) -> dict[str, Any]:
    data = _read_json_file(name)
    if not isinstance(data, dict):
        raise InvalidInput(f"{name}: expected a JSON object ({what})",
                           [{"field": "(file)", "message": "must be a JSON object"}])
    return data


def _valid_ids(job_ids: Iterable[str]) -> list[str]:
    ids = list(dict.fromkeys(job_ids))
    bad = [job_id for job_id in ids if not is_valid_id(job_id)]
    if bad:
        raise InvalidInput(f"{bad[0]!r} is not a valid job id",
                           [{"field": "job_id", "message": "not a valid id"} for _ in bad])
    return ids


# submit ----------------------------------------------------------------------------------
def _job_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The JobSpec JSON: the --json FILE if given, with every flag given on top, and the
    submitter's environment, directory and umask (``cli_env``)."""
    spec = _json_object_file(args.json_file, "a job spec") if args.json_file else {}
    words = list(args.words)
    if words and words[0] == "--":
        words.pop(0)
    if words:
        spec["command"] = words[0] if len(words) == 1 else shlex.join(words)
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
        _error(note)
    if env.env:
        spec["env"] = {**_dict_field(spec, "env"), **env.env}
    resources = _dict_field(spec, "resource_request")
    for field in ("cpu", "memory_gb", "slots"):
        if (value := getattr(args, field)) is not None:
            resources[field] = value
    if args.label:
        resources["host_labels"] = {**_dict_field(resources, "host_labels"), **dict(args.label)}
    if resources:
        spec["resource_request"] = resources
    if args.allow_pending:
        spec["allow_pending"] = True
    return spec


def _dict_field(spec: dict[str, Any], field: str) -> dict[str, Any]:
    value = spec.get(field) or {}
    if not isinstance(value, dict):
        raise InvalidInput(f"{field} must be a JSON object",
                           [{"field": field, "message": "must be a JSON object"}])
    return dict(value)


def _submit(ctx: _Context, args: argparse.Namespace) -> int:
    job = ctx.client.submit(_job_spec(args))
    if args.json:
        _print_json(ctx.client.last_json)
    elif not args.wait:
        print(job.job_id, flush=True)
    label = job.name or "/".join(part for part in (job.project, job.design) if part)
    if not (args.wait and args.quiet):
        print(f"{'apr-sched: ' if args.wait else ''}submitted job {job.job_id} ({label}, "
              f"priority {job.priority}, {job.status}): {_short(job.command, 60)}",
              file=sys.stderr, flush=True)
    if not args.wait:
        return 0
    return _wait_for(ctx, args, [job.job_id], first_attempt=1)


def _wait(ctx: _Context, args: argparse.Namespace) -> int:
    return _wait_for(ctx, args, _valid_ids(args.job_ids), first_attempt=None)


def _wait_for(ctx: _Context, args: argparse.Namespace, job_ids: list[str], *,
              first_attempt: int | None) -> int:
    result = wait_for_jobs(ctx.client, job_ids, output=None if args.quiet else sys.stdout,
                           stop_on_interrupt=args.stop_on_interrupt,
                           reconnect_timeout=args.reconnect_timeout,
                           first_attempt=first_attempt)
    if args.json and args.command == "wait":
        _print_json({"exit_code": result.code, "interrupted_by": result.interrupted,
                     "jobs": {job_id: None if job is None else {
                         "status": job.status.value, "exit_code": job.exit_code,
                         "signal": job.signal, "outcome": exit_code_for(job)}
                         for job_id, job in result.jobs.items()}})
    for job_id, job in result.jobs.items():
        if job is not None and job.status is not JobStatus.SUCCEEDED:
            how = cli_format.reason(job) or next(
                (a.reason for a in reversed(job.attempts) if a.reason), "")
            _error(f"job {job_id} {job.status.value}" + (f" ({how})" if how else ""))
    return result.code


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _submit_batch(ctx: _Context, args: argparse.Namespace) -> int:
    data = _read_json_file(args.file)
    specs = data.get("jobs") if isinstance(data, dict) else data
    if not isinstance(specs, list):
        raise InvalidInput(f'{args.file}: expected a JSON list of jobs or {{"jobs": [...]}}',
                           [{"field": "jobs", "message": "must be a list"}])
    if args.allow_pending:
        specs = [{"allow_pending": True, **spec} if isinstance(spec, dict) else spec
                 for spec in specs]
    job_ids = ctx.client.submit_batch_ids(specs)
    if args.json:
        _print_json(ctx.client.last_json)
    elif not job_ids:
        print("submitted 0 jobs")
    else:
        span = job_ids[0] if len(job_ids) == 1 else f"{job_ids[0]}..{job_ids[-1]}"
        print(f"submitted {len(job_ids)} job{'s' if len(job_ids) != 1 else ''}: {span}")
    return 0


# jobs, job, status -----------------------------------------------------------------------
def _jobs(ctx: _Context, args: argparse.Namespace) -> int:

    statuses = [part.strip() for value in args.status or [] for part in value.split(",")
                if part.strip()]
    page = ctx.client.jobs(status=statuses or None, project=args.project, design=args.design,
                           owner=args.owner, host=args.host, limit=args.limit,
                           offset=args.offset)
    if args.json:
        _print_json(ctx.client.last_json)
        return 0
    cli_format.print_jobs(page.jobs, args.output, header=not args.noheader)
    shown = len(page.jobs)
    if shown != page.total or not shown:
        note = f"{shown} of {page.total} matching jobs shown"
        if cli_format.is_terminal():
            cli_format.print_table([cli_format.Column("")], [[(note, "dim")]], header=False)
        else:
            print(note, file=sys.stderr)
    return 0


def _job(ctx: _Context, args: argparse.Namespace) -> int:

    job = ctx.client.job(args.job_id)
    if args.json:
        _print_json(ctx.client.last_json)
        return 0
    cli_format.print_job(job)
    return 0


def _status(ctx: _Context, args: argparse.Namespace) -> int:
    """One word per job, read from the raw reply: no models are built (pydantic is not even
    loaded), so a script's status poll starts fast."""
    ids = list(args.job_ids)
    known: dict[str, JobStatus] = {}
    valid = [job_id for job_id in dict.fromkeys(ids) if is_valid_id(job_id)]
    for start in range(0, len(valid), STATUS_IDS_PER_REQUEST):
        chunk = valid[start:start + STATUS_IDS_PER_REQUEST]
        reply = ctx.client.request("GET", "/jobs",
                                   query={"id": ",".join(chunk), "limit": len(chunk)})[1]
        known.update((str(item["job_id"]), JobStatus(item["status"]))
                     for item in reply.get("jobs", []))
    if args.json:
        _print_json({job_id: (known[job_id].value if job_id in known else None)
                     for job_id in ids})
        return 0
    words = []
    for job_id in ids:
        status = known.get(job_id)
        if status is None:
            _error(f"no job {job_id!r}")
            words.append("UNKNOWN" if args.detail else UNKNOWN_JOB_WORD)
        else:
            words.append(status.value if args.detail else STATUS_WORDS[status])
    sys.stdout.write("".join(f"{word}\n" for word in words))
    sys.stdout.flush()
    return 0


# logs ------------------------------------------------------------------------------------
def _logs(ctx: _Context, args: argparse.Namespace) -> int:
    with _interruptible() if args.follow else contextlib.nullcontext():
        return _show_log(ctx, args)


def _show_log(ctx: _Context, args: argparse.Namespace) -> int:
    reply = ctx.client.logs(args.job_id, tail=args.tail, attempt=args.attempt)
    _emit_log(reply, args.json)
    if not args.follow:
        return 0
    return follow_log(ctx.client, args.job_id, int(reply["attempt"]), int(reply["offset"]),
                      output=sys.stdout, pinned=args.attempt is not None,
                      json_lines=args.json)


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Let Ctrl-C end a follow from its first read, even when we were started with SIGINT
    ignored (a shell starts ``cmd &`` so, and nohup-style launchers and test runners pass it
    on): between the first read and the follow's own handlers a SIGINT would be lost."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _emit_log(reply: dict[str, Any], as_json: bool) -> None:
    lines = reply.get("lines") or []
    if as_json:
        print(json.dumps(reply), flush=True)
    elif lines:
        sys.stdout.write("".join(f"{line}\n" for line in lines))
        sys.stdout.flush()


# control ---------------------------------------------------------------------------------
_DONE = {"pause": "paused or held", "resume": "resumed", "stop": "stopped"}


def _action(ctx: _Context, args: argparse.Namespace) -> int:

    act: Callable[[str], Job] = getattr(ctx.client, args.command)
    if args.command in BULK_ACTIONS and (filters_given(args) or args.all):
        if args.job_ids:
            raise InvalidInput(f"{args.command}: give job ids or filters, not both",
                               [{"field": "job_ids", "message": "ids and filters given"}])
        return _bulk(ctx, args, act)
    if not args.job_ids:
        raise InvalidInput(
            f"{args.command}: which jobs? give ids, filters (--owner, --status, --name, "
            "--project, --design, --host), or --all",
            [{"field": "job_ids", "message": "no ids and no filter"}])
    refused = False
    replies = []
    for job_id in args.job_ids:
        try:
            job = act(job_id)
        except (NotFound, IllegalTransition, InvalidInput, Forbidden) as exc:
            refused = True
            message = exc.message
            if not message.startswith("cannot "):
                message = f"cannot {args.command} job {job_id}: {message}"
            _error(message)
            continue
        if args.json:
            replies.append(ctx.client.last_json)
            continue
        note = ""
        if args.command == "stop" and not job.status.is_final:
            note = " (stop requested: SIGTERM sent)"
        print(f"{job.job_id}: {job.status.value}{note}", flush=True)
    if args.json:
        _print_json(replies[0] if len(args.job_ids) == 1 and replies else replies)
    return 1 if refused else 0


def _bulk(ctx: _Context, args: argparse.Namespace, act: Callable[[str], Job]) -> int:
    outcome = run_bulk(ctx.client, args, act)
    for job_id, why in outcome.refused[:10]:
        _error(f"cannot {args.command} job {job_id}: {why}")
    if len(outcome.refused) > 10:
        _error(f"and {len(outcome.refused) - 10} more refused")
    if args.json:
        _print_json({"action": args.command, "job_ids": outcome.touched,
                     "refused": [job_id for job_id, _ in outcome.refused]})
    else:
        count = len(outcome.touched)
        print(f"{_DONE[args.command]} {count} job{'s' if count != 1 else ''}"
              + (f": {', '.join(outcome.touched)}" if 0 < count <= 20 else ""), flush=True)
    return 1 if outcome.refused else 0


# hosts -----------------------------------------------------------------------------------
def _hosts(ctx: _Context, args: argparse.Namespace) -> int:

    hosts = ctx.client.hosts()
    if args.json:
        _print_json(ctx.client.last_json)
        return 0
    cli_format.print_hosts(hosts, header=not args.noheader)
    if not hosts:
        print("no hosts registered", file=sys.stderr)
    return 0


def _register(ctx: _Context, args: argparse.Namespace) -> int:

    spec = _json_object_file(args.json_file, "a host spec") if args.json_file else {}
    for flag, field in (("host_id", "host_id"), ("slots", "total_slots"),
                        ("cpu", "total_cpu"), ("memory_gb", "total_memory_gb"),
                        ("executor_prefix", "executor_prefix")):
        if (value := getattr(args, flag)) is not None:
            spec[field] = value
    if args.label:
        spec["labels"] = {**_dict_field(spec, "labels"), **dict(args.label)}
    missing = [f"--{flag.replace('_', '-')}" for flag, field in
               (("host_id", "host_id"), ("slots", "total_slots"), ("cpu", "total_cpu"),
                ("memory_gb", "total_memory_gb")) if field not in spec]
    if missing:
        raise InvalidInput(f"register needs {_join(missing)} (or --json FILE)",
                           [{"field": m.lstrip("-"), "message": "required"} for m in missing])
    host, created = ctx.client.register_host(spec)
    if args.json:
        _print_json(ctx.client.last_json)
        return 0
    print(f"{host.host_id}: {'registered' if created else 'updated'} ({host.state.value}, "
          f"{host.total_slots} slots, {host.total_cpu} cpu, {host.total_memory_gb:g} GB)")
    return 0


def _join(items: Iterable[str]) -> str:
    words = list(items)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# metrics, purge --------------------------------------------------------------------------
def _metrics(ctx: _Context, args: argparse.Namespace) -> int:

    m = ctx.client.metrics()
    if args.json:
        _print_json(ctx.client.last_json)
        return 0
    cli_format.print_fields(cli_format.describe_metrics(m))
    return 0


def _before(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or time (e.g. 2026-11-01)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _purge(ctx: _Context, args: argparse.Namespace) -> int:
    report = ctx.client.purge(args.before)
    if args.json:
        _print_json(ctx.client.last_json)
    else:
        print(f"purged {report.jobs_purged} finished jobs and {report.host_events_purged} "
              f"host events from before {report.before.isoformat()}")
    return 0


_Handler = Callable[[_Context, argparse.Namespace], int]
_HANDLERS: dict[str, _Handler] = {
    "submit": _submit,
    "submit-batch": _submit_batch,
    "jobs": _jobs,
    "job": _job,
    "status": _status,
    "wait": _wait,
    "logs": _logs,
    **dict.fromkeys(ACTIONS, _action),
    "hosts": _hosts,
    "register": _register,
    "metrics": _metrics,
    "purge": _purge,
}
