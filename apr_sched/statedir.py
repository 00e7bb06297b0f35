"""One scheduler per state dir, enforced by the kernel rather than by a pid file.

``<state_dir>/scheduler.lock`` is held with ``flock(LOCK_EX)`` for the scheduler's whole life.
The kernel drops the lock when the holder dies, however it dies, so there is no stale lock
to clean up after a crash or ``kill -9``. ``<state_dir>/scheduler.json`` says who holds it
(pid, host, start time, and later the HTTP url), for error messages and for clients that
want to attach.

The state dir holds job output and environments, so it is owner-only: created 0700, and an
existing one of ours (say made by ``mkdir -p`` under umask 022) is tightened to 0700 when
the lock is taken. One owned by someone else is left as it is, with a warning.

The lock file is opened close-on-exec: jobs outlive the scheduler by design, and a job that
inherited the descriptor would keep the lock after the scheduler died. The lock file itself
is never deleted; removing it would let two schedulers lock two different inodes.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from pathlib import Path
from types import TracebackType
from typing import Any

from apr_sched.errors import StateDirLocked
from apr_sched.statehome import LEGACY_BASE_ENV, STATE_DIR_ENV, state_dir_name
from apr_sched.states import utcnow

__all__ = ["LEGACY_BASE_ENV", "LOCK_FILE", "OWNER_FILE", "STATE_DIR_ENV", "StateDirLock",
           "read_owner", "resolve_state_dir"]

LOCK_FILE = "scheduler.lock"
OWNER_FILE = "scheduler.json"

_CONTENTION_GRACE_SEC = 0.2
"""``read_owner`` probes with a shared lock held for microseconds; an ``acquire`` that
lands in that instant retries for this long before deciding the dir is really taken."""


def resolve_state_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """The state dir to use, absolute: the first of these that is set and not empty.

    ``explicit`` (``--state-dir``), ``$APR_SCHED_HOME``, ``$EDX_TMP_BASE/apr_sched`` (so the
    original deployment keeps working unchanged), ``$XDG_STATE_HOME/apr_sched``, and
    ``~/.local/state/apr_sched``. ``~`` is expanded; symlinks are left alone.
    """
    return Path(state_dir_name(explicit))


class StateDirLock:
    """Exclusive ownership of a state dir; also a context manager.

    ``with StateDirLock(path):`` acquires with no extra info; or call ``acquire(info)``
    yourself and ``release()`` (idempotent) when done.
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir)
        self.lock_path = self.state_dir / LOCK_FILE
        self.owner_path = self.state_dir / OWNER_FILE
        self._fd: int | None = None
        self._info: dict[str, Any] = {}

    @property
    def held(self) -> bool:
        return self._fd is not None

    @property
    def info(self) -> dict[str, Any]:
        """What this lock wrote to ``scheduler.json`` (a copy)."""
        return dict(self._info)

    def acquire(self, info: dict[str, Any]) -> None:
        """Take the state dir or raise ``StateDirLocked`` naming the scheduler that has it.

        ``info`` (e.g. ``{"url": ...}``) is added to what ``scheduler.json`` records.
        """
        if self._fd is not None:
            raise RuntimeError(f"{self.lock_path} is already held by this StateDirLock")
        record: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started_at": utcnow().isoformat(),
            **info,
        }
        json.dumps(record)  # refuse what cannot be recorded before taking anything
        self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        _make_private(self.state_dir)
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if not _try_lock(fd, fcntl.LOCK_EX, _CONTENTION_GRACE_SEC):
                owner = _read_owner_file(self.owner_path)
                raise StateDirLocked(_locked_message(self.state_dir, owner), owner)
            self._fd = fd
            self._info = record
            _write_json(self.owner_path, record)
        except BaseException:
            self._fd = None
            self._info = {}
            os.close(fd)  # closing drops the lock if we took it
            raise

    def update(self, **info: Any) -> None:
        """Add to the owner record, e.g. ``url=`` once the HTTP endpoint listens."""
        if self._fd is None:
            raise RuntimeError(f"{self.lock_path} is not held")
        record = {**self._info, **info}
        _write_json(self.owner_path, record)
        self._info = record

    def release(self) -> None:
        """Give the state dir up; does nothing if not held.

        ``scheduler.json`` is removed while the lock is still ours, so it can never be the
        record of a newer owner.
        """
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            self.owner_path.unlink(missing_ok=True)
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)
            self._info = {}

    def __enter__(self) -> StateDirLock:
        if self._fd is None:
            self.acquire({})
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def __repr__(self) -> str:
        return f"StateDirLock({str(self.state_dir)!r}, held={self.held})"


def read_owner(state_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The running owner's record if some scheduler holds ``state_dir``, else None.

    Held but with no readable record yet (the owner is between locking and writing) gives
    ``{}``. Creates nothing: a client asking about a dir that does not exist gets None.
    """
    lock_path = Path(state_dir) / LOCK_FILE
    try:
        fd = os.open(lock_path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        if _try_lock(fd, fcntl.LOCK_SH, 0.0):
            return None  # nobody holds it; closing releases our probe
        return _read_owner_file(Path(state_dir) / OWNER_FILE) or {}
    finally:
        os.close(fd)


def _make_private(state_dir: Path) -> None:
    """Set our own state dir to 0700; warn about one we do not own (left as it is)."""
    st = state_dir.stat()
    if st.st_mode & 0o777 == 0o700:
        return
    if st.st_uid == os.geteuid():
        os.chmod(state_dir, 0o700)
    elif st.st_mode & 0o077:
        import logging  # only here: client commands that read the state dir never log

        logging.getLogger("apr_sched.statedir").warning(
            "state dir %s (mode %o) belongs to uid %d, not to us: it stays open to others",
            state_dir, st.st_mode & 0o777, st.st_uid)


def _try_lock(fd: int, mode: int, grace_sec: float) -> bool:
    """Non-blocking flock, retried for ``grace_sec`` to ride out a probe's brief hold."""
    deadline = time.monotonic() + grace_sec
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def _read_owner_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_bytes())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Write via a temporary file and rename, so readers never see half a record."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _locked_message(state_dir: Path, owner: dict[str, Any] | None) -> str:
    """``state dir /x is in use by another scheduler (pid 1234, http://127.0.0.1:5000)``."""
    parts: list[str] = []
    if owner:
        if "pid" in owner:
            where = f"pid {owner['pid']}"
            host = owner.get("host")
            if host and host != socket.gethostname():
                where += f" on {host}"
            parts.append(where)
        if owner.get("url"):
            parts.append(str(owner["url"]))
    if not parts:
        parts.append("owner unknown")
    return f"state dir {state_dir} is in use by another scheduler ({', '.join(parts)})"
