"""License token bookkeeping: free = total - held - outside - margin, freed exactly once."""

from __future__ import annotations

import random

import pytest

from apr_sched.licenses import LicensePool, ResourceSpec


def pool(**totals: int) -> LicensePool:
    p = LicensePool()
    p.configure({name: ResourceSpec(name, total) for name, total in totals.items()})
    return p


def test_tokens_are_held_while_running_and_freed_once() -> None:
    p = pool(innovus=2, tempus=4)
    assert p.shortage({"innovus": 1, "tempus": 2}) is None
    p.take("1", {"innovus": 1, "tempus": 2})
    p.take("2", {"innovus": 1})
    assert p.shortage({"innovus": 1}) == "waiting for license innovus: 2 of 2 in use"
    assert p.shortage({"tempus": 2}) is None
    assert p.release("1") == {"innovus": 1, "tempus": 2}
    assert p.release("1") == {}  # exactly once
    assert p.use("innovus").held == 1 and p.use("tempus").held == 0
    with pytest.raises(RuntimeError, match="already holds"):
        p.take("2", {"innovus": 1})


def test_outside_use_comes_from_the_probe_beyond_our_own_holdings() -> None:
    p = pool(innovus=20)
    for job in range(17):
        p.take(str(job), {"innovus": 1})
    p.probed("innovus", 20, "20 in use (probed 3s ago)")  # ours 17 + 3 interactive
    use = p.use("innovus")
    assert (use.held, use.outside, use.free) == (17, 3, 0)
    assert p.shortage({"innovus": 1}) == (
        "waiting for license innovus: 20 of 20 in use, 3 used outside apr_sched")
    p.probed("innovus", 15, "15 in use")  # the server saw fewer than we hold: lag
    assert p.use("innovus").outside == 0 and p.use("innovus").free == 3


def test_margin_and_impossible_requests_are_named() -> None:
    p = LicensePool()
    p.configure({"icc2": ResourceSpec("icc2", 4, margin=1)})
    p.take("1", {"icc2": 3})
    assert p.shortage({"icc2": 1}) == "waiting for license icc2: 3 of 4 in use, 1 kept free"
    assert p.shortage({"icc2": 5}).endswith("needs 5 (more than the 3 it may ever have)")


def test_a_failing_probe_is_mentioned_in_the_reason() -> None:
    p = pool(innovus=1)
    p.take("1", {"innovus": 1})
    p.probed("innovus", 1, "probe failing: lmutil exited with 1; keeping 1 from 60s ago")
    assert p.shortage({"innovus": 1}).endswith(
        "[probe failing: lmutil exited with 1; keeping 1 from 60s ago]")


def test_reconfiguring_keeps_holdings_and_unknown_names_are_listed() -> None:
    p = pool(innovus=4)
    p.take("1", {"innovus": 3})
    p.configure({"innovus": ResourceSpec("innovus", 2)})  # lowered below what is held
    assert p.use("innovus").free == 0
    assert p.shortage({"innovus": 1}) is not None
    p.release("1")
    assert p.use("innovus").free == 2
    assert p.unknown({"innovus": 1, "calibre": 1, "abc": 2}) == ["abc", "calibre"]
    assert p.names() == ["innovus"]


def test_release_on_suspend_marks_what_a_paused_job_gives_back() -> None:
    p = LicensePool()
    p.configure({"a": ResourceSpec("a", 1, release_on_suspend=True), "b": ResourceSpec("b", 1)})
    assert p.suspendable({"a": 1, "b": 1}) == {"a": 1}


def test_never_oversubscribed_under_random_starts_and_ends() -> None:
    """The invariant the scheduler relies on: taking only after shortage() is None keeps
    held <= total - margin at every step."""
    rng = random.Random(7)
    p = LicensePool()
    p.configure({name: ResourceSpec(name, total, margin=1)
                 for name, total in (("x", 5), ("y", 3), ("z", 8))})
    running: list[str] = []
    for step in range(5000):
        if running and rng.random() < 0.45:
            p.release(running.pop(rng.randrange(len(running))))
        else:
            want = {name: rng.randint(0, 2) for name in ("x", "y", "z")}
            if p.shortage(want) is None:
                p.take(str(step), want)
                running.append(str(step))
        for name in ("x", "y", "z"):
            use = p.use(name)
            assert 0 <= use.held <= use.total - use.margin
