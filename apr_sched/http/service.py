"""The /scheduler endpoint as one component: token, routes and server for one Scheduler.

The headless daemon starts it; the TUI can start the same thing in-process.
"""

from __future__ import annotations

import ipaddress
import logging
from types import TracebackType

from apr_sched.errors import InvalidInput
from apr_sched.http.api import SchedulerApi
from apr_sched.http.limits import ApiLimits
from apr_sched.http.server import HttpLimits, HttpServer
from apr_sched.http.token import ensure_token, token_path
from apr_sched.scheduler import Scheduler

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

    With ``auth`` (the default) every endpoint but health needs the bearer token kept in
    ``<state_dir>/token``; ``auth=False`` is for trusted single-user machines and says so.
    Auth off on an address other than loopback is refused (InvalidInput) unless
    ``allow_open_network`` says the caller means it: anyone who reaches the port could run
    any command as the daemon's user.
    """

    def __init__(self, scheduler: Scheduler, host: str = "127.0.0.1", port: int = 5000, *,
                 auth: bool = True, limits: HttpLimits | None = None,
                 api_limits: ApiLimits | None = None,
                 allow_open_network: bool = False) -> None:
        check_exposure(host, auth=auth, allow_open_network=allow_open_network)
        self.scheduler = scheduler
        self.host = host
        self.port = port
        self.auth = auth
        self.limits = limits or HttpLimits()
        self.api_limits = api_limits or ApiLimits()
        self._server: HttpServer | None = None
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

    async def close(self) -> None:
        if self._api is not None:
            self._api.shutdown()
        if self._server is not None:
            await self._server.close()
            self._server = None

    async def __aenter__(self) -> HttpService:
        await self.start()
        return self

    async def __aexit__(self, et: type[BaseException] | None, e: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()
