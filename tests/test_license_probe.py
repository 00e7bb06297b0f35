"""License probes run as real processes: a fake lmstat printing real-format output."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

import pytest

from apr_sched.license_probe import ProbeReading, ProbeSpec, run_probe

DATA = Path(__file__).parent / "data" / "lmstat_a.txt"


def fake_lmstat(tmp_path: Path, body: str) -> str:
    script = tmp_path / "lmutil"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o700)
    return str(script)


def probe(command: str, **kwargs: object) -> int | str:
    return asyncio.run(run_probe(ProbeSpec("innovus", command, **kwargs)))  # type: ignore[arg-type]


def test_lmstat_output_gives_the_seats_in_use(tmp_path: Path) -> None:
    lmutil = fake_lmstat(tmp_path, f'cat "{DATA}"\n')
    assert probe(f"{lmutil} lmstat -a") == 7


def test_a_changing_count_is_read_each_time(tmp_path: Path) -> None:
    count = tmp_path / "in_use"
    lmutil = fake_lmstat(tmp_path, f'n=$(cat "{count}")\n'
                         'echo "Users of innovus:  (Total of 20 licenses issued;  '
                         'Total of $n licenses in use)"\n')
    for n in (3, 11, 0):
        count.write_text(str(n))
        assert probe(f"{lmutil} lmstat -f innovus") == n


def test_the_integer_form(tmp_path: Path) -> None:
    assert probe("echo 4", format="integer") == 4
    assert "expected one whole number" in str(probe("echo four", format="integer"))


def test_failures_are_reasons_not_exceptions(tmp_path: Path) -> None:
    failing = fake_lmstat(tmp_path, 'echo "lmgrd is not running: License server machine is '
                          'down or not responding. (-96,7:111)" >&2\nexit 1\n')
    assert probe(failing) == (f"{failing!r} exited with 1: lmgrd is not running: License "
                              "server machine is down or not responding. (-96,7:111)")
    assert "no 'Users of innovus:' line" in str(probe("echo nothing here"))
    assert "exited with 127" in str(probe("/nonexistent/lmutil lmstat"))


def test_a_hung_probe_is_killed_with_its_children(tmp_path: Path) -> None:
    pidfile = tmp_path / "child.pid"
    hung = fake_lmstat(tmp_path, f'sleep 60 & echo $! > "{pidfile}"\nwait\n')
    start = time.monotonic()
    assert probe(hung, timeout_sec=0.5) == f"{hung!r} ran past 0.5s and was killed"
    assert time.monotonic() - start < 10
    child = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(child, 0)
        except ProcessLookupError:
            break
        time.sleep(0.02)  # bounded poll for the child's exit
    else:
        pytest.fail(f"the probe's child {child} outlived it")


def test_too_much_output_is_refused() -> None:
    assert "printed more than 4 MB" in str(probe("head -c 6000000 /dev/zero"))


def test_a_failing_probe_keeps_the_last_good_reading() -> None:
    reading = ProbeReading(None, None).after(7, now=100.0)
    assert reading == ProbeReading(7, 100.0)
    assert reading.describe(now=130.0) == "7 in use (probed 30s ago)"
    failed = reading.after("lmutil exited with 1", now=160.0)
    assert failed.in_use == 7 and failed.good_at == 100.0 and failed.error_at == 160.0
    assert failed.describe(now=160.0) == (
        "probe failing: lmutil exited with 1; keeping 7 from 60s ago")
    assert ProbeReading(None, None).after("down", 5.0).describe(5.0) == (
        "probe failing: down; no value yet")
    assert failed.after(2, now=170.0) == ProbeReading(2, 170.0)


def test_a_probe_whose_child_left_its_group_still_answers(tmp_path: Path) -> None:
    """A daemonising child keeps the pipe open past the kill: the answer comes anyway,
    bounded by the time limit plus LINGER_SEC."""
    pidfile = tmp_path / "escaped.pid"
    escaping = fake_lmstat(tmp_path, f'setsid sh -c \'echo $$ > "{pidfile}"; exec sleep 60\' &\n'
                           'wait\n')
    start = time.monotonic()
    try:
        answer = probe(escaping, timeout_sec=0.2)
        assert answer == f"{escaping!r} ran past 0.2s and its output never ended"
        assert time.monotonic() - start < 15
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), 9)
