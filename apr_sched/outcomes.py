"""How a job ended, as an exit code: what ``apr-sched wait``, ``submit --wait`` and the
``bsub -K`` / ``bwait`` shims exit with, so a make recipe or a flow script gets the job's
outcome as its own exit status.

Pure and small (no pydantic): judged from a ``models.Job`` or a ``views.JobView`` alike.
Every ``wait`` and ``submit`` imports it (their help ends with the table), so it loads
neither ``textwrap`` nor ``signal`` nor ``typing`` to start.
"""

from __future__ import annotations

from apr_sched.states import JobStatus

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Protocol

    from apr_sched.models import Job
    from apr_sched.views import JobView

    class _Attempt(Protocol):
        @property
        def attempt(self) -> int: ...

        @property
        def reason(self) -> str | None: ...

    class _Event(Protocol):
        @property
        def reason(self) -> str: ...

__all__ = [
    "CANNOT_START_REASON",
    "EXIT_CANCELLED",
    "EXIT_CANNOT_START",
    "EXIT_CODES",
    "EXIT_CODES_HELP",
    "EXIT_LOST",
    "EXIT_STOPPED",
    "EXIT_TIMEOUT",
    "EXIT_WAIT_FAILED",
    "LOST_REASON",
    "exit_code_for",
    "exit_code_of",
    "worst_exit_code",
]

EXIT_TIMEOUT = 201
EXIT_STOPPED = 202
EXIT_LOST = 203
EXIT_CANNOT_START = 204
EXIT_CANCELLED = 205
"""CANCELLED: a dependency of the job can never hold (``dependency 12 FAILED``)."""
EXIT_WAIT_FAILED = 206
"""The wait itself failed: no such job (or purged), or the daemon stayed away too long."""

EXIT_CODES: tuple[tuple[str, str], ...] = (
    ("0-255", "the job's own exit code (0: SUCCEEDED)"),
    ("128+N", "the job was killed by signal N (137: SIGKILL, 143: SIGTERM)"),
    (str(EXIT_TIMEOUT), "TIMEOUT: the job ran past its --timeout and was ended"),
    (str(EXIT_STOPPED), "STOPPED: someone stopped the job (apr-sched stop, the TUI)"),
    (str(EXIT_LOST), "lost: the job's host or wrapper vanished; how it ended is unknown"),
    (str(EXIT_CANNOT_START), "cannot start: the job could not be started on its host"),
    (str(EXIT_CANCELLED), "CANCELLED: never ran, a dependency can never hold"),
    (str(EXIT_WAIT_FAILED), "the wait failed: no such job, or the daemon stayed away "
                            "longer than --reconnect-timeout"),
    ("2", "invalid input or a refused submit: nothing was submitted"),
    ("129/130/143", "this command got SIGHUP/SIGINT/SIGTERM: the jobs were stopped "
                    "(unless --no-stop-on-interrupt) and have ended"),
)
"""Every exit code a wait can give, as ``apr-sched wait --help`` prints them."""


def _exit_codes_help() -> str:
    lines = ["exit codes:"]
    for code, meaning in EXIT_CODES:
        lines += _wrap(meaning, 79, f"  {code:<12} ", " " * 15)
    lines += _wrap(
        "several jobs: the worst outcome, in this order: the wait failed, lost, cannot "
        "start, CANCELLED, STOPPED, TIMEOUT, killed by a signal, a non-zero exit, 0 (the "
        "first job given wins a tie)", 79, "  ", "  ")
    return "\n".join(lines) + "\n"


def _wrap(text: str, width: int, first: str, rest: str) -> list[str]:
    """``text``'s words in lines of at most ``width`` (a longer word has a line of its own),
    the first line after ``first``, the others after ``rest``: ``textwrap.wrap`` for
    plain words, without loading textwrap and its regexes at every start."""
    lines: list[str] = []
    line = first
    for word in text.split():
        if line.strip() and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = rest
        line += word if line in (first, rest) else f" {word}"
    lines.append(line)
    return lines


EXIT_CODES_HELP = _exit_codes_help()
"""The table ``apr-sched wait --help`` ends with."""

LOST_REASON = "lost:"
CANNOT_START_REASON = "could not start"
"""How the scheduler's timeline words these endings (transitions.outcome, runs.py)."""


def exit_code_for(job: Job | JobView | None) -> int:
    """The exit code that tells how ``job`` ended (None: there is no such job)."""
    if job is None:
        return EXIT_WAIT_FAILED
    return exit_code_of(job.status, job.exit_code, job.signal, _last_reason(job))


def exit_code_of(status: JobStatus, exit_code: int | None, signal_name: str | None,
                 reason: str = "") -> int:
    """``exit_code_for`` from the fields themselves (a final event has the status only:
    enough for every ending but FAILED)."""
    if status is JobStatus.SUCCEEDED:
        return 0
    if status is JobStatus.TIMEOUT:
        return EXIT_TIMEOUT
    if status is JobStatus.STOPPED:
        return EXIT_STOPPED
    if status is JobStatus.CANCELLED:
        return EXIT_CANCELLED
    if exit_code is not None:
        return exit_code if 0 < exit_code < 256 else 1
    if signal_name:
        return 128 + _signal_number(signal_name)
    return EXIT_CANNOT_START if reason.startswith(CANNOT_START_REASON) else EXIT_LOST


def _signal_number(name: str) -> int:
    import signal  # only for a job killed by one

    try:
        return int(signal.Signals[name])
    except KeyError:
        digits = name.removeprefix("SIG")
        return int(digits) if digits.isdigit() else int(signal.SIGKILL)


def _last_reason(job: Job | JobView) -> str:
    attempts: Sequence[_Attempt] = job.attempts
    for attempt in reversed(attempts):
        if attempt.attempt == job.attempt and attempt.reason:
            return attempt.reason
    events: Sequence[_Event] = job.events
    return events[-1].reason if events else ""


def _rank(code: int) -> int:
    """How bad an outcome is (higher is worse), for waits on several jobs."""
    order = (EXIT_WAIT_FAILED, EXIT_LOST, EXIT_CANNOT_START, EXIT_CANCELLED, EXIT_STOPPED,
             EXIT_TIMEOUT)
    if code in order:
        return 10 + len(order) - order.index(code)
    if code == 0:
        return 0
    return 2 if code > 128 else 1


def worst_exit_code(codes: Sequence[int]) -> int:
    """The worst of several outcomes (see ``EXIT_CODES_HELP``); the first given wins a tie."""
    worst = 0
    for code in codes:
        if _rank(code) > _rank(worst):
            worst = code
    return worst
