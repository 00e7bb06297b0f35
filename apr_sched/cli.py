"""``apr-sched`` / ``python -m apr_sched``: the headless daemon and its helper commands."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

try:  # Ctrl-C while the CLI is still loading: leave as main() would, with 130, no traceback
    from apr_sched import __version__
    from apr_sched.cli_client import CLIENT_COMMANDS, add_client_commands, run_client_command
    from apr_sched.cli_tokens import add_token_commands, run_token_command
    from apr_sched.errors import AprError
    from apr_sched.lsf.cli import add_lsf_commands, run_lsf_command
    from apr_sched.statedir import resolve_state_dir
except KeyboardInterrupt:
    raise SystemExit(130) from None

if TYPE_CHECKING:
    from apr_sched.config import SchedulerConfig

log = logging.getLogger("apr_sched")

OPEN_NETWORK_FLAG = "--i-understand-anyone-on-the-network-can-run-commands"
"""The same flag as ``apr_sched.http.service.OPEN_NETWORK_FLAG`` (a test keeps them equal):
spelled here so building the parser for a client command imports no server code."""


def _add_common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="hosts.toml: scheduler settings and hosts to register")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="where the database, logs and lock live (default: $APR_SCHED_HOME, "
                             "$EDX_TMP_BASE/apr_sched, ~/.local/state/apr_sched)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="more logging (-vv for debug)")


class Parser(argparse.ArgumentParser):
    """Options are never taken by abbreviation (``--mem`` is not ``--memory-gb``); every
    subcommand's parser is one of these too (``add_subparsers`` passes the class on)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["allow_abbrev"] = False
        super().__init__(*args, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = Parser(
        prog="apr-sched", description="Job scheduler for APR (place-and-route) runs.",
        epilog="`apr-sched serve` (or `python -m apr_sched`) runs the daemon; "
               "`apr-sched COMMAND --help` tells more.")
    parser.add_argument("--version", action="version", version=f"apr_sched {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    serve = sub.add_parser("serve", help="run the scheduler daemon")
    _add_common(serve)
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1, or the "
                       "config's [http] host); 0.0.0.0 exposes the API to other machines")
    serve.add_argument("--port", type=int, help="TCP port (default 5000; 0 picks a free one)")
    serve.add_argument("--no-auth", action="store_true",
                       help="serve without the bearer token (trusted single-user machines only; "
                            "refused on a non-loopback --host unless the next flag is given)")
    serve.add_argument(OPEN_NETWORK_FLAG, dest="open_network", action="store_true",
                       help="allow --no-auth (or [http] auth = \"none\") on an address other "
                            "machines can reach: anyone there can run commands as you")
    serve.add_argument("--stop-jobs-on-exit", action="store_true",
                       help="stop running jobs on shutdown instead of leaving them to be "
                            "found again at the next start")

    add_client_commands(sub)
    add_token_commands(sub)
    add_lsf_commands(sub)

    config = sub.add_parser("config", help="configuration helpers")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    export = config_sub.add_parser("export", help="write the registered hosts as TOML")
    _add_common(export)
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")
    return parser


def status_main() -> int:
    """``apr-sched-status ID...``: ``apr-sched status`` as one word."""
    return main(["status", *sys.argv[1:]])


def stop_main() -> int:
    """``apr-sched-stop ID...``: ``apr-sched stop`` as one word (engines that cancel
    without a shell cannot run a two-word command)."""
    return main(["stop", *sys.argv[1:]])


def main(argv: Sequence[str] | None = None, *, default_command: str | None = None) -> int:
    """``apr-sched``: with no command, print the help and exit 2. ``python -m apr_sched``
    passes ``default_command="serve"``: there, no command (or options first) runs the
    daemon, as it always has. Ctrl-C at any point ends it with 130 and no traceback."""
    try:
        return _main(list(sys.argv[1:] if argv is None else argv), default_command)
    except KeyboardInterrupt:
        return 130


def _main(argv: list[str], default_command: str | None) -> int:
    starts_with_option = bool(argv) and argv[0].startswith("-") and argv[0] not in (
        "-h", "--help", "--version")
    if default_command and (not argv or starts_with_option):
        argv.insert(0, default_command)
        starts_with_option = False
    parser = build_parser()
    if not argv or starts_with_option:
        parser.print_help(sys.stderr)
        if argv:
            print(f"\napr-sched: give a command before the options ({argv[0]})",
                  file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if getattr(args, "verbose", 0) else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "serve":
            import asyncio  # only the daemon needs an event loop

            return asyncio.run(serve(args))
        if args.command == "config":
            return export_config(args)
        if args.command in CLIENT_COMMANDS:
            return run_client_command(args)
        if args.command == "token":
            return run_token_command(args)
        if args.command == "lsf-shims":
            return run_lsf_command(args)
    except AprError as exc:
        print(f"apr-sched: {exc.message}", file=sys.stderr)
        return 2
    parser.print_help(sys.stderr)
    return 2


def _load(args: argparse.Namespace) -> SchedulerConfig:
    from apr_sched.config import SchedulerConfig, load_config  # pydantic: daemon side only

    return load_config(args.config) if args.config else SchedulerConfig()


async def serve(args: argparse.Namespace) -> int:
    """Run until SIGINT/SIGTERM; running jobs survive the shutdown unless asked otherwise."""
    # The daemon's modules (scheduler, executors, asyncssh, h11) load here, not at import:
    # client commands start in tens of milliseconds.
    import asyncio

    from apr_sched.http.service import HttpService, check_exposure
    from apr_sched.scheduler import Scheduler

    config = _load(args)
    host = args.host if args.host is not None else config.http.host
    auth = not args.no_auth and config.http.auth != "none"
    check_exposure(host, auth=auth, allow_open_network=args.open_network)
    scheduler = Scheduler.from_config(config, state_dir=args.state_dir or config.state_dir)
    try:
        await scheduler.start()
    except OSError as exc:  # e.g. a read-only file system: one clear line, no traceback
        raise AprError(f"cannot use state dir {scheduler.state_dir}: {exc.strerror}"
                       + (f" ({exc.filename})" if exc.filename else "")) from None
    gc.freeze()  # what restore loaded stays: full collections need not walk it again
    log.info("apr_sched %s serving state dir %s", __version__, scheduler.state_dir)
    http = HttpService(
        scheduler, host=host,
        port=args.port if args.port is not None else config.http.port,
        auth=auth,
        limits=config.http.limits(),
        api_limits=config.http.api_limits(),
        allow_open_network=args.open_network,
        unix_socket=config.http.socket,
        socket_mode=config.http.socket_mode,
        socket_group=config.http.socket_group,
    )
    try:
        await http.start()
    except OSError as exc:
        await scheduler.close()
        raise AprError(f"cannot listen on {http.host}:{http.port}: {exc.strerror}") from None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
        log.info("shutting down%s", " and stopping running jobs" if args.stop_jobs_on_exit
                 else "; running jobs keep running and are found again at the next start")
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        await http.close()
        await scheduler.close(stop_jobs=args.stop_jobs_on_exit)
    return 0


def export_config(args: argparse.Namespace) -> int:
    """Read the hosts from the database (read-only, safe beside a running daemon)."""
    from apr_sched.config import hosts_toml
    from apr_sched.scheduler import DB_NAME
    from apr_sched.store import Store

    config = _load(args)
    state_dir = resolve_state_dir(args.state_dir or config.state_dir)
    db = state_dir / DB_NAME
    if not db.exists():
        print(f"apr-sched: no scheduler state in {state_dir} (no {DB_NAME})", file=sys.stderr)
        return 2
    store = Store(db, readonly=True)
    try:
        text = hosts_toml([host.spec() for host in store.load_hosts()])
    finally:
        store.close()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
