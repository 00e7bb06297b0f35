"""The parsers of the ``apr-sched`` client commands: one builder per command.

``apr-sched status 12`` builds the parser of ``status`` only (``cli.py`` dispatches on the
command word first); ``apr-sched --help`` builds them all. So what a command pays to start
is its own options, not every command's, and nothing here imports more than argparse and
the small modules its option types need.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from apr_sched.discovery import TOKEN_ENV, TOKEN_FILE

if TYPE_CHECKING:
    from datetime import datetime
    from typing import TypeAlias

    _Sub: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["ACTIONS", "BULK_ACTIONS", "CLIENT_PARSERS", "FILTERS", "add_client_commands",
           "filters_given"]

ACTIONS = ("pause", "resume", "stop", "rerun")
BULK_ACTIONS = ("pause", "resume", "stop")
FILTERS = ("owner", "status", "name", "project", "design", "host")


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


def _command(sub: _Sub, name: str,
             **options: Any) -> argparse.ArgumentParser:
    """A subcommand that takes no abbreviated options: ``--mem`` is not ``--memory-gb``."""
    parser: argparse.ArgumentParser = sub.add_parser(name, allow_abbrev=False, **options)
    return parser


def _add_wait_options(parser: argparse.ArgumentParser, *, in_submit: bool) -> None:
    from apr_sched.durations import duration_arg

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




def _env_mode(text: str) -> str | list[str]:
    from apr_sched.cli_env import parse_env_mode

    return parse_env_mode(text)


def _add_submit(sub: _Sub) -> None:
    from apr_sched.durations import duration_arg
    from apr_sched.outcomes import EXIT_CODES_HELP

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
    p.add_argument("--env-mode", type=_env_mode, metavar="all|none|NAME,...",
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


def _add_submit_batch(sub: _Sub) -> None:
    p = _command(sub, "submit-batch", help="submit a JSON file of jobs, all or nothing")
    _add_discovery(p)
    p.add_argument("file", metavar="FILE",
                   help='a JSON list of jobs or {"jobs": [...]}; - for stdin')
    p.add_argument("--allow-pending", action="store_true",
                   help="queue jobs no registered host could ever run (set allow_pending on "
                        "each job that does not say otherwise)")


def _add_logs(sub: _Sub) -> None:
    p = _command(sub, "logs", help="print a job's output")
    _add_discovery(p)
    p.add_argument("job_id", metavar="ID", help="the job")
    p.add_argument("-n", "--tail", type=int, default=200, metavar="N",
                   help="the last N lines (default 200)")
    p.add_argument("--attempt", type=int, metavar="N", help="default: the latest attempt")
    p.add_argument("-f", "--follow", action="store_true",
                   help="keep printing new lines as the job writes them, until it has ended")


def _action_parser(action: str) -> Callable[[_Sub], None]:
    def add(sub: _Sub) -> None:
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
            _add_filter_options(p, action)
    return add


def _add_hosts(sub: _Sub) -> None:
    p = _command(sub, "hosts", help="list hosts")
    _add_discovery(p)
    p.add_argument("--noheader", action="store_true", help="no header line")


def _add_metrics(sub: _Sub) -> None:
    p = _command(sub, "metrics", help="summary numbers")
    _add_discovery(p)


def _add_purge(sub: _Sub) -> None:
    p = _command(sub, "purge", help="forget finished jobs (and their logs) from before a date")
    p.add_argument("--before", required=True, type=_before, metavar="DATE",
                   help="ISO date or time, e.g. 2026-11-01 or 2026-11-01T12:00 (UTC unless "
                        "it names a zone); jobs that have not finished are never purged")
    _add_discovery(p)


def _before(text: str) -> datetime:
    from datetime import UTC, datetime

    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO date or time (e.g. 2026-11-01)") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _add_jobs(sub: _Sub) -> None:
    from apr_sched import cli_format

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


def _add_job(sub: _Sub) -> None:
    p = _command(sub, "job", help="one job: fields, attempts and event timeline")
    _add_discovery(p)
    p.add_argument("job_id", metavar="ID", help="the job")


def _add_status(sub: _Sub) -> None:
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


def _add_wait(sub: _Sub) -> None:
    from apr_sched.outcomes import EXIT_CODES_HELP

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


def _add_register(sub: _Sub) -> None:
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




def _add_filter_options(parser: argparse.ArgumentParser, action: str) -> None:
    group = parser.add_argument_group(
        "filters (instead of ids; a job must match every one given)")
    group.add_argument("--owner", metavar="USER", help=f"{action} USER's jobs")
    group.add_argument("--status", metavar="STATUS",
                       help="only jobs in these states (comma-separated), among those the "
                            "action applies to")
    group.add_argument("--name", metavar="GLOB",
                       help="jobs whose name matches GLOB (shell-style: 'synth_*')")
    group.add_argument("--project", metavar="P", help="jobs of project P")
    group.add_argument("--design", metavar="D", help="jobs of design D")
    group.add_argument("--host", metavar="HOST_ID", help="jobs on host HOST_ID")
    group.add_argument("--all", action="store_true",
                       help=f"{action} every job it applies to (needed when no id or filter "
                            "is given)")


def filters_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) for name in FILTERS)


CLIENT_PARSERS: dict[str, Callable[[_Sub], None]] = {
    "submit": _add_submit,
    "submit-batch": _add_submit_batch,
    "jobs": _add_jobs,
    "job": _add_job,
    "status": _add_status,
    "wait": _add_wait,
    "logs": _add_logs,
    **{action: _action_parser(action) for action in ACTIONS},
    "hosts": _add_hosts,
    "register": _add_register,
    "metrics": _add_metrics,
    "purge": _add_purge,
}
"""Each client command's parser builder, in the order ``apr-sched --help`` lists them."""


def add_client_commands(sub: _Sub, names: Any = None) -> None:
    """Add the client subcommands (or only those in ``names``) to ``apr-sched``'s
    subparsers."""
    for name, add in CLIENT_PARSERS.items():
        if names is None or name in names:
            add(sub)
