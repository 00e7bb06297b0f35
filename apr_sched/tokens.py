"""Per-user bearer tokens for HTTP over TCP, kept hashed in the state database.

``apr-sched token add USER [--admin]`` makes a token of 32 random bytes and shows it once;
only its SHA-256 is stored, so a copy of the database gives no one a token. A request's
token is hashed and looked up by that digest: the comparison never involves the secret, so
its timing reveals nothing of a token (the digest is compared once more in constant time all
the same). One token per user: adding a token for a user replaces the old one.

The token commands write the database directly, with or without a running daemon; the
daemon reads the table on every request, so ``token revoke`` takes effect at once. Only who
can write the state database (the daemon's account, root) can manage tokens.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from apr_sched.errors import InvalidInput, NotFound
from apr_sched.identity import Identity
from apr_sched.models import utcnow
from apr_sched.store import Store

__all__ = [
    "TOKEN_PREFIX",
    "TokenInfo",
    "add_token",
    "check_user_name",
    "identify_token",
    "list_tokens",
    "revoke_token",
    "token_digest",
]

TOKEN_PREFIX = "apr_"
"""Marks our tokens, so a secret scanner (or a person) can tell what a leaked string is."""
TOKEN_BYTES = 32
_USER_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.@-]{0,127}")
"""A login name (letters, digits, ``_ . @ -``): it becomes the owner of the user's jobs."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What ``token list`` shows: never the token, which is not stored."""

    user: str
    admin: bool
    created_at: datetime


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def check_user_name(user: str) -> str:
    if not _USER_RE.fullmatch(user):
        raise InvalidInput(f"user {user!r} is not a valid user name: letters, digits, '_', "
                           "'.', '@' and '-', starting with a letter, digit or '_'",
                           [{"field": "user", "message": "not a valid user name"}])
    return user


def add_token(store: Store, user: str, *, admin: bool = False) -> tuple[str, bool]:
    """A new token for ``user`` (shown once, stored hashed) and whether it replaced one."""
    check_user_name(user)
    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    with store.transaction():
        replaced = store.save_token(user, token_digest(token), admin, utcnow().isoformat())
    return token, replaced


def list_tokens(store: Store) -> list[TokenInfo]:
    return [TokenInfo(row["user"], bool(row["admin"]), datetime.fromisoformat(row["created_at"]))
            for row in store.load_tokens()]


def revoke_token(store: Store, user: str) -> None:
    """Forget ``user``'s token: the next request with it is refused."""
    with store.transaction():
        if not store.delete_token(user):
            raise NotFound(f"user {user!r} has no token", {"user": user})


def identify_token(store: Store, token: str) -> Identity | None:
    """The user a per-user token belongs to, or None if it is no (longer a) token."""
    digest = token_digest(token)
    row = store.token_by_digest(digest)
    if row is None or not hmac.compare_digest(str(row["digest"]), digest):
        return None
    return Identity(str(row["user"]), admin=bool(row["admin"]), via="token")
