"""What the scheduler needs from a place that runs jobs, whatever the transport.

An executor starts one attempt through the job wrapper, signals the attempt's process group,
waits for it to end, and finds it again after a scheduler restart. It never changes scheduler
state: it reports, the Scheduler decides.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from apr_sched.executors.wrapper import JobOutput, job_output
from apr_sched.logs import AttemptFiles

RUN_MARKER = "APR_SCHED_RUN"
"""Every process of an attempt has ``APR_SCHED_RUN=<absolute path of the attempt's rc file on
its host>`` in its environment, so ``Executor.signal`` finds the ones that left the process
group (``setsid``) through /proc, on local and remote hosts alike."""


@dataclass(frozen=True, slots=True)
class Launch:
    """Everything needed to start one attempt."""

    job_id: str
    attempt: int
    host_id: str
    command: str
    workdir: str | None
    env: dict[str, str]
    files: AttemptFiles
    owner: str | None = None
    """The job's owner: whom the attempt runs as where the executor runs jobs as owners."""
    umask: str | None = None
    output_path: str | None = None
    error_path: str | None = None
    """The job's umask and the files its output is copied to (``JobSpec``'s, unexpanded)."""

    def output(self) -> JobOutput:
        """The wrapper's umask and output arguments, ``%J`` replaced by the job id."""
        return job_output(self.job_id, self.umask, self.output_path, self.error_path)


@dataclass(slots=True)
class RunHandle:
    """A started attempt: the wrapper's pid is also the job's process-group id."""

    job_id: str
    attempt: int
    pgid: int
    files: AttemptFiles
    extra: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExitStatus:
    """How an attempt ended. ``lost`` means neither a live wrapper nor an rc file was found."""

    exit_code: int | None
    signal: str | None = None
    lost: bool = False
    detail: str | None = None
    ended_at: float | None = None
    """When it ended (epoch seconds), if known better than "now": an attempt that ended
    while the scheduler was down ended when its rc file was written."""


class StartFailed(Exception):
    """The executor could not start the wrapper at all (bad prefix, fork failure...)."""


class Executor(Protocol):
    host_id: str

    def open(self) -> None:
        """Start connecting, if there is anything to connect to (needs a running loop)."""

    def control_refusal(self) -> str | None:
        """Why pause/resume cannot work on this host, or None when they can."""

    async def start(self, launch: Launch) -> RunHandle: ...

    async def signal(self, handle: RunHandle, signum: int) -> None:
        """Send ``signum`` to the attempt's process group and to every process marked with
        its ``RUN_MARKER`` (or in its cgroup). Works when the group is already gone, so a
        last SIGKILL after the attempt ended sweeps what escaped it."""

    async def wait(self, handle: RunHandle) -> ExitStatus:
        """Return once the attempt has ended (cancellable: cancelling stops only the wait)."""

    async def recover(
        self, job_id: str, attempt: int, files: AttemptFiles, pgid: int | None
    ) -> RunHandle | ExitStatus:
        """Find an attempt started by an earlier scheduler: still running, ended, or lost."""

    def log_trimmed(self, handle: RunHandle, dropped: tuple[int, int]) -> None:
        """The attempt's local log dropped bytes ``dropped`` (``logs.limit_log``): drop them
        from any copy of it the executor keeps elsewhere (an SSH host's spool)."""

    async def close(self) -> None: ...
