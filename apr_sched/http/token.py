"""The bearer token that guards the HTTP endpoint: created once, readable only by its owner."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

TOKEN_FILE = "token"


def token_path(state_dir: Path) -> Path:
    return Path(state_dir) / TOKEN_FILE


def _new_token() -> str:
    """32 random bytes, URL-safe, never starting with ``-`` (``--token -x...`` would read
    as an option to every command line that is given it)."""
    while (token := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return token


def ensure_token(state_dir: Path) -> str:
    """The state dir's token, written (mode 0600, never replaced) on first use."""
    path = token_path(state_dir)
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    token = _new_token()
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = path.read_text().strip()
        if existing:
            os.chmod(path, 0o600)
            return existing
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
