"""``apr-sched`` / ``python -m apr_sched``: the headless daemon and its helper commands.

The command word is read first and only its parser is built (``cli_args`` for the client
commands), so ``apr-sched status 12`` pays for its own options, not for all of them, and
imports nothing it does not run: no logging, no pydantic, no server code. ``apr-sched``,
``--help``, ``--version`` and an unknown word build the whole parser, with every command in
its help.
"""

from __future__ import annotations

from apr_sched.startup import collection_paused, skip_final_collection

with collection_paused():  # loading makes no garbage: see apr_sched.startup
    try:  # Ctrl-C while the CLI is still loading: leave as main() would, with 130, no traceback
        import argparse
        import functools
        import os
        import sys
        from collections.abc import Callable, Sequence

        from apr_sched import __version__
        from apr_sched.cli_args import CLIENT_PARSERS, parser_builder
        from apr_sched.errors import AprError
    except KeyboardInterrupt:
        raise SystemExit(130) from None

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from typing import Any, TypeAlias

    _Sub: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]

OPEN_NETWORK_FLAG = "--i-understand-anyone-on-the-network-can-run-commands"
"""The same flag as ``apr_sched.http.service.OPEN_NETWORK_FLAG`` (a test keeps them equal):
spelled here so building the parser for a client command imports no server code."""



def add_common(parser: argparse.ArgumentParser) -> None:
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
        kwargs["formatter_class"] = _sized(kwargs.get("formatter_class",
                                                      argparse.HelpFormatter))
        super().__init__(*args, **kwargs)


@functools.cache
def _sized(formatter: type[argparse.HelpFormatter]) -> type[argparse.HelpFormatter]:
    """``formatter`` with the terminal width found without ``shutil``: argparse makes a
    formatter for every option it adds, and ``shutil`` (with bz2, lzma) costs each command
    several milliseconds to start, for a width only ``--help`` needs."""

    class Sized(formatter):  # type: ignore[valid-type,misc]
        def __init__(self, prog: str, indent_increment: int = 2,
                     max_help_position: int = 24, width: int | None = None) -> None:
            super().__init__(prog, indent_increment, max_help_position,
                             width if width is not None else _columns() - 2)

    return Sized


def _columns() -> int:
    """As ``shutil.get_terminal_size().columns``: $COLUMNS, the terminal's, else 80."""
    try:
        return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    try:
        return os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
    except (AttributeError, ValueError, OSError):
        return 80


def _add_serve(sub: _Sub) -> None:
    serve = sub.add_parser("serve", help="run the scheduler daemon")
    add_common(serve)
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


def _add_token(sub: _Sub) -> None:
    from apr_sched.cli_tokens import add_token_commands

    add_token_commands(sub)


def _add_lsf(sub: _Sub) -> None:
    from apr_sched.lsf.cli import add_lsf_commands

    add_lsf_commands(sub)


def _add_client(name: str, sub: _Sub) -> None:
    parser_builder(name)(sub)  # its module is imported only now


def _add_config(sub: _Sub) -> None:
    config = sub.add_parser("config", help="configuration helpers")
    config_sub = config.add_subparsers(dest="config_command", metavar="ACTION", required=True)
    export = config_sub.add_parser("export", help="write the registered hosts as TOML")
    add_common(export)
    export.add_argument("-o", "--output", metavar="FILE", help="write here instead of stdout")


COMMAND_PARSERS: dict[str, Callable[[_Sub], None]] = {
    "serve": _add_serve,
    **{name: functools.partial(_add_client, name) for name in CLIENT_PARSERS},
    "token": _add_token,
    "lsf-shims": _add_lsf,
    "config": _add_config,
}
"""Every command's parser builder, in the order the help lists them."""


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The ``apr-sched`` parser: every command, or only the command ``only``."""
    parser: argparse.ArgumentParser = Parser(
        prog="apr-sched", description="Job scheduler for APR (place-and-route) runs.",
        epilog="`apr-sched serve` (or `python -m apr_sched`) runs the daemon; "
               "`apr-sched COMMAND --help` tells more.")
    parser.add_argument("--version", action="version", version=f"apr_sched {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, add in COMMAND_PARSERS.items():
        if only is None or name == only:
            add(sub)
    return parser


def status_main() -> int:
    """``apr-sched-status ID...``: ``apr-sched status`` as one word."""
    return _process(["status", *sys.argv[1:]], None, own_process=True)


def stop_main() -> int:
    """``apr-sched-stop ID...``: ``apr-sched stop`` as one word (engines that cancel
    without a shell cannot run a two-word command)."""
    return _process(["stop", *sys.argv[1:]], None, own_process=True)


def main(argv: Sequence[str] | None = None, *, default_command: str | None = None) -> int:
    """``apr-sched``: with no command, print the help and exit 2. ``python -m apr_sched``
    passes ``default_command="serve"``: there, no command (or options first) runs the
    daemon, as it always has. Ctrl-C at any point ends it with 130 and no traceback.
    Without ``argv`` (the console script) the process is the command."""
    return _process(list(sys.argv[1:] if argv is None else argv), default_command,
                    own_process=argv is None)


def _process(argv: list[str], default_command: str | None, *, own_process: bool) -> int:
    try:
        return _main(argv, default_command, own_process)
    except KeyboardInterrupt:
        return 130


def _main(argv: list[str], default_command: str | None, own_process: bool) -> int:
    starts_with_option = bool(argv) and argv[0].startswith("-") and argv[0] not in (
        "-h", "--help", "--version")
    if default_command and (not argv or starts_with_option):
        argv.insert(0, default_command)
        starts_with_option = False
    if not argv or starts_with_option:
        build_parser().print_help(sys.stderr)
        if argv:
            print(f"\napr-sched: give a command before the options ({argv[0]})",
                  file=sys.stderr)
        return 2
    command = argv[0] if argv[0] in COMMAND_PARSERS else None
    with collection_paused():
        args = build_parser(command).parse_args(argv)
        client = args.command in CLIENT_PARSERS
        if client:
            from apr_sched.cli_client import handler_for, run_client_command

            handler_for(args.command)  # its module loads now, with the collector held off
    try:
        if client:
            if own_process:  # a short-lived client command: see apr_sched.startup
                skip_final_collection()
            if args.verbose:  # nothing on the client path logs unless asked
                _log_to_stderr(args.verbose)
            return run_client_command(args)
        _log_to_stderr(getattr(args, "verbose", 0))
        if args.command == "serve":
            import asyncio  # only the daemon needs an event loop

            from apr_sched.cli_daemon import serve

            return asyncio.run(serve(args))
        if args.command == "config":
            from apr_sched.cli_daemon import export_config

            return export_config(args)
        if args.command == "token":
            from apr_sched.cli_tokens import run_token_command

            return run_token_command(args)
        if args.command == "lsf-shims":
            from apr_sched.lsf.cli import run_lsf_command

            return run_lsf_command(args)
    except AprError as exc:
        print(f"apr-sched: {exc.message}", file=sys.stderr)
        return 2
    build_parser().print_help(sys.stderr)
    return 2


def _log_to_stderr(verbose: int) -> None:
    import logging

    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
