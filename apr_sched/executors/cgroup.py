"""One cgroup v2 per attempt, where this host lets us make one; nothing otherwise.

A process cannot leave its cgroup by ``setsid`` or by clearing its environment, so the
cgroup is the complete list of an attempt's processes, and ``cgroup.kill`` ends them all at
once, forks in flight included. Attempt cgroups live in ``apr-sched/`` under the
scheduler's own cgroup (root may always write there; a user can where systemd delegated
their cgroup). Where cgroup v2 is not mounted, not writable, or too old for ``cgroup.kill``
(Linux < 5.14), ``attempts_root()`` is None and the environment marker alone tracks jobs.

No controller is enabled: the cgroup is for tracking and killing, not for limits, so it
works on hybrid hosts whose controllers all sit in cgroup v1.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import os
import re
import select
import subprocess
import time
from pathlib import Path

__all__ = [
    "AttemptCgroup", "attempts_root", "cgroup2_mount", "cgroup_dir", "own_cgroup",
    "remove_stale",
]

ROOT_NAME = "apr-sched"
STALE_AFTER_SEC = 60.0
"""An empty attempt cgroup older than this is a leftover (its wrapper enters it at once)."""

_OCTAL = re.compile(r"\\([0-7]{3})")


def cgroup2_mount(mountinfo: str) -> tuple[Path, str] | None:
    """Mount point and mount root of the cgroup2 filesystem in ``/proc/self/mountinfo`` text."""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        if not sep or not right.startswith("cgroup2 "):
            continue
        fields = left.split()
        if len(fields) < 5:
            continue
        unescape = functools.partial(_OCTAL.sub, lambda m: chr(int(m.group(1), 8)))
        return Path(unescape(fields[4])), unescape(fields[3])
    return None


def own_cgroup(cgroup: str) -> str | None:
    """Our path in the v2 hierarchy from ``/proc/self/cgroup`` text (the ``0::`` line)."""
    for line in cgroup.splitlines():
        if line.startswith("0::"):
            return line[3:].strip() or None
    return None


def cgroup_dir(mount: Path, mount_root: str, path: str) -> Path | None:
    """Where cgroup ``path`` appears under a cgroup2 mount of ``mount_root``, if it does."""
    root = mount_root.rstrip("/")
    if path != root and not path.startswith(root + "/"):
        return None
    return mount / path[len(root):].lstrip("/")


@functools.cache
def attempts_root() -> Path | None:
    """``<our cgroup>/apr-sched`` when attempts can get cgroups here, else None (cached).

    Usable means: we can make a cgroup there and really move a process into it (being
    allowed to write ``cgroup.procs`` is not enough: the move also needs write access
    higher up), and it has ``cgroup.kill``.
    """
    try:
        found = cgroup2_mount(Path("/proc/self/mountinfo").read_text())
        own = own_cgroup(Path("/proc/self/cgroup").read_text())
    except OSError:
        return None
    if found is None or own is None:
        return None
    base = cgroup_dir(found[0], found[1], own)
    if base is None:
        return None
    root = base / ROOT_NAME
    try:
        root.mkdir(mode=0o700, exist_ok=True)
        if root.stat().st_uid == os.geteuid():
            os.chmod(root, 0o700)
        return root if _can_move_into(root / f"probe-{os.getpid()}") else None
    except OSError:
        return None


def _can_move_into(probe: Path) -> bool:
    probe.mkdir(exist_ok=True)
    try:
        if not (probe / "cgroup.kill").exists():
            return False
        moved = subprocess.run(
            ["/bin/sh", "-c", 'echo "$$" >"$0"', str(probe / "cgroup.procs")],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            check=False)
        return moved.returncode == 0
    finally:
        probe.rmdir()


def remove_stale(root: Path, older_than_sec: float = STALE_AFTER_SEC) -> int:
    """Remove empty attempt cgroups made more than ``older_than_sec`` ago (ended attempts
    whose leftovers died later); returns how many. A cgroup in use is never empty, and a
    fresh one may be waiting for its wrapper, so both are left alone."""
    removed = 0
    cutoff = time.time() - older_than_sec
    try:
        entries = list(os.scandir(root))
    except OSError:
        return 0
    for entry in entries:
        try:
            if entry.is_dir(follow_symlinks=False) and entry.stat().st_ctime < cutoff:
                os.rmdir(entry.path)
                removed += 1
        except OSError:  # populated (EBUSY), or gone already
            continue
    return removed


class AttemptCgroup:
    """The cgroup of one attempt: named after its rc file, so it is found again after a
    scheduler restart and never shared by two state dirs."""

    def __init__(self, root: Path, job_id: str, attempt: int, rc_path: str) -> None:
        digest = hashlib.sha256(os.fsencode(os.path.abspath(rc_path))).hexdigest()[:12]
        self.path = root / f"{job_id}.{attempt}.{digest}"

    def create(self) -> bool:
        try:
            self.path.mkdir(exist_ok=True)
        except OSError:
            return False
        return True

    @property
    def procs_file(self) -> Path:
        return self.path / "cgroup.procs"

    def pids(self) -> list[int]:
        """Processes in the cgroup now ([] once it is gone)."""
        try:
            return [int(word) for word in self.procs_file.read_text().split()]
        except (OSError, ValueError):
            return []

    def kill(self) -> None:
        """SIGKILL everything in the cgroup, atomically (processes forking meanwhile too)."""
        with contextlib.suppress(OSError):
            (self.path / "cgroup.kill").write_text("1")

    def populated(self) -> bool:
        try:
            return "populated 1" in (self.path / "cgroup.events").read_text()
        except OSError:
            return False

    def wait_empty(self, timeout: float) -> bool:
        """Wait (blocking: call from a thread) until no process is left, woken by the
        kernel's notification on ``cgroup.events`` rather than by polling it."""
        deadline = time.monotonic() + timeout
        try:
            fd = os.open(self.path / "cgroup.events", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return True
        try:
            poller = select.poll()
            poller.register(fd, select.POLLPRI)
            while self.populated():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                poller.poll(left * 1000)
                os.lseek(fd, 0, os.SEEK_SET)
                os.read(fd, 256)
        finally:
            os.close(fd)
        return True

    def remove(self) -> bool:
        """Remove the cgroup if it is empty; True when it is gone."""
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True
