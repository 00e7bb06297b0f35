"""The daemon's Unix socket in the state dir: where it is, and how to reach a long path.

``<state_dir>/apr_sched.sock`` speaks the same HTTP API as the TCP port; the daemon knows
who connected from the kernel (``SO_PEERCRED``), so local users need no token. Clients use
it by default when it exists and no ``--url``/``--token`` was given.

A socket path must fit in ``sun_path`` (107 bytes); state dirs can be deeper than that, so a
longer path is reached through ``/proc/self/fd/<dir fd>/apr_sched.sock`` of its opened
directory, which names the same file.

The CLI's client (``wire``) connects with ``connect_unix_lean``: a socket of ``_socket``,
the C module under ``socket``. What ``socket.py`` adds (its constants as enums,
``makefile``, ``create_connection``) is nothing that client uses, and loading it is ~5 ms
of every ``apr-sched status`` (the most of any one module). ``_socket.socket`` is what
``socket.socket`` itself subclasses, in CPython and PyPy alike. ``connect_unix`` gives a
full ``socket.socket`` (for ``http.client`` and the like).
"""

from __future__ import annotations

import _socket
import os
import stat

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    import socket
    from types import TracebackType
    from typing import TypeVar

    S = TypeVar("S", bound=_socket.socket)

__all__ = ["SOCKET_NAME", "UNIX_SCHEME", "connect_unix", "connect_unix_lean", "find_socket",
           "reachable_path", "socket_path"]

SOCKET_NAME = "apr_sched.sock"
UNIX_SCHEME = "unix:"
"""A daemon "url" of the form ``unix:/abs/path/apr_sched.sock``."""
MAX_SUN_PATH = 107


def socket_path(state_dir: str | os.PathLike[str]) -> str:
    return os.path.join(os.fspath(state_dir), SOCKET_NAME)


def find_socket(state_dir: str | os.PathLike[str]) -> str | None:
    """The state dir's socket if there is one we can see (a daemon runs, or one was killed
    and left it: connecting tells), else None."""
    path = socket_path(state_dir)
    try:
        return path if stat.S_ISSOCK(os.stat(path).st_mode) else None
    except OSError:  # missing, or a state dir we may not enter
        return None


class reachable_path:  # lower case: it is used as a function, ``with reachable_path(p) as a``
    """``path`` in a form ``bind()`` and ``connect()`` accept, valid inside the ``with``
    block (a class, not ``contextlib.contextmanager``: the client's start skips contextlib)."""

    __slots__ = ("_fd", "_path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self._path = os.fspath(path)
        self._fd: int | None = None

    def __enter__(self) -> str:
        if len(os.fsencode(self._path)) <= MAX_SUN_PATH:
            return self._path
        directory, name = os.path.split(self._path)
        self._fd = os.open(directory, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        return f"/proc/self/fd/{self._fd}/{name}"

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)


def connect_unix(path: str | os.PathLike[str], timeout: float | None) -> socket.socket:
    """A connected stream socket to the daemon at ``path``; OSError if none answers."""
    import socket

    return _connected(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM), path, timeout)


def connect_unix_lean(path: str | os.PathLike[str], timeout: float | None) -> _socket.socket:
    """``connect_unix``'s socket as the C module makes it: send, receive, time out, close
    (see the module docstring)."""
    return _connected(_socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM), path, timeout)


def _connected(sock: S, path: str | os.PathLike[str], timeout: float | None) -> S:
    try:
        sock.settimeout(timeout)
        with reachable_path(path) as address:
            sock.connect(address)
    except BaseException:
        sock.close()
        raise
    return sock
