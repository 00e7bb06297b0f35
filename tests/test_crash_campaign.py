"""The short form of the crash campaign (tests/crash_campaign.py): a real daemon killed
by SIGKILL five times while 40 jobs run loses none, runs none twice, and loses or doubles
no log line. The long form is bench/bench_crash.py."""

from __future__ import annotations

from tests.crash_campaign import run_campaign


def test_kill_9_campaign_loses_nothing(tmp_path):
    result = run_campaign(tmp_path, jobs=40, kills=5, lines=20, pause=0.02, slots=4, seed=7)
    assert result.clean, result
