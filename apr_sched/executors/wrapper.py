"""The tiny POSIX ``sh`` wrapper every attempt runs under, locally and remotely.

It is started as a session and process-group leader, so its pid is the job's pgid and one
signal to ``-pgid`` reaches the command and everything it forked. It runs the command in a
subshell with the default signal handling restored, and writes the exit status to the rc
file when the command ends. Its own TERM/INT/HUP are caught (deferred until the command
exits), so a stop by SIGTERM still yields an rc file; only SIGKILL, the last resort, leaves
none. If the rc file cannot be written (the disk is full), the wrapper tries again every
second instead of losing how the job ended: to the scheduler the job is still running
until space returns.

Arguments: ``$1`` rc file, ``$2`` workdir ("" = stay), ``$3`` the command, and optionally
``$4`` the ``cgroup.procs`` of the attempt's cgroup, which the wrapper enters before it forks
anything (a failed move only costs the cgroup: the environment marker still tracks the
job). That write can take milliseconds, so it comes before the trap: a stop landing
meanwhile ends the wrapper at once instead of being deferred to a command not yet started.
The job's environment comes through the process environment, never the command line: other
users can read any process's argv, but not its environment. The wrapper uses no shell
variables, so no job variable can redirect its rc file or its command, and the command
starts with no positional parameters. The rc path in its command line is how a restarted scheduler
recognises the wrapper in /proc. The rc file is created owner-only (``umask 077`` once the
command has ended, so the job's own umask is untouched).
"""

WRAPPER_SCRIPT = r"""if [ -n "$4" ]; then { echo "$$" >"$4"; } 2>/dev/null; fi
trap : TERM INT HUP
(
  if [ -n "$2" ]; then
    cd -- "$2" || { echo "apr_sched: cannot enter workdir $2" >&2; exit 126; }
  fi
  eval "set --; $3"
) </dev/null
set -- "$1" "$?"
umask 077
until printf '%s\n' "$2" 2>/dev/null >"$1"; do sleep 1; done
"""

WRAPPER_ARGV0 = "apr-sched-job"
"""``$0`` of every wrapper: makes jobs easy to spot in ``ps`` and to recognise in /proc."""


def wrapper_argv(rc_path: str, workdir: str | None, command: str,
                 cgroup_procs: str | None = None) -> list[str]:
    argv = ["/bin/sh", "-c", WRAPPER_SCRIPT, WRAPPER_ARGV0, rc_path, workdir or "", command]
    return [*argv, cgroup_procs] if cgroup_procs else argv

