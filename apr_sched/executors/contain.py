"""Find and signal every process of one attempt on this machine, also those that left its
process group (``setsid``, ``setpgid``, a daemonising tool).

Every process of an attempt carries ``APR_SCHED_RUN=<absolute rc path>`` in its environment,
set on the wrapper and inherited across fork, exec and setsid; where the host allows it they
also sit in one cgroup v2 per attempt (``cgroup.py``), which even a process that cleared its
environment cannot leave. A signal goes first to the wrapper's process group (one atomic
kill for the usual case), then to every process of the cgroup and every marked process,
through its process group when a process of the attempt leads that group. For SIGSTOP and
SIGKILL the sweep repeats while it finds new processes, so a child forked during the sweep
is caught by the next pass.

A process is signalled through a pidfd opened before its marker is checked, so a pid reused
after the check can never receive the signal. We never signal ourselves or our own group.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable, Iterable
from pathlib import Path

from apr_sched.executors.base import RUN_MARKER

__all__ = [
    "RUN_MARKER", "marked_pids", "marker_entry", "marker_value", "process_group",
    "signal_processes",
]

SWEEP_PASSES = 8
"""Passes of a STOP/KILL sweep at most; one more process per pass is a fork bomb's pace."""

PROC = Path("/proc")


def marker_value(rc_path: str | os.PathLike[str]) -> str:
    """The ``APR_SCHED_RUN`` value of the attempt owning ``rc_path``: that path, absolute."""
    return os.path.abspath(rc_path)


def marker_entry(rc_path: str | os.PathLike[str]) -> str:
    """The exact environment entry that marks the processes of the attempt owning ``rc_path``."""
    return f"{RUN_MARKER}={marker_value(rc_path)}"


def _has_entry(pid: int, entry: bytes) -> bool:
    try:
        data = (PROC / str(pid) / "environ").read_bytes()
    except OSError:  # gone, or not ours to read: skipped
        return False
    return data.startswith(entry + b"\0") or b"\0" + entry + b"\0" in data or data == entry


def marked_pids(entry: str) -> set[int]:
    """Live processes whose environment holds exactly ``entry`` (unreadable ones skipped)."""
    wanted = os.fsencode(entry)
    own = os.getpid()
    found = set()
    for item in os.scandir(PROC):
        if item.name.isdigit() and int(item.name) != own and _has_entry(int(item.name), wanted):
            found.add(int(item.name))
    return found


def process_group(pid: int) -> int | None:
    """The process group of ``pid``, or None when it is gone."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[2])
    except (OSError, IndexError, ValueError):
        return None


def _signal_one(pid: int, signum: int, entry: bytes, trusted: set[int],
                groups: set[int]) -> bool:
    """Signal ``pid`` through its process group when that group is led by a process of the
    attempt (once per group, so nobody gets the signal twice), else alone. A pidfd pins the
    process before its marker is checked again, so a pid reused meanwhile is never hit."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return False
    try:
        if pid not in trusted and not _has_entry(pid, entry):
            return False
        group = process_group(pid)
        if group in groups:
            return True
        if (group is not None and group > 1 and group != os.getpgrp()
                and (group == pid or group in trusted or _has_entry(group, entry))):
            groups.add(group)
            os.killpg(group, signum)
        else:
            signal.pidfd_send_signal(pidfd, signum)
        return True
    except OSError:
        return False
    finally:
        os.close(pidfd)


def signal_processes(signum: int, entry: str,
                     members: Callable[[], Iterable[int]] | None = None,
                     signalled_groups: Iterable[int] = ()) -> int:
    """Signal every process marked with ``entry`` and every pid ``members()`` lists (a
    cgroup's, known to be the attempt's), by process group; groups in ``signalled_groups``
    already had the signal. Returns how many processes were reached."""
    wanted = os.fsencode(entry)
    own = os.getpid()
    seen: set[int] = set()
    groups = set(signalled_groups)
    reached = 0
    for _ in range(SWEEP_PASSES):
        trusted = set(members()) if members is not None else set()
        new = (marked_pids(entry) | trusted) - seen - {own}
        for pid in sorted(new):
            reached += _signal_one(pid, signum, wanted, trusted, groups)
        seen |= new
        if not new or signum not in (signal.SIGSTOP, signal.SIGKILL):
            break
    return reached
