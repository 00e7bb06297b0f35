"""Fair-share turns: shares, running slots, decayed usage (pure)."""

from __future__ import annotations

import pytest

from apr_sched.fairshare import FairShare, FairShareConfig


def simulate_turns(fair: FairShare, pending: dict[str, int], starts: int) -> list[str]:
    """Start ``starts`` jobs one at a time, each going to the owner whose turn it is."""
    order = []
    for _ in range(starts):
        owner = fair.best([o for o, n in pending.items() if n], now=0.0)
        assert owner is not None
        pending[owner] -= 1
        fair.started(owner, 1)
        order.append(owner)
    return order


def test_a_sweep_interleaves_with_a_colleagues_few_jobs() -> None:
    fair = FairShare(FairShareConfig(shares={}))
    order = simulate_turns(fair, {"alice": 500, "bob": 5}, starts=10)
    assert order[:10] == ["alice", "bob"] * 5  # not alice x 500 first


def test_shares_weight_the_turns() -> None:
    fair = FairShare(FairShareConfig(shares={"alice": 2}))
    order = simulate_turns(fair, {"alice": 100, "bob": 100}, starts=30)
    assert order.count("alice") == 20 and order.count("bob") == 10


def test_recent_usage_lowers_priority_and_decays_with_the_half_life() -> None:
    config = FairShareConfig(shares={}, half_life_sec=3600)
    fair = FairShare(config)
    fair.started("alice", 4)
    fair.ended("alice", 4, cpu_sec=3600, now=0.0)  # 1 CPU-hour x 4 slots
    assert fair.usage("alice", 0.0) == pytest.approx(14400)
    assert fair.usage("alice", 3600.0) == pytest.approx(7200)
    assert fair.best(["alice", "bob"], now=0.0) == "bob"
    assert fair.priority("alice", 0.0) == pytest.approx(1 / 5)
    assert fair.priority("alice", 36000.0) > 0.99  # ten half-lives later: nearly forgotten


def test_ties_are_broken_by_name_and_an_empty_choice_is_none() -> None:
    fair = FairShare(FairShareConfig(shares={}))
    assert fair.best(["carol", "bob"], 0.0) == "bob"
    assert fair.best([], 0.0) is None


def test_snapshot_round_trips_and_forgets_the_long_idle() -> None:
    config = FairShareConfig(shares={}, half_life_sec=60)
    fair = FairShare(config)
    fair.ended("alice", 1, cpu_sec=100, now=0.0)
    fair.ended("bob", 1, cpu_sec=1e6, now=0.0)
    kept = fair.snapshot(now=600.0)  # ten half-lives: alice ~0.1 s, bob ~977 s
    assert set(kept) == {"bob"}
    again = FairShare(config, kept)
    assert again.usage("bob", 600.0) == pytest.approx(fair.usage("bob", 600.0))


def test_standings_list_everyone_best_first() -> None:
    fair = FairShare(FairShareConfig(shares={"alice": 3}))
    fair.started("bob", 2)
    rows = fair.standings(["alice", "bob", "carol"], 0.0)
    assert [row.owner for row in rows] == ["alice", "carol", "bob"]
    assert rows[2].running_slots == 2 and rows[0].share == 3


def test_ending_more_slots_than_started_does_not_go_negative() -> None:
    fair = FairShare(FairShareConfig(shares={}))
    fair.ended("alice", 3, cpu_sec=0, now=0.0)
    assert fair.standings(["alice"], 0.0)[0].running_slots == 0
