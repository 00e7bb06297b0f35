"""The host registry's decisions (hosts.py): what registering, a heartbeat, a connection
change, silence and unregistering mean for a host, decided without a store; and the
registry applying a committed change to memory and to the placement pool."""

from __future__ import annotations

from datetime import timedelta

import pytest

from apr_sched.errors import HostBusy, NotFound
from apr_sched.hosts import (
    HostRegistry,
    executor_unreachable,
    heartbeat_state,
    reachability_state,
    registration,
    removal,
    silence_state,
)
from apr_sched.models import Host, HostSpec, HostState, ResourceRequest, utcnow
from apr_sched.placement import HostPool

NOW = utcnow()


def spec(host_id: str = "h1", **extra: object) -> HostSpec:
    return HostSpec.model_validate({"host_id": host_id, "total_slots": 4, "total_cpu": 8,
                                    "total_memory_gb": 32, **extra})


def host(state: HostState = HostState.ONLINE, reason: str | None = None,
         **extra: object) -> Host:
    fields = spec().model_dump() | extra
    return Host(**fields, state=state, state_reason=reason,
                registered_at=NOW - timedelta(days=1), last_heartbeat=None)


def test_a_new_local_host_registers_online() -> None:
    change = registration(None, spec(), NOW, [])
    assert change is not None
    assert (change.from_state, change.to_state, change.reason) == (
        None, HostState.ONLINE, "registered")
    assert change.host.registered_at == NOW


def test_a_new_ssh_host_is_offline_until_it_connects() -> None:
    change = registration(None, spec(ssh="cad@127.0.0.1:2222"), NOW, [])
    assert change is not None and change.to_state is HostState.OFFLINE
    assert change.reason.startswith("registered; connecting to ")
    assert "127.0.0.1" in change.reason


def test_registering_the_same_spec_again_changes_nothing() -> None:
    assert registration(host(), spec(), NOW, ["7"]) is None


def test_an_update_keeps_state_and_history_and_says_why_it_is_not_online() -> None:
    old = host(HostState.OFFLINE, "no heartbeat for 30s")
    change = registration(old, spec(total_slots=8), NOW, [])
    assert change is not None
    assert change.host.total_slots == 8
    assert change.host.registered_at == old.registered_at
    assert (change.from_state, change.to_state) == (HostState.OFFLINE, HostState.OFFLINE)
    assert change.reason == "updated; no heartbeat for 30s"


def test_capacity_may_change_under_running_jobs_but_how_it_is_reached_may_not() -> None:
    assert registration(host(), spec(total_cpu=16), NOW, ["3"]) is not None
    with pytest.raises(HostBusy, match="cannot change until they end") as caught:
        registration(host(), spec(executor_prefix="env"), NOW, ["3"])
    assert caught.value.details == {"host_id": "h1", "running_jobs": ["3"]}


def test_unregistering_is_refused_while_jobs_run() -> None:
    with pytest.raises(HostBusy, match="still runs 2 job"):
        removal(host(), ["1", "2"])
    change = removal(host(HostState.OFFLINE), [])
    assert (change.from_state, change.to_state, change.reason) == (
        HostState.OFFLINE, None, "unregistered")


@pytest.mark.parametrize(("state", "unreachable", "expected"), [
    (HostState.OFFLINE, False, HostState.ONLINE),
    (HostState.OFFLINE, True, None),  # an SSH host whose connection is down stays OFFLINE
    (HostState.ONLINE, False, None),
    (HostState.DRAINING, False, None),
    (HostState.CLOSED, False, None),
])
def test_a_heartbeat_brings_only_an_offline_reachable_host_back(
        state: HostState, unreachable: bool, expected: HostState | None) -> None:
    assert heartbeat_state(host(state), unreachable=unreachable) is expected


@pytest.mark.parametrize(("state", "reachable", "expected"), [
    (HostState.OFFLINE, True, HostState.ONLINE),
    (HostState.ONLINE, False, HostState.OFFLINE),
    (HostState.ONLINE, True, None),
    (HostState.OFFLINE, False, None),
    (HostState.CLOSED, True, None),
])
def test_a_connection_change_moves_only_between_online_and_offline(
        state: HostState, reachable: bool, expected: HostState | None) -> None:
    assert reachability_state(host(state), reachable) is expected


def test_silence_takes_only_an_online_host_offline() -> None:
    assert silence_state(host(HostState.ONLINE)) is HostState.OFFLINE
    for state in (HostState.OFFLINE, HostState.DRAINING, HostState.CLOSED):
        assert silence_state(host(state)) is None


def registry(pool: HostPool) -> HostRegistry:
    return HostRegistry(pool, run_as_owner=False, job_cgroups=False, heartbeat_timeout_sec=30,
                        host_lost_after_sec=300, on_reachable=lambda *a: None,
                        on_silent=lambda h: None, on_lost=lambda h: None)


async def test_the_registry_applies_changes_to_memory_and_to_the_pool() -> None:
    pool = HostPool()
    hosts = registry(pool)
    change = hosts.registration(spec(), NOW, [])
    assert change is not None and not executor_unreachable(None)
    hosts.install(change.host)
    request = ResourceRequest(cpu=2, memory_gb=4)
    assert pool.least_loaded_fit(request) is not None
    pool.allocate("h1", request)

    offline = hosts.state_change("h1", HostState.OFFLINE, "went away")
    assert offline is not None and hosts.hosts["h1"].state is HostState.ONLINE, \
        "a decision must not change memory"
    hosts.apply_state(offline)
    assert hosts.get("h1").state is HostState.OFFLINE
    assert pool.least_loaded_fit(request) is None, "an OFFLINE host takes no jobs"
    assert hosts.state_change("h1", HostState.OFFLINE, "still away") is None
    hosts.note("h1", "still away")
    view = hosts.view("h1", running=1)
    assert (view.state_reason, view.used_cpu, view.running_jobs) == ("still away", 2, 1)

    updated = hosts.registration(spec(total_cpu=16), NOW, ["1"])
    assert updated is not None
    hosts.install(updated.host)
    capacity = pool.get("h1")
    assert capacity is not None and capacity.used_cpu == 2, "jobs running there keep their usage"
    await hosts.remove("h1")
    assert "h1" not in hosts and pool.get("h1") is None
    with pytest.raises(NotFound):
        hosts.get("h1")
    hosts.liveness.close()
