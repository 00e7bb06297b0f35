"""``apr-sched serve`` and ``apr-sched config export``: the daemon's side of the CLI,
loaded only when one of them runs (``cli.py`` builds their parsers)."""

from __future__ import annotations

import argparse
import gc
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from apr_sched import __version__
from apr_sched.errors import AprError
from apr_sched.statedir import resolve_state_dir

if TYPE_CHECKING:
    from apr_sched.config import SchedulerConfig

__all__ = ["export_config", "serve"]

log = logging.getLogger("apr_sched")


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
