"""Parsers of ``apr-sched submit``, ``submit-batch`` and ``wait``."""

from __future__ import annotations

import argparse

from apr_sched.cli_args import _add_discovery, _add_wait_options, _command, _key_value

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from apr_sched.cli_args import _Sub


def _env_mode(text: str) -> str | list[str]:
    from apr_sched.cli_env import parse_env_mode

    return parse_env_mode(text)


def add_submit(sub: _Sub) -> None:
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
    add_start_options(p)
    _add_wait_options(p, in_submit=True)
    p.add_argument("words", nargs=argparse.REMAINDER, metavar="COMMAND",
                   help="the command to run (after --)")


def add_start_options(parser: argparse.ArgumentParser) -> None:
    """When the job may start: after other jobs, once released, not before a time."""
    group = parser.add_argument_group("when it may start")
    for flag, condition, what in (
            ("--after", "after_ok", "succeeded (one that fails instead cancels this job)"),
            ("--after-any", "after_any", "ended, however they ended"),
            ("--after-failed", "after_failed",
             "ended without success (one that succeeds instead cancels this job)")):
        group.add_argument(flag, dest=condition, action="append", default=[], metavar="ID[,ID]",
                           help=f"start once these jobs {what}; repeatable")
    group.add_argument("--hold", action="store_true",
                       help="submit it HELD: it starts only once released (apr-sched resume)")
    group.add_argument("--begin", metavar="TIME",
                       help="not before TIME: 2026-12-01T18:00 (your local time unless it "
                            "names a zone) or +DURATION (+2h, +30m)")


def add_submit_batch(sub: _Sub) -> None:
    p = _command(sub, "submit-batch", help="submit a JSON file of jobs, all or nothing")
    _add_discovery(p)
    p.add_argument("file", metavar="FILE",
                   help='a JSON list of jobs or {"jobs": [...]}; - for stdin')
    p.add_argument("--allow-pending", action="store_true",
                   help="queue jobs no registered host could ever run (set allow_pending on "
                        "each job that does not say otherwise)")


def add_wait(sub: _Sub) -> None:
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
