"""Per-caller tables: bearer-token digests, and idempotency keys with the reply they got.

Both are keyed by who asked. A token is read on every request (a revoke takes effect at
once); a submit's key is stored with its jobs in their transaction, so a retry after a
lost reply gets that reply instead of new jobs.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from apr_sched.errors import AprError
from apr_sched.models import Job
from apr_sched.store.base import StoreBase

IDEMPOTENCY_TTL_SEC = 24 * 3600.0
"""How long a submit's ``Idempotency-Key`` is remembered; older keys are purged."""


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


class CallerRows(StoreBase):
    """Tokens and idempotency keys."""

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
