"""apr_sched: a job scheduler for chip-design (APR) teams.

    async with Scheduler() as s:
        job = await s.submit({"command": "innovus -init place.tcl", "priority": 2})
        done = await s.wait(job.job_id)

Everything public is re-exported here; the submodules are implementation detail.
"""

from apr_sched.blocking import BlockingScheduler
from apr_sched.config import SchedulerConfig, load_config, local_host_spec, resolve_state_dir
from apr_sched.errors import (
    AprError,
    AuthFailed,
    Forbidden,
    HostBusy,
    IllegalTransition,
    InvalidInput,
    NotFound,
    StateDirLocked,
)
from apr_sched.events import Subscription, SubscriptionLagged
from apr_sched.models import (
    Attempt,
    Event,
    Host,
    HostEvent,
    HostSpec,
    HostState,
    Job,
    JobEvent,
    JobPage,
    JobSpec,
    JobStatus,
    LogTail,
    MetricsSummary,
    ResourceRequest,
)
from apr_sched.scheduler import Scheduler

__version__ = "0.1.0"

__all__ = [
    "AprError",
    "Attempt",
    "AuthFailed",
    "BlockingScheduler",
    "Event",
    "Forbidden",
    "Host",
    "HostBusy",
    "HostEvent",
    "HostSpec",
    "HostState",
    "IllegalTransition",
    "InvalidInput",
    "Job",
    "JobEvent",
    "JobPage",
    "JobSpec",
    "JobStatus",
    "LogTail",
    "MetricsSummary",
    "NotFound",
    "ResourceRequest",
    "Scheduler",
    "SchedulerConfig",
    "StateDirLocked",
    "Subscription",
    "SubscriptionLagged",
    "__version__",
    "load_config",
    "local_host_spec",
    "resolve_state_dir",
]
