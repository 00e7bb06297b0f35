"""Answers about jobs that change nothing: listings, a job's detail, its logs, its graph.

Kept apart from the Scheduler's transitions because none of it writes: a listing reads the
store in chunks and yields between them (a big list never holds the loop, DESIGN.md
"Bounded by design"), and a job in memory is shown as it is there (running time, pending
reason), one that finished as stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path

from apr_sched.errors import InvalidInput, NotFound
from apr_sched.job_graph import MAX_DEPTH, Node, walk
from apr_sched.jobs import JobTable
from apr_sched.logs import attempt_files, read_lines_from, tail_with_offset
from apr_sched.models import Job, JobGraph, JobPage, JobStatus, LogTail, parse_statuses
from apr_sched.store import Store, job_filter

LIST_CHUNK = 200
"""Jobs built per step of a listing; the loop runs other work between steps."""
TAIL_IN_THREAD_ABOVE = 10_000
"""Tails of more lines than this are read in a thread."""


async def list_jobs(
    table: JobTable,
    store: Store,
    *,
    status: JobStatus | str | Iterable[JobStatus | str] | None = None,
    project: str | None = None,
    design: str | None = None,
    owner: str | None = None,
    host: str | None = None,
    ids: Iterable[str] | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> JobPage:
    """Jobs in submit order, filtered (``Scheduler.list_jobs`` says how)."""
    statuses = parse_statuses(status)
    if offset < 0 or (limit is not None and limit < 0):
        raise InvalidInput("limit and offset must be >= 0", [
            {"field": "limit" if limit is not None and limit < 0 else "offset",
             "message": "must be >= 0"}])
    where = job_filter(
        statuses=None if statuses is None else sorted(s.value for s in statuses),
        project=project, design=design, owner=owner, host=host,
        ids=None if ids is None else [i for i in ids if isinstance(i, str)])
    total = store.count_jobs(where)
    wanted = total if limit is None else min(limit, max(0, total - offset))
    views: list[Job] = []
    after_seq = 0
    while len(views) < wanted:  # in chunks, yielding: a big list never stalls the loop
        rows = store.page_jobs(where, after_seq=after_seq,
                               limit=min(LIST_CHUNK, wanted - len(views)),
                               offset=offset if after_seq == 0 else 0)
        if not rows:
            break
        views.extend(table.row_view(row) for row in rows)
        after_seq = rows[-1]["seq"]
        if len(views) < wanted:
            await asyncio.sleep(0)
    return JobPage(jobs=views, total=total)


def job_detail(table: JobTable, store: Store, job_id: str) -> Job:
    """The job with its attempts and full event timeline."""
    job = table.view(table.get(job_id))
    job.events = store.job_events(job_id)
    job.attempts = store.load_attempts(job_id)
    return job


def job_graph(table: JobTable, store: Store, job_id: str, depth: int) -> JobGraph:
    """The graph around a job (``job_graph.walk``): jobs in memory as they are there,
    the others as stored."""
    table.get(job_id)  # NotFound first
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_DEPTH:
        raise InvalidInput(f"depth must be an integer between 0 and {MAX_DEPTH}",
                           [{"field": "depth", "message": f"between 0 and {MAX_DEPTH}"}])

    def describe(job_ids: Sequence[str]) -> dict[str, Node]:
        nodes: dict[str, Node] = {}
        stored = [job_id for job_id in job_ids if job_id not in table]
        for found, (status, name) in store.job_briefs(stored).items():
            nodes[found] = Node(found, name, JobStatus(status))
        for job in (table.jobs[job_id] for job_id in job_ids if job_id in table):
            view = table.view(job)
            nodes[job.job_id] = Node(job.job_id, job.name, job.status, view.pending_reason)
        return nodes

    return walk(job_id, depth, upstreams=store.upstreams, dependents=store.dependents,
                describe=describe)


async def tail_log(table: JobTable, state_dir: Path, job_id: str, n: int,
                   attempt: int | None) -> LogTail:
    """The last ``n`` lines of an attempt's log (the current attempt by default)."""
    job = table.get(job_id)
    attempt = attempt_number(job, attempt)
    if n < 0:
        raise InvalidInput("tail must be >= 0", [{"field": "tail", "message": "must be >= 0"}])
    files = attempt_files(state_dir, job_id, attempt)
    running = attempt == job.attempt and job.status.is_active
    if n > TAIL_IN_THREAD_ABOVE:
        lines, offset = await asyncio.to_thread(tail_with_offset, files.log, n,
                                                complete_only=running)
    else:
        lines, offset = tail_with_offset(files.log, n, complete_only=running)
    return LogTail(job_id=job_id, attempt=attempt, lines=lines, offset=offset)


def read_log(table: JobTable, state_dir: Path, job_id: str, offset: int,
             attempt: int | None, max_bytes: int) -> LogTail:
    """Complete lines appended after byte ``offset`` (``Scheduler.read_log`` says how)."""
    job = table.get(job_id)
    attempt = attempt_number(job, attempt)
    if offset < 0:
        raise InvalidInput("offset must be >= 0",
                           [{"field": "offset", "message": "must be >= 0"}])
    files = attempt_files(state_dir, job_id, attempt)
    ended = attempt < job.attempt or not job.status.is_active
    lines, end = read_lines_from(files.log, offset, max_bytes, writer_done=ended)
    return LogTail(job_id=job_id, attempt=attempt, lines=lines, offset=end)


def attempt_number(job: Job, attempt: int | None) -> int:
    """The attempt asked for (the latest by default), if the job has it."""
    number = job.attempt if attempt is None else attempt
    if not 1 <= number <= job.attempt:
        raise NotFound(f"job {job.job_id} has no attempt {number} (attempts 1..{job.attempt})",
                       {"job_id": job.job_id, "attempt": number})
    return number
