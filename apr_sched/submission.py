"""Accepting jobs: every check that may refuse a submit, all of a batch or none, before a write.

A submit is refused here or not at all: the spec itself (field by field, naming each bad
entry of a batch by its index), the owner's account when jobs run as their owner, whether
any registered host could ever run the job (``resources``), and its dependencies: each
must name a job that exists (a purged one does not) or, in a batch, another entry by its
``name`` (``batch_graph``: no ambiguity, no cycle), and none may be one that can never
hold already (``after_ok`` on a job that FAILED is refused naming its state, as Slurm
does, rather than accepted and cancelled at once). Arrays are refused until they are
supported, so the field is never silently ignored. Nothing is written: the Scheduler
writes what passes, built by ``new_jobs`` (a large batch is built and written in steps by
``batches`` instead), once ``Accepted.bind`` has turned batch names into the new ids.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from apr_sched.batch_graph import BatchRef, GraphError, Target, resolve_batch
from apr_sched.dependencies import Condition, Verdict, verdict
from apr_sched.eligibility import job_upstream
from apr_sched.errors import InvalidInput, validated
from apr_sched.identity import local_account
from apr_sched.jobs import Book
from apr_sched.models import (
    Dependencies,
    Job,
    JobSpec,
    JobStatus,
    new_pending_job,
    with_dependencies,
)
from apr_sched.resources import Resources
from apr_sched.store import EdgeRow, edge_rows, pending_job_row

VALIDATE_CHUNK = 200
"""Specs of a batch validated per step (a large batch is then written in steps too)."""
RESOLVE_IN_THREAD_ABOVE = 1000
"""A batch graph larger than this is resolved, and bound to its ids, in a thread: 10,000
entries took ~150 and ~250 ms, too long to hold the loop."""


@dataclass(slots=True)
class Accepted:
    """A batch that passed every check; ``bind`` gives its specs with batch names turned
    into the ids the entries get (known once the caller has reserved them)."""

    specs: list[JobSpec]
    targets: list[list[tuple[Condition, Target]]] | None = None
    """Each entry's dependencies as resolved; None when no entry names another."""

    def bind(self, first_seq: int) -> list[JobSpec]:
        if self.targets is None:
            return self.specs
        return [_bound(spec, targets, first_seq)
                for spec, targets in zip(self.specs, self.targets, strict=True)]

    async def bind_aside(self, first_seq: int) -> list[JobSpec]:
        """``bind``, in a thread for a large graph (the specs are ours alone by now)."""
        if self.targets is None or len(self.specs) <= RESOLVE_IN_THREAD_ABOVE:
            return self.bind(first_seq)
        return await asyncio.to_thread(self.bind, first_seq)


def _bound(spec: JobSpec, targets: list[tuple[Condition, Target]], first_seq: int) -> JobSpec:
    if not any(isinstance(target, BatchRef) for _, target in targets):
        return spec
    ids: dict[str, list[str]] = {condition.value: [] for condition in Condition}
    for condition, target in targets:
        ids[condition.value].append(
            str(first_seq + target.index) if isinstance(target, BatchRef) else target)
    depends_on = Dependencies.model_construct(after_ok=ids["after_ok"],
                                              after_any=ids["after_any"],
                                              after_failed=ids["after_failed"])
    return with_dependencies(spec, depends_on)


Statuses = Callable[[Iterable[str]], Mapping[str, JobStatus]]
"""The statuses of the jobs among these ids that exist (a purged one does not)."""


class Intake:
    """The checks a submit passes before anything is written (``run_as_owner``: a job's
    owner must have a local account; ``statuses``: existing jobs' statuses, asked once
    per submit, to check dependencies by)."""

    def __init__(self, resources: Resources, *, run_as_owner: bool,
                 statuses: Statuses | None = None) -> None:
        self._resources = resources
        self._run_as_owner = run_as_owner
        self._statuses: Statuses = statuses or (lambda job_ids: {})

    def one(self, spec: JobSpec | Mapping[str, Any]) -> JobSpec:
        """One job's spec, valid and runnable here, or InvalidInput naming the field."""
        valid = validated(JobSpec, spec)
        refuse_arrays([valid], batch=False)
        self.check_owner_accounts([valid], batch=False)
        self._resources.check_runnable([valid], batch=False)
        if valid.depends_on:
            entry = [(valid.name, valid.depends_on.as_mapping())]
            found = self._statuses(_references(entry))
            self._check_dependencies(self._resolve(entry, found, prefix=""), found,
                                     prefix="")
        return valid

    async def batch(self, specs: Sequence[JobSpec | Mapping[str, Any]]) -> Accepted:
        """Every spec valid (yielding now and then) and the batch's dependencies sound, or
        InvalidInput naming each bad one."""
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
        refuse_arrays(valid, batch=True)
        self.check_owner_accounts(valid, batch=True)
        self._resources.check_runnable(valid, batch=True)
        if not any(spec.depends_on for spec in valid):
            return Accepted(valid)
        aside = len(valid) > RESOLVE_IN_THREAD_ABOVE  # pure work on our own data, in a
        # thread for a large batch so the loop runs on meanwhile
        entries, references = (await asyncio.to_thread(_graph_of, valid) if aside
                               else _graph_of(valid))
        found = self._statuses(references)
        if aside:
            targets = await asyncio.to_thread(self._checked_graph, entries, found)
        else:
            targets = self._checked_graph(entries, found)
        return Accepted(valid, targets)

    @classmethod
    def _checked_graph(cls, entries: Sequence[tuple[str | None, Mapping[str, Sequence[str]]]],
                       found: Mapping[str, JobStatus]) -> list[list[tuple[Condition, Target]]]:
        targets = cls._resolve(entries, found, prefix="jobs")
        cls._check_dependencies(targets, found, prefix="jobs")
        return targets

    @staticmethod
    def _resolve(entries: Sequence[tuple[str | None, Mapping[str, Sequence[str]]]],
                 found: Mapping[str, JobStatus],
                 prefix: str) -> list[list[tuple[Condition, Target]]]:
        try:
            if prefix:
                return resolve_batch(entries, found.__contains__, prefix=prefix)
            return _resolve_one(entries[0][1], found.__contains__)
        except GraphError as exc:
            raise InvalidInput(f"{'batch rejected, no job queued: ' if prefix else ''}"
                               f"{exc.field}: {exc.message}",
                               [{"field": exc.field, "message": exc.message}]) from None

    @staticmethod
    def _check_dependencies(targets: Sequence[Sequence[tuple[Condition, Target]]],
                            found: Mapping[str, JobStatus], prefix: str) -> None:
        """Refuse a dependency on an existing job that can never hold any more."""
        for index, edges in enumerate(targets):
            positions: dict[Condition, int] = dict.fromkeys(Condition, 0)
            for condition, target in edges:
                position = positions[condition]
                positions[condition] += 1
                if isinstance(target, BatchRef):
                    continue
                status = found.get(target)
                if status is None or verdict(condition, job_upstream(status)) is not (
                        Verdict.NEVER):
                    continue
                where = f"{prefix}[{index}]." if prefix else ""
                field = f"{where}depends_on.{condition.value}[{position}]"
                message = (f"job {target} is {status.value}: {condition.value} can never "
                           f"hold (it waits for job {target} {condition.wanted})")
                raise InvalidInput(f"{field}: {message}", [{"field": field,
                                                            "message": message}])

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


def _graph_of(specs: Sequence[JobSpec]
              ) -> tuple[list[tuple[str | None, Mapping[str, Sequence[str]]]], list[str]]:
    """A batch's entries as ``(name, depends_on)``, and every reference they make."""
    entries: list[tuple[str | None, Mapping[str, Sequence[str]]]] = [
        (spec.name, spec.depends_on.as_mapping() if spec.depends_on else {}) for spec in specs]
    return entries, _references(entries)


def _references(entries: Sequence[tuple[str | None, Mapping[str, Sequence[str]]]]
                ) -> list[str]:
    """Every reference the entries make, once each (asked for in one go)."""
    return list(dict.fromkeys(ref for _, depends_on in entries
                              for refs in depends_on.values() for ref in refs))


def refuse_arrays(specs: Sequence[JobSpec], *, batch: bool) -> None:
    """Arrays are not supported yet: refused, never run as one job."""
    details = [{"field": f"jobs[{index}].array" if batch else "array",
                "message": "arrays are not supported yet: submit one job per index (a "
                           "batch) for now"}
               for index, spec in enumerate(specs) if spec.array is not None]
    if details:
        raise InvalidInput(f"{details[0]['field']}: {details[0]['message']}", details)


def _resolve_one(depends_on: Mapping[str, Sequence[str]], exists: Callable[[str], bool],
                 ) -> list[list[tuple[Condition, Target]]]:
    """A single job's dependencies: job ids only (it has no batch to name)."""
    edges: list[tuple[Condition, Target]] = []
    for condition in Condition:
        for position, ref in enumerate(depends_on.get(condition.value, ())):
            if not exists(ref):
                raise GraphError(f"depends_on.{condition.value}[{position}]",
                                 f"no job {ref!r} (unknown, or purged)")
            edges.append((condition, ref))
    return [edges]


@dataclass(slots=True)
class NewJobs:
    """What a small batch writes (``rows``) and keeps in memory (``jobs``, ``books``)."""

    jobs: list[Job]
    books: list[Book]
    rows: list[tuple[Any, ...]]
    edges: list[EdgeRow]


def new_jobs(specs: Sequence[JobSpec], first_seq: int, first_queue_seq: int,
             now: datetime) -> NewJobs:
    """PENDING (or, with ``hold``, HELD) jobs for validated specs, ids from ``first_seq``
    and queue seqs from ``first_queue_seq`` on (built without validating the specs
    again), with the edges their dependencies write."""
    now_iso = now.isoformat()
    built = NewJobs([], [], [], [])
    for offset, spec in enumerate(specs):
        seq, queue_seq = first_seq + offset, first_queue_seq + offset
        built.jobs.append(new_pending_job(spec, str(seq), now))
        built.books.append(Book(seq=seq, queue_seq=queue_seq, queued_at=now))
        built.rows.append(pending_job_row(seq, spec, now_iso, queue_seq))
        built.edges += edge_rows(seq, spec)
    return built


def new_book(seq: int, queue_seq: int, now: datetime) -> Book:
    """A new job's book (how ``batches`` makes them while staging)."""
    return Book(seq=seq, queue_seq=queue_seq, queued_at=now)
