"""Durable state in one SQLite file (WAL): hosts, jobs, attempts and the event log.

The Scheduler is the only writer. Every change it makes goes through ``transaction()`` so a
transition, its attempt row and its event land together or not at all. A large batch is
written in several short transactions while no reader can see it, then published by one
tiny one (see "Staged batches" below and ``apr_sched/batches.py``).

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

Staged batches. A large batch's job and attempt rows are written in chunks, each its own
transaction, under a ``batches`` row whose ``event_base`` is NULL: while it is NULL the
rows are *staged*, and every reader of the jobs table here leaves their seq range out
(``_hidden``, kept in memory beside the row: no other process reads jobs). Publishing sets
``event_base`` (the seq of the batch's first event) in one transaction: from that commit on
the batch is visible whole, and its "submitted" events, one per job at ``event_base`` +
(job seq - first seq), are answered from memory (``_unwritten``) until they are written to
the events table in chunks, the last of which deletes the ``batches`` row. After a crash,
``recover_batches`` (at scheduler start) deletes staged rows and writes the events of a
published batch, derived from its jobs rows exactly as the chunks write them. Those chunks
commit without an fsync (``unsynced_transaction``): a crash may lose them, never the
fsynced publish after them (one WAL, written in order), and recovery redoes them.
"""

from __future__ import annotations

import heapq
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime
from itertools import islice
from pathlib import Path
from typing import Any, NamedTuple, overload

from apr_sched.errors import AprError, StoreUnavailable
from apr_sched.models import (
    Attempt,
    Event,
    Host,
    HostEvent,
    HostState,
    Job,
    JobEvent,
    JobSpec,
    JobStatus,
)

SCHEMA_VERSION = 4

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
CREATE TABLE IF NOT EXISTS batches (
    first_seq INTEGER PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    event_base INTEGER
);
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


def pending_job_row(seq: int, spec: JobSpec, submitted_at: str,
                    queue_seq: int) -> tuple[Any, ...]:
    """A new job's row, PENDING at attempt 1, in JOB_COLUMNS order (its id is its seq)."""
    return (seq, str(seq), spec.model_dump_json(), "PENDING", 1, None, submitted_at, None,
            None, None, None, queue_seq, 0, 0.0, None, None, None, None, spec.owner,
            spec.project, spec.design)


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
        self._synchronous = "FULL"
        self._hidden: dict[int, int] = {}
        """Staged batches, first job seq -> last: rows no reader here may see yet."""
        self._unwritten: dict[int, _UnwrittenEvents] = {}
        """Published batches, by first job seq, whose events are not all written yet."""
        if readonly:
            return
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            if synchronous not in ("FULL", "NORMAL"):
                raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
            self._db.execute(f"PRAGMA synchronous={synchronous}")
            self._synchronous = synchronous
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
            # v4: the batches table (created by _SCHEMA above) stages large batches; an
            # older database has none in flight, so there is nothing to convert.
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

    @contextmanager
    def unsynced_transaction(self) -> Iterator[None]:
        """``transaction()`` without the fsync at COMMIT, for writes a crash may lose
        (staged rows, a published batch's events): the next fsynced commit, which must
        come before they matter, makes them durable with it (one WAL, written in order),
        and recovery rebuilds them otherwise."""
        if self._in_tx or self._synchronous == "NORMAL":
            with self.transaction():
                yield
            return
        self._db.execute("PRAGMA synchronous=NORMAL")
        try:
            with self.transaction():
                yield
        finally:
            self._db.execute(f"PRAGMA synchronous={self._synchronous}")

    def checkpoint(self) -> None:
        """Copy the WAL into the database from a connection of its own: run in a thread
        (``asyncio.to_thread``) while a batch grows the WAL, so that the automatic
        checkpoint of some later commit on the loop finds little left to copy. Only an
        optimisation: a failure (disk full ...) is left to the writes to report."""
        with suppress(sqlite3.Error):
            db = sqlite3.connect(self.path, isolation_level=None)
            try:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                db.close()

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

    def _visible(self, where: JobFilter, *, unwritten: bool = False) -> JobFilter:
        """``where`` leaving out staged batches (and, if ``unwritten``, published ones whose
        events are not all written): empty when no batch is in flight, as almost always."""
        ranges = list(self._hidden.items())
        if unwritten:
            ranges += [(first, batch.last_seq) for first, batch in self._unwritten.items()]
        if not ranges:
            return where
        clause, args = where
        extra = " AND ".join("seq NOT BETWEEN ? AND ?" for _ in ranges)
        clause = f"{clause} AND {extra}" if clause else f" WHERE {extra}"
        return clause, [*args, *(bound for span in ranges for bound in span)]

    def load_unfinished_jobs(self) -> Iterator[sqlite3.Row]:
        """What a restarted scheduler keeps in memory: finished jobs are read on demand."""
        clause, args = self._visible((f" WHERE status IN {UNFINISHED!r}", []))
        return self._db.execute(f"SELECT * FROM jobs{clause} ORDER BY seq", args)

    def load_job(self, job_id: str) -> sqlite3.Row | None:
        clause, args = self._visible((" WHERE job_id=?", [job_id]))
        row: sqlite3.Row | None = self._db.execute(
            f"SELECT * FROM jobs{clause}", args).fetchone()
        return row

    def count_by_status(self) -> dict[str, int]:
        clause, args = self._visible(("", []))
        return {row[0]: row[1] for row in self._db.execute(
            f"SELECT status, COUNT(*) FROM jobs{clause} GROUP BY status", args)}

    def count_jobs(self, where: JobFilter) -> int:
        clause, args = self._visible(where)
        return int(self._db.execute(f"SELECT COUNT(*) FROM jobs{clause}", args).fetchone()[0])

    def page_jobs(self, where: JobFilter, *, after_seq: int = 0, limit: int = -1,
                  offset: int = 0) -> list[sqlite3.Row]:
        """Jobs in submit order after ``after_seq`` (keyset paging), ``limit`` -1 = all."""
        clause, args = self._visible(where)
        clause = f"{clause} AND seq > ?" if clause else " WHERE seq > ?"
        return list(self._db.execute(
            f"SELECT * FROM jobs{clause} ORDER BY seq LIMIT ? OFFSET ?",
            [*args, after_seq, limit, offset]))

    def finished_before(self, cutoff: str, limit: int) -> list[tuple[str, str]]:
        """``(job_id, status)`` of final jobs that finished before ``cutoff``, oldest first;
        none of a batch whose events are still being written (a purged job's event must
        not be written after it)."""
        clause, args = self._visible(
            (f" WHERE finished_at < ? AND status NOT IN {UNFINISHED!r}", [cutoff]),
            unwritten=True)
        return [(row[0], row[1]) for row in self._db.execute(
            f"SELECT job_id, status FROM jobs{clause} ORDER BY finished_at LIMIT ?",
            [*args, limit])]

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
        stored = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])
        return max([stored, *(b.events[-1].seq for b in self._unwritten.values())])

    def job_events(self, job_id: str) -> list[JobEvent]:
        rows = self._db.execute(
            "SELECT * FROM events WHERE kind='job' AND job_id=? ORDER BY seq", (job_id,)
        )
        events = [e for e in map(_event_from_row, rows) if isinstance(e, JobEvent)]
        if self._unwritten and job_id.isdigit():
            for batch in self._unwritten.values():
                index = int(job_id) - batch.events.first_seq
                if batch.written <= index < len(batch.events):
                    events.append(batch.events[index])
                    events.sort(key=lambda e: e.seq)
        return events

    def events_after(self, seq: int, limit: int) -> list[Event]:
        rows = self._db.execute(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        stored = [_event_from_row(r) for r in rows]
        if not self._unwritten:
            return stored
        pending: list[Event] = []
        for batch in self._unwritten.values():  # seqs the table cannot hold yet
            start = max(batch.written, seq + 1 - batch.events.base)
            pending.extend(batch.events[start:start + limit])
        return list(islice(heapq.merge(stored, sorted(pending, key=lambda e: e.seq),
                                       key=lambda e: e.seq), limit))

    # staged batches ----------------------------------------------------------------------
    def hide_batch(self, first_seq: int, last_seq: int) -> None:
        """From now on no reader sees jobs ``first_seq``..``last_seq``: call before the first
        of them is written (``open_batch``, in that write's transaction)."""
        self._hidden[first_seq] = last_seq

    def open_batch(self, first_seq: int, last_seq: int) -> None:
        """Record the staged batch, so that a crash before it is published removes it."""
        self._db.execute("INSERT INTO batches VALUES (?, ?, NULL)", (first_seq, last_seq))

    def publish_batch(self, events: SubmittedEvents) -> None:
        """Make the staged batch visible whole at this transaction's commit, with its
        "submitted" events (answered from memory until they are written)."""
        first_seq = events.first_seq
        updated = self._db.execute(
            "UPDATE batches SET event_base=? WHERE first_seq=? AND event_base IS NULL",
            (events.base, first_seq)).rowcount
        if updated != 1:
            raise RuntimeError(f"batch {first_seq} is not staged")
        batch = _UnwrittenEvents(self._hidden[first_seq], events)

        def visible() -> None:
            self._unwritten[first_seq] = batch
            del self._hidden[first_seq]

        self.after_commit(visible)

    def write_batch_events(self, first_seq: int, count: int) -> bool:
        """Write the next ``count`` events of a published batch (from its jobs rows, like
        ``recover_batches``); True once they are all written and the batch is closed."""
        batch = self._unwritten[first_seq]
        start = batch.written
        end = min(start + count, len(batch.events))
        self._db.execute(_BATCH_EVENTS, (batch.events.base, first_seq, start + first_seq,
                                         end - 1 + first_seq))
        done = end == len(batch.events)
        if done:
            self._db.execute("DELETE FROM batches WHERE first_seq=?", (first_seq,))

        def written() -> None:
            batch.written = end
            if done:
                del self._unwritten[first_seq]

        self.after_commit(written)
        return done

    def delete_staged_jobs(self, first_seq: int, count: int) -> bool:
        """Delete up to ``count`` rows of a staged batch that failed, last first; True once
        none is left and the batch is forgotten (its jobs stay hidden until then)."""
        last = self._hidden[first_seq]
        low = max(first_seq, last - count + 1)
        self._db.execute("DELETE FROM attempts WHERE job_id IN "
                         "(SELECT job_id FROM jobs WHERE seq BETWEEN ? AND ?)", (low, last))
        self._db.execute("DELETE FROM jobs WHERE seq BETWEEN ? AND ?", (low, last))
        done = low == first_seq
        if done:
            self._db.execute("DELETE FROM batches WHERE first_seq=?", (first_seq,))

        def deleted() -> None:
            if done:
                del self._hidden[first_seq]
            else:
                self._hidden[first_seq] = low - 1

        self.after_commit(deleted)
        return done

    def recover_batches(self) -> tuple[int, int]:
        """After a crash (at scheduler start, before anything is read): delete the rows of
        batches that were staged, write the events of those published; returns how many
        batches of each. Not at open: ``apr-sched token`` opens the store beside a daemon."""
        staged = published = 0
        with self.transaction():
            for first, last, base in self._db.execute(
                    "SELECT first_seq, last_seq, event_base FROM batches").fetchall():
                if base is None:
                    self._db.execute("DELETE FROM attempts WHERE job_id IN "
                                     "(SELECT job_id FROM jobs WHERE seq BETWEEN ? AND ?)",
                                     (first, last))
                    self._db.execute("DELETE FROM jobs WHERE seq BETWEEN ? AND ?",
                                     (first, last))
                    staged += 1
                else:
                    self._db.execute(_BATCH_EVENTS.replace("INSERT", "INSERT OR IGNORE", 1),
                                     (base, first, first, last))
                    published += 1
            self._db.execute("DELETE FROM batches")
        return staged, published


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


_BATCH_EVENTS = """
INSERT INTO events (seq, time, kind, job_id, host_id, attempt, from_state, to_state, reason)
SELECT ? + seq - ?, submitted_at, 'job', job_id, NULL, 1, NULL, 'PENDING', 'submitted'
FROM jobs WHERE seq BETWEEN ? AND ? ORDER BY seq
"""
"""A published batch's "submitted" events, from its jobs rows: (event_base, first_seq,
from seq, to seq). The same values the Scheduler gives them in memory."""


class SubmittedEvents(Sequence[JobEvent]):
    """A large batch's "submitted" events, made when read (10,000 of them are not built,
    held and freed for nothing): event i is job ``first_seq`` + i's, numbered ``base`` + i,
    the same values as ``_BATCH_EVENTS`` writes from the jobs rows."""

    __slots__ = ("base", "first_seq", "size", "time")

    def __init__(self, first_seq: int, size: int, base: int, time: datetime) -> None:
        self.first_seq, self.size, self.base, self.time = first_seq, size, base, time

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> JobEvent: ...
    @overload
    def __getitem__(self, index: slice) -> list[JobEvent]: ...
    def __getitem__(self, index: int | slice) -> JobEvent | list[JobEvent]:
        if isinstance(index, slice):
            return [self._event(i) for i in range(*index.indices(self.size))]
        if index < 0:
            index += self.size
        if not 0 <= index < self.size:
            raise IndexError(index)
        return self._event(index)

    def _event(self, index: int) -> JobEvent:
        return JobEvent.model_construct(
            kind="job", seq=self.base + index, time=self.time,
            job_id=str(self.first_seq + index), attempt=1, from_status=None,
            to_status=JobStatus.PENDING, reason="submitted", host_id=None)


@dataclass(slots=True)
class _UnwrittenEvents:
    """A published batch's events, answered from memory until all are in the table."""

    last_seq: int
    events: SubmittedEvents
    written: int = 0
    """Events ``[0, written)`` are in the events table."""


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
