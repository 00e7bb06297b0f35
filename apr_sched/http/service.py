"""The /scheduler endpoint as one component: token, routes and server for one Scheduler.

The headless daemon starts it; the TUI can start the same thing in-process.
"""

from __future__ import annotations

import ipaddress
import logging
import os
from pathlib import Path
from types import TracebackType

from apr_sched.errors import InvalidInput
from apr_sched.http.api import SchedulerApi
from apr_sched.http.limits import ApiLimits
from apr_sched.http.server import HttpLimits, HttpServer
from apr_sched.http.token import ensure_token, token_path
from apr_sched.http.unix import UnixHttpServer
from apr_sched.scheduler import Scheduler
from apr_sched.unix_socket import socket_path

log = logging.getLogger("apr_sched.http")

WILDCARD_HOSTS = {"0.0.0.0", "::", ""}
OPEN_NETWORK_FLAG = "--i-understand-anyone-on-the-network-can-run-commands"
"""The ``serve`` flag that allows auth off on an address other machines can reach."""


def is_loopback(host: str) -> bool:
    """True only for addresses no other machine can reach: 127.0.0.0/8, ::1, localhost.
    A wildcard or any other name counts as reachable from the network."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_exposure(host: str, *, auth: bool, allow_open_network: bool) -> None:
    """Refuse auth off on an address other machines can reach, unless explicitly allowed."""
    if not auth and not is_loopback(host) and not allow_open_network:
        raise InvalidInput(
            f"refusing to serve {host or '*'} without auth: anyone who can reach it could run "
            f"commands as this user; bind to 127.0.0.1, keep the token, or pass "
            f"{OPEN_NETWORK_FLAG}",
            [{"field": "http.auth", "message": "none is only allowed on a loopback host"}])


class HttpService:
    """Serve ``scheduler`` on ``host:port`` (port 0 picks a free one).

    With ``auth`` (the default) every endpoint but health needs a bearer token over TCP: the
    one kept in ``<state_dir>/token`` (the daemon account's, an admin) or a user's own
    (``apr-sched token add``); ``auth=False`` is for trusted single-user machines and says so.

    With ``unix_socket`` (the default) the same API is also served on
    ``<state_dir>/apr_sched.sock``, where callers are known by their uid and need no token.
    ``socket_mode`` says who may connect: by default only the daemon's account and root
    (0600), since a job another user submits runs as the daemon's account, except when the
    scheduler runs jobs as their owners (``run_as_owner``), where everyone may (0666). A
    mode that lets others in makes the state dir searchable (0711: nothing in it can be
    listed, and everything in it is owner-only); ``socket_group`` sets the socket's group.
    Auth off on an address other than loopback is refused (InvalidInput) unless
    ``allow_open_network`` says the caller means it: anyone who reaches the port could run
    any command as the daemon's user.
    """

    def __init__(self, scheduler: Scheduler, host: str = "127.0.0.1", port: int = 5000, *,
                 auth: bool = True, limits: HttpLimits | None = None,
                 api_limits: ApiLimits | None = None,
                 allow_open_network: bool = False,
                 unix_socket: bool = True, socket_mode: int | None = None,
                 socket_group: str | None = None) -> None:
        check_exposure(host, auth=auth, allow_open_network=allow_open_network)
        self.scheduler = scheduler
        self.host = host
        self.port = port
        self.auth = auth
        self.limits = limits or HttpLimits()
        self.api_limits = api_limits or ApiLimits()
        self.unix_socket = unix_socket
        self.socket_mode = socket_mode
        self.socket_group = socket_group
        self._server: HttpServer | None = None
        self._unix: UnixHttpServer | None = None
        self._api: SchedulerApi | None = None

    @property
    def url(self) -> str:
        """Where a client on this machine reaches the endpoint."""
        if self._server is None:
            raise RuntimeError("HTTP service not started")
        host = "127.0.0.1" if self.host in WILDCARD_HOSTS else self.host
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self._server.port}"

    async def start(self) -> None:
        token = ensure_token(self.scheduler.state_dir) if self.auth else None
        api = SchedulerApi(self.scheduler, token=token, limits=self.api_limits)
        self._api = api
        self._server = HttpServer(api, self.host, self.port, limits=self.limits,
                                  admit=api.admit)
        await self._server.start()
        await self._start_socket(api)
        self.scheduler.update_lock_info(url=self.url)
        if token is None:
            log.warning("HTTP auth is OFF: anyone who can reach %s controls the scheduler",
                        self.url)
        else:
            log.info("serving %s (bearer token in %s)", self.url,
                     token_path(self.scheduler.state_dir))
        if self.host in WILDCARD_HOSTS:
            log.warning("listening on all interfaces (%s); other machines can reach it",
                        self.host or "*")

    @property
    def socket_url(self) -> str | None:
        """``unix:<path>`` of the socket, or None when there is none."""
        return None if self._unix is None else self._unix.url

    async def _start_socket(self, api: SchedulerApi) -> None:
        """Listen on the state dir's socket; without one (say a file system that has no
        sockets) local users fall back to tokens, which is worth a warning, not a failure."""
        if not self.unix_socket:
            return
        state_dir = self.scheduler.state_dir
        path = socket_path(state_dir)
        mode = self.socket_mode
        if mode is None:
            mode = 0o666 if self.scheduler.run_as_owner else 0o600
        server = UnixHttpServer(api, path, mode=mode, group=self.socket_group,
                                limits=self.limits)
        try:
            await server.start()
            if mode & 0o077:
                _allow_search(state_dir)
        except OSError as exc:
            await server.close()
            log.warning("not listening on %s (%s): local users need a token", path,
                        exc.strerror or exc)
            return
        self._unix = server
        log.info("local users reach %s (mode %04o; known by uid, no token)", path, mode)
        if mode & 0o007 and (closed := _closed_ancestor(state_dir)) is not None:
            log.warning("other users cannot reach %s: %s is not searchable by them (put the "
                        "state dir somewhere like /var/lib/apr_sched)", path, closed)

    async def close(self) -> None:
        if self._api is not None:
            self._api.shutdown()
        if self._unix is not None:
            await self._unix.close()
            self._unix = None
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> HttpService:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()


def _allow_search(state_dir: Path) -> None:
    """Let other users reach the socket by name: search (x) on the state dir, never read or
    write. A state dir that is not ours is left alone."""
    st = state_dir.stat()
    if st.st_uid == os.geteuid() and st.st_mode & 0o011 != 0o011:
        os.chmod(state_dir, (st.st_mode & 0o7777) | 0o011)


def _closed_ancestor(state_dir: Path) -> Path | None:
    """The first directory above the state dir that other users may not pass through."""
    for directory in state_dir.parents:
        try:
            if not directory.stat().st_mode & 0o001:
                return directory
        except OSError:
            return directory
    return None
