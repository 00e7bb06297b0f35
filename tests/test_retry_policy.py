"""Each retry rule and the reason it leaves (pure decisions)."""

from __future__ import annotations

from apr_sched.retry_policy import MAX_RETRY_DELAY_SEC, RetryDecision, RetryRule, decide


def ended(rule: RetryRule, status: str = "FAILED", exit_code: int | None = 1,
          signal_number: int | None = None, lost: bool = False, used: int = 0,
          host: str | None = "pnr-01") -> RetryDecision:
    return decide(rule, status=status, exit_code=exit_code, signal_number=signal_number,
                  lost=lost, retries_used=used, host_id=host)


def test_the_default_rule_retries_failures_and_timeouts_at_once() -> None:
    rule = RetryRule(limit=2)
    assert ended(rule) == RetryDecision(True, "retry 1 of 2 (exit code 1)")
    assert ended(rule, "TIMEOUT", None) == RetryDecision(True, "retry 1 of 2 (it timed out)")
    assert ended(rule, used=2) == RetryDecision(False, "no retry: all 2 retries used")
    assert ended(RetryRule()) == RetryDecision(False, "no retry: retry_limit is 0")
    for status in ("SUCCEEDED", "STOPPED", "CANCELLED"):
        assert not ended(rule, status).retry


def test_retry_on_exit_narrows_to_listed_codes() -> None:
    rule = RetryRule(limit=3, on_exit=frozenset({3, 137}))
    assert ended(rule, exit_code=3).reason == "retry 1 of 3 (exit code 3 is in retry_on_exit)"
    assert ended(rule, exit_code=1).reason == (
        "no retry: exit code 1 is not in retry_on_exit [3, 137]")
    killed = ended(rule, exit_code=None, signal_number=9)  # SIGKILL counts as 137
    assert killed.retry and "exit code 137" in killed.reason
    assert ended(rule, "TIMEOUT", None).reason == (
        "no retry: a TIMEOUT is not an exit code in retry_on_exit")
    assert not ended(rule, exit_code=None).retry


def test_never_retry_on_exit_excludes_codes() -> None:
    rule = RetryRule(limit=3, never_on_exit=frozenset({2}))
    assert ended(rule, exit_code=2).reason == "no retry: exit code 2 is in never_retry_on_exit"
    assert ended(rule, exit_code=1).retry


def test_backoff_doubles_up_to_a_day() -> None:
    rule = RetryRule(limit=30, delay_sec=10)
    assert [ended(rule, used=n).delay_sec for n in range(4)] == [10, 20, 40, 80]
    assert ended(rule, used=1).reason == "retry 2 of 30 in 20s (exit code 1)"
    assert ended(rule, used=29).delay_sec == MAX_RETRY_DELAY_SEC


def test_other_host_and_lost_hosts_avoid_the_host() -> None:
    elsewhere = ended(RetryRule(limit=1, other_host=True))
    assert elsewhere.avoid_host == "pnr-01"
    assert elsewhere.reason == "retry 1 of 1, not on pnr-01 (exit code 1)"
    lost = ended(RetryRule(limit=1, on_exit=frozenset({3})), exit_code=None, lost=True)
    assert lost == RetryDecision(True, "retry 1 of 1, not on pnr-01 (its host was lost)",
                                 0.0, "pnr-01")
    assert ended(RetryRule(limit=1)).avoid_host is None
