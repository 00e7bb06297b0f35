"""Wait for jobs to end, print their output once, and tell how they ended by an exit code.

``wait_for_jobs(client, ids)`` is what ``apr-sched submit --wait`` and ``apr-sched wait``
run, and what an LSF ``bsub -K`` / ``bwait`` shim calls: a make recipe or a flow script
blocks on a job and gets its outcome as its own exit status (``outcomes.EXIT_CODES``).
``follow_log`` is ``apr-sched logs --follow``.

Cost to the daemon: long polls only, nothing asked again and again. Job states come from
``GET /events?since=&wait=``, held by the daemon until something happens; only an event
naming a waited job makes the waiter read its state. A running job's output comes from
``GET /jobs/{id}/logs?offset=N&wait=S``, held until the job writes a line past N (or its
attempt ends), so a line is printed as soon as it is written. The waiter holds one log
poll per followed running job, and the event poll while some waited job has no log poll
held (it is pending, or the wait is ``--quiet``), each on its own connection, and sleeps
in ``select`` until one of them answers: a wait on one running job holds one connection.
Pending, held or ``--quiet`` waits read no log at all.

Fallbacks, bounded (``waiter.py``): at most ``MAX_LOG_POLLS`` logs are held at once (more
running jobs are read whenever something answers, and at least every ``LOG_RETRY_MAX_SEC``);
a log poll the daemon answers at once without news while the job still runs (it holds no
more requests, or is an older daemon without log long polls) is asked again after a pause
growing from ``LOG_RETRY_MIN_SEC`` to ``LOG_RETRY_MAX_SEC``.

A daemon restart is ridden out: the waiter reconnects with backoff for up to
``reconnect_timeout`` seconds, reads the states again, and continues each log at the offset
already printed, so no line is lost or printed twice.

Ctrl-C, SIGTERM and SIGHUP of the waiting process stop the waited jobs (unless told not
to), keep printing until they have ended, and then give ``128 + signal``; a second signal
leaves at once. A SIGHUP that was ignored when we started (``nohup``) stays ignored.
"""

from __future__ import annotations

import sys

from apr_sched.interrupts import Interrupted, Signals
from apr_sched.outcomes import (
    EXIT_CANCELLED,
    EXIT_CANNOT_START,
    EXIT_CODES,
    EXIT_CODES_HELP,
    EXIT_LOST,
    EXIT_STOPPED,
    EXIT_TIMEOUT,
    EXIT_WAIT_FAILED,
    exit_code_for,
    worst_exit_code,
)
from apr_sched.rawclient import DaemonUnreachable, RawClient
from apr_sched.views import JobView
from apr_sched.waiter import Waiter

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import TextIO

__all__ = [
    "EXIT_CANCELLED",
    "EXIT_CANNOT_START",
    "EXIT_CODES",
    "EXIT_CODES_HELP",
    "EXIT_LOST",
    "EXIT_STOPPED",
    "EXIT_TIMEOUT",
    "EXIT_WAIT_FAILED",
    "WaitResult",
    "exit_code_for",
    "follow_log",
    "wait_for_jobs",
    "worst_exit_code",
]


class WaitResult:
    """How a wait ended: ``code`` is the exit code to leave with."""

    __slots__ = ("code", "interrupted", "jobs")

    def __init__(self, code: int, jobs: dict[str, JobView | None] | None = None,
                 interrupted: int | None = None) -> None:
        self.code = code
        self.jobs: dict[str, JobView | None] = jobs or {}
        """Each waited job as last read (None: no such job)."""
        self.interrupted = interrupted
        """The signal that interrupted the wait, if one did."""

    def __repr__(self) -> str:
        return f"WaitResult(code={self.code}, interrupted={self.interrupted})"



def wait_for_jobs(
    client: RawClient,
    job_ids: Sequence[str],
    *,
    output: TextIO | None = None,
    notices: TextIO | None = None,
    stop_on_interrupt: bool = True,
    reconnect_timeout: float = 600.0,
    first_attempt: int | None = None,
    label_lines: bool | None = None,
    since: int | None = None,
    known: dict[str, JobView] | None = None,
    signals: Signals | None = None,
) -> WaitResult:
    """Block until every job in ``job_ids`` has ended; return the exit code that tells how.

    ``output``: where the jobs' output goes as it is written (None: nowhere, ``--quiet``);
    each job's current attempt from its first byte, or ``first_attempt`` on (1 for a job
    just submitted), then each retry's. ``label_lines`` (default: more than one job)
    prefixes each line with ``<job id>: ``. ``notices`` (default stderr) gets one-line
    notes: a new attempt, the daemon away and back, a stop on interrupt. ``since`` (an
    event number taken before the jobs were submitted) and ``known`` (their submit
    replies) save the first round trips. Signals: see the module docstring (handlers are
    installed only in the main thread); ``signals``, entered by the caller before it
    submitted the jobs, makes a signal that came in between count too.
    """
    if not job_ids:
        raise ValueError("no job ids to wait for")
    waiter = Waiter(client, job_ids, output=output,
                     notices=sys.stderr if notices is None else notices,
                     first_attempt=first_attempt, reconnect_timeout=reconnect_timeout,
                     label_lines=len(set(job_ids)) > 1 if label_lines is None else label_lines,
                     since=since, known=known, signals=signals)
    interrupted: int | None = None
    with waiter.signals:
        try:
            try:
                waiter.run()
            except Interrupted as exc:
                interrupted = exc.signum
                if not stop_on_interrupt:
                    left = waiter.unfinished()
                    if left:
                        waiter.notice(f"interrupted; job {', '.join(left)} keeps running")
                    return WaitResult(128 + interrupted, interrupted=interrupted)
                left = waiter.unfinished()
                if left:
                    waiter.notice(f"interrupted: stopping job {', '.join(left)} "
                                   "(interrupt again to leave at once)")
                    waiter.stop_unfinished()
                    waiter.run()
            jobs = waiter.outcome()
        except Interrupted as exc:
            signum = interrupted or exc.signum
            return WaitResult(128 + signum, interrupted=signum)
        except DaemonUnreachable as exc:
            waiter.notice(f"gave up waiting: {exc.message}")
            return WaitResult(EXIT_WAIT_FAILED, interrupted=interrupted)
        finally:
            waiter.drop_polls()
    if interrupted is not None:
        return WaitResult(128 + interrupted, jobs, interrupted)
    return WaitResult(worst_exit_code([exit_code_for(job) for job in jobs.values()]), jobs)


def follow_log(client: RawClient, job_id: str, attempt: int, offset: int, *,
               output: TextIO, pinned: bool, json_lines: bool = False,
               notices: TextIO | None = None) -> int:
    """``apr-sched logs --follow``: print one job's lines from ``offset`` of ``attempt``
    as they are written, until it has ended (the same long polls and offsets as a wait);
    ``pinned`` stays on that attempt instead of moving on to a retry; ``json_lines`` prints
    each reply as JSON. Returns 0, or 128 + N when signal N ended it (the job is left
    alone)."""
    waiter = Waiter(client, [job_id], output=output,
                     notices=sys.stderr if notices is None else notices,
                     first_attempt=attempt, reconnect_timeout=0.0, label_lines=False,
                     pinned=pinned, json_lines=json_lines)
    waiter.tracked[job_id].offset = offset
    try:
        with waiter.signals:
            waiter.run()
    except Interrupted as exc:
        return 128 + exc.signum
    finally:
        waiter.drop_polls()
    return 0
