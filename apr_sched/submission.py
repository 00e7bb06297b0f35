"""Accepting jobs: every check that may refuse a submit, all of a batch or none, before a write.

A submit is refused here or not at all: the spec itself (field by field, naming each bad
entry of a batch by its index), the owner's account when jobs run as their owner, and
whether any registered host could ever run the job (``resources``). Checks over a batch as
a whole (entries that depend on each other, array ranges) belong here too. Nothing is
written: the Scheduler writes what passes, built by ``new_jobs`` (a large batch is built
and written in steps by ``batches`` instead).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apr_sched.errors import InvalidInput, validated
from apr_sched.identity import local_account
from apr_sched.jobs import Book
from apr_sched.models import Job, JobSpec, new_pending_job
from apr_sched.resources import Resources
from apr_sched.store import pending_job_row

VALIDATE_CHUNK = 200
"""Specs of a batch validated per step (a large batch is then written in steps too)."""


class Intake:
    """The checks a submit passes before anything is written (``run_as_owner``: a job's
    owner must have a local account)."""

    def __init__(self, resources: Resources, *, run_as_owner: bool) -> None:
        self._resources = resources
        self._run_as_owner = run_as_owner

    def one(self, spec: JobSpec | Mapping[str, Any]) -> JobSpec:
        """One job's spec, valid and runnable here, or InvalidInput naming the field."""
        valid = validated(JobSpec, spec)
        self.check_owner_accounts([valid], batch=False)
        self._resources.check_runnable([valid], batch=False)
        return valid

    async def batch(self, specs: Sequence[JobSpec | Mapping[str, Any]]) -> list[JobSpec]:
        """Every spec valid (yielding now and then), or InvalidInput naming each bad one."""
        valid: list[JobSpec] = []
        details: list[dict[str, str]] = []
        for index, spec in enumerate(specs):
            try:
                valid.append(validated(JobSpec, spec, prefix=f"jobs[{index}]"))
            except InvalidInput as exc:
                details.extend(exc.details)
            if index % VALIDATE_CHUNK == VALIDATE_CHUNK - 1:
                await asyncio.sleep(0)  # validation is pure: let the loop run meanwhile
        if details:
            bad = sorted({d["field"].split("]")[0] + "]" for d in details})
            raise InvalidInput(
                f"batch rejected, no job queued: {len(bad)} invalid job(s): "
                + "; ".join(f"{d['field']}: {d['message']}" for d in details[:5]),
                details,
            )
        if not valid:
            raise InvalidInput("batch rejected: it holds no jobs", [
                {"field": "jobs", "message": "must hold at least one job"}])
        self.check_owner_accounts(valid, batch=True)
        self._resources.check_runnable(valid, batch=True)
        return valid

    def check_owner_accounts(self, specs: Sequence[JobSpec], *, batch: bool) -> None:
        """With ``run_as_owner`` a job runs as its owner: one with no local account is
        refused now, not failed at dispatch."""
        if not self._run_as_owner:
            return
        missing = {owner for owner in {spec.owner for spec in specs}
                   if local_account(owner) is None}
        details = [{"field": f"jobs[{index}].owner" if batch else "owner",
                    "message": f"{spec.owner!r} has no local account, and jobs here run as "
                               "their owner (run_as_owner)"}
                   for index, spec in enumerate(specs) if spec.owner in missing]
        if details:
            raise InvalidInput(f"{details[0]['field']}: {details[0]['message']}", details)


@dataclass(slots=True)
class NewJobs:
    """What a small batch writes (``rows``) and keeps in memory (``jobs``, ``books``)."""

    jobs: list[Job]
    books: list[Book]
    rows: list[tuple[Any, ...]]


def new_jobs(specs: Sequence[JobSpec], first_seq: int, first_queue_seq: int,
             now: datetime) -> NewJobs:
    """PENDING jobs for validated specs, ids from ``first_seq`` and queue seqs from
    ``first_queue_seq`` on (built without validating the specs again)."""
    now_iso = now.isoformat()
    built = NewJobs([], [], [])
    for offset, spec in enumerate(specs):
        seq, queue_seq = first_seq + offset, first_queue_seq + offset
        built.jobs.append(new_pending_job(spec, str(seq), now))
        built.books.append(Book(seq=seq, queue_seq=queue_seq, queued_at=now))
        built.rows.append(pending_job_row(seq, spec, now_iso, queue_seq))
    return built


def new_book(seq: int, queue_seq: int, now: datetime) -> Book:
    """A new job's book (how ``batches`` makes them while staging)."""
    return Book(seq=seq, queue_seq=queue_seq, queued_at=now)
