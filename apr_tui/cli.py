"""``apr-tui``: open the TUI on this machine's scheduler, in-process or attached.

    apr-tui                          in-process scheduler on the default state dir
    apr-tui --http 5000              ... also serving /scheduler on 127.0.0.1:5000
    apr-tui --connect HOST:PORT      attach to a running daemon over HTTP

When a daemon already holds the state dir, plain ``apr-tui`` says so and attaches to it
instead of starting a second scheduler: over its Unix socket (where it knows us by our uid;
the way in for users other than the daemon's) unless ``--token`` is given, else at the URL
it recorded. Quitting the in-process TUI
with jobs unfinished and choosing Detach starts such a daemon (``apr_tui.handoff``), so
scheduling goes on and the next ``apr-tui`` attaches to it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from apr_sched import __version__
from apr_sched.client import find_daemon, find_token, normalize_url
from apr_sched.config import SchedulerConfig, load_config, resolve_state_dir
from apr_sched.errors import AprError, InvalidInput, StateDirLocked
from apr_sched.http.service import HttpService
from apr_sched.scheduler import Scheduler
from apr_sched.statedir import read_owner
from apr_sched.unix_socket import UNIX_SCHEME
from apr_tui.backend import AttachedBackend, Backend, InProcessBackend
from apr_tui.handoff import DaemonHandoff
from apr_tui.settings import default_settings_path

LOG_FILE = "apr-tui.log"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="apr-tui", description="Full-screen terminal UI for apr_sched: watch hosts and "
        "jobs, follow logs, pause/resume/stop/rerun with single keys.")
    parser.add_argument("--version", action="version", version=f"apr_tui {__version__}")
    parser.add_argument("--state-dir", metavar="DIR",
                        help="scheduler state (default: $APR_SCHED_HOME, $EDX_TMP_BASE/apr_sched,"
                             " ~/.local/state/apr_sched)")
    parser.add_argument("--config", metavar="FILE", help="hosts.toml: settings and hosts")
    parser.add_argument("--http", metavar="[HOST:]PORT",
                        help="also serve the /scheduler HTTP API (host defaults to 127.0.0.1)")
    parser.add_argument("--connect", metavar="URL",
                        help="attach to a running daemon instead of running a scheduler")
    parser.add_argument("--token", help="bearer token for --connect (default: $APR_SCHED_TOKEN "
                                        "or <state_dir>/token)")
    parser.add_argument("--settings", metavar="FILE",
                        help="the TUI's own settings: columns, log options (default: "
                             "$XDG_CONFIG_HOME/apr_tui/settings.toml or "
                             "~/.config/apr_tui/settings.toml)")
    parser.add_argument("--demo", action="store_true",
                        help="show fixed demo data (no scheduler; nothing can change)")
    return parser


def parse_http(value: str) -> tuple[str, int]:
    """``5000`` -> 127.0.0.1:5000; ``0.0.0.0:5000``; ``[::1]:5000``."""
    host, sep, port = value.rpartition(":")
    if not sep:
        host, port = "127.0.0.1", value
    host = host.strip("[]") or "127.0.0.1"
    try:
        number = int(port)
    except ValueError:
        number = -1
    if not 0 <= number <= 65535:
        raise InvalidInput(f"--http: bad port in {value!r}",
                           [{"field": "http", "message": "expected [HOST:]PORT"}])
    return host, number


async def open_backend(args: argparse.Namespace) -> tuple[Backend, str | None]:
    """The started backend the command line asks for, and a note for the user, if any."""
    if args.demo:
        from apr_tui.demo import StaticBackend

        return StaticBackend(), "demo data: nothing here is real, and nothing can change"
    config = load_config(args.config) if args.config else SchedulerConfig()
    state_dir = resolve_state_dir(args.state_dir or config.state_dir)
    if args.connect:
        return await _attach(normalize_url(args.connect), args.token, state_dir), None
    foreign = False
    try:
        owner = read_owner(state_dir)
    except PermissionError:  # another user's state dir: only its daemon can be reached
        owner, foreign = {}, True
    if owner is None:
        scheduler = Scheduler.from_config(config, state_dir=state_dir)
        http = None
        if args.http:
            host, port = parse_http(args.http)
            http = HttpService(scheduler, host, port, auth=config.http.auth != "none")
        handoff = DaemonHandoff(state_dir, Path(args.config).absolute() if args.config else None)
        backend = InProcessBackend(scheduler, http, handoff=handoff)
        try:
            await backend.start()
            return backend, None
        except StateDirLocked:  # a daemon started between our look and our lock
            await backend.close()
            owner = read_owner(state_dir) or {}
    url = owner.get("url") if isinstance(owner.get("url"), str) else None
    who = f"pid {owner['pid']}" if "pid" in owner else "another scheduler"
    if not args.token:
        found, _ = find_daemon(None, None, config, state_dir)
        url = found if found.startswith(UNIX_SCHEME) else url
    if not url and foreign:
        raise AprError(f"state dir {state_dir} belongs to another user and has no daemon "
                       "socket to attach to (is its daemon running?)")
    if not url:
        raise AprError(f"state dir {state_dir} is in use by {who}, which serves no HTTP "
                       "endpoint to attach to")
    note = f"a scheduler ({who}) already owns {state_dir}: attached to it at {url}"
    return await _attach(url, args.token, state_dir, daemon_state=True), note


async def _attach(url: str, token: str | None, state_dir: Path, *,
                  daemon_state: bool = False) -> AttachedBackend:
    """``daemon_state``: ``state_dir`` is the daemon's own (its logs are on this machine)."""
    socket = url.startswith(UNIX_SCHEME)  # the daemon knows us by uid there: no token
    backend = AttachedBackend(url, None if socket else find_token(token, state_dir),
                              state_dir=state_dir if daemon_state else None)
    try:
        await backend.start()
    except BaseException:
        await backend.close()
        raise
    return backend


def _configure_logging(state_dir: Path | None) -> None:
    """Log to a file: anything written to the terminal would tear the screen."""
    root = logging.getLogger()
    handler: logging.Handler = logging.NullHandler()
    if state_dir is not None and state_dir.is_dir():
        with contextlib.suppress(OSError):
            handler = logging.FileHandler(state_dir / LOG_FILE)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(logging.INFO)


async def run(args: argparse.Namespace) -> int:
    from apr_tui.app import make_app
    from apr_tui.demo import DEMO_OWNER, demo_clock

    backend, note = await open_backend(args)
    if isinstance(backend, InProcessBackend):
        _configure_logging(backend.scheduler.state_dir)
    else:
        _configure_logging(None)
    if note:
        print(f"apr-tui: {note}", file=sys.stderr)
    settings = Path(args.settings) if args.settings else default_settings_path()
    app = make_app(backend, notice=note, clock=demo_clock if args.demo else None,
                   owner=DEMO_OWNER if args.demo else None, settings_path=settings)
    try:
        await app.run_async()
    finally:
        await backend.close()  # no-op when the app closed it on quit
    if app.farewell:
        print(app.farewell, file=sys.stderr)
    return app.return_code or 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return asyncio.run(run(args))
    except AprError as exc:
        print(f"apr-tui: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
