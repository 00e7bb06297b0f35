"""Parsers of ``apr-sched pause|resume|stop|rerun``, ``hosts``, ``register``, ``metrics``
and ``purge``."""

from __future__ import annotations

import argparse

from apr_sched.cli_args import BULK_ACTIONS, _add_discovery, _command, _key_value

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    from apr_sched.cli_args import _Sub


def action_parser(action: str) -> Callable[[_Sub], None]:
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
        if action == "rerun":
            p.add_argument("--with-dependents", action="store_true",
                           help="also rerun the jobs below it that were CANCELLED because "
                                "it failed (those whose other dependencies may still hold)")
    return add


def add_hosts(sub: _Sub) -> None:
    p = _command(sub, "hosts", help="list hosts")
    _add_discovery(p)
    p.add_argument("--noheader", action="store_true", help="no header line")


def add_register(sub: _Sub) -> None:
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




def add_metrics(sub: _Sub) -> None:
    p = _command(sub, "metrics", help="summary numbers")
    _add_discovery(p)


def add_purge(sub: _Sub) -> None:
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


add_pause = action_parser("pause")
add_resume = action_parser("resume")
add_stop = action_parser("stop")
add_rerun = action_parser("rerun")
