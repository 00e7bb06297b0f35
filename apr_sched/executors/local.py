"""Run attempts on this machine: one wrapper process per attempt, no thread per job.

Exits are noticed through a pidfd registered with the event loop, so a job ending wakes the
scheduler at once; the same works for wrappers started by an earlier scheduler process,
which are not our children.

A job's environment is built from a clean base, never the daemon's whole environment (which
holds its own secrets, ``APR_SCHED_TOKEN`` among them): the names in ``BASE_ENV_NAMES``
(and ``LC_*``) from the daemon's environment, then what the job asks for, then the
``APR_*`` job variables. With ``run_as_owner`` (a root daemon) the wrapper is started as the
job's owner, with the owner's groups, ``HOME``, ``USER``, ``LOGNAME`` and ``SHELL``.

Each attempt's processes are marked with ``APR_SCHED_RUN`` and, where the host allows it,
placed in a cgroup of their own (see ``contain.py`` and ``cgroup.py``), so a signal reaches
the children that left the wrapper's process group too.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from apr_sched.executors.base import RUN_MARKER, ExitStatus, Launch, RunHandle, StartFailed
from apr_sched.executors.cgroup import AttemptCgroup, attempts_root, remove_stale
from apr_sched.executors.contain import marker_entry, marker_value, signal_processes
from apr_sched.executors.wrapper import WRAPPER_ARGV0, JobOutput, wrapper_argv
from apr_sched.identity import LocalAccount, local_account
from apr_sched.logs import AttemptFiles, open_log, read_rc

CGROUP_EMPTY_TIMEOUT_SEC = 2.0
"""How long a SIGKILL sweep waits for the attempt's cgroup to empty before leaving it."""
STALE_CGROUPS_EVERY_SEC = 600.0
"""How often a start also removes empty cgroups of ended attempts (leftovers died later)."""

BASE_ENV_NAMES = frozenset({"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "LANGUAGE",
                            "TZ", "TERM", "TMPDIR"})
"""What a job takes from the daemon's environment (with every ``LC_*``): enough for shells
and tools to find their way, nothing that could be a secret. A job that needs more (a
license server, a module path) says so in its ``env``."""


def base_environment(source: Mapping[str, str] | None = None) -> dict[str, str]:
    """The allow-listed part of ``source`` (the daemon's environment by default)."""
    source = os.environ if source is None else source
    return {name: value for name, value in source.items()
            if name in BASE_ENV_NAMES or name.startswith("LC_")}


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"SIG{signum}"


def exit_status_from_rc(rc: int) -> ExitStatus:
    """Shells report death by signal N as 128+N; keep the code and name the signal."""
    if 128 < rc < 128 + 65:
        return ExitStatus(exit_code=rc, signal=signal_name(rc - 128))
    return ExitStatus(exit_code=rc)


def is_our_wrapper(pid: int, files: AttemptFiles) -> bool:
    """True when ``pid`` is alive and is the wrapper of exactly this attempt (guards pid reuse)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return WRAPPER_ARGV0.encode() in argv and os.fsencode(files.rc) in argv


def find_wrapper_pid(files: AttemptFiles) -> int | None:
    """Last resort after a crash between spawn and bookkeeping: look for the wrapper in /proc."""
    for entry in os.scandir("/proc"):
        if entry.name.isdigit() and is_our_wrapper(int(entry.name), files):
            return int(entry.name)
    return None


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


class LocalExecutor:
    """Runs attempts as local processes under the sh wrapper."""

    def __init__(self, host_id: str, *, run_as_owner: bool = False,
                 cgroups: bool = True) -> None:
        self.host_id = host_id
        self.run_as_owner = run_as_owner
        """Start each wrapper as the job's owner (the daemon must be root)."""
        self.cgroups = cgroups
        """Give each attempt a cgroup when the host allows it (else the marker alone)."""
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._next_cleanup = 0.0

    def open(self) -> None:
        """Nothing to connect to: jobs run here. (Finds out once whether attempts can get
        cgroups here, which starts one short probe process.)"""
        if self.cgroups:
            attempts_root()

    def control_refusal(self) -> str | None:
        return None

    def account(self, launch: Launch) -> LocalAccount | None:
        """The account the attempt runs as when that is not the daemon's own."""
        if not self.run_as_owner or launch.owner is None:
            return None
        account = local_account(launch.owner)
        if account is None:
            raise StartFailed(f"owner {launch.owner!r} has no local account to run the job as")
        return None if account.uid == os.geteuid() else account

    def command_line(self, launch: Launch) -> tuple[str, str | None]:
        """The command the wrapper evaluates and the directory it enters."""
        account = self.account(launch)
        home = account.home if account is not None else os.environ.get("HOME")
        return launch.command, launch.workdir or home or "/"

    def job_output(self, launch: Launch) -> JobOutput | None:
        """The job's umask and output files, applied by the wrapper started here."""
        return launch.output()

    def environment(self, launch: Launch) -> dict[str, str]:
        """A clean base, the job's own variables, then the job's ``APR_*`` (passed as the
        environment, never on the command line, where every user could read it)."""
        env = base_environment()
        account = self.account(launch)
        if account is not None:
            env.update(HOME=account.home, USER=account.name, LOGNAME=account.name,
                       SHELL=account.shell)
        return {**env, **launch.env, "APR_JOB_ID": launch.job_id,
                "APR_ATTEMPT": str(launch.attempt), "APR_HOST": launch.host_id}

    def attempt_cgroup(self, job_id: str, attempt: int, files: AttemptFiles,
                       ) -> AttemptCgroup | None:
        """Where the attempt's cgroup is (or would be), or None without cgroups here."""
        root = attempts_root() if self.cgroups else None
        return None if root is None else AttemptCgroup(root, job_id, attempt, str(files.rc))

    async def start(self, launch: Launch) -> RunHandle:
        await self._remove_stale_cgroups()
        files = launch.files
        command, workdir = self.command_line(launch)
        account = self.account(launch)
        try:
            log_fd = open_log(files)
        except OSError as exc:
            raise StartFailed(f"cannot open log {files.log}: {exc.strerror}") from exc
        # a wrapper started as the owner could not move itself into our cgroup: marker only
        cgroup = None if account is not None else self.attempt_cgroup(
            launch.job_id, launch.attempt, files)
        if cgroup is not None and not cgroup.create():
            cgroup = None
        argv = wrapper_argv(str(files.rc), workdir, command,
                            str(cgroup.procs_file) if cgroup is not None else None,
                            self.job_output(launch))
        env = {**self.environment(launch), RUN_MARKER: marker_value(files.rc)}
        try:
            if account is not None:
                _hand_over(files, log_fd, account)
            proc = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_fd,
                stderr=subprocess.STDOUT,
                cwd=files.dir,
                start_new_session=True,
                close_fds=True,
                **_as_account(account),
            )
        except OSError as exc:
            if cgroup is not None:
                cgroup.remove()
            raise StartFailed(f"cannot start job wrapper: {exc.strerror}") from exc
        finally:
            os.close(log_fd)
        self._children[proc.pid] = proc
        return RunHandle(launch.job_id, launch.attempt, proc.pid, files)

    async def _remove_stale_cgroups(self) -> None:
        root = attempts_root() if self.cgroups else None
        if root is None or time.monotonic() < self._next_cleanup:
            return
        self._next_cleanup = time.monotonic() + STALE_CGROUPS_EVERY_SEC
        await asyncio.to_thread(remove_stale, root)

    async def signal(self, handle: RunHandle, signum: int) -> None:
        """The wrapper's group at once, then the attempt's cgroup and marked processes
        (in a thread: the /proc scan must not hold the event loop)."""
        await self.signal_local(handle, signum)

    async def signal_local(self, handle: RunHandle, signum: int) -> int:
        """Signal the attempt's processes on this machine; returns how many were reached."""
        signalled = []
        if is_our_wrapper(handle.pgid, handle.files):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(handle.pgid, signum)
                signalled.append(handle.pgid)
        cgroup = self.attempt_cgroup(handle.job_id, handle.attempt, handle.files)
        if cgroup is not None and not cgroup.path.is_dir():
            cgroup = None
        if cgroup is not None and signum == signal.SIGKILL:
            cgroup.kill()
        reached = await asyncio.to_thread(signal_processes, signum,
                                          marker_entry(handle.files.rc),
                                          cgroup.pids if cgroup is not None else None,
                                          signalled)
        if cgroup is not None and signum == signal.SIGKILL:
            await asyncio.to_thread(cgroup.wait_empty, CGROUP_EMPTY_TIMEOUT_SEC)
            cgroup.remove()
        return reached

    async def kill_leftovers(self, handle: RunHandle) -> None:
        """The wrapper died without an rc file: make sure nothing of the job survives it."""
        await self.signal_local(handle, signal.SIGKILL)

    async def wait(self, handle: RunHandle) -> ExitStatus:
        await self._wait_pid(handle.pgid)
        wrapper_status = None
        proc = self._children.pop(handle.pgid, None)
        if proc is not None:
            wrapper_status = proc.wait()
        else:  # a wrapper adopted from an earlier scheduler in this same process
            with contextlib.suppress(ChildProcessError):
                os.waitpid(handle.pgid, os.WNOHANG)
        rc = read_rc(handle.files.rc)
        cgroup = self.attempt_cgroup(handle.job_id, handle.attempt, handle.files)
        if cgroup is not None:
            cgroup.remove()  # stays while leftovers run: a later SIGKILL sweep removes it
        if rc is not None:
            return exit_status_from_rc(rc)
        await self.kill_leftovers(handle)
        if wrapper_status is not None and wrapper_status < 0:
            return ExitStatus(
                exit_code=None,
                signal=signal_name(-wrapper_status),
                detail=f"job wrapper killed by {signal_name(-wrapper_status)}",
            )
        return ExitStatus(exit_code=None, lost=True, detail="job wrapper ended without an rc file")

    async def _wait_pid(self, pid: int) -> None:
        """Wait for ``pid`` to exit, driven by a pidfd in the event loop (no thread, no poll)."""
        try:
            pidfd = os.pidfd_open(pid)
        except ProcessLookupError:
            return
        loop = asyncio.get_running_loop()
        exited: asyncio.Future[None] = loop.create_future()

        def on_exit() -> None:
            if not exited.done():
                exited.set_result(None)

        loop.add_reader(pidfd, on_exit)
        try:
            await exited
        finally:
            loop.remove_reader(pidfd)
            os.close(pidfd)

    async def recover(
        self, job_id: str, attempt: int, files: AttemptFiles, pgid: int | None
    ) -> RunHandle | ExitStatus:
        if pgid and is_our_wrapper(pgid, files):
            return RunHandle(job_id, attempt, pgid, files)
        rc = read_rc(files.rc)
        if rc is not None:  # it ended while no scheduler watched: when the rc was written
            return dataclasses.replace(exit_status_from_rc(rc), ended_at=_mtime(files.rc))
        found = find_wrapper_pid(files)
        if found is not None:
            return RunHandle(job_id, attempt, found, files)
        return ExitStatus(exit_code=None, lost=True, detail="no running wrapper and no rc file")

    def log_trimmed(self, handle: RunHandle, dropped: tuple[int, int]) -> None:
        """The job writes its log here directly: there is no other copy."""

    async def close(self) -> None:
        """Forget our children without touching them: detached jobs keep running."""
        for proc in self._children.values():
            proc.returncode = 0  # silence Popen's "still running" warning; the job lives on
        self._children.clear()


def _as_account(account: LocalAccount | None) -> dict[str, Any]:
    """``Popen`` options that start the wrapper as ``account`` (uid, gid and groups)."""
    if account is None:
        return {}
    return {"user": account.uid, "group": account.gid, "extra_groups": list(account.groups)}


def _hand_over(files: AttemptFiles, log_fd: int, account: LocalAccount) -> None:
    """Let a wrapper running as ``account`` write its log and rc file, and nothing else.

    Both files are made its own (0600) while their directories stay the daemon's and only
    become searchable (0711, never listable or writable by others): the owner cannot put a
    symlink where the daemon, as root, writes or reads.
    """
    os.fchown(log_fd, account.uid, account.gid)
    os.fchmod(log_fd, 0o600)
    rc_fd = os.open(files.rc, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        os.fchown(rc_fd, account.uid, account.gid)
    finally:
        os.close(rc_fd)
    for directory in (files.dir, files.dir.parent, files.dir.parent.parent):
        st = directory.stat()
        if st.st_uid == os.geteuid() and st.st_mode & 0o011 != 0o011:
            os.chmod(directory, (st.st_mode & 0o7777) | 0o011)
