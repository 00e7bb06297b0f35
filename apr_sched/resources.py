"""What a job holds while it runs, and whether a request fits: the dispatch pass's question.

Today a running job holds slots, cpu and memory on its host (``placement.HostPool``); a
cluster-wide counted quantity (a license) would be held here too, beside them, so that a
shortage of either blocks a whole autocluster at once and a dispatch decision stays
O(autoclusters). The dispatch pass asks through ``queue.Placer``; the Scheduler takes and
gives back what a job holds (``allocate`` through the pass or at recovery, ``release``
when the attempt ends), and submit asks ``check_runnable`` before it queues anything.
Pure and synchronous, like placement.
"""

from __future__ import annotations

from collections.abc import Sequence

from apr_sched.models import JobSpec, ResourceRequest, Usage
from apr_sched.placement import HostCapacity, HostPool, check_runnable


class Resources:
    """Hosts' capacity in use by running jobs (the pool is shared with the host registry,
    which sets each host's totals and whether it takes jobs)."""

    def __init__(self, pool: HostPool) -> None:
        self.pool = pool

    # what the dispatch pass asks (queue.Placer) ----------------------------------------------
    def least_loaded_fit(self, req: ResourceRequest) -> HostCapacity | None:
        return self.pool.least_loaded_fit(req)

    def unplaceable_reason(self, req: ResourceRequest) -> str | None:
        return self.pool.unplaceable_reason(req)

    def capacity_reason(self, req: ResourceRequest) -> str:
        return self.pool.capacity_reason(req)

    def allocate(self, host_id: str, req: ResourceRequest) -> None:
        """The job now holds ``req`` on ``host_id``."""
        self.pool.allocate(host_id, req)

    # running jobs ----------------------------------------------------------------------------
    def release(self, host_id: str, req: ResourceRequest) -> None:
        """The job's attempt ended (or never started): what it held is free again."""
        self.pool.release(host_id, req)

    def check_runnable(self, specs: Sequence[JobSpec], *, batch: bool) -> None:
        """Refuse (InvalidInput) a job that nothing registered could ever run."""
        check_runnable(self.pool, specs, batch=batch)

    def usage(self) -> tuple[Usage, Usage, Usage]:
        """Slots, cpu and memory (GB) in use and in total, over all hosts."""
        caps = list(self.pool)
        return (Usage(used=sum(c.used_slots for c in caps), total=sum(c.total_slots for c in caps)),
                Usage(used=sum(c.used_cpu for c in caps), total=sum(c.total_cpu for c in caps)),
                Usage(used=sum(c.used_memory_gb for c in caps),
                      total=sum(c.total_memory_gb for c in caps)))
