"""The daemon's Unix socket in the state dir: where it is, and how to reach a long path.

``<state_dir>/apr_sched.sock`` speaks the same HTTP API as the TCP port; the daemon knows
who connected from the kernel (``SO_PEERCRED``), so local users need no token. Clients use
it by default when it exists and no ``--url``/``--token`` was given.

A socket path must fit in ``sun_path`` (107 bytes); state dirs can be deeper than that, so a
longer path is reached through ``/proc/self/fd/<dir fd>/apr_sched.sock`` of its opened
directory, which names the same file.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path

__all__ = ["SOCKET_NAME", "UNIX_SCHEME", "connect_unix", "find_socket", "reachable_path",
           "socket_path"]

SOCKET_NAME = "apr_sched.sock"
UNIX_SCHEME = "unix:"
"""A daemon "url" of the form ``unix:/abs/path/apr_sched.sock``."""
MAX_SUN_PATH = 107


def socket_path(state_dir: Path) -> Path:
    return Path(state_dir) / SOCKET_NAME


def find_socket(state_dir: Path) -> Path | None:
    """The state dir's socket if there is one we can see (a daemon runs, or one was killed
    and left it: connecting tells), else None."""
    path = socket_path(state_dir)
    try:
        return path if stat.S_ISSOCK(path.stat().st_mode) else None
    except OSError:  # missing, or a state dir we may not enter
        return None


@contextlib.contextmanager
def reachable_path(path: Path) -> Iterator[str]:
    """``path`` in a form ``bind()`` and ``connect()`` accept, valid inside the block."""
    if len(os.fsencode(path)) <= MAX_SUN_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def connect_unix(path: Path, timeout: float | None) -> socket.socket:
    """A connected stream socket to the daemon at ``path``; OSError if none answers."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        with reachable_path(path) as address:
            sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock
