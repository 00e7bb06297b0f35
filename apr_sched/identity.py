"""Who is asking, and what they may do: users are told apart.

A caller is identified in one of three ways, strongest first:

* over the Unix socket in the state dir, by the kernel: ``SO_PEERCRED`` gives the uid of
  the process that connected, and the uid's name is the user (as munge-style schedulers do).
  Root and the daemon's own account are admins;
* over TCP, by a per-user bearer token (``apr_sched.tokens``; ``--admin`` ones are admins)
  or by the state dir's token file, which is the daemon account's admin token;
* with auth off (``--no-auth``) a TCP caller is nobody in particular and may do anything, as
  before users were told apart.

The rules (``Identity.may_act_for``): the caller is the owner of what it submits, and only an
admin may submit for someone else; only the owner or an admin may control a job; other users
see a job's environment values as ``REDACTED``; hosts and purge are for admins.
"""

from __future__ import annotations

import os
import pwd
import socket
import struct
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "NO_AUTH",
    "REDACTED",
    "Identity",
    "LocalAccount",
    "PeerCredentials",
    "daemon_user",
    "local_account",
    "peer_credentials",
    "redacted_env",
    "socket_identity",
    "user_name",
]

REDACTED = "***"
"""What another user sees instead of each of a job's environment values."""

Via = Literal["socket", "token", "admin-token", "no-auth"]


@dataclass(frozen=True, slots=True)
class PeerCredentials:
    """The process at the other end of a Unix socket, as the kernel recorded it at connect."""

    pid: int
    uid: int
    gid: int


def peer_credentials(sock: Any) -> PeerCredentials | None:
    """``SO_PEERCRED`` of a connected Unix socket; None for any other kind of socket."""
    if sock is None or getattr(sock, "family", None) != socket.AF_UNIX:
        return None
    size = struct.calcsize("3i")
    try:
        pid, uid, gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET,
                                                            socket.SO_PEERCRED, size))
    except OSError:
        return None
    return PeerCredentials(pid, uid, gid)


@dataclass(frozen=True, slots=True)
class Identity:
    """A caller the daemon has identified."""

    user: str
    """The user name: the owner of what this caller submits."""
    admin: bool
    """May act on anyone's jobs, submit for others, manage hosts and purge."""
    via: Via
    """How the caller was identified (for messages and logs)."""

    def may_act_for(self, owner: str) -> bool:
        return self.admin or owner == self.user

    def describe(self) -> str:
        return "auth is off" if self.via == "no-auth" else f"user {self.user!r}"


NO_AUTH = Identity("anonymous", admin=True, via="no-auth")
"""A TCP caller when auth is off: unknown, so unrestricted (as before users were told
apart); jobs keep the owner they name."""

_NAME_TTL_SEC = 60.0
_names: dict[int, tuple[float, str]] = {}


def user_name(uid: int) -> str:
    """The account name of ``uid`` (the uid as digits when it has none). Cached for a minute:
    with LDAP or sssd a lookup can take milliseconds, and every socket request asks."""
    now = time.monotonic()
    cached = _names.get(uid)
    if cached is not None and now - cached[0] < _NAME_TTL_SEC:
        return cached[1]
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = str(uid)
    if len(_names) > 4096:
        _names.clear()
    _names[uid] = (now, name)
    return name


def daemon_user() -> str:
    """The account the daemon runs as: the state dir token file speaks for it."""
    return user_name(os.geteuid())


def socket_identity(peer: PeerCredentials) -> Identity:
    """A socket caller: root and the daemon's own account are admins."""
    admin = peer.uid in (0, os.geteuid())
    return Identity(user_name(peer.uid), admin=admin, via="socket")


def redacted_env(env: Mapping[str, str]) -> dict[str, str]:
    """The names stay (they say what a job is configured with), the values go."""
    return dict.fromkeys(env, REDACTED)


@dataclass(frozen=True, slots=True)
class LocalAccount:
    """A local user a job can run as (``[scheduler] run_as_owner``)."""

    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    home: str
    shell: str


def local_account(name: str) -> LocalAccount | None:
    """The local account called ``name``, with its supplementary groups; None without one."""
    try:
        entry = pwd.getpwnam(name)
    except (KeyError, ValueError):  # ValueError: a name with a NUL byte
        return None
    try:
        groups = tuple(os.getgrouplist(entry.pw_name, entry.pw_gid))
    except OSError:
        groups = (entry.pw_gid,)
    return LocalAccount(entry.pw_name, entry.pw_uid, entry.pw_gid, groups,
                        entry.pw_dir or "/", entry.pw_shell or "/bin/sh")
