"""Bounds the /scheduler routes enforce, apart from the routes so the config can name them
without importing the Scheduler (the server's own bounds are ``server.HttpLimits``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ApiLimits:
    max_batch_jobs: int = 10_000
    """Jobs in one ``POST /jobs/batch``; more -> 413 naming the limit."""
