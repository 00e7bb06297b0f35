"""A fixed picture of a busy scheduler: for screenshots, snapshot tests and ``--demo``.

Everything here is frozen (hosts, jobs, timelines, logs and the clock), so the same
screen renders byte for byte on every machine. ``StaticBackend`` is a real ``Backend``
that answers from this data and refuses every change.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from apr_sched.errors import IllegalTransition, NotFound
from apr_sched.models import (
    Attempt,
    Host,
    HostLoad,
    HostState,
    Job,
    JobEvent,
    JobSpec,
    JobStatus,
    LogTail,
    MetricsSummary,
    ResourceRequest,
    Usage,
)
from apr_tui.backend import Backend, Feed, FeedClosed, Snapshot

DEMO_NOW = datetime(2025, 3, 14, 9, 30, 0, tzinfo=UTC)
DEMO_OWNER = "cad"
PAUSED_MIN = 4
"""The demo's paused job was paused this many minutes ago."""


def demo_clock() -> datetime:
    return DEMO_NOW


def _ago(**delta: float) -> datetime:
    return DEMO_NOW - timedelta(**delta)


def demo_hosts() -> list[Host]:
    def host(host_id: str, slots: int, cpu: int, mem: float, tool: str, used: tuple[int, int,
             float], running: int, state: HostState = HostState.ONLINE,
             load: float | None = None, reason: str | None = None,
             free: tuple[float, float] | None = None) -> Host:
        return Host(host_id=host_id, total_slots=slots, total_cpu=cpu, total_memory_gb=mem,
                    labels={"tool": tool}, state=state, state_reason=reason,
                    registered_at=_ago(days=30),
                    last_heartbeat=_ago(seconds=4), used_slots=used[0], used_cpu=used[1],
                    used_memory_gb=used[2], running_jobs=running,
                    load=HostLoad(load_avg_1m=load, free_memory_gb=free[0] if free else None,
                                  free_disk_gb=free[1] if free else None)
                    if load is not None else None)

    return [
        host("pnr-01", 8, 64, 512, "innovus", (4, 40, 320), 4, load=38.5, free=(171.2, 812.0)),
        host("pnr-02", 8, 64, 512, "icc2", (2, 24, 192), 2, load=22.1, free=(301.7, 1240.5)),
        host("pnr-03", 4, 32, 256, "openroad", (1, 8, 64), 1, load=7.9, free=(183.0, 96.3)),
        host("pnr-04", 8, 64, 512, "innovus", (0, 0, 0), 0, state=HostState.OFFLINE,
             reason="unreachable: ssh connect timed out after 10 s"),
    ]


# (id, name, project, design, owner, priority, status, host, attempt, waited_min, ran_min,
#  tool, cpu, mem, reason)
_JOBS: list[tuple[Any, ...]] = [
    ("1", "soc_top_route", "P1", "soc_top", "mei", 5, "RUNNING", "pnr-01", 2, 3, 95,
     "innovus", 16, 128, None),
    ("2", "soc_top_cts", "P1", "soc_top", "mei", 5, "SUCCEEDED", "pnr-01", 1, 1, 64,
     "innovus", 16, 128, None),
    ("3", "ddr_phy_place", "P2", "ddr_phy", "arjun", 3, "RUNNING", "pnr-02", 1, 12, 41,
     "icc2", 8, 64, None),
    ("4", "ddr_phy_cts", "P2", "ddr_phy", "arjun", 3, "PENDING", None, 1, 41, 0,
     "icc2", 8, 64, "waiting for capacity: needs 1 slot, 8 cpu, 64 GB with tool=icc2"),
    ("5", "serdes_floorplan", "P4", "serdes", "lena", 7, "RUNNING", "pnr-01", 1, 0, 18,
     "innovus", 8, 64, None),
    ("6", "serdes_place", "P4", "serdes", "lena", 7, "PAUSED", "pnr-01", 1, 2, 33,
     "innovus", 8, 64, None),
    ("7", "cpu_core_route", "P1", "cpu_core", "mei", 4, "FAILED", "pnr-02", 1, 5, 122,
     "icc2", 16, 128, "exit code 1"),
    ("8", "gpu_slice_place", "P3", "gpu_slice", "cad", 2, "RUNNING", "pnr-03", 1, 30, 7,
     "openroad", 8, 64, None),
    ("9", "gpu_slice_sta", "P3", "gpu_slice", "cad", 2, "PENDING", None, 1, 22, 0,
     "primetime", 4, 32, "no host has label tool=primetime"),
    ("10", "soc_top_signoff", "P1", "soc_top", "mei", 9, "PENDING", None, 1, 6, 0,
     "innovus", 32, 768, "needs 768 GB memory; largest host has 512 GB"),
    ("11", "usb_ctrl_route", "P2", "usb_ctrl", "arjun", 1, "HELD", None, 1, 15, 0,
     "icc2", 4, 32, "held: resume to queue it again"),
    ("12", "pcie_phy_place", "P2", "pcie_phy", "arjun", 3, "TIMEOUT", "pnr-02", 1, 2, 240,
     "icc2", 8, 64, "exceeded timeout_sec=14400"),
    ("13", "cpu_core_cts", "P1", "cpu_core", "mei", 4, "STOPPED", "pnr-01", 1, 1, 12,
     "innovus", 16, 128, "stopped by request"),
    ("14", "soc_top_eco", "P1", "soc_top", "lena", 6, "RUNNING", "pnr-01", 1, 1, 52,
     "innovus", 8, 64, None),
    ("15", "ddr_phy_route", "P2", "ddr_phy", "arjun", 3, "RUNNING", "pnr-02", 1, 8, 26,
     "icc2", 8, 64, None),
    ("16", "noc_fabric_place", "P3", "noc_fabric", "cad", 2, "PENDING", None, 1, 3, 0,
     "innovus", 16, 128, "waiting for capacity: needs 1 slot, 16 cpu, 128 GB with "
     "tool=innovus"),
]


def _demo_job(row: tuple[Any, ...]) -> Job:
    (job_id, name, project, design, owner, priority, status_name, host_id, attempt, waited,
     ran, tool, cpu, mem, reason) = row
    status = JobStatus(status_name)
    finished = status.is_final
    submitted = _ago(minutes=waited + ran + (30 if finished else 0) + (60 if attempt > 1
                                                                         else 0))
    started = submitted + timedelta(minutes=waited + (60 if attempt > 1 else 0)) \
        if host_id else None
    ended = started + timedelta(minutes=ran) if finished and started else None
    spec = JobSpec(name=name, project=project, design=design, owner=owner, priority=priority,
                   timeout_sec=14400.0, retry_limit=1, workdir=f"/proj/{design}/run_{job_id}",
                   command=f"{'innovus -init' if tool == 'innovus' else tool} "
                           f"-files {name.rsplit('_', 1)[-1]}.tcl",
                   env={"APR_STAGE": name.rsplit("_", 1)[-1]},
                   resource_request=ResourceRequest(cpu=cpu, memory_gb=float(mem),
                                                    host_labels={"tool": tool}))
    exit_code = {"SUCCEEDED": 0, "FAILED": 1}.get(status_name)
    # running time as the scheduler counts it: running ones have run since they started,
    # the paused one stopped PAUSED_MIN ago
    run_sec = {JobStatus.RUNNING: 0.0, JobStatus.PAUSED: 60.0 * (ran - PAUSED_MIN)}.get(
        status, 60.0 * ran)
    resumed_at = started if status is JobStatus.RUNNING else None
    return Job(**spec.model_dump(), job_id=job_id, status=status, attempt=attempt,
               host_id=host_id, pending_reason=reason if status in (JobStatus.PENDING,
                                                                     JobStatus.HELD) else None,
               submitted_at=submitted, started_at=started, finished_at=ended,
               exit_code=exit_code, signal="SIGTERM" if status is JobStatus.TIMEOUT else None,
               pgid=41000 + int(job_id) if status.is_active else None,
               run_sec=run_sec if started else 0.0, resumed_at=resumed_at)


def _timeline(job: Job, seq: int) -> tuple[list[JobEvent], list[Attempt]]:
    """Events and attempts consistent with the job's state (attempt 1 of job 1 was lost)."""
    events: list[JobEvent] = []
    attempts: list[Attempt] = []

    def event(time: datetime, frm: JobStatus | None, to: JobStatus, reason: str,
              attempt: int, host: str | None = None) -> None:
        events.append(JobEvent(seq=seq + len(events), time=time, job_id=job.job_id,
                               attempt=attempt, from_status=frm, to_status=to, reason=reason,
                               host_id=host))

    event(job.submitted_at, None, JobStatus.PENDING, "submitted", 1)
    if job.attempt > 1 and job.host_id:
        first_start = job.submitted_at + timedelta(minutes=2)
        first_end = first_start + timedelta(minutes=55)
        event(first_start, JobStatus.PENDING, JobStatus.RUNNING, f"dispatched to {job.host_id}",
              1, job.host_id)
        event(first_end, JobStatus.RUNNING, JobStatus.FAILED, "exit code 137 (killed by "
              "SIGKILL?)", 1, job.host_id)
        event(first_end, JobStatus.FAILED, JobStatus.PENDING, "retry 1 of 1 as attempt 2", 2)
        attempts.append(Attempt(attempt=1, host_id=job.host_id, status=JobStatus.FAILED,
                                started_at=first_start, finished_at=first_end, exit_code=137,
                                signal="SIGKILL", reason="exit code 137 (killed by SIGKILL?)"))
    if job.status is JobStatus.HELD:
        event(job.submitted_at + timedelta(minutes=1), JobStatus.PENDING, JobStatus.HELD,
              "held by request", 1)
    if job.started_at is not None:
        event(job.started_at, JobStatus.PENDING, JobStatus.RUNNING,
              f"dispatched to {job.host_id}", job.attempt, job.host_id)
    if job.status is JobStatus.PAUSED:
        event(DEMO_NOW - timedelta(minutes=PAUSED_MIN), JobStatus.RUNNING, JobStatus.PAUSED,
              "paused by request (SIGSTOP)", job.attempt, job.host_id)
    if job.status.is_final and job.finished_at is not None:
        reason = {"SUCCEEDED": "exit code 0", "FAILED": "exit code 1",
                  "TIMEOUT": "exceeded timeout_sec=14400",
                  "STOPPED": "stopped by request"}[job.status.value]
        event(job.finished_at, JobStatus.RUNNING, job.status, reason, job.attempt, job.host_id)
    attempts.append(Attempt(attempt=job.attempt, host_id=job.host_id, status=job.status,
                            started_at=job.started_at, finished_at=job.finished_at,
                            exit_code=job.exit_code, signal=job.signal,
                            reason=events[-1].reason if job.status.is_final else None))
    return events, attempts


DEMO_LOG = [
    "@innovus 1> source route.tcl",
    "#% Begin routeDesign (date=03/14 07:54:12, mem=48213.4M)",
    "**INFO: 12 threads, 16 cpu requested; license Innovus_Impl_System checked out",
    "[NR-eGR] Read 1842331 nets ( ignored 0 )",
    "[NR-eGR] Layer group 1: route 1842331 net(s) in layer range [2, 11]",
    "[NR-eGR] Overflow after Early Global Route 0.02% H + 0.01% V",
    "#Start Detail Routing..",
    "#   number of violations = 18342",
    "#Complete Detail Routing iteration 1  (cpu=0:41:08, real=0:05:12, mem=61022.0M)",
    "#   number of violations = 2113",
    "#Complete Detail Routing iteration 2  (cpu=0:18:40, real=0:02:31, mem=61380.7M)",
    "#   number of violations = 212",
    "#Start post-route optimization",
    "**optDesign ... WNS -0.012 ns, TNS -0.481 ns, 37 violating paths",
]


class _QuietFeed(Feed):
    def __init__(self) -> None:
        self._closed = asyncio.Event()

    async def next(self) -> list[Any]:
        await self._closed.wait()
        raise FeedClosed("demo closed")

    async def close(self) -> None:
        self._closed.set()


class StaticBackend(Backend):
    """Answers from fixed data; every change is refused (it is a picture)."""

    mode = "demo"

    def __init__(self, jobs: Sequence[Job] | None = None, hosts: Sequence[Host] | None = None,
                 logs: dict[str, list[str]] | None = None,
                 where: str = "fixed data, read-only") -> None:
        built = [_demo_job(row) for row in _JOBS] if jobs is None else list(jobs)
        self._jobs: dict[str, Job] = {}
        seq = 1
        for job in built:
            full = job.model_copy(deep=True)
            if not full.events:
                full.events, full.attempts = _timeline(full, seq)
            seq += len(full.events)
            self._jobs[job.job_id] = full
        self._hosts = list(demo_hosts() if hosts is None else hosts)
        self._logs = {"1": DEMO_LOG} if logs is None else dict(logs)
        self._where = where
        self._feeds: list[_QuietFeed] = []

    @property
    def description(self) -> str:
        return self._where

    async def start(self) -> None:
        """Nothing to start: the data is all here."""

    async def close(self, *, stop_jobs: bool = False) -> None:
        for feed in self._feeds:
            await feed.close()

    async def open_feed(self) -> Feed:
        feed = _QuietFeed()
        self._feeds.append(feed)
        return feed

    def _listed(self, job: Job) -> Job:
        view = job.model_copy()
        view.events, view.attempts = [], []
        return view

    async def snapshot(self) -> Snapshot:
        return Snapshot([self._listed(j) for j in self._jobs.values()], await self.hosts(),
                        await self.metrics())

    async def jobs_after(self, count: int) -> list[Job]:
        return [self._listed(j) for j in list(self._jobs.values())[count:]]

    async def get_job(self, job_id: str) -> Job:
        job = self._jobs.get(job_id)
        if job is None:
            raise NotFound(f"no job {job_id!r}", {"job_id": job_id})
        return job.model_copy(deep=True)

    async def hosts(self) -> list[Host]:
        return [host.model_copy() for host in self._hosts]

    async def metrics(self) -> MetricsSummary:
        hosts = self._hosts
        counts = dict.fromkeys(JobStatus, 0)
        for job in self._jobs.values():
            counts[job.status] += 1
        return MetricsSummary(
            jobs_total=len(self._jobs), jobs_by_status=counts,
            hosts_online=sum(h.state is HostState.ONLINE for h in hosts),
            hosts_offline=sum(h.state is HostState.OFFLINE for h in hosts),
            hosts_total=len(hosts),
            slots=Usage(used=sum(h.used_slots for h in hosts),
                        total=sum(h.total_slots for h in hosts)),
            cpu=Usage(used=sum(h.used_cpu for h in hosts), total=sum(h.total_cpu for h in hosts)),
            memory_gb=Usage(used=sum(h.used_memory_gb for h in hosts),
                            total=sum(h.total_memory_gb for h in hosts)),
            finished_last_hour=2, wait_sec_median=180.0, wait_sec_p95=1860.0,
            run_sec_median=2940.0, run_sec_p95=12600.0)

    async def _log_text(self, job_id: str, attempt: int | None) -> tuple[int, list[str]]:
        job = await self.get_job(job_id)
        attempt = attempt or job.attempt
        return attempt, (self._logs.get(job_id, []) if attempt == job.attempt else
                         ["(attempt 1 log: killed by SIGKILL, out of memory)"])

    async def tail_log(self, job_id: str, lines: int, attempt: int | None = None) -> LogTail:
        attempt, text = await self._log_text(job_id, attempt)
        shown = text[-lines:] if lines else []
        return LogTail(job_id=job_id, attempt=attempt, lines=shown,
                       offset=sum(len(line.encode()) + 1 for line in text))

    async def read_log(self, job_id: str, offset: int, attempt: int | None = None) -> LogTail:
        """The lines from byte ``offset`` on, as a log file holding them would give them."""
        attempt, text = await self._log_text(job_id, attempt)
        data = "".join(line + "\n" for line in text).encode()[offset:]
        lines = data.decode("utf-8", errors="replace").split("\n")[:-1]
        return LogTail(job_id=job_id, attempt=attempt, lines=lines,
                       offset=offset + len(data))

    def _refuse(self, what: str) -> IllegalTransition:
        return IllegalTransition(f"cannot {what}: this is demo data (read-only)")

    async def control(self, action: str, job_id: str) -> Job:
        job = await self.get_job(job_id)
        raise self._refuse(f"{action} job {job.job_id}")

    async def submit(self, spec: JobSpec) -> Job:
        raise self._refuse("submit")

    async def submit_batch(self, specs: Sequence[Any]) -> list[str]:
        raise self._refuse("submit a batch")


async def _screenshot(path: Path, size: tuple[int, int]) -> None:
    from apr_tui.app import make_app

    app = make_app(StaticBackend(), clock=demo_clock, owner=DEMO_OWNER)
    async with app.run_test(size=size) as pilot:
        await app.loaded.wait()
        while not app.main.log_pane.lines:
            await pilot.pause(0.05)
        await pilot.pause()
        app.save_screenshot(path.name, str(path.parent))


def save_demo_screenshot(path: str | Path = "docs/tui-main.svg",
                         size: tuple[int, int] = (140, 40)) -> Path:
    """The README's screenshot: the main screen on the demo data, as an SVG the app saves
    itself (``App.save_screenshot``)."""
    target = Path(path)
    asyncio.run(_screenshot(target, size))
    return target
