"""``apr-sched`` subcommands that talk to a running daemon over its HTTP API.

``cli.py`` adds these with ``add_client_commands(subparsers)`` and hands a parsed command in
``CLIENT_COMMANDS`` to ``run_client_command(args)``. The daemon is found as ``find_daemon``
describes: its Unix socket in the state dir (no token: it knows us by our uid) unless
``--url``/``--token`` (or the environment) say otherwise, then HTTP with a bearer token.

Exit codes: 0 done; 1 the daemon refused an action (unknown id, illegal transition, not
yours);
2 unreachable daemon, refused token or invalid input; 130 interrupted. Expected errors are
one line on stderr, never a traceback. ``--json`` prints the daemon's raw JSON reply.
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
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apr_sched.client import (
    TOKEN_ENV,
    TOKEN_FILE,
    AuthFailed,
    SchedulerClient,
    find_daemon,
)
from apr_sched.errors import (
    AprError,
    Forbidden,
    HostBusy,
    IllegalTransition,
    InvalidInput,
    NotFound,
)
from apr_sched.statedir import resolve_state_dir
from apr_sched.states import HostState, JobStatus

if TYPE_CHECKING:  # rich loads to print a table, the models with the first reply they parse
    from rich.console import Console
    from rich.text import Text

    from apr_sched.models import Host, Job

__all__ = ["CLIENT_COMMANDS", "add_client_commands", "run_client_command"]

ACTIONS = ("pause", "resume", "stop", "rerun")
CLIENT_COMMANDS = frozenset({
    "submit", "submit-batch", "jobs", "job", "logs", *ACTIONS, "hosts", "register", "metrics",
    "purge",
})
FOLLOW_INTERVAL_SEC = 0.5

STATUS_STYLE = {
    JobStatus.PENDING: "yellow",
    JobStatus.HELD: "magenta",
    JobStatus.RUNNING: "cyan",
    JobStatus.PAUSED: "magenta",
    JobStatus.SUCCEEDED: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.TIMEOUT: "red",
    JobStatus.STOPPED: "dim",
}
HOST_STYLE = {
    HostState.ONLINE: "green",
    HostState.OFFLINE: "bold red",
    HostState.DRAINING: "yellow",
    HostState.CLOSED: "dim",
}


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


def _add_discovery(parser: argparse.ArgumentParser, *, json_input: bool = False) -> None:
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
    group.add_argument("-v", "--verbose", action="count", default=0, help=argparse.SUPPRESS)
    if json_input:
        parser.add_argument("--json", nargs="?", action=_JsonOption, default=False,
                            metavar="FILE",
                            help="with FILE ('-' for stdin): read the spec as JSON from it; "
                                 "alone: print the raw JSON reply (give both to do both)")
        parser.set_defaults(json_file=None)
    else:
        parser.add_argument("--json", action="store_true",
                            help="print the daemon's raw JSON reply")


def add_client_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the client subcommands to ``apr-sched``'s subparsers."""
    p = sub.add_parser(
        "submit", help="submit one job to the running daemon",
        description="Submit one job. The command follows the options; several words are "
                    "quoted with shlex.join so they run as typed, one word is used as a shell "
                    "command line: `apr-sched submit --cpu 4 -- innovus -init run.tcl`.")
    _add_discovery(p, json_input=True)
    p.add_argument("--name", help="a short name shown in lists")
    p.add_argument("--project", help="default: 'default'")
    p.add_argument("--design")
    p.add_argument("--owner", help="default: you (only an admin may name someone else)")
    p.add_argument("--priority", type=int, help="larger runs first (default 0)")
    p.add_argument("--timeout-sec", type=float, metavar="SEC", help="limit on running time")
    p.add_argument("--retry-limit", type=int, metavar="N",
                   help="requeue a FAILED or TIMEOUT attempt up to N times")
    p.add_argument("--workdir", metavar="DIR", help="run in DIR (default: the current directory)")
    p.add_argument("--cpu", type=int)
    p.add_argument("--memory-gb", type=float, metavar="GB")
    p.add_argument("--slots", type=int)
    p.add_argument("--label", action="append", type=_key_value, default=[], metavar="KEY=VAL",
                   help="a label the host must have (repeatable)")
    p.add_argument("--env", action="append", type=_key_value, default=[], metavar="KEY=VAL",
                   help="an environment variable for the job (repeatable)")
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="the command to run (after --)")

    p = sub.add_parser("submit-batch", help="submit a JSON file of jobs, all or nothing")
    _add_discovery(p)
    p.add_argument("file", metavar="FILE",
                   help='a JSON list of jobs or {"jobs": [...]}; - for stdin')

    p = sub.add_parser("jobs", help="list jobs")
    _add_discovery(p)
    p.add_argument("--status", action="extend", nargs="+", metavar="STATUS",
                   help="only these states: --status RUNNING PAUSED, repeated, or "
                        "comma-separated")
    p.add_argument("--project")
    p.add_argument("--design")
    p.add_argument("--owner")
    p.add_argument("--host", metavar="HOST_ID")
    p.add_argument("--limit", type=int, metavar="N")
    p.add_argument("--offset", type=int, metavar="N")

    p = sub.add_parser("job", help="one job: fields, attempts and event timeline")
    _add_discovery(p)
    p.add_argument("job_id", metavar="ID")

    p = sub.add_parser("logs", help="print a job's output")
    _add_discovery(p)
    p.add_argument("job_id", metavar="ID")
    p.add_argument("-n", "--tail", type=int, default=200, metavar="N",
                   help="the last N lines (default 200)")
    p.add_argument("--attempt", type=int, metavar="N", help="default: the latest attempt")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new lines until the job has ended")

    for action in ACTIONS:
        p = sub.add_parser(action, help=f"{action} jobs")
        _add_discovery(p)
        p.add_argument("job_ids", nargs="+", metavar="ID")

    p = sub.add_parser("hosts", help="list hosts")
    _add_discovery(p)

    p = sub.add_parser("register", help="register or update a host")
    _add_discovery(p, json_input=True)
    p.add_argument("--host-id", metavar="ID")
    p.add_argument("--slots", type=int, metavar="N", help="jobs it may run at once")
    p.add_argument("--cpu", type=int, metavar="N")
    p.add_argument("--memory-gb", type=float, metavar="GB")
    p.add_argument("--label", action="append", type=_key_value, default=[], metavar="KEY=VAL")
    p.add_argument("--executor-prefix", metavar="PREFIX",
                   help="run jobs as `<PREFIX> <quoted command>`, e.g. an ssh command")

    p = sub.add_parser("metrics", help="summary numbers")
    _add_discovery(p)

    p = sub.add_parser("purge", help="forget finished jobs (and their logs) from before a date")
    p.add_argument("--before", required=True, type=_before, metavar="DATE",
                   help="ISO date or time, e.g. 2026-11-01 or 2026-11-01T12:00 (UTC unless "
                        "it names a zone); jobs that have not finished are never purged")
    _add_discovery(p)


# running ---------------------------------------------------------------------------------
@dataclass(slots=True)
class _Context:
    client: SchedulerClient
    state_dir: Path
    _out: Console | None = None

    @property
    def out(self) -> Console:
        """rich's console, made on first use: a command that prints no table never loads it."""
        if self._out is None:
            from rich.console import Console

            self._out = Console(highlight=False)
        return self._out


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


# submit ----------------------------------------------------------------------------------
def _job_spec(args: argparse.Namespace) -> dict[str, Any]:
    """The JobSpec JSON: the --json FILE if given, with every flag given on top."""
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
        spec.setdefault("workdir", os.getcwd())
    if args.env:
        spec["env"] = {**_dict_field(spec, "env"), **dict(args.env)}
    resources = _dict_field(spec, "resource_request")
    for field in ("cpu", "memory_gb", "slots"):
        if (value := getattr(args, field)) is not None:
            resources[field] = value
    if args.label:
        resources["host_labels"] = {**_dict_field(resources, "host_labels"), **dict(args.label)}
    if resources:
        spec["resource_request"] = resources
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
        return 0
    print(job.job_id, flush=True)
    label = job.name or "/".join(part for part in (job.project, job.design) if part)
    print(f"submitted job {job.job_id} ({label}, priority {job.priority}, {job.status}): "
          f"{_short(job.command, 60)}", file=sys.stderr)
    return 0


def _submit_batch(ctx: _Context, args: argparse.Namespace) -> int:
    data = _read_json_file(args.file)
    specs = data.get("jobs") if isinstance(data, dict) else data
    if not isinstance(specs, list):
        raise InvalidInput(f'{args.file}: expected a JSON list of jobs or {{"jobs": [...]}}',
                           [{"field": "jobs", "message": "must be a list"}])
    job_ids = ctx.client.submit_batch_ids(specs)
    if args.json:
        _print_json(ctx.client.last_json)
    elif not job_ids:
        print("submitted 0 jobs")
    else:
        span = job_ids[0] if len(job_ids) == 1 else f"{job_ids[0]}..{job_ids[-1]}"
        print(f"submitted {len(job_ids)} job{'s' if len(job_ids) != 1 else ''}: {span}")
    return 0


# jobs ------------------------------------------------------------------------------------
def _jobs(ctx: _Context, args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    statuses = [part.strip() for value in args.status or [] for part in value.split(",")
                if part.strip()]
    page = ctx.client.jobs(status=statuses or None, project=args.project, design=args.design,
                           owner=args.owner, host=args.host, limit=args.limit,
                           offset=args.offset)
    if args.json:
        _print_json(ctx.client.last_json)
        return 0
    now = datetime.now(UTC)
    table = Table(box=None, header_style="bold", pad_edge=False)
    # On a narrow terminal only NAME and REASON give way (rich narrows only the columns
    # that may wrap); ids, numbers and states stay whole.
    for name, justify in (("ID", "right"), ("NAME", "left"), ("PROJECT", "left"),
                          ("OWNER", "left"), ("PRIO", "right"), ("STATUS", "left"),
                          ("HOST", "left"), ("ATT", "right"), ("WAIT/RAN", "right"),
                          ("REASON", "left")):
        flexible = name in ("NAME", "REASON")
        table.add_column(name, justify=justify, no_wrap=not flexible,  # type: ignore[arg-type]
                         max_width=32 if name == "NAME" else None,
                         overflow="fold" if name == "REASON" else "ellipsis")
    for job in page.jobs:
        table.add_row(
            Text(job.job_id), Text(job.name or job.design or "-"), Text(job.project),
            Text(job.owner), str(job.priority), _status(job.status), Text(job.host_id or "-"),
            str(job.attempt), f"{_waited(job, now)}/{_ran(job, now)}", Text(_reason(job)),
        )
    ctx.out.print(table)
    shown = len(page.jobs)
    if shown != page.total or not shown:
        ctx.out.print(Text(f"{shown} of {page.total} matching jobs shown", style="dim"))
    return 0


def _status(status: JobStatus) -> Text:
    from rich.text import Text

    return Text(status.value, style=STATUS_STYLE.get(status, ""))


def _reason(job: Job) -> str:
    if job.pending_reason and job.status in (JobStatus.PENDING, JobStatus.HELD):
        return job.pending_reason
    if job.status in (JobStatus.FAILED, JobStatus.TIMEOUT, JobStatus.STOPPED):
        if job.signal:
            return f"signal {job.signal}"
        if job.exit_code is not None:
            return f"exit {job.exit_code}"
    return ""


def _waited(job: Job, now: datetime) -> str:
    if job.started_at is not None:
        return _duration((job.started_at - job.submitted_at).total_seconds())
    if job.status.is_final:
        return "-"
    return _duration((now - job.submitted_at).total_seconds())


def _ran(job: Job, now: datetime) -> str:
    if job.started_at is None:
        return "-"
    return _duration(((job.finished_at or now) - job.started_at).total_seconds())


def _duration(seconds: float) -> str:
    """12s, 3m05s, 2h03m, 4d07h: short enough for a table cell."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def _time(value: datetime | None, fmt: str = "%Y-%m-%d %H:%M:%S") -> str:
    """Local time, as people read clocks; ``--json`` keeps the UTC ISO 8601 values."""
    return "-" if value is None else value.astimezone().strftime(fmt)


SHORT_TIME = "%m-%d %H:%M:%S"


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _job(ctx: _Context, args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    job = ctx.client.job(args.job_id)
    if args.json:
        _print_json(ctx.client.last_json)
        return 0
    now = datetime.now(UTC)
    fields = Table.grid(padding=(0, 2))
    fields.add_column(style="bold")
    fields.add_column()
    status = _status(job.status)
    if _reason(job):
        status.append(f"  {_reason(job)}", style="dim")
    rows: list[tuple[str, str | Text]] = [
        ("job", job.job_id), ("name", job.name or "-"), ("status", status),
        ("project", job.project), ("design", job.design or "-"), ("owner", job.owner),
        ("priority", str(job.priority)), ("command", job.command),
        ("workdir", job.workdir or "(the executing account's home)"),
        ("resources", job.resource_request.describe()),
        ("timeout", "-" if job.timeout_sec is None else _duration(job.timeout_sec)),
        ("retry limit", str(job.retry_limit)),
        ("env", " ".join(f"{k}={v}" for k, v in sorted(job.env.items())) or "-"),
        ("host", job.host_id or "-"), ("attempt", str(job.attempt)),
        ("submitted", _time(job.submitted_at)),
        ("started", _time(job.started_at)), ("finished", _time(job.finished_at)),
        ("waited/ran", f"{_waited(job, now)}/{_ran(job, now)}"),
    ]
    if job.exit_code is not None or job.signal:
        rows.append(("exit", f"signal {job.signal}" if job.signal else str(job.exit_code)))
    for key, value in rows:
        fields.add_row(key, value if isinstance(value, Text) else Text(value))
    ctx.out.print(fields)
    if job.attempts:
        attempts = Table(title="attempts", title_justify="left", box=None,
                         header_style="bold", pad_edge=False)
        for name in ("#", "HOST", "STATUS", "STARTED", "FINISHED", "EXIT", "REASON"):
            attempts.add_column(name, no_wrap=name != "REASON", overflow="fold",
                                min_width=10 if name == "REASON" else None)
        for a in job.attempts:
            exit_text = f"signal {a.signal}" if a.signal else (
                "-" if a.exit_code is None else str(a.exit_code))
            attempts.add_row(str(a.attempt), Text(a.host_id or "-"), _status(a.status),
                             _time(a.started_at, SHORT_TIME), _time(a.finished_at, SHORT_TIME),
                             exit_text,
                             Text(a.reason or ""))
        ctx.out.print()
        ctx.out.print(attempts)
    if job.events:
        events = Table(title="events", title_justify="left", box=None, header_style="bold",
                       pad_edge=False)
        for name in ("TIME", "ATT", "CHANGE", "HOST", "REASON"):
            events.add_column(name, no_wrap=name != "REASON", overflow="fold",
                              min_width=10 if name == "REASON" else None)
        for e in job.events:
            change = Text(f"{e.from_status.value} -> " if e.from_status else "")
            change.append_text(_status(e.to_status))
            events.add_row(_time(e.time, SHORT_TIME), str(e.attempt), change,
                           Text(e.host_id or "-"), Text(e.reason))
        ctx.out.print()
        ctx.out.print(events)
    return 0


# logs ------------------------------------------------------------------------------------
def _logs(ctx: _Context, args: argparse.Namespace) -> int:
    with _interruptible() if args.follow else contextlib.nullcontext():
        reply = ctx.client.logs(args.job_id, tail=args.tail, attempt=args.attempt)
        _emit_log(reply, args.json)
        if args.follow:
            _follow(ctx.client, args.job_id, reply, pinned=args.attempt is not None,
                    as_json=args.json)
    return 0


@contextlib.contextmanager
def _interruptible() -> Iterator[None]:
    """Let Ctrl-C end a follow even when we were started with SIGINT ignored.

    A shell starts background commands (``cmd &``, nohup-style launchers, a test suite run
    that way) with SIGINT ignored, and Python then installs no KeyboardInterrupt handler:
    a follow could only be killed. The previous handler comes back afterwards.
    """
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


def _follow(client: SchedulerClient, job_id: str, reply: dict[str, Any], *, pinned: bool,
            as_json: bool) -> None:
    """Print lines as they are appended until the job is final and its log drained.

    The job's state is read before the log, so a final state means everything it wrote is
    already in the file: one more empty read then proves the log drained. Without
    ``--attempt`` a retry or rerun moves the follow to the new attempt.
    """
    attempt, offset = int(reply["attempt"]), int(reply["offset"])
    while True:
        job = client.job(job_id)
        ended = job.status.is_final or attempt < job.attempt
        reply = client.logs(job_id, attempt=attempt, offset=offset)
        offset = int(reply["offset"])
        if reply.get("lines"):
            _emit_log(reply, as_json)
            continue
        if not ended:
            time.sleep(FOLLOW_INTERVAL_SEC)
        elif attempt < job.attempt and not pinned:
            attempt, offset = attempt + 1, 0
            print(f"apr-sched: job {job_id} attempt {attempt}", file=sys.stderr, flush=True)
        else:
            return


# control ---------------------------------------------------------------------------------
def _action(ctx: _Context, args: argparse.Namespace) -> int:
    from rich.text import Text

    act: Callable[[str], Job] = getattr(ctx.client, args.command)
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
        line = Text(f"{job.job_id}: ")
        line.append_text(_status(job.status))
        line.append(note)
        ctx.out.print(line)
    if args.json:
        _print_json(replies[0] if len(args.job_ids) == 1 and replies else replies)
    return 1 if refused else 0


# hosts -----------------------------------------------------------------------------------
def _hosts(ctx: _Context, args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    hosts = ctx.client.hosts()
    if args.json:
        _print_json(ctx.client.last_json)
        return 0
    now = datetime.now(UTC)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify in (("ID", "left"), ("STATE", "left"), ("SLOTS", "right"),
                          ("CPU", "right"), ("MEMORY GB", "right"), ("JOBS", "right"),
                          ("LABELS", "left"), ("HEARTBEAT", "right")):
        table.add_column(name, justify=justify,  # type: ignore[arg-type]
                         no_wrap=name != "LABELS", overflow="fold",
                         min_width=6 if name == "LABELS" else None)
    for h in hosts:
        table.add_row(
            Text(h.host_id), Text(h.state.value, style=HOST_STYLE.get(h.state, "")),
            f"{h.used_slots}/{h.total_slots}", f"{h.used_cpu}/{h.total_cpu}",
            f"{h.used_memory_gb:g}/{h.total_memory_gb:g}", str(h.running_jobs),
            Text(",".join(f"{k}={v}" for k, v in sorted(h.labels.items())) or "-"),
            _heartbeat(h, now),
        )
    ctx.out.print(table)
    if not hosts:
        ctx.out.print(Text("no hosts registered", style="dim"))
    return 0


def _heartbeat(host: Host, now: datetime) -> str:
    if host.last_heartbeat is None:
        return "-"
    return f"{_duration((now - host.last_heartbeat).total_seconds())} ago"


def _register(ctx: _Context, args: argparse.Namespace) -> int:
    from rich.text import Text

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
    ctx.out.print(Text(
        f"{host.host_id}: {'registered' if created else 'updated'} ({host.state.value}, "
        f"{host.total_slots} slots, {host.total_cpu} cpu, {host.total_memory_gb:g} GB)"))
    return 0


def _join(items: Iterable[str]) -> str:
    words = list(items)
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]


# metrics ---------------------------------------------------------------------------------
def _metrics(ctx: _Context, args: argparse.Namespace) -> int:
    from rich.table import Table
    from rich.text import Text

    m = ctx.client.metrics()
    if args.json:
        _print_json(ctx.client.last_json)
        return 0
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    by_status = Text()
    for status in JobStatus:
        count = m.jobs_by_status.get(status, 0)
        if count:
            if by_status:
                by_status.append("  ")
            by_status.append(f"{status.value} {count}", style=STATUS_STYLE.get(status, ""))
    grid.add_row("jobs", Text(f"{m.jobs_total}  ").append_text(by_status))
    grid.add_row("hosts", f"{m.hosts_online} online, {m.hosts_offline} offline, "
                          f"{m.hosts_total} total")
    for name, usage in (("slots", m.slots), ("cpu", m.cpu), ("memory GB", m.memory_gb)):
        pct = f" ({usage.used / usage.total:.0%})" if usage.total else ""
        grid.add_row(name, f"{usage.used:g} / {usage.total:g} used{pct}")
    grid.add_row("finished last hour", str(m.finished_last_hour))
    grid.add_row("wait median / p95", f"{_maybe(m.wait_sec_median)} / {_maybe(m.wait_sec_p95)}")
    grid.add_row("run median / p95", f"{_maybe(m.run_sec_median)} / {_maybe(m.run_sec_p95)}")
    ctx.out.print(grid)
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


def _maybe(seconds: float | None) -> str:
    return "-" if seconds is None else _duration(seconds)


_Handler = Callable[[_Context, argparse.Namespace], int]
_HANDLERS: dict[str, _Handler] = {
    "submit": _submit,
    "submit-batch": _submit_batch,
    "jobs": _jobs,
    "job": _job,
    "logs": _logs,
    **dict.fromkeys(ACTIONS, _action),
    "hosts": _hosts,
    "register": _register,
    "metrics": _metrics,
    "purge": _purge,
}
