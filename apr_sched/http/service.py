"""The /scheduler endpoint as one component: token, routes and server for one Scheduler.

The headless daemon starts it; the TUI can start the same thing in-process.
"""

from __future__ import annotations

import logging
from types import TracebackType

from apr_sched.http.api import SchedulerApi
from apr_sched.http.server import HttpLimits, HttpServer
from apr_sched.http.token import ensure_token, token_path
from apr_sched.scheduler import Scheduler

log = logging.getLogger("apr_sched.http")

WILDCARD_HOSTS = {"0.0.0.0", "::", ""}


class HttpService:
    """Serve ``scheduler`` on ``host:port`` (port 0 picks a free one).

    With ``auth`` (the default) every endpoint but health needs the bearer token kept in
    ``<state_dir>/token``; ``auth=False`` is for trusted single-user machines and says so.
    """

    def __init__(self, scheduler: Scheduler, host: str = "127.0.0.1", port: int = 5000, *,
                 auth: bool = True, limits: HttpLimits | None = None) -> None:
        self.scheduler = scheduler
        self.host = host
        self.port = port
        self.auth = auth
        self.limits = limits or HttpLimits()
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
        api = SchedulerApi(self.scheduler, token=token)
        self._api = api
        self._server = HttpServer(api, self.host, self.port, limits=self.limits)
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
