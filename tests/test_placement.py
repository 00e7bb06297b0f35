"""Placement: fit rules, least-loaded choice, reasons, and that the caches never lie."""

from __future__ import annotations

import random

import pytest

from apr_sched.errors import NotFound
from apr_sched.models import HostSpec, ResourceRequest
from apr_sched.placement import HostCapacity, HostPool
from tests.placement_builders import host, pool_of, req


def test_load_is_the_fullest_dimension() -> None:
    h = HostCapacity("a", 4, 16, 64.0, {}, used_slots=1, used_cpu=8, used_memory_gb=16.0)
    assert h.load() == 0.5
    h.used_memory_gb = 48.0
    assert h.load() == 0.75


def test_load_ignores_a_zero_memory_total() -> None:
    h = HostCapacity("a", 4, 16, 0.0, {}, used_slots=1)
    assert h.load() == 0.25


def test_fits_now_checks_slots_cpu_memory_and_every_label() -> None:
    h = host("a", slots=2, cpu=8, memory_gb=32, tool="innovus", node="A")
    assert h.fits_now(req(slots=2, cpu=8, memory_gb=32, tool="innovus"))
    assert h.fits_now(req(tool="innovus", node="A"))
    assert not h.fits_now(req(slots=3))
    assert not h.fits_now(req(cpu=9))
    assert not h.fits_now(req(memory_gb=32.5))
    assert not h.fits_now(req(tool="icc2"))
    assert not h.fits_now(req(tool="innovus", node="B"))
    assert not h.fits_now(req(tool="innovus", site="x"))


def test_fits_now_counts_usage_but_could_ever_fit_does_not() -> None:
    h = host("a", slots=2, cpu=8, memory_gb=32)
    h.used_cpu = 6
    assert not h.fits_now(req(cpu=4))
    assert h.could_ever_fit(req(cpu=4))
    h.accepting = False
    assert not h.fits_now(req())
    assert h.could_ever_fit(req())
    assert not h.could_ever_fit(req(cpu=9))


def test_from_spec_copies_totals_and_labels() -> None:
    spec = HostSpec(
        host_id="h1", total_slots=8, total_cpu=32, total_memory_gb=128.0, labels={"tool": "x"}
    )
    h = HostCapacity.from_spec(spec, accepting=False)
    assert (h.total_slots, h.total_cpu, h.total_memory_gb) == (8, 32, 128.0)
    assert h.labels == {"tool": "x"}
    assert not h.accepting and h.used_slots == 0


def test_least_loaded_spreads_over_two_hosts() -> None:
    pool = pool_of(host("a", slots=4), host("b", slots=4))
    r = req(slots=1)
    chosen = []
    for _ in range(4):
        h = pool.least_loaded_fit(r)
        assert h is not None
        pool.allocate(h.host_id, r)
        chosen.append(h.host_id)
    assert chosen == ["a", "b", "a", "b"]


def test_ties_are_broken_by_host_id() -> None:
    pool = pool_of(host("c"), host("a"), host("b"))
    chosen = pool.least_loaded_fit(req())
    assert chosen is not None and chosen.host_id == "a"


def test_least_loaded_skips_hosts_that_do_not_fit() -> None:
    pool = pool_of(host("big", memory_gb=256), host("small", memory_gb=16, tool="x"))
    pool.allocate("big", req(memory_gb=128))
    chosen = pool.least_loaded_fit(req(memory_gb=32))
    assert chosen is not None and chosen.host_id == "big"
    chosen = pool.least_loaded_fit(req(tool="x"))
    assert chosen is not None and chosen.host_id == "small"


def test_iteration_is_least_loaded_first() -> None:
    pool = pool_of(host("a"), host("b"), host("c"))
    pool.allocate("a", req(slots=2))
    pool.allocate("b", req(slots=1))
    assert [h.host_id for h in pool] == ["c", "b", "a"]
    assert len(pool) == 3 and "a" in pool and pool.get("zz") is None


def test_hosts_not_accepting_get_nothing() -> None:
    pool = pool_of(host("a"), host("b"))
    pool.set_accepting("a", False)
    pool.set_accepting("b", False)
    assert pool.least_loaded_fit(req()) is None
    assert pool.unplaceable_reason(req()) is None
    pool.set_accepting("b", True)
    chosen = pool.least_loaded_fit(req())
    assert chosen is not None and chosen.host_id == "b"


def test_allocate_release_round_trip() -> None:
    pool = pool_of(host("a", slots=4, cpu=16, memory_gb=1.0))
    rs = [req(cpu=3, memory_gb=0.1), req(cpu=5, memory_gb=0.2), req(slots=2, memory_gb=0.7)]
    for r in rs:
        assert pool.least_loaded_fit(r) is not None
        pool.allocate("a", r)
    a = pool.get("a")
    assert a is not None
    assert (a.used_slots, a.used_cpu) == (4, 9) and a.used_memory_gb == pytest.approx(1.0)
    assert a.load() == pytest.approx(1.0)
    assert pool.least_loaded_fit(req()) is None
    for r in rs:
        pool.release("a", r)
    assert (a.used_slots, a.used_cpu, a.used_memory_gb) == (0, 0, 0.0)
    pool.release("a", rs[0])
    assert (a.used_slots, a.used_cpu, a.used_memory_gb) == (0, 0, 0.0)


def test_release_on_a_removed_host_is_ignored_and_unknown_hosts_raise() -> None:
    pool = pool_of(host("a"))
    pool.remove("a")
    pool.remove("a")
    pool.release("a", req())
    with pytest.raises(NotFound):
        pool.allocate("a", req())
    with pytest.raises(NotFound):
        pool.set_accepting("a", False)


def test_upsert_keeps_usage_and_updates_eligibility() -> None:
    pool = pool_of(host("a", memory_gb=64))
    big = req(memory_gb=128)
    assert pool.least_loaded_fit(big) is None
    assert pool.unplaceable_reason(big) is not None
    pool.upsert(HostCapacity("a", 4, 16, 256.0, {}, used_memory_gb=100.0))
    assert pool.unplaceable_reason(big) is None
    chosen = pool.least_loaded_fit(big)
    assert chosen is not None and chosen.used_memory_gb == 100.0
    pool.upsert(host("a", memory_gb=64))
    assert pool.least_loaded_fit(big) is None
    assert pool.unplaceable_reason(big) is not None


def test_reason_no_hosts() -> None:
    assert HostPool().unplaceable_reason(req()) == "no hosts registered"


def test_reason_missing_label() -> None:
    pool = pool_of(host("a", tool="icc2"), host("b", tool="innovus", node="A"))
    assert pool.unplaceable_reason(req(tool="openroad")) == "no host has label tool=openroad"
    assert pool.unplaceable_reason(req(tool="icc2", node="A")) == (
        "no host has all labels node=A, tool=icc2"
    )


def test_reason_too_much_memory_names_the_sizes() -> None:
    pool = pool_of(host("a", memory_gb=128, tool="innovus"), host("b", memory_gb=512))
    assert pool.unplaceable_reason(req(memory_gb=256, tool="innovus")) == (
        "needs 256 GB memory; largest host with tool=innovus has 128 GB"
    )
    assert pool.unplaceable_reason(req(memory_gb=256)) is None


def test_reason_too_many_cpu_or_slots() -> None:
    pool = pool_of(host("a", slots=2, cpu=32))
    assert pool.unplaceable_reason(req(cpu=64)) == "needs 64 cpu; largest host has 32"
    assert pool.unplaceable_reason(req(slots=4)) == "needs 4 slots; largest host has 2"


def test_reason_when_no_single_host_has_everything() -> None:
    pool = pool_of(host("cpu", cpu=64, memory_gb=64), host("mem", cpu=8, memory_gb=512))
    assert pool.unplaceable_reason(req(cpu=32, memory_gb=256)) == (
        "needs 1 slot, 32 cpu and 256 GB on one host; no host has all of that"
    )


def test_capacity_reason_counts_room_and_hosts_not_accepting() -> None:
    pool = pool_of(host("a", cpu=8), host("b", cpu=8), host("c", cpu=8), host("d", cpu=2))
    r = req(cpu=4, memory_gb=8)
    pool.allocate("a", req(cpu=8))
    pool.set_accepting("b", False)
    pool.set_accepting("c", False)
    assert pool.least_loaded_fit(r) is None
    assert pool.unplaceable_reason(r) is None
    assert pool.capacity_reason(r) == (
        "waiting for capacity: needs 1 slot, 4 cpu, 8 GB; 0 of 3 eligible hosts have room; "
        "2 eligible hosts offline/draining"
    )
    pool.set_accepting("c", True)
    assert pool.capacity_reason(r) == (
        "waiting for capacity: needs 1 slot, 4 cpu, 8 GB; 1 of 3 eligible hosts have room; "
        "1 eligible host offline/draining"
    )


def test_capacity_reason_is_fresh_after_release() -> None:
    pool = pool_of(host("a", cpu=4))
    r = req(cpu=4)
    pool.allocate("a", r)
    assert pool.least_loaded_fit(r) is None
    assert "0 of 1 eligible host has room" in pool.capacity_reason(r)
    pool.release("a", r)
    assert "1 of 1 eligible host has room" in pool.capacity_reason(r)


def _naive_fit(hosts: dict[str, HostCapacity], r: ResourceRequest) -> str | None:
    fitting = [h for h in hosts.values() if h.fits_now(r)]
    if not fitting:
        return None
    return min(fitting, key=lambda h: (h.load(), h.host_id)).host_id


def test_cached_decisions_match_a_brute_force_check() -> None:
    """Random allocate/release/accepting/upsert/remove; every answer equals a full scan."""
    rng = random.Random(7)
    tools = ["innovus", "icc2", "openroad"]
    requests = [
        req(
            slots=rng.randint(1, 2),
            cpu=rng.choice([0, 1, 2, 4, 8]),
            memory_gb=rng.choice([0, 4, 16, 48]),
            **({"tool": rng.choice(tools)} if rng.random() < 0.5 else {}),
        )
        for _ in range(12)
    ]
    pool = HostPool()
    mirror: dict[str, HostCapacity] = {}
    running: list[tuple[str, ResourceRequest]] = []

    def add_host(host_id: str) -> None:
        h = host(
            host_id,
            slots=rng.randint(1, 4),
            cpu=rng.choice([4, 8, 16]),
            memory_gb=rng.choice([0, 32, 64]),
            tool=rng.choice(tools),
        )
        pool.upsert(h)
        mirror[host_id] = h

    for i in range(8):
        add_host(f"h{i}")
    for step in range(4000):
        op = rng.random()
        if op < 0.45:
            r = rng.choice(requests)
            got = pool.least_loaded_fit(r)
            want = _naive_fit(mirror, r)
            assert (got.host_id if got else None) == want, step
            if got is not None:
                pool.allocate(got.host_id, r)
                running.append((got.host_id, r))
            elif not any(h.could_ever_fit(r) for h in mirror.values()):
                assert pool.unplaceable_reason(r) is not None
            else:
                assert pool.unplaceable_reason(r) is None
                assert " 0 of " in pool.capacity_reason(r)
        elif op < 0.8 and running:
            host_id, r = running.pop(rng.randrange(len(running)))
            pool.release(host_id, r)
        elif op < 0.9 and mirror:
            host_id = rng.choice(sorted(mirror))
            pool.set_accepting(host_id, rng.random() < 0.6)
        elif op < 0.95 and len(mirror) > 2:
            host_id = rng.choice(sorted(mirror))
            pool.remove(host_id)
            del mirror[host_id]
            running = [(h, r) for h, r in running if h != host_id]
        elif op >= 0.95:
            host_id = f"h{rng.randint(0, 11)}"
            add_host(host_id)  # (re-)registered idle: forget what ran there
            running = [(h, r) for h, r in running if h != host_id]


def test_upsert_of_a_host_edited_in_place() -> None:
    """The pool notices what changed even when the same object comes back edited."""
    pool = pool_of(host("a", memory_gb=64, tool="icc2"), host("b", memory_gb=64, tool="icc2"))
    assert pool.least_loaded_fit(req(tool="icc2")) is not None
    a = pool.get("a")
    assert a is not None
    a.labels = {"tool": "innovus"}
    a.total_memory_gb = 256.0
    a.used_slots = 3
    pool.upsert(a)
    chosen = pool.least_loaded_fit(req(memory_gb=128, tool="innovus"))
    assert chosen is a
    chosen = pool.least_loaded_fit(req(tool="icc2"))
    assert chosen is not None and chosen.host_id == "b"
    assert [h.host_id for h in pool] == ["b", "a"]
    assert pool.unplaceable_reason(req(tool="icc2", memory_gb=100)) == (
        "needs 100 GB memory; largest host with tool=icc2 has 64 GB"
    )
