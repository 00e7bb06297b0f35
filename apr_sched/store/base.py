"""The store's connection: transactions, after-commit callbacks, and what a failed write says.

Every table module of the store builds on this: a write happens inside ``transaction()``,
memory changes through ``after_commit`` only once the outermost COMMIT is done, and a
sqlite error reaches the Scheduler as ``StoreUnavailable`` naming the cause and the file.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from datetime import datetime
from pathlib import Path
from typing import Any

from apr_sched.errors import StoreUnavailable

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


def _iso(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def parse_time(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


class StoreBase:
    """One SQLite connection and its transaction discipline (``Store`` opens it)."""

    path: Path
    failure: str | None
    """Why the last write failed (disk full, read-only ...); None once one succeeds."""
    _db: sqlite3.Connection
    _in_tx: bool
    _synchronous: str
    _after_commit: list[Callable[[], None]]

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
