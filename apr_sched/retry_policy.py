"""Whether an ended attempt is tried again, when, and where: one rule per job.

Today's rule (retry any FAILED or TIMEOUT attempt at once while ``retry_limit`` allows)
is the default; a job may narrow it to some exit codes (``retry_on_exit``, like LSF
``REQUEUE_EXIT_VALUES``) or exclude some (``never_retry_on_exit``: a license checkout
failure is worth a retry, a syntax error in the Tcl is not), wait before retrying with a
doubling backoff (``retry_delay_sec``), and avoid the host it failed on
(``retry_other_host``). An attempt lost with its host is always retried elsewhere.
Pure: the Scheduler asks and applies the answer; the reason says which rule fired.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

__all__ = ["MAX_RETRY_DELAY_SEC", "RetryDecision", "RetryRule", "decide"]

MAX_RETRY_DELAY_SEC = 86400.0
"""The doubling stops here: a retry is never pushed more than a day out."""


@dataclass(frozen=True)
class RetryRule:
    limit: int = 0
    on_exit: frozenset[int] | None = None
    """Retry only attempts that exited with one of these codes (killed by signal N counts
    as 128+N, as a shell reports it); a TIMEOUT is then not retried."""
    never_on_exit: frozenset[int] = frozenset()
    delay_sec: float = 0.0
    """Before the first retry; doubled for each further one."""
    other_host: bool = False


@dataclass(frozen=True)
class RetryDecision:
    retry: bool
    reason: str
    """``retry 2 of 3 in 40s, not on pnr-01 (exit code 3 is in retry_on_exit)``, or why not."""
    delay_sec: float = 0.0
    avoid_host: str | None = None


def decide(rule: RetryRule, *, status: str, exit_code: int | None, signal_number: int | None,
           lost: bool, retries_used: int, host_id: str | None) -> RetryDecision:
    """What to do after an attempt ended FAILED or TIMEOUT (other statuses never retry)."""
    if status not in ("FAILED", "TIMEOUT"):
        return RetryDecision(False, f"no retry: {status} is never retried")
    if retries_used >= rule.limit:
        if rule.limit == 0:
            return RetryDecision(False, "no retry: retry_limit is 0")
        return RetryDecision(False, f"no retry: all {rule.limit} retries used")
    code = _shell_code(exit_code, signal_number)
    why = _why_retry(rule, status=status, code=code, lost=lost)
    if why.startswith("no retry"):
        return RetryDecision(False, why)
    delay = min(rule.delay_sec * (2 ** retries_used), MAX_RETRY_DELAY_SEC)
    avoid = host_id if (rule.other_host or lost) else None
    text = f"retry {retries_used + 1} of {rule.limit}"
    if delay:
        text += f" in {delay:g}s"
    if avoid is not None:
        text += f", not on {avoid}"
    return RetryDecision(True, f"{text} ({why})", delay, avoid)


def _why_retry(rule: RetryRule, *, status: str, code: int | None, lost: bool) -> str:
    if lost:
        return "its host was lost"
    if status == "TIMEOUT":
        if rule.on_exit is not None:
            return "no retry: a TIMEOUT is not an exit code in retry_on_exit"
        return "it timed out"
    if code is not None and code in rule.never_on_exit:
        return f"no retry: exit code {code} is in never_retry_on_exit"
    if rule.on_exit is not None:
        if code is None or code not in rule.on_exit:
            return (f"no retry: exit code {code if code is not None else 'unknown'} is not "
                    f"in retry_on_exit {_codes(rule.on_exit)}")
        return f"exit code {code} is in retry_on_exit"
    return f"exit code {code}" if code is not None else "it failed"


def _shell_code(exit_code: int | None, signal_number: int | None) -> int | None:
    if exit_code is not None:
        return exit_code
    return 128 + signal_number if signal_number is not None else None


def _codes(codes: Collection[int]) -> str:
    return "[" + ", ".join(str(code) for code in sorted(codes)) + "]"
