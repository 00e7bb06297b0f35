"""Durable state in one SQLite file (WAL): hosts, jobs, attempts and the event log.

The Scheduler is the only writer. Every change it makes goes through ``transaction()`` so a
transition, its attempt row and its event land together or not at all; a batch of 10,000
jobs is one transaction.

Durability, per write kind. WAL with ``synchronous=FULL``: every commit is fsynced before
it returns, so an OS crash or power loss cannot roll back a committed transition. That
matters for one write above all: "attempt N is RUNNING" is committed *before* the wrapper is
spawned, and if an OS crash rolled it back, recovery would see a PENDING job and run it a
second time. Submits (a client got 201 for them) and final states (a client saw SUCCEEDED)
are promises too. With NORMAL, a process crash (``kill -9``) never loses a commit either;
FULL adds one fsync per transaction, and dispatch, finishes and submits are batched per
loop turn, so its cost is per batch, not per job (README has the figures). The pgid and
heartbeat bookkeeping writes are the only ones that could safely be lost (recovery finds
the wrapper in /proc by its rc path); they ride along in the same mode.

A write that fails (disk full, read-only file, I/O error) is rolled back and raised as
``StoreUnavailable``; callbacks registered with ``after_commit`` run only once the
outermost transaction has committed, which is how the Scheduler changes memory only after
the store has the change.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

from apr_sched.errors import AprError, StoreUnavailable
from apr_sched.models import (
    Attempt,
    Event,
    Host,
    HostEvent,
    HostState,
    Job,
    JobEvent,
    JobStatus,
)

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS hosts (
    host_id TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    state TEXT NOT NULL,
    registered_at TEXT NOT NULL,
    last_heartbeat TEXT
);
CREATE TABLE IF NOT EXISTS jobs (
    seq INTEGER PRIMARY KEY,
    job_id TEXT NOT NULL UNIQUE,
    spec TEXT NOT NULL,
    status TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    host_id TEXT,
    submitted_at TEXT NOT NULL,
    started_at TEXT,
    finished_at TEXT,
    exit_code INTEGER,
    signal TEXT,
    queue_seq INTEGER NOT NULL,
    retries_used INTEGER NOT NULL DEFAULT 0,
    run_sec REAL NOT NULL DEFAULT 0,
    resumed_at TEXT,
    pgid INTEGER,
    ending TEXT,
    term_sent_at TEXT,
    owner TEXT,
    project TEXT,
    design TEXT
);
CREATE INDEX IF NOT EXISTS jobs_status ON jobs (status);
CREATE TABLE IF NOT EXISTS attempts (
    job_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    host_id TEXT,
    status TEXT NOT NULL,
    queued_at TEXT,
    started_at TEXT,
    finished_at TEXT,
    exit_code INTEGER,
    signal TEXT,
    reason TEXT,
    run_sec REAL,
    PRIMARY KEY (job_id, attempt)
);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    kind TEXT NOT NULL,
    job_id TEXT,
    host_id TEXT,
    attempt INTEGER,
    from_state TEXT,
    to_state TEXT,
    reason TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_job ON events (job_id, seq);
CREATE TABLE IF NOT EXISTS tokens (
    user TEXT PRIMARY KEY,
    digest TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS idempotency_keys (
    caller TEXT NOT NULL,
    key TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at REAL NOT NULL,
    status INTEGER NOT NULL,
    reply BLOB NOT NULL,
    PRIMARY KEY (caller, key)
);
CREATE INDEX IF NOT EXISTS idempotency_keys_age ON idempotency_keys (created_at);
"""

_INDEXES = """
CREATE INDEX IF NOT EXISTS jobs_owner ON jobs (owner);
CREATE INDEX IF NOT EXISTS jobs_project ON jobs (project);
CREATE INDEX IF NOT EXISTS jobs_host ON jobs (host_id);
CREATE INDEX IF NOT EXISTS jobs_finished ON jobs (finished_at);
CREATE INDEX IF NOT EXISTS attempts_started ON attempts (started_at);
CREATE INDEX IF NOT EXISTS attempts_finished ON attempts (finished_at);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
"""
"""Created after any upgrade, so the columns they cover exist."""

UNFINISHED = ("PENDING", "HELD", "RUNNING", "PAUSED")

IDEMPOTENCY_TTL_SEC = 24 * 3600.0
"""How long a submit's ``Idempotency-Key`` is remembered; older keys are purged."""

JOB_COLUMNS = (
    "seq", "job_id", "spec", "status", "attempt", "host_id", "submitted_at", "started_at",
    "finished_at", "exit_code", "signal", "queue_seq", "retries_used", "run_sec", "resumed_at",
    "pgid", "ending", "term_sent_at", "owner", "project", "design",
)
ATTEMPT_COLUMNS = (
    "job_id", "attempt", "host_id", "status", "queued_at", "started_at", "finished_at",
    "exit_code", "signal", "reason", "run_sec",
)


class SchemaTooNew(RuntimeError):
    pass


_CAUSES = {
    "SQLITE_FULL": "disk full",
    "SQLITE_READONLY": "database is read-only",
    "SQLITE_IOERR": "I/O error",
    "SQLITE_CANTOPEN": "cannot open the database file",
    "SQLITE_BUSY": "database is locked by another process",
    "SQLITE_PERM": "permission denied",
}


def _unavailable(exc: sqlite3.Error, path: Path) -> StoreUnavailable:
    """A sqlite error as the user should read it: what is wrong with which file."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    cause = next((text for prefix, text in _CAUSES.items() if name.startswith(prefix)), None)
    cause = cause or str(exc)
    return StoreUnavailable(f"cannot write the state database {path}: {cause} ({exc})",
                            {"cause": cause, "path": str(path)})


JobFilter = tuple[str, list[Any]]
"""A ``WHERE`` clause over the jobs table and its arguments, from ``job_filter``."""


def job_filter(*, statuses: Sequence[str] | None = None, project: str | None = None,
               design: str | None = None, owner: str | None = None, host: str | None = None,
               ids: Sequence[str] | None = None) -> JobFilter:
    """Each given filter is an indexed column (status, owner, project, host, id)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("project", project), ("design", design), ("owner", owner),
                          ("host_id", host)):
        if value is not None:
            where.append(f"{column}=?")
            args.append(value)
    for column, values in (("status", statuses), ("job_id", ids)):
        if values is not None:
            where.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
            args.extend(values)
    return (f" WHERE {' AND '.join(where)}" if where else ""), args


class IdempotencyKeyTaken(AprError):
    """The caller's key already names a committed submit: nothing was created again."""

    code = "idempotency_key_taken"
    http_status = 409


@dataclass(frozen=True, slots=True)
class IdempotencyKey:
    """A caller's key for one submit, remembered with its jobs in their transaction so a
    retry after a lost reply (or a daemon restart) gets that reply instead of new jobs."""

    caller: str
    key: str
    fingerprint: str
    """Digest of what was asked (route and body): the same key for something else is
    refused rather than answered with the wrong jobs."""
    reply: Callable[[list[Job]], tuple[int, bytes]]
    """The status and body the caller answers with, given the jobs just created."""


class StoredReply(NamedTuple):
    fingerprint: str
    status: int
    body: bytes


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class Store:
    """SQLite persistence; callers group writes with ``transaction()``."""

    def __init__(self, path: Path, *, readonly: bool = False,
                 synchronous: str = "FULL") -> None:
        self.path = path
        self.failure: str | None = None
        """Why the last write failed (disk full, read-only ...); None once one succeeds."""
        self._after_commit: list[Callable[[], None]] = []
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
        if readonly:
            return
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            if synchronous not in ("FULL", "NORMAL"):
                raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._db.execute("PRAGMA foreign_keys=ON")
            self._migrate()
        except sqlite3.Error as exc:
            self._db.close()
            raise _unavailable(exc, path) from None

    def _migrate(self) -> None:
        """Create or upgrade the schema; also proves the file is writable (an immutable or
        read-only database opens fine and fails only at its first write)."""
        with self.transaction():
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            version = SCHEMA_VERSION if row is None else int(row[0])
            if version > SCHEMA_VERSION:
                raise SchemaTooNew(
                    f"{self.path} has schema version {row[0]}; this apr_sched understands "
                    f"up to {SCHEMA_VERSION}: upgrade apr_sched"
                )
            if version < 2:  # v2: a stop or timeout intent survives a restart
                self._db.execute("ALTER TABLE jobs ADD COLUMN ending TEXT")
                self._db.execute("ALTER TABLE jobs ADD COLUMN term_sent_at TEXT")
            if version < 3:  # v3: filters answered by indexes, not by reading every spec
                for name in ("owner", "project", "design"):
                    self._db.execute(f"ALTER TABLE jobs ADD COLUMN {name} TEXT")
                    self._db.execute(f"UPDATE jobs SET {name}=json_extract(spec, '$.{name}')")
            for statement in _INDEXES.split(";"):
                if statement.strip():
                    self._db.execute(statement)
            self._db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)",
                             (str(SCHEMA_VERSION),))

    def close(self) -> None:
        self._db.close()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """One atomic unit of writes; nested use joins the outer transaction.

        A failed write rolls everything back and raises ``StoreUnavailable``; callbacks
        queued with ``after_commit`` run after the outermost COMMIT, and are dropped on a
        rollback, so memory changes only once the store has the change.
        """
        if self._in_tx:
            yield
            return
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise self._failed(exc) from None
        self._in_tx = True
        try:
            yield
            self._db.execute("COMMIT")
        except BaseException as exc:
            self._after_commit.clear()
            with suppress(sqlite3.Error):  # a failed COMMIT may have ended the transaction
                self._db.execute("ROLLBACK")
            if isinstance(exc, sqlite3.Error):
                raise self._failed(exc) from None
            raise
        finally:
            self._in_tx = False
        self.failure = None
        callbacks, self._after_commit = self._after_commit, []
        for callback in callbacks:
            callback()

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the current transaction commits (at once outside one)."""
        if self._in_tx:
            self._after_commit.append(callback)
        else:
            callback()

    def _failed(self, exc: sqlite3.Error) -> StoreUnavailable:
        error = _unavailable(exc, self.path)
        self.failure = error.message
        return error

    def touch(self) -> None:
        """A harmless write: does the database accept writes again?"""
        self._db.execute("INSERT OR REPLACE INTO meta VALUES ('last_write_probe', ?)",
                         (datetime.now().isoformat(),))

    # hosts -------------------------------------------------------------------------------
    def save_host(self, host: Host) -> None:
        self._db.execute(
            "INSERT INTO hosts VALUES (?, ?, ?, ?, ?) ON CONFLICT(host_id) DO UPDATE SET "
            "spec=excluded.spec, state=excluded.state, last_heartbeat=excluded.last_heartbeat",
            (host.host_id, host.spec().model_dump_json(), host.state.value,
             _iso(host.registered_at), _iso(host.last_heartbeat)),
        )

    def delete_host(self, host_id: str) -> None:
        self._db.execute("DELETE FROM hosts WHERE host_id=?", (host_id,))

    def load_hosts(self) -> list[Host]:
        hosts = []
        for row in self._db.execute("SELECT * FROM hosts ORDER BY host_id"):
            spec = json.loads(row["spec"])
            hosts.append(Host(**spec, state=HostState(row["state"]),
                              registered_at=parse_time(row["registered_at"]),
                              last_heartbeat=parse_time(row["last_heartbeat"])))
        return hosts

    # jobs --------------------------------------------------------------------------------
    def insert_jobs(self, rows: list[tuple[Any, ...]]) -> None:
        """New jobs, each a tuple in ``JOB_COLUMNS`` order with times as ISO strings."""
        placeholders = ", ".join("?" * len(JOB_COLUMNS))
        self._db.executemany(
            f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({placeholders})", rows)

    def update_job(self, job_id: str, **columns: Any) -> None:
        assignments = ", ".join(f"{name}=?" for name in columns)
        self._db.execute(
            f"UPDATE jobs SET {assignments} WHERE job_id=?",
            (*(_iso(v) for v in columns.values()), job_id),
        )

    def load_unfinished_jobs(self) -> Iterator[sqlite3.Row]:
        """What a restarted scheduler keeps in memory: finished jobs are read on demand."""
        return self._db.execute(
            f"SELECT * FROM jobs WHERE status IN {UNFINISHED!r} ORDER BY seq")

    def load_job(self, job_id: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM jobs WHERE job_id=?", (job_id,)).fetchone()
        return row

    def count_by_status(self) -> dict[str, int]:
        return {row[0]: row[1] for row in self._db.execute(
            "SELECT status, COUNT(*) FROM jobs GROUP BY status")}

    def count_jobs(self, where: JobFilter) -> int:
        clause, args = where
        return int(self._db.execute(f"SELECT COUNT(*) FROM jobs{clause}", args).fetchone()[0])

    def page_jobs(self, where: JobFilter, *, after_seq: int = 0, limit: int = -1,
                  offset: int = 0) -> list[sqlite3.Row]:
        """Jobs in submit order after ``after_seq`` (keyset paging), ``limit`` -1 = all."""
        clause, args = where
        clause = f"{clause} AND seq > ?" if clause else " WHERE seq > ?"
        return list(self._db.execute(
            f"SELECT * FROM jobs{clause} ORDER BY seq LIMIT ? OFFSET ?",
            [*args, after_seq, limit, offset]))

    def finished_before(self, cutoff: str, limit: int) -> list[tuple[str, str]]:
        """``(job_id, status)`` of final jobs that finished before ``cutoff``, oldest first."""
        return [(row[0], row[1]) for row in self._db.execute(
            f"SELECT job_id, status FROM jobs WHERE finished_at < ? "
            f"AND status NOT IN {UNFINISHED!r} ORDER BY finished_at LIMIT ?", (cutoff, limit))]

    def delete_jobs(self, job_ids: Sequence[str]) -> None:
        """Forget final jobs with their attempts and events (retention)."""
        marks = ", ".join("?" * len(job_ids))
        for table in ("events", "attempts", "jobs"):
            self._db.execute(f"DELETE FROM {table} WHERE job_id IN ({marks})", list(job_ids))

    def delete_host_events_before(self, cutoff: str) -> int:
        cursor = self._db.execute(
            "DELETE FROM events WHERE kind='host' AND time < ?", (cutoff,))
        return int(cursor.rowcount)

    def finished_since(self, since: str) -> int:
        return int(self._db.execute(
            "SELECT COUNT(*) FROM attempts WHERE finished_at >= ?", (since,)).fetchone()[0])

    def max_job_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0])

    def max_queue_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(queue_seq), 0) FROM jobs").fetchone()[0])

    # attempts ----------------------------------------------------------------------------
    def save_attempt(self, job_id: str, attempt: int, **columns: Any) -> None:
        names = ("job_id", "attempt", *columns)
        updates = ", ".join(f"{n}=excluded.{n}" for n in columns)
        self._db.execute(
            f"INSERT INTO attempts ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT(job_id, attempt) DO UPDATE SET {updates}",
            (job_id, attempt, *(_iso(v) for v in columns.values())),
        )

    def insert_first_attempts(self, job_ids: list[str], queued_at: str) -> None:
        """Attempt 1, PENDING, of each new job."""
        self._db.executemany(
            "INSERT INTO attempts (job_id, attempt, status, queued_at) VALUES (?, 1, ?, ?)",
            [(job_id, "PENDING", queued_at) for job_id in job_ids])

    def load_attempts(self, job_id: str) -> list[Attempt]:
        rows = self._db.execute(
            "SELECT * FROM attempts WHERE job_id=? ORDER BY attempt", (job_id,)
        )
        return [
            Attempt(attempt=r["attempt"], host_id=r["host_id"], status=JobStatus(r["status"]),
                    started_at=parse_time(r["started_at"]),
                    finished_at=parse_time(r["finished_at"]), exit_code=r["exit_code"],
                    signal=r["signal"], reason=r["reason"])
            for r in rows
        ]

    def recent_attempt_times(self, limit: int) -> list[sqlite3.Row]:
        """Queue and run times of the latest started attempts, to seed metrics on restart."""
        return list(self._db.execute(
            "SELECT queued_at, started_at, finished_at, run_sec FROM attempts "
            "WHERE started_at IS NOT NULL ORDER BY started_at DESC LIMIT ?", (limit,)
        ))

    # idempotency keys --------------------------------------------------------------------
    def save_idempotent_reply(self, key: IdempotencyKey, jobs: list[Job],
                              now: float | None = None) -> None:
        """Remember ``key.reply(jobs)`` under the key, inside the caller's transaction;
        keys older than IDEMPOTENCY_TTL_SEC are purged first."""
        now = time.time() if now is None else now
        status, body = key.reply(jobs)
        self._db.execute("DELETE FROM idempotency_keys WHERE created_at <= ?",
                         (now - IDEMPOTENCY_TTL_SEC,))
        try:
            self._db.execute("INSERT INTO idempotency_keys VALUES (?, ?, ?, ?, ?, ?)",
                             (key.caller, key.key, key.fingerprint, now, status, body))
        except sqlite3.IntegrityError:
            raise IdempotencyKeyTaken(
                f"Idempotency-Key {key.key!r} was used already; its jobs exist",
                {"field": "Idempotency-Key", "key": key.key}) from None

    def idempotent_reply(self, caller: str, key: str,
                         now: float | None = None) -> StoredReply | None:
        """The reply remembered under the caller's key, unless it has expired."""
        now = time.time() if now is None else now
        row = self._db.execute(
            "SELECT fingerprint, status, reply FROM idempotency_keys "
            "WHERE caller=? AND key=? AND created_at > ?",
            (caller, key, now - IDEMPOTENCY_TTL_SEC)).fetchone()
        return None if row is None else StoredReply(row[0], int(row[1]), bytes(row[2]))

    # events ------------------------------------------------------------------------------
    def insert_events(self, events: Sequence[Event]) -> None:
        times: dict[datetime, str] = {}  # a batch shares one timestamp: format it once
        self._db.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_event_row(e, times) for e in events],
        )

    def max_event_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def job_events(self, job_id: str) -> list[JobEvent]:
        rows = self._db.execute(
            "SELECT * FROM events WHERE kind='job' AND job_id=? ORDER BY seq", (job_id,)
        )
        return [e for e in map(_event_from_row, rows) if isinstance(e, JobEvent)]

    def events_after(self, seq: int, limit: int) -> list[Event]:
        rows = self._db.execute(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        return [_event_from_row(r) for r in rows]


    # tokens ------------------------------------------------------------------------------
    def save_token(self, user: str, digest: str, admin: bool, created_at: str) -> bool:
        """Store ``user``'s token digest, replacing the one they had; True if they had one."""
        had = self.token_of(user) is not None
        self._db.execute(
            "INSERT INTO tokens VALUES (?, ?, ?, ?) ON CONFLICT(user) DO UPDATE SET "
            "digest=excluded.digest, admin=excluded.admin, created_at=excluded.created_at",
            (user, digest, int(admin), created_at))
        return had

    def token_of(self, user: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM tokens WHERE user=?", (user,)).fetchone()
        return row

    def token_by_digest(self, digest: str) -> sqlite3.Row | None:
        """Read on every request, never cached, so a revoke takes effect at once."""
        row: sqlite3.Row | None = self._db.execute(
            "SELECT * FROM tokens WHERE digest=?", (digest,)).fetchone()
        return row

    def load_tokens(self) -> list[sqlite3.Row]:
        return list(self._db.execute("SELECT user, admin, created_at FROM tokens ORDER BY user"))

    def delete_token(self, user: str) -> bool:
        return bool(self._db.execute("DELETE FROM tokens WHERE user=?", (user,)).rowcount)


def _event_row(event: Event, times: dict[datetime, str]) -> tuple[Any, ...]:
    time = times.get(event.time)
    if time is None:
        time = times[event.time] = event.time.isoformat()
    if isinstance(event, JobEvent):
        return (event.seq, time, "job", event.job_id, event.host_id, event.attempt,
                event.from_status, event.to_status, event.reason)
    return (event.seq, time, "host", None, event.host_id, None,
            event.from_state, event.to_state, event.reason)


def _event_from_row(row: sqlite3.Row) -> Event:
    time = parse_time(row["time"])
    if row["kind"] == "job":
        return JobEvent(
            seq=row["seq"], time=time, job_id=row["job_id"], attempt=row["attempt"],
            from_status=row["from_state"], to_status=row["to_state"], reason=row["reason"],
            host_id=row["host_id"],
        )
    return HostEvent(seq=row["seq"], time=time, host_id=row["host_id"],
                     from_state=row["from_state"], to_state=row["to_state"],
                     reason=row["reason"])
