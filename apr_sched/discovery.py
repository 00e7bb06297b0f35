"""Where the daemon is and how to prove who we are: its url (or Unix socket) and token.

Shared by the sync client, the CLI and the TUI's async client; standard library only, so a
client command pays nothing here for the models or the daemon's modules. On the usual path
(the state dir's Unix socket) it needs ``os.path`` alone: ``urllib.parse`` is loaded only to
read an ``http(s)://`` URL, and paths are strings (``pathlib`` is not loaded either).
"""

from __future__ import annotations

import os

from apr_sched.errors import InvalidInput
from apr_sched.unix_socket import UNIX_SCHEME, find_socket

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from apr_sched.config import SchedulerConfig

__all__ = [
    "DEFAULT_URL",
    "PREFIX",
    "TOKEN_ENV",
    "TOKEN_FILE",
    "URL_ENV",
    "DaemonUrl",
    "find_daemon",
    "find_token",
    "find_url",
    "normalize_url",
    "parse_daemon_url",
]

DEFAULT_URL = "http://127.0.0.1:5000"
URL_ENV = "APR_SCHED_URL"
TOKEN_ENV = "APR_SCHED_TOKEN"
TOKEN_FILE = "token"
PREFIX = "/scheduler"


class DaemonUrl:
    """Where the API lives, as ``parse_daemon_url`` reads it."""

    __slots__ = ("base", "host", "netloc", "port", "scheme")

    def __init__(self, scheme: str, host: str, port: int, base: str, netloc: str) -> None:
        self.scheme = scheme
        """``unix``, ``http`` or ``https``."""
        self.host = host
        """The host name or address (IPv6 without brackets), or the socket's path."""
        self.port = port
        self.base = base
        """Path prefix of the API, ending in /scheduler."""
        self.netloc = netloc

    def _key(self) -> tuple[str, str, int, str, str]:
        return self.scheme, self.host, self.port, self.base, self.netloc

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DaemonUrl) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return "DaemonUrl(scheme={!r}, host={!r}, port={!r}, base={!r}, netloc={!r})".format(
            *self._key())


def parse_daemon_url(url: str) -> DaemonUrl:
    """Where the API lives, from an ``http(s)://host:port[/prefix]`` URL or a
    ``unix:/path`` socket (``host`` is then the path), shared by this client and the TUI's
    async one; InvalidInput for anything else."""
    url = normalize_url(url)
    if url.startswith(UNIX_SCHEME):
        path = url.removeprefix(UNIX_SCHEME)
        if not path.startswith("/"):
            raise InvalidInput(f"not an absolute socket path: {url!r}",
                               [{"field": "url", "message": "expected unix:/path/to/socket"}])
        return DaemonUrl("unix", path, 0, PREFIX, "localhost")
    from urllib.parse import urlsplit  # only for TCP: the socket path needs none of it

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"not an http(s) URL: {url!r}",
                           [{"field": "url", "message": "expected http://host:port"}])
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise InvalidInput(f"bad port in URL {url!r}",
                           [{"field": "url", "message": "bad port"}]) from None
    return DaemonUrl(parts.scheme, parts.hostname, port, parts.path.rstrip("/") + PREFIX,
                     parts.netloc)


def normalize_url(url: str) -> str:
    """``host:port`` -> ``http://host:port``; no trailing slash; ``unix:/path`` as it is."""
    url = url.strip()
    if url.startswith(UNIX_SCHEME):
        return url
    if "://" not in url:
        url = f"http://{url}"
    return url.rstrip("/")


def find_url(explicit: str | None, config: SchedulerConfig | None,
             state_dir: str | os.PathLike[str]) -> str:
    """Where the daemon listens: ``--url``, ``$APR_SCHED_URL``, the url the running daemon
    recorded in ``<state_dir>/scheduler.json``, the config's ``[http]``, or the default."""
    if explicit:
        return normalize_url(explicit)
    if env := os.environ.get(URL_ENV, "").strip():
        return normalize_url(env)
    from apr_sched.statedir import read_owner  # only without a socket: not on the fast path

    try:
        owner = read_owner(state_dir)
    except OSError:  # another user's state dir: its records are not ours to read
        owner = None
    if owner and isinstance(owner.get("url"), str) and owner["url"]:
        return normalize_url(owner["url"])
    if config is not None and config.http.port:
        return f"http://{_connect_host(config.http.host)}:{config.http.port}"
    return DEFAULT_URL


def _connect_host(bind_host: str) -> str:
    """The address to connect to for a bind address: wildcards mean loopback."""
    if bind_host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if bind_host in ("::", "[::]"):
        return "[::1]"
    if ":" in bind_host and not bind_host.startswith("["):
        return f"[{bind_host}]"
    return bind_host


def find_daemon(url: str | None, token: str | None, config: SchedulerConfig | None,
                state_dir: str | os.PathLike[str]) -> tuple[str, str | None]:
    """The daemon's url and the token to send: its Unix socket (no token: it knows us by
    our uid) when the state dir has one and no url or token was given (``--url``,
    ``--token``, ``$APR_SCHED_URL``, ``$APR_SCHED_TOKEN``); else ``find_url`` and
    ``find_token``."""
    given = url or token or os.environ.get(URL_ENV, "").strip() or (
        os.environ.get(TOKEN_ENV, "").strip())
    if not given and (path := find_socket(state_dir)) is not None:
        return f"{UNIX_SCHEME}{path}", None
    return find_url(url, config, state_dir), find_token(token, state_dir)


def find_token(explicit: str | None, state_dir: str | os.PathLike[str]) -> str | None:
    """``--token``, ``$APR_SCHED_TOKEN``, or the daemon's ``<state_dir>/token`` if readable."""
    if explicit:
        return explicit
    if env := os.environ.get(TOKEN_ENV, "").strip():
        return env
    try:
        with open(os.path.join(os.fspath(state_dir), TOKEN_FILE), encoding="utf-8") as file:
            token = file.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return token or None
