"""The HTTP server on the state dir's Unix socket, for local users who need no token.

Same protocol, limits and handler as the TCP server; each request carries the kernel's
``SO_PEERCRED`` of the connecting process (``Request.peer``), which is how the routes know
the caller. The socket is bound under a random name, given its mode (and group), and only
then renamed into place, so it is never reachable with looser permissions than asked for;
the rename also replaces a socket left by a daemon that was killed (the state-dir lock
proves it stale).
"""

from __future__ import annotations

import asyncio
import contextlib
import grp
import os
import secrets
from pathlib import Path
from typing import Any

from apr_sched.http.server import Handler, HttpLimits, HttpServer
from apr_sched.unix_socket import UNIX_SCHEME, reachable_path

__all__ = ["UnixHttpServer"]


class UnixHttpServer(HttpServer):
    """Serves ``handler`` on the Unix socket ``path`` with ``mode`` (and ``group``).

    ``close()`` removes the socket file if it is still ours.
    """

    def __init__(self, handler: Handler, path: str | os.PathLike[str], *, mode: int = 0o600,
                 group: str | None = None, limits: HttpLimits | None = None,
                 **options: Any) -> None:
        super().__init__(handler, "", 0, limits=limits or HttpLimits(), **options)
        self.path = Path(path)
        self.mode = mode
        self.group = group
        self._inode: int | None = None

    async def start(self) -> None:
        gid = -1 if self.group is None else _group_id(self.group)
        temporary = self.path.with_name(f".{self.path.name}.{secrets.token_hex(8)}")
        try:
            with reachable_path(temporary) as address:
                self._server = await asyncio.start_unix_server(self._on_connect, address)
            os.chown(temporary, -1, gid)
            os.chmod(temporary, self.mode)
            self._inode = os.stat(temporary).st_ino
            os.replace(temporary, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                temporary.unlink()
            if self._server is not None:
                self._server.close()
                self._server = None
            raise

    @property
    def url(self) -> str:
        return f"{UNIX_SCHEME}{self.path}"

    async def close(self, grace: float = 5.0) -> None:
        await super().close(grace)
        with contextlib.suppress(OSError):
            if self._inode is not None and os.stat(self.path).st_ino == self._inode:
                self.path.unlink()
        self._inode = None


def _group_id(group: str) -> int:
    try:
        return grp.getgrnam(group).gr_gid
    except KeyError:
        raise OSError(f"no group {group!r} for the socket") from None
