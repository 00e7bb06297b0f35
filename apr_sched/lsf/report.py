"""LSF's output formats for our jobs and hosts: what tools that parse ``bjobs``/``bhosts``
expect to read (column layouts, status words, the ``Job <N>`` phrasing).

Pure functions of models (or of the raw replies' views); the commands in ``commands.py``
print what these return.
"""

from __future__ import annotations

from apr_sched.lsf.bsub import DEFAULT_QUEUE
from apr_sched.states import HostState, JobStatus

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from datetime import datetime
    from typing import TypeAlias

    from apr_sched.models import Host
    from apr_sched.models import Job as JobModel
    from apr_sched.views import JobView

    Job: TypeAlias = JobModel | JobView

__all__ = ["bhosts_lines", "bjobs_lines", "bjobs_long", "lsf_stat"]

_STAT = {
    JobStatus.PENDING: "PEND",
    JobStatus.HELD: "PSUSP",
    JobStatus.RUNNING: "RUN",
    JobStatus.PAUSED: "USUSP",
    JobStatus.SUCCEEDED: "DONE",
    JobStatus.FAILED: "EXIT",
    JobStatus.TIMEOUT: "EXIT",
    JobStatus.STOPPED: "EXIT",
    JobStatus.CANCELLED: "EXIT",
}
_HOST_STATUS = {
    HostState.ONLINE: "ok",
    HostState.DRAINING: "closed_Adm",
    HostState.CLOSED: "closed_Adm",
    HostState.OFFLINE: "unavail",
}
_JOB_HEADER = ("JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST", "JOB_NAME",
               "SUBMIT_TIME")
_JOB_WIDTHS = (7, 7, 5, 10, 11, 11, 10)
_HOST_HEADER = ("HOST_NAME", "STATUS", "JL/U", "MAX", "NJOBS", "RUN", "SSUSP", "USUSP", "RSV")
_HOST_WIDTHS = (19, 15, 8, 8, 8, 8, 8, 8)


def lsf_stat(status: JobStatus) -> str:
    """LSF's status word: PEND, PSUSP, RUN, USUSP, DONE or EXIT."""
    return _STAT[status]


def _lsf_time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone().strftime("%b %e %H:%M")


def _long_time(value: datetime) -> str:
    return value.astimezone().strftime("%a %b %e %H:%M:%S")


def _cut(text: str, width: int, wide: bool) -> str:
    """LSF's truncation: a value wider than its column keeps its end behind a ``*``."""
    if wide or len(text) <= width:
        return text
    return "*" + text[-(width - 1):]


def _row(values: Iterable[str], widths: Iterable[int]) -> str:
    cells = list(values)
    padded = [cell.ljust(width) for cell, width in zip(cells, widths, strict=False)]
    return " ".join(padded + cells[len(padded):]).rstrip()


def _job_name(job: Job) -> str:
    return job.name or job.command.splitlines()[0]


def bjobs_lines(jobs: Iterable[Job], *, wide: bool = False, header: bool = True) -> list[str]:
    """``bjobs`` (or ``bjobs -w``): one line per job under LSF's header."""
    lines = [_row(_JOB_HEADER, _JOB_WIDTHS)] if header else []
    for job in jobs:
        values = (job.job_id, job.owner, lsf_stat(job.status), DEFAULT_QUEUE, "-",
                  job.host_id or "-", _job_name(job), _lsf_time(job.submitted_at))
        lines.append(_row((_cut(v, w, wide) for v, w in
                           zip(values, (*_JOB_WIDTHS, 99), strict=True)), _JOB_WIDTHS))
    return lines


def bjobs_long(job: Job) -> list[str]:
    """``bjobs -l``: the job's header line, then its history with LSF's phrasing."""
    request = job.resource_request
    lines = [f"Job <{job.job_id}>, Job Name <{_job_name(job)}>, User <{job.owner}>, "
             f"Project <{job.project}>, Status <{lsf_stat(job.status)}>, "
             f"Queue <{DEFAULT_QUEUE}>, Command <{job.command}>"]
    requested = f"rusage[mem={request.memory_gb * 1024:g}]" if request.memory_gb else "-"
    lines.append(f"{_long_time(job.submitted_at)}: Submitted, CWD <{job.workdir or '~'}>, "
                 f"{request.cpu} Task(s), Requested Resources <{requested}>;")
    if job.status in (JobStatus.PENDING, JobStatus.HELD) and job.pending_reason:
        lines.append(f" PENDING REASONS: {job.pending_reason}")
    if job.started_at is not None:
        lines.append(f"{_long_time(job.started_at)}: Started {request.cpu} Task(s) on "
                     f"Host(s) <{job.host_id or '-'}>, Execution CWD <{job.workdir or '~'}>;")
    if job.finished_at is not None:
        lines.append(f"{_long_time(job.finished_at)}: {_ending(job)}")
    return lines


def _ending(job: Job) -> str:
    if job.status is JobStatus.SUCCEEDED:
        return "Done successfully."
    if job.signal:
        return f"Exited by signal {job.signal}."
    if job.status is JobStatus.TIMEOUT:
        return "Exited; the job reached its run limit (TERM_RUNLIMIT)."
    if job.status is JobStatus.STOPPED:
        return "Exited; the job was killed by its owner or an admin (TERM_OWNER)."
    if job.status is JobStatus.CANCELLED:
        return "Exited; a dependency of the job can never be satisfied."
    code = job.exit_code if job.exit_code is not None else "unknown"
    return f"Exited with exit code {code}."


def bhosts_lines(hosts: Iterable[Host], *, header: bool = True) -> list[str]:
    """``bhosts``: slots as MAX, running jobs as NJOBS/RUN, paused ones are not split out."""
    lines = [_row(_HOST_HEADER, _HOST_WIDTHS)] if header else []
    for host in hosts:
        status = _HOST_STATUS[host.state]
        if host.state is HostState.ONLINE and host.used_slots >= host.total_slots:
            status = "closed_Full"
        lines.append(_row((host.host_id, status, "-", str(host.total_slots),
                           str(host.used_slots), str(host.running_jobs), "0", "0", "0"),
                          _HOST_WIDTHS))
    return lines
