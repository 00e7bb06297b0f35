"""Durable state in one SQLite file (WAL): hosts, jobs, attempts and the event log.

The Scheduler is the only writer. Every change it makes goes through ``transaction()`` so a
transition, its attempt row and its event land together or not at all. A large batch is
written in several short transactions while no reader can see it, then published by one
tiny one (``staged.py``, and ``apr_sched/batches.py``).

Durability, per write kind. WAL with ``synchronous=FULL``: every commit is fsynced before
it returns, so an OS crash or power loss cannot roll back a committed transition. That
matters for one write above all: "attempt N is RUNNING" is committed *before* the wrapper is
spawned, and if an OS crash rolled it back, recovery would see a PENDING job and run it a
second time. Submits (a client got 201 for them) and final states (a client saw SUCCEEDED)
are promises too. With NORMAL, a process crash (``kill -9``) never loses a commit either;
FULL adds one fsync per transaction, and dispatch, finishes and submits are batched per
loop turn, so its cost is per batch, not per job (README has the figures). The pgid and
heartbeat bookkeeping writes are the only ones that could safely be lost (recovery finds
the wrapper in /proc by its rc path); they ride along in the same mode. A staged batch's
chunks commit without an fsync (``unsynced_transaction``): a crash may lose them, never the
fsynced publish after them (one WAL, written in order), and recovery redoes them.

A write that fails (disk full, read-only file, I/O error) is rolled back and raised as
``StoreUnavailable``; callbacks registered with ``after_commit`` run only once the
outermost transaction has committed, which is how the Scheduler changes memory only after
the store has the change.

``Store`` is one facade over one connection; each table group is its own module:
``base`` (connection, transactions), ``schema`` (tables, upgrades), ``jobs`` (jobs and
attempts), ``edges`` (who depends on whom), ``events``, ``hosts``, ``staged`` (large
batches), ``callers`` (tokens and idempotency keys).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from apr_sched.errors import StoreUnavailable
from apr_sched.store.base import _unavailable, parse_time
from apr_sched.store.callers import (
    IDEMPOTENCY_TTL_SEC,
    CallerRows,
    IdempotencyKey,
    IdempotencyKeyTaken,
    StoredReply,
)
from apr_sched.store.edges import EdgeRow, EdgeRows, edge_rows
from apr_sched.store.events import EventRows
from apr_sched.store.hosts import HostRows
from apr_sched.store.jobs import (
    ATTEMPT_COLUMNS,
    JOB_COLUMNS,
    UNFINISHED,
    JobRows,
    job_filter,
    pending_job_row,
)
from apr_sched.store.schema import SCHEMA_VERSION, SchemaTooNew, migrate
from apr_sched.store.staged import JobFilter, SubmittedEvents

__all__ = [
    "ATTEMPT_COLUMNS",
    "IDEMPOTENCY_TTL_SEC",
    "JOB_COLUMNS",
    "SCHEMA_VERSION",
    "UNFINISHED",
    "EdgeRow",
    "IdempotencyKey",
    "IdempotencyKeyTaken",
    "JobFilter",
    "SchemaTooNew",
    "Store",
    "StoredReply",
    "SubmittedEvents",
    "edge_rows",
    "job_filter",
    "parse_time",
    "pending_job_row",
]


class Store(JobRows, EdgeRows, EventRows, HostRows, CallerRows):
    """SQLite persistence; callers group writes with ``transaction()``."""

    def __init__(self, path: Path, *, readonly: bool = False,
                 synchronous: str = "FULL") -> None:
        self.path = path
        self.failure = None
        self._after_commit = []
        try:
            if not readonly and not path.exists():
                # Job commands and environments may hold secrets: owner-only from the start
                # (SQLite gives its -wal and -shm files the database file's mode).
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        except OSError as exc:
            raise StoreUnavailable(f"cannot create database {path}: {exc.strerror}",
                                   {"cause": exc.strerror, "path": str(path)}) from None
        uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
        self._db = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._in_tx = False
        self._synchronous = "FULL"
        self._hidden = {}
        self._unwritten = {}
        if readonly:
            return
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            if synchronous not in ("FULL", "NORMAL"):
                raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
            self._db.execute("PRAGMA foreign_keys=ON")
            migrate(self)
        except sqlite3.Error as exc:
            self._db.close()
            raise _unavailable(exc, path) from None
