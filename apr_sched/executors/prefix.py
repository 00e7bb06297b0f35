"""Hosts reached through a generic ``executor_prefix``, e.g. ``ssh -T -J bastion cad@host``.

(A plain ``ssh [opts] host`` prefix is run natively instead, see ``ssh_target.py``.) The
local wrapper runs ``<prefix> <quoted launch script>``; the far side needs only POSIX ``sh``:

- the launch script starts the usual job wrapper there in a session of its own (``setsid``
  when the host has it), with ``APR_SCHED_RUN=<remote spool>/<job_id>/<attempt>.rc`` in its
  environment, waits for it, and exits with the job's exit code. The local log sees the
  job's output through the prefix; the local rc file gets the prefix's exit code, which is
  the job's. The remote rc file is removed once relayed.
- control is a second invocation, ``<prefix> <quoted control script>``: it signals every
  remote process marked with that ``APR_SCHED_RUN`` (found through ``/proc``), through its
  process group when a job process leads it, and answers ``apr-sched-control ok N``. So
  stop, timeout, pause and resume reach the remote job, whatever became of the local
  prefix process, and also the processes that left the job's process group.

No remote file names the pgid: the marker finds the processes, and the wrapper leads its own
group, so one group kill stops the usual job atomically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shlex
import signal

from apr_sched.executors.base import RUN_MARKER, ExitStatus, Launch, RunHandle
from apr_sched.executors.local import LocalExecutor, base_environment, is_our_wrapper
from apr_sched.executors.ssh import HostUnavailable
from apr_sched.executors.wrapper import WRAPPER_ARGV0, WRAPPER_SCRIPT, JobOutput

log = logging.getLogger("apr_sched.prefix")

DEFAULT_SPOOL = "~/.apr_sched/spool"
TRANSPORT_ENV_NAMES = frozenset({"SSH_AUTH_SOCK", "SSH_AGENT_PID", "KRB5CCNAME"})
"""What the prefix command (an ssh client, usually) takes from the daemon's environment on
top of the clean base, to authenticate; nothing else of the daemon's reaches it."""
CONTROL_TIMEOUT_SEC = 15.0
"""How long one control invocation may take (connecting included) before it counts as failed."""
SWEEP_TRIES = 10
SWEEP_FIRST_RETRY_SEC = 1.0
SWEEP_MAX_RETRY_SEC = 60.0
"""A sweep after a lost connection tries for about six minutes before giving up."""
_CONT_SENT = "cont_sent_with_term"
SSH_FAILURE = 255
"""ssh's own exit code: the connection failed or dropped, so the job may still run there."""

_ACK_RE = re.compile(rb"^apr-sched-control ok ([0-9]+)$", re.MULTILINE)

_SPOOL_SNIPPET = r"""apr_spool={spool}
case $apr_spool in
  "~") apr_spool=$HOME ;;
  "~/"*) apr_spool=$HOME/${{apr_spool#"~/"}} ;;
  /*) ;;
  *) apr_spool=$HOME/$apr_spool ;;
esac
apr_dir=$apr_spool/{job_id}
apr_rc=$apr_dir/{attempt}.rc
"""

_LAUNCH = r"""if ! (umask 077 && mkdir -p -- "$apr_dir"); then
  echo "apr_sched: cannot create the remote spool directory $apr_dir" >&2
  exit 125
fi
rm -f -- "$apr_rc"
if apr_setsid=$(command -v setsid); then set -- "$apr_setsid"; else set --; fi
trap : HUP
env {env} APR_SCHED_RUN="$apr_rc" "$@" /bin/sh -c {wrapper} {argv0} "$apr_rc" {workdir} \
  {command}{output} </dev/null &
apr_pid=$!
while :; do
  {{ wait "$apr_pid"; }} 2>/dev/null
  apr_status=$?
  [ "$apr_status" -gt 128 ] && kill -0 "$apr_pid" 2>/dev/null || break
done
if read -r apr_code <"$apr_rc" 2>/dev/null; then
  case $apr_code in ''|*[!0-9]*) ;; *) apr_status=$apr_code ;; esac
fi
rm -f -- "$apr_rc"
rmdir -- "$apr_dir" 2>/dev/null
exit "$apr_status"
"""

_CONTROL = r"""apr_mark="APR_SCHED_RUN=$apr_rc"
apr_group_of() {{
  read -r apr_stat <"/proc/$1/stat" 2>/dev/null || return 1
  apr_stat=${{apr_stat##*") "}}
  set -- $apr_stat
  echo "$3"
}}
apr_marked() {{
  [ -r "/proc/$1/environ" ] && tr '\000' '\n' <"/proc/$1/environ" 2>/dev/null |
    grep -qxF -e "$apr_mark"
}}
apr_self=$$
apr_own_group=$(apr_group_of "$apr_self")
apr_seen=" "
apr_groups=" "
apr_reached=0
apr_pass=0
while [ "$apr_pass" -lt 8 ]; do
  apr_new=0
  for apr_file in $(grep -lF -e "$apr_mark" /proc/[0-9]*/environ 2>/dev/null); do
    apr_pid=${{apr_file#/proc/}}
    apr_pid=${{apr_pid%/environ}}
    case $apr_seen in *" $apr_pid "*) continue ;; esac
    [ "$apr_pid" = "$apr_self" ] && continue
    apr_marked "$apr_pid" || continue
    apr_seen="$apr_seen$apr_pid "
    apr_new=1
    apr_reached=$((apr_reached + 1))
    apr_group=$(apr_group_of "$apr_pid") || continue
    case $apr_groups in *" $apr_group "*) continue ;; esac
    if [ "$apr_group" -gt 1 ] && [ "$apr_group" != "$apr_own_group" ] && apr_marked "$apr_group"
    then
      apr_groups="$apr_groups$apr_group "
      kill -s {signal} -- "-$apr_group" 2>/dev/null{then_group}
    else
      kill -s {signal} "$apr_pid" 2>/dev/null{then_pid}
    fi
  done
  [ "$apr_new" = 1 ] && [ {repeat} = 1 ] || break
  apr_pass=$((apr_pass + 1))
done
echo "apr-sched-control ok $apr_reached"
"""


def _spool_lines(spool: str, job_id: str, attempt: int) -> str:
    """Sets ``apr_dir`` and ``apr_rc``, the attempt's remote directory and rc file (absolute:
    a relative or ``~`` spool is taken from ``$HOME``, as the native agent does)."""
    return _SPOOL_SNIPPET.format(spool=shlex.quote(spool), job_id=shlex.quote(job_id),
                                 attempt=int(attempt))


def job_environment(launch: Launch) -> dict[str, str]:
    return {**launch.env, "APR_JOB_ID": launch.job_id, "APR_ATTEMPT": str(launch.attempt),
            "APR_HOST": launch.host_id}


def remote_script(launch: Launch, spool: str = DEFAULT_SPOOL) -> str:
    """The shell text the far side runs: start the wrapper in its own session, marked, and
    exit with the job's exit code."""
    env = job_environment(launch)
    env.pop(RUN_MARKER, None)
    return _spool_lines(spool, launch.job_id, launch.attempt) + _LAUNCH.format(
        env=" ".join(shlex.quote(f"{name}={value}") for name, value in sorted(env.items())),
        wrapper=shlex.quote(WRAPPER_SCRIPT), argv0=WRAPPER_ARGV0,
        workdir=shlex.quote(launch.workdir or ""), command=shlex.quote(launch.command),
        output="".join(f" {shlex.quote(arg)}" for arg in _output_args(launch)))


def _output_args(launch: Launch) -> list[str]:
    """The wrapper's ``$4 $5 $6 $7`` on the far side (no cgroup there), [] when unused."""
    extra = launch.output().args()
    return ["", *extra] if extra else []


def control_script(spool: str, job_id: str, attempt: int, signum: int) -> str:
    """The shell text that signals every remote process of one attempt and says how many."""
    name = signal.Signals(signum).name.removeprefix("SIG")
    repeat = 1 if signum in (signal.SIGSTOP, signal.SIGKILL) else 0
    then_group = then_pid = ""
    if signum == signal.SIGTERM:  # a paused job must be able to act on it
        then_group = '; kill -s CONT -- "-$apr_group" 2>/dev/null'
        then_pid = '; kill -s CONT "$apr_pid" 2>/dev/null'
    return _spool_lines(spool, job_id, attempt) + _CONTROL.format(
        signal=name, repeat=repeat, then_group=then_group, then_pid=then_pid)


def prefixed_command(prefix: str, launch: Launch, spool: str = DEFAULT_SPOOL) -> str:
    return f"{prefix} {shlex.quote(remote_script(launch, spool))}"


class PrefixExecutor(LocalExecutor):
    """A local wrapper around ``<prefix> <quoted launch script>``, controlled through
    ``<prefix> <quoted control script>``."""

    def __init__(self, host_id: str, prefix: str, spool: str = DEFAULT_SPOOL, *,
                 cgroups: bool = True) -> None:
        super().__init__(host_id, cgroups=cgroups)
        self.prefix = prefix
        self.spool = spool
        self._sweeps: set[asyncio.Task[None]] = set()

    def command_line(self, launch: Launch) -> tuple[str, str | None]:
        return prefixed_command(self.prefix, launch, self.spool), str(launch.files.dir)

    def job_output(self, launch: Launch) -> JobOutput | None:
        """Applied by the wrapper on the far side (in the remote script), not here."""
        return None

    def environment(self, launch: Launch) -> dict[str, str]:
        """The job's environment travels inside the remote script, not to the local ssh,
        which gets the clean base and its authentication (a prefix may also run locally,
        e.g. ``sh -c``: the daemon's secrets must not reach it either)."""
        return {**base_environment(), **{name: value for name, value in os.environ.items()
                                         if name in TRANSPORT_ENV_NAMES}}

    async def signal(self, handle: RunHandle, signum: int) -> None:
        """Signals go to the remote processes; SIGKILL also ends the local prefix process,
        so an attempt ends even when its host cannot be reached. SIGTERM goes with a
        SIGCONT, so the SIGCONT a stop sends right after it costs no second connection."""
        cont_sent = handle.extra.pop(_CONT_SENT, None)
        if signum == signal.SIGCONT and cont_sent:
            return  # it went with the SIGTERM just before: no second connection
        if signum != signal.SIGKILL:
            await self.control(handle, signum)
            if signum == signal.SIGTERM:
                handle.extra[_CONT_SENT] = "1"
            return
        try:
            await self.control(handle, signum)
        except HostUnavailable:
            if not is_our_wrapper(handle.pgid, handle.files):
                self._sweep_soon(handle)  # the attempt has ended: retry in the background
            raise
        finally:
            await self.signal_local(handle, signum)

    async def control(self, handle: RunHandle, signum: int) -> int:
        """Run the control script through the prefix; returns how many remote processes it
        reached, or raises ``HostUnavailable`` saying why it could not run."""
        script = control_script(self.spool, handle.job_id, handle.attempt, signum)
        what = f"{signal.Signals(signum).name} to job {handle.job_id} on host {self.host_id}"
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", f"{self.prefix} {shlex.quote(script)}",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, start_new_session=True)
        try:
            async with asyncio.timeout(CONTROL_TIMEOUT_SEC):
                out, err = await proc.communicate()
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await asyncio.shield(proc.wait())
            if isinstance(exc, asyncio.CancelledError):
                raise
            raise HostUnavailable(
                f"cannot send {what}: executor_prefix {self.prefix!r} did not answer within "
                f"{CONTROL_TIMEOUT_SEC:g}s", {"host_id": self.host_id}) from None
        ack = _ACK_RE.search(out)
        if ack is None:
            detail = err.decode(errors="replace").strip()[-300:] or "no output"
            raise HostUnavailable(
                f"cannot send {what}: executor_prefix {self.prefix!r} did not run the control "
                f"script (exit {proc.returncode}: {detail})", {"host_id": self.host_id})
        return int(ack.group(1))

    async def kill_leftovers(self, handle: RunHandle) -> None:
        await super().kill_leftovers(handle)
        self._sweep_soon(handle)

    async def wait(self, handle: RunHandle) -> ExitStatus:
        status = await super().wait(handle)
        if status.exit_code == SSH_FAILURE:
            self._sweep_soon(handle)  # the connection may have dropped with the job running
        return status

    def _sweep_soon(self, handle: RunHandle) -> None:
        task = asyncio.get_running_loop().create_task(self._sweep_remote(handle))
        self._sweeps.add(task)
        task.add_done_callback(self._sweeps.discard)

    async def _sweep_remote(self, handle: RunHandle) -> None:
        """SIGKILL what is left of an ended attempt on the far side, retried with backoff
        while the host cannot be reached (a dropped connection often comes back)."""
        delay = SWEEP_FIRST_RETRY_SEC
        for _ in range(SWEEP_TRIES):
            try:
                reached = await self.control(handle, signal.SIGKILL)
            except HostUnavailable as exc:
                reason = exc.message
                await asyncio.sleep(delay)  # retry backoff, not a wait for a condition
                delay = min(delay * 2, SWEEP_MAX_RETRY_SEC)
                continue
            if reached:
                log.warning("job %s attempt %d: killed %d remote processes left behind on %s",
                            handle.job_id, handle.attempt, reached, self.host_id)
            return
        log.warning("job %s attempt %d: remote processes may survive on %s: %s",
                    handle.job_id, handle.attempt, self.host_id, reason)

    async def close(self) -> None:
        """Sweeps still retrying are abandoned (the daemon is going away); the jobs
        themselves are left alone, as on a local host."""
        sweeps = list(self._sweeps)
        for task in sweeps:
            task.cancel()
        await asyncio.gather(*sweeps, return_exceptions=True)
        await super().close()
