"""``apr-sched`` subcommands that talk to a running daemon over its HTTP API.

``cli.py`` adds these with ``add_client_commands(subparsers)`` (``cli_args``) and hands a
parsed command in ``CLIENT_COMMANDS`` to ``run_client_command(args)``, which loads only the
handler module the command needs (``cli_submit``, ``cli_jobs``, ``cli_control``). The
daemon is found as ``discovery.find_daemon`` describes: its Unix socket in the state dir
(no token: it knows us by our uid) unless ``--url``/``--token`` (or the environment) say
otherwise, then HTTP with a bearer token.

Exit codes: 0 done; 1 the daemon refused an action (unknown id, illegal transition, not
yours); 2 unreachable daemon, refused token or invalid input; 130 interrupted. ``wait`` and
``submit --wait`` exit with the job's outcome instead (``outcomes.EXIT_CODES``). Expected
errors are one line on stderr, never a traceback. ``--json`` prints the daemon's raw JSON
reply. When stdout is not a terminal, tables are plain columns, never wrapped or cut
(``cli_format``).
"""

from __future__ import annotations

import importlib
import os
import sys

from apr_sched.cli_args import ACTIONS, BULK_ACTIONS, CLIENT_PARSERS, add_client_commands
from apr_sched.cli_common import Context, error
from apr_sched.discovery import TOKEN_ENV, TOKEN_FILE, find_daemon
from apr_sched.errors import (
    AprError,
    AuthFailed,
    Forbidden,
    HostBusy,
    IllegalTransition,
    NotFound,
)
from apr_sched.rawclient import RawClient
from apr_sched.statehome import state_dir_name

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable

    _Handler = Callable[[Context, argparse.Namespace], int]

__all__ = ["ACTIONS", "BULK_ACTIONS", "CLIENT_COMMANDS", "add_client_commands",
           "run_client_command"]

CLIENT_COMMANDS = frozenset(CLIENT_PARSERS)

_HANDLERS: dict[str, str] = {
    "submit": "apr_sched.cli_submit:run_submit",
    "submit-batch": "apr_sched.cli_submit:run_submit_batch",
    "wait": "apr_sched.cli_submit:run_wait",
    "jobs": "apr_sched.cli_jobs:run_jobs",
    "job": "apr_sched.cli_jobs:run_job",
    "status": "apr_sched.cli_jobs:run_status",
    "logs": "apr_sched.cli_jobs:run_logs",
    **dict.fromkeys(ACTIONS, "apr_sched.cli_control:run_action"),
    "modify": "apr_sched.cli_graph:run_modify",
    "top": "apr_sched.cli_graph:run_move",
    "bottom": "apr_sched.cli_graph:run_move",
    "graph": "apr_sched.cli_graph:run_graph",
    "hosts": "apr_sched.cli_control:run_hosts",
    "register": "apr_sched.cli_control:run_register",
    "metrics": "apr_sched.cli_control:run_metrics",
    "purge": "apr_sched.cli_control:run_purge",
}
"""Each command's handler, as ``module:function``: imported only when it runs."""


def handler_for(command: str) -> _Handler:
    where = _HANDLERS.get(command)
    if where is None:
        raise ValueError(f"not a client command: {command!r}")
    module, _, name = where.partition(":")
    handler: _Handler = getattr(importlib.import_module(module), name)
    return handler


def run_client_command(args: argparse.Namespace) -> int:
    """Run one client subcommand; the exit code (see the module docstring)."""
    handler = handler_for(args.command)
    state_dir: str | None = None
    url = "?"
    try:
        config = None
        if args.config:
            from apr_sched.config import load_config

            config = load_config(args.config)
        state_dir = state_dir_name(args.state_dir or (config.state_dir if config else None))
        url, token = find_daemon(args.url, args.token, config, state_dir)
        ctx = Context(RawClient(url, token), state_dir)
        try:
            return handler(ctx, args)
        finally:
            ctx.close()
    except AuthFailed as exc:
        where = f", or check {os.path.join(state_dir, TOKEN_FILE)}" if state_dir else ""
        error(f"{url} refused the token ({exc.message}); pass --token, set ${TOKEN_ENV}"
              f"{where}")
        return 2
    except (NotFound, IllegalTransition, HostBusy, Forbidden) as exc:
        error(exc.message)
        return 1
    except AprError as exc:  # DaemonUnreachable, InvalidInput and the rest
        error(exc.message)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): stop quietly, and keep Python's exit flush quiet.
        try:  # noqa: SIM105 - contextlib.suppress would load contextlib for this alone
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return 141
