"""apr_sched: a job scheduler for chip-design (APR) teams.

    with apr_sched.connect() as client:         # the daemon if one runs, else in-process
        job = client.submit({"command": "innovus -init place.tcl", "priority": 2})
        done = client.wait(job.job_id)

    async with Scheduler() as s:                # the scheduler itself, inside an asyncio app
        job = await s.submit({"command": "make place"})

Everything public is re-exported here; the submodules are implementation detail. The
names are loaded on first use (PEP 562), so a client command that needs only the HTTP
client never imports the scheduler, asyncssh or the executors.

The modules a client command loads do not import ``typing`` either (a few milliseconds of
every start): annotations are strings (``from __future__ import annotations``), and each
such module says ``TYPE_CHECKING = False`` itself and imports what its annotations name
under ``if TYPE_CHECKING:``. Type checkers treat any variable named ``TYPE_CHECKING`` as
true, as mypy documents ("Some other expressions exhibit similar behavior; in particular,
typing.TYPE_CHECKING, variables named MYPY or TYPE_CHECKING ..."); tests/test_imports.py
checks that ``typing`` stays out.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "AprError": "apr_sched.errors",
    "Attempt": "apr_sched.models",
    "AuthFailed": "apr_sched.errors",
    "BlockingScheduler": "apr_sched.blocking",
    "DaemonUnreachable": "apr_sched.client",
    "Event": "apr_sched.models",
    "Forbidden": "apr_sched.errors",
    "Host": "apr_sched.models",
    "HostBusy": "apr_sched.errors",
    "HostEvent": "apr_sched.models",
    "HostSpec": "apr_sched.models",
    "HostState": "apr_sched.models",
    "IllegalTransition": "apr_sched.errors",
    "InvalidInput": "apr_sched.errors",
    "Job": "apr_sched.models",
    "JobEvent": "apr_sched.models",
    "JobGraph": "apr_sched.models",
    "JobHandle": "apr_sched.futures",
    "JobPage": "apr_sched.models",
    "JobSpec": "apr_sched.models",
    "JobStatus": "apr_sched.models",
    "LogTail": "apr_sched.models",
    "MetricsSummary": "apr_sched.models",
    "NotFound": "apr_sched.errors",
    "PurgeReport": "apr_sched.models",
    "ResourceRequest": "apr_sched.models",
    "Scheduler": "apr_sched.scheduler",
    "SchedulerClient": "apr_sched.client",
    "SchedulerConfig": "apr_sched.config",
    "StateDirLocked": "apr_sched.errors",
    "Subscription": "apr_sched.events",
    "SubscriptionLagged": "apr_sched.events",
    "connect": "apr_sched.connection",
    "load_config": "apr_sched.config",
    "local_host_spec": "apr_sched.config",
    "resolve_state_dir": "apr_sched.config",
}
"""Public name -> the module that defines it."""

__all__ = [
    "AprError",
    "Attempt",
    "AuthFailed",
    "BlockingScheduler",
    "DaemonUnreachable",
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
    "JobGraph",
    "JobHandle",
    "JobPage",
    "JobSpec",
    "JobStatus",
    "LogTail",
    "MetricsSummary",
    "NotFound",
    "PurgeReport",
    "ResourceRequest",
    "Scheduler",
    "SchedulerClient",
    "SchedulerConfig",
    "StateDirLocked",
    "Subscription",
    "SubscriptionLagged",
    "__version__",
    "connect",
    "load_config",
    "local_host_spec",
    "resolve_state_dir",
]

if TYPE_CHECKING:
    from typing import Any

    from apr_sched.blocking import BlockingScheduler
    from apr_sched.client import DaemonUnreachable, SchedulerClient
    from apr_sched.config import (
        SchedulerConfig,
        load_config,
        local_host_spec,
        resolve_state_dir,
    )
    from apr_sched.connection import connect
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
    from apr_sched.futures import JobHandle
    from apr_sched.models import (
        Attempt,
        Event,
        Host,
        HostEvent,
        HostSpec,
        HostState,
        Job,
        JobEvent,
        JobGraph,
        JobPage,
        JobSpec,
        JobStatus,
        LogTail,
        MetricsSummary,
        PurgeReport,
        ResourceRequest,
    )
    from apr_sched.scheduler import Scheduler


def __getattr__(name: str) -> Any:
    """Import the module behind a public name the first time someone asks for it."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'apr_sched' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # the next lookup is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
