"""Hosts reached through an ``executor_prefix`` such as ``ssh -o BatchMode=yes cad@10.0.0.11``.

Kept for compatibility with the seed usage document: the wrapper runs here, and the job runs
as ``<prefix> <quoted script>``, where the script enters the workdir, exports the job's
environment and evaluates the command on the far side. The local log and rc file see exactly
what the prefix command printed and returned. Pause and resume cannot reach the remote
process group through an opaque prefix, so they are refused with a way out.
"""

from __future__ import annotations

import os
import shlex

from apr_sched.executors.base import Launch
from apr_sched.executors.local import LocalExecutor, base_environment

TRANSPORT_ENV_NAMES = frozenset({"SSH_AUTH_SOCK", "SSH_AGENT_PID", "KRB5CCNAME"})
"""What the prefix command (an ssh client, usually) takes from the daemon's environment on
top of the clean base, to authenticate; nothing else of the daemon's reaches it."""


def remote_script(launch: Launch) -> str:
    """The shell text the far side runs: cd, exports, then the command verbatim."""
    lines = []
    if launch.workdir:
        lines.append(f"cd -- {shlex.quote(launch.workdir)} || exit 126")
    env = {**launch.env, "APR_JOB_ID": launch.job_id, "APR_ATTEMPT": str(launch.attempt),
           "APR_HOST": launch.host_id}
    lines.extend(f"export {name}={shlex.quote(value)}" for name, value in sorted(env.items()))
    lines.append(launch.command)
    return "\n".join(lines)


def prefixed_command(prefix: str, launch: Launch) -> str:
    return f"{prefix} {shlex.quote(remote_script(launch))}"


class PrefixExecutor(LocalExecutor):
    """A local wrapper around ``<prefix> <quoted script>``."""

    def __init__(self, host_id: str, prefix: str) -> None:
        super().__init__(host_id)
        self.prefix = prefix

    def control_refusal(self) -> str | None:
        return (
            f"pause/resume are not available on host {self.host_id}: it runs jobs through "
            f"executor_prefix {self.prefix!r}, which cannot signal the remote process group; "
            f"register the host as a native SSH host (ssh = \"user@host\") to control it"
        )

    def command_line(self, launch: Launch) -> tuple[str, str | None]:
        return prefixed_command(self.prefix, launch), str(launch.files.dir)

    def environment(self, launch: Launch) -> dict[str, str]:
        """The job's environment travels inside the remote script, not to the local ssh,
        which gets the clean base and its authentication (a prefix may also run locally,
        e.g. ``sh -c``: the daemon's secrets must not reach it either)."""
        return {**base_environment(), **{name: value for name, value in os.environ.items()
                                         if name in TRANSPORT_ENV_NAMES}}
