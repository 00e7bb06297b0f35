"""Bounds the /scheduler routes enforce, apart from the routes so the config can name them
without importing the Scheduler (the server's own bounds are ``server.HttpLimits``)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_batch_jobs: int = 10_000
    """Jobs in one ``POST /jobs/batch``; more -> 413 naming the limit."""
    max_busy_per_client: int = 4
    """Requests from one client address worked on at once; more wait their turn. A page of
    jobs is built in steps that let other requests run, so without this one client's many
    connections would each hold a page in memory at the same time."""


class ClientTurns:
    """At most ``limit`` requests per client address are worked on at once, the rest wait
    (first come, first served): one address cannot fill the loop or the memory, and the
    others' requests are not queued behind its."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._gates: dict[str, tuple[asyncio.Semaphore, list[int]]] = {}

    @asynccontextmanager
    async def turn(self, address: str) -> AsyncIterator[None]:
        semaphore, users = self._gates.setdefault(address, (asyncio.Semaphore(self.limit), [0]))
        users[0] += 1
        try:
            async with semaphore:
                yield
        finally:
            users[0] -= 1
            if not users[0]:
                del self._gates[address]

    def busy(self, address: str) -> int:
        """Requests from ``address`` being worked on or waiting (for tests and debugging)."""
        gate = self._gates.get(address)
        return gate[1][0] if gate else 0
