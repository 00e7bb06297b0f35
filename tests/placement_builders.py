"""Small builders shared by the pure queue and placement tests."""

from __future__ import annotations

from apr_sched.models import ResourceRequest
from apr_sched.placement import HostCapacity, HostPool


def host(
    host_id: str, slots: int = 4, cpu: int = 16, memory_gb: float = 64.0, **labels: str
) -> HostCapacity:
    return HostCapacity(host_id, slots, cpu, memory_gb, dict(labels))


def pool_of(*hosts: HostCapacity) -> HostPool:
    pool = HostPool()
    for h in hosts:
        pool.upsert(h)
    return pool


def req(slots: int = 1, cpu: int = 1, memory_gb: float = 0.0, **labels: str) -> ResourceRequest:
    return ResourceRequest(slots=slots, cpu=cpu, memory_gb=memory_gb, host_labels=labels)
