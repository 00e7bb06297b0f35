"""The parsers of the ``apr-sched`` client commands: one builder per command, in one of
``cli_args_submit``, ``cli_args_jobs`` and ``cli_args_admin``, and what they share.

``apr-sched status 12`` builds the parser of ``status`` only (``cli.py`` dispatches on the
command word first); ``apr-sched --help`` builds them all. So what a command pays to start
is its own options, not every command's, and nothing here imports more than argparse and
the small modules its option types need.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable

from apr_sched.discovery import TOKEN_ENV, TOKEN_FILE

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    _Sub: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

__all__ = ["ACTIONS", "BULK_ACTIONS", "CLIENT_PARSERS", "FILTERS", "add_client_commands",
           "filters_given", "parser_builder"]

ACTIONS = ("pause", "resume", "stop", "rerun")
BULK_ACTIONS = ("pause", "resume", "stop")
FILTERS = ("owner", "status", "name", "project", "design", "host")
GRAPH_COMMANDS = ("modify", "top", "bottom", "graph")


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




def filters_given(args: argparse.Namespace) -> bool:
    return any(getattr(args, name, None) for name in FILTERS)


CLIENT_PARSERS: dict[str, str] = {
    "submit": "apr_sched.cli_args_submit:add_submit",
    "submit-batch": "apr_sched.cli_args_submit:add_submit_batch",
    "jobs": "apr_sched.cli_args_jobs:add_jobs",
    "job": "apr_sched.cli_args_jobs:add_job",
    "status": "apr_sched.cli_args_jobs:add_status",
    "wait": "apr_sched.cli_args_submit:add_wait",
    "logs": "apr_sched.cli_args_jobs:add_logs",
    **{action: f"apr_sched.cli_args_admin:add_{action}" for action in ACTIONS},
    **{name: f"apr_sched.cli_args_graph:add_{name}" for name in GRAPH_COMMANDS},
    "hosts": "apr_sched.cli_args_admin:add_hosts",
    "register": "apr_sched.cli_args_admin:add_register",
    "metrics": "apr_sched.cli_args_admin:add_metrics",
    "purge": "apr_sched.cli_args_admin:add_purge",
}
"""Each client command's parser builder, as ``module:function``, in the order ``apr-sched
--help`` lists them: only the module of the command being run is imported."""


def parser_builder(name: str) -> Callable[[_Sub], None]:
    """The function that adds client command ``name``'s parser."""
    module, _, function = CLIENT_PARSERS[name].partition(":")
    builder: Callable[[_Sub], None] = getattr(importlib.import_module(module), function)
    return builder


def add_client_commands(sub: _Sub, names: Any = None) -> None:
    """Add the client subcommands (or only those in ``names``) to ``apr-sched``'s
    subparsers."""
    for name in CLIENT_PARSERS:
        if names is None or name in names:
            parser_builder(name)(sub)
