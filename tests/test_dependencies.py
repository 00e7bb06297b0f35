"""The dependency rules and the index of waiting dependents (pure: no scheduler)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from apr_sched.batch_graph import BatchRef, GraphError, resolve_batch
from apr_sched.dependencies import (
    Cancelled,
    Condition,
    DependencyIndex,
    Edge,
    Released,
    Upstream,
    Verdict,
    edges_of,
    verdict,
)

OK, ANY, FAILED = Condition.AFTER_OK, Condition.AFTER_ANY, Condition.AFTER_FAILED


def job(status: str) -> Upstream:
    final = status in {"SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "CANCELLED"}
    return Upstream(total=1, ended=int(final), succeeded=int(status == "SUCCEEDED"),
                    status=status)


@pytest.mark.parametrize(("status", "ok", "any_", "failed"), [
    ("PENDING", "waiting", "waiting", "waiting"),
    ("HELD", "waiting", "waiting", "waiting"),
    ("RUNNING", "waiting", "waiting", "waiting"),
    ("PAUSED", "waiting", "waiting", "waiting"),
    ("SUCCEEDED", "met", "met", "never"),
    ("FAILED", "never", "met", "met"),
    ("TIMEOUT", "never", "met", "met"),
    ("STOPPED", "never", "met", "met"),
    ("CANCELLED", "never", "met", "met"),
])
def test_verdicts_on_one_job(status: str, ok: str, any_: str, failed: str) -> None:
    assert [verdict(c, job(status)).value for c in (OK, ANY, FAILED)] == [ok, any_, failed]


def test_verdicts_on_an_array() -> None:
    running = Upstream(total=10, ended=4, succeeded=4, status="RUNNING", is_array=True)
    one_failed = Upstream(total=10, ended=5, succeeded=4, status="FAILED", is_array=True)
    all_ok = Upstream(total=10, ended=10, succeeded=10, status="SUCCEEDED", is_array=True)
    all_ended = Upstream(total=10, ended=10, succeeded=9, status="FAILED", is_array=True)
    assert verdict(OK, running) is Verdict.WAITING
    assert verdict(OK, one_failed) is Verdict.NEVER  # at once, not when the rest end
    assert verdict(OK, all_ok) is Verdict.MET
    assert verdict(ANY, one_failed) is Verdict.WAITING
    assert verdict(ANY, all_ended) is Verdict.MET
    assert verdict(FAILED, one_failed) is Verdict.WAITING
    assert verdict(FAILED, all_ended) is Verdict.MET
    assert verdict(FAILED, all_ok) is Verdict.NEVER


class World:
    """Upstream states the index reads, changed by the test as a scheduler would."""

    def __init__(self) -> None:
        self.states: dict[str, Upstream] = {}
        self.index = DependencyIndex(self.states.get)

    def set(self, job_id: str, status: str) -> list[object]:
        self.states[job_id] = job(status)
        return list(self.index.changed(job_id))


def test_a_dependent_waits_then_is_released_when_every_edge_holds() -> None:
    world = World()
    world.states.update({"1": job("RUNNING"), "2": job("PENDING")})
    assert world.index.add("3", [Edge(OK, "1"), Edge(ANY, "2")]) is None
    assert "3" in world.index and len(world.index) == 1
    assert world.index.reason("3") == "waiting for job 1 (RUNNING) to succeed (and 1 more)"
    assert world.set("1", "SUCCEEDED") == []
    assert world.index.reason("3") == "waiting for job 2 (PENDING) to end"
    assert world.set("2", "FAILED") == [Released("3")]
    assert "3" not in world.index and world.index.edge_count() == 0


def test_an_impossible_edge_cancels_at_once_naming_the_upstream() -> None:
    world = World()
    world.states.update({"1": job("RUNNING"), "2": job("RUNNING")})
    world.index.add("3", [Edge(OK, "1"), Edge(OK, "2")])
    assert world.set("1", "FAILED") == [Cancelled("3", "dependency 1 FAILED")]
    assert len(world.index) == 0
    assert world.index.dependents_of("2") == []  # its other edges are gone too


def test_add_decides_at_once_when_upstreams_already_ended() -> None:
    world = World()
    world.states.update({"1": job("SUCCEEDED"), "2": job("TIMEOUT")})
    assert world.index.add("3", [Edge(OK, "1")]) == Released("3")
    assert world.index.add("4", [Edge(OK, "2")]) == Cancelled("4", "dependency 2 TIMEOUT")
    assert world.index.add("5", [Edge(FAILED, "1")]) == Cancelled(
        "5", "dependency 1 SUCCEEDED")
    assert world.index.add("6", [Edge(OK, "gone")]) == Cancelled(
        "6", "dependency gone no longer exists")
    assert world.index.add("7", []) == Released("7")
    assert len(world.index) == 0


def test_one_change_decides_only_its_dependents_in_submit_order() -> None:
    world = World()
    world.states.update({"1": job("RUNNING"), "2": job("RUNNING")})
    for dependent in ("10", "9", "100", "11.2", "11.10"):
        world.index.add(dependent, [Edge(ANY, "1")])
    world.index.add("50", [Edge(ANY, "2")])
    released = world.set("1", "STOPPED")
    assert released == [Released(j) for j in ("9", "10", "11.2", "11.10", "100")]
    assert world.index.dependents_of("2") == ["50"]


def test_a_met_edge_stays_met_when_the_upstream_is_rerun() -> None:
    world = World()
    world.states.update({"1": job("RUNNING"), "2": job("RUNNING")})
    world.index.add("3", [Edge(OK, "1"), Edge(OK, "2")])
    world.set("1", "SUCCEEDED")
    world.set("1", "PENDING")  # a rerun: no edge on 1 is tracked any more
    assert world.index.unmet("3") == [Edge(OK, "2")]
    assert world.set("2", "SUCCEEDED") == [Released("3")]


def test_discard_forgets_both_ways() -> None:
    world = World()
    world.states["1"] = job("RUNNING")
    world.index.add("2", [Edge(OK, "1")])
    world.index.discard("2")
    world.index.discard("2")
    assert world.set("1", "FAILED") == []
    world.states["4"] = job("RUNNING")
    assert world.index.add("3", [Edge(OK, "4")]) is None
    with pytest.raises(ValueError, match="already tracked"):
        world.index.add("3", [Edge(OK, "4")])


def test_the_same_edge_twice_is_one_edge() -> None:
    world = World()
    world.states["1"] = job("RUNNING")
    world.index.add("2", [Edge(OK, "1"), Edge(OK, "1")])
    assert world.index.edge_count() == 1


def test_array_reasons() -> None:
    world = World()
    world.states["57"] = Upstream(total=100, ended=37, succeeded=37, status="RUNNING",
                                  is_array=True)
    world.index.add("58", [Edge(OK, "57")])
    assert world.index.reason("58") == "waiting for array 57 (37/100 ended) to succeed"
    world.states["57"] = Upstream(total=100, ended=38, succeeded=37, status="FAILED",
                                  is_array=True)
    assert world.index.changed("57") == [Cancelled(
        "58", "dependency 57: 1 of 100 elements did not succeed")]


def test_releasing_costs_the_edges_of_the_changed_upstream_only() -> None:
    """10,000 dependents on other upstreams are not looked at (counted through the
    upstream lookups the index makes)."""
    looked: list[str] = []
    states = {str(i): job("RUNNING") for i in range(10_001)}

    def upstream_of(job_id: str) -> Upstream | None:
        looked.append(job_id)
        return states.get(job_id)

    index = DependencyIndex(upstream_of)
    for i in range(1, 10_001):
        index.add(f"d{i}", [Edge(OK, str(i))])
    looked.clear()
    states["0"] = job("SUCCEEDED")
    assert index.changed("0") == []
    states["5"] = job("SUCCEEDED")
    assert index.changed("5") == [Released("d5")]
    assert looked == ["5"]


def test_edges_of_a_spec() -> None:
    assert edges_of({"after_any": ["2"], "after_ok": ["1", "3"]}) == [
        Edge(OK, "1"), Edge(OK, "3"), Edge(ANY, "2")]


# --- a batch as a graph -------------------------------------------------------------------

Entries = list[tuple[str, dict[str, list[str]]]]


def existing(*ids: str) -> Callable[[str], bool]:
    return set(ids).__contains__


def test_batch_names_resolve_in_any_order() -> None:
    entries = [("route", {"after_ok": ["place"]}), ("place", {"after_ok": ["synth", "7"]}),
               ("synth", {})]
    assert resolve_batch(entries, existing("7")) == [
        [(OK, BatchRef(1))], [(OK, BatchRef(2)), (OK, "7")], []]


@pytest.mark.parametrize(("entries", "field", "words"), [
    ([("a", {"after_ok": ["nope"]})], "jobs[0].depends_on.after_ok[0]",
     "'nope' is no job id and no entry name"),
    ([("a", {}), ("b", {"after_any": ["7", "a", "x"]})], "jobs[1].depends_on.after_any[2]",
     "'x' is no job id"),
    ([("7", {}), ("b", {"after_ok": ["7"]})], "jobs[1].depends_on.after_ok[0]",
     "'7' is both job 7 and the name of entry 0"),
    ([("a", {}), ("a", {}), ("b", {"after_ok": ["a"]})], "jobs[2].depends_on.after_ok[0]",
     "'a' names entries 0, 1; names that others depend on must be unique"),
    ([("a", {"after_failed": ["a"]})], "jobs[0].depends_on.after_failed[0]",
     "entry 0 ('a') depends on itself"),
    ([("a", {"after_ok": ["b"]}), ("b", {"after_ok": ["c"]}), ("c", {"after_any": ["a"]})],
     "jobs[0].depends_on", "a cycle: 0 (a) waits for 1 (b) waits for 2 (c) waits for 0 (a)"),
])
def test_batch_refusals_name_the_field(entries: Entries, field: str, words: str) -> None:
    with pytest.raises(GraphError) as caught:
        resolve_batch(entries, existing("7"))
    assert caught.value.field == field
    assert words in str(caught.value)


def test_duplicate_names_nobody_depends_on_are_fine() -> None:
    assert resolve_batch([("a", {}), ("a", {})], existing()) == [[], []]


def test_a_cycle_deep_in_a_long_chain_is_found_without_recursion() -> None:
    n = 20_000
    entries = [(f"s{i}", {"after_ok": [f"s{i + 1}"]} if i + 1 < n else {"after_ok": ["s5"]})
               for i in range(n)]
    with pytest.raises(GraphError, match="a cycle: 5 \\(s5\\) waits for 6"):
        resolve_batch(entries, existing())
    chain = [(f"s{i}", {"after_ok": [f"s{i - 1}"]} if i else {}) for i in range(n)]
    assert len(resolve_batch(chain, existing())) == n
