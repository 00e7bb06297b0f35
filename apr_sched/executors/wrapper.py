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
Then, each "" when unused: ``$5`` the job's umask, set before the command runs; ``$6`` an
output file and ``$7`` an error file (LSF ``-o``/``-e``), relative to the workdir.

Without an output file the command's stdout and stderr are the wrapper's own (the log):
no process is added. With one, a ``tee -a`` copies stdout (and stderr, unless there is an
error file, which gets its own ``tee``) into the file and on into the log, so the log keeps
the combined stream. The command's own exit status reaches the rc file through a
separate descriptor (never a pipeline's, which would be tee's). The tees ignore TERM, INT
and HUP, so a job saving its work on SIGTERM can still print while it does (a dead tee
would kill it with SIGPIPE); they end when the job's output closes. Both files are opened
once before the command starts, so a path that cannot be written ends the attempt at once
with exit code 126 and the reason in the log. A process the job leaves running with its
output still open keeps the job running until it closes it, as ``cmd | tee`` would.

The job's environment comes through the process environment, never the command line: other
users can read any process's argv, but not its environment. The wrapper uses no shell
variables, so no job variable can redirect its rc file or its command, and the command
starts with no positional parameters. The rc path in its command line is how a restarted scheduler
recognises the wrapper in /proc. The rc file is created owner-only (``umask 077`` once the
command has ended, so the job's own umask is untouched).
"""

from __future__ import annotations

from dataclasses import dataclass

WRAPPER_SCRIPT = r"""if [ -n "$4" ]; then { echo "$$" >"$4"; } 2>/dev/null; fi
trap : TERM INT HUP
if [ -z "$6" ]; then
(
  if [ -n "$2" ]; then
    cd -- "$2" || { echo "apr_sched: cannot enter workdir $2" >&2; exit 126; }
  fi
  if [ -n "$5" ]; then umask "$5"; fi
  eval "set --; $3"
) </dev/null
else
(
  trap : TERM INT HUP
  if [ -n "$2" ]; then
    cd -- "$2" || { echo "apr_sched: cannot enter workdir $2" >&2; exit 126; }
  fi
  if [ -n "$5" ]; then umask "$5"; fi
  if ! true >>"$6"; then
    echo "apr_sched: cannot open output_path $6 (in $PWD)" >&2; exit 126
  fi
  if [ -n "$7" ] && ! true >>"$7"; then
    echo "apr_sched: cannot open error_path $7 (in $PWD)" >&2; exit 126
  fi
  exec 3>&1
  if [ -z "$7" ]; then
    set -- "$(
      { { trap : TERM INT HUP; ( eval "set --; $3" ) 2>&1 3>&- 4>&-; echo "$?" >&4; } |
        ( trap '' TERM INT HUP; exec tee -a -- "$6" ) >&3 3>&- 4>&-; } 4>&1
    )"
  else
    set -- "$(
      { { { trap : TERM INT HUP; ( eval "set --; $3" ) 2>&1 >&5 3>&- 4>&- 5>&-
            echo "$?" >&4; } |
          ( trap '' TERM INT HUP; exec tee -a -- "$7" ) >&3 3>&- 4>&- 5>&-; } 5>&1 |
        ( trap '' TERM INT HUP; exec tee -a -- "$6" ) >&3 3>&- 4>&-; } 4>&1
    )"
  fi
  exit "${1:-125}"
) </dev/null
fi
set -- "$1" "$?"
umask 077
until printf '%s\n' "$2" 2>/dev/null >"$1"; do sleep 1; done
"""

WRAPPER_ARGV0 = "apr-sched-job"
"""``$0`` of every wrapper: makes jobs easy to spot in ``ps`` and to recognise in /proc."""


@dataclass(frozen=True, slots=True)
class JobOutput:
    """The wrapper's optional arguments about the job's own files: its umask and the
    files its output is copied to (``%J`` already replaced by the job id)."""

    umask: str | None = None
    output_path: str | None = None
    error_path: str | None = None

    def args(self) -> list[str]:
        """``$5 $6 $7`` of the wrapper; [] when none is used (the usual, cheapest case)."""
        if not (self.umask or self.output_path):
            return []
        return [self.umask or "", self.output_path or "", self.error_path or ""]


def job_output(job_id: str, umask: str | None, output_path: str | None,
               error_path: str | None) -> JobOutput:
    """A job's ``umask``/``output_path``/``error_path`` as the wrapper takes them."""
    return JobOutput(umask=umask, output_path=expand_job_path(output_path, job_id),
                     error_path=expand_job_path(error_path, job_id))


def expand_job_path(path: str | None, job_id: str) -> str | None:
    """``%J`` becomes the job id, as in LSF ``-o out.%J``."""
    return None if path is None else path.replace("%J", job_id)


def wrapper_argv(rc_path: str, workdir: str | None, command: str,
                 cgroup_procs: str | None = None,
                 output: JobOutput | None = None) -> list[str]:
    argv = ["/bin/sh", "-c", WRAPPER_SCRIPT, WRAPPER_ARGV0, rc_path, workdir or "", command]
    extra = output.args() if output is not None else []
    if extra:
        return [*argv, cgroup_procs or "", *extra]
    return [*argv, cgroup_procs] if cgroup_procs else argv
