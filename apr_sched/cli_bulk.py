"""``apr-sched stop|pause|resume`` by filter: which jobs, found by paging through GET /jobs.

``stop --name 'synth*' --owner ann`` acts on every job that matches all the filters given
and is in a state the action applies to (``transitions.ACTIONS``): stop takes unfinished
jobs, pause pending and running ones, resume held and paused ones. With no id and no filter
the command is refused; ``--all`` means every job.

The matching jobs are collected first (every page: GET /jobs is paged), then acted on, and
the listing is read again until it names no job not yet handled (at most a few rounds), so
a job that moved between pages while the first listing was read is not missed, and none is
acted on twice.
"""

from __future__ import annotations

import argparse
import fnmatch
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from apr_sched.cli_args import FILTERS, filters_given
from apr_sched.errors import Forbidden, IllegalTransition, InvalidInput, NotFound
from apr_sched.states import ACTIONS, JobStatus

if TYPE_CHECKING:
    from apr_sched.client import SchedulerClient
    from apr_sched.models import Job

__all__ = ["FILTERS", "BulkOutcome", "filters_given", "run_bulk"]

PAGE = 5_000
"""Jobs per GET /jobs page (the API's largest)."""
MAX_ROUNDS = 5


@dataclass(slots=True)
class BulkOutcome:
    touched: list[str]
    refused: list[tuple[str, str]]
    """(job id, why) for jobs the daemon refused (not yours; ended meanwhile is skipped)."""


def applicable_statuses(action: str, wanted: str | None) -> set[JobStatus]:
    applies = set(ACTIONS[action])
    if wanted is None:
        return applies
    from apr_sched.models import parse_statuses  # pydantic: only for a bulk action

    chosen = parse_statuses(wanted) or set()
    if not chosen & applies:
        names = ", ".join(sorted(s.value for s in applies))
        raise InvalidInput(
            f"{action} applies to jobs that are {names}; --status {wanted} names none of them",
            [{"field": "status", "message": f"{action} applies to {names}"}])
    return chosen & applies


def matching(client: SchedulerClient, args: argparse.Namespace,
             statuses: set[JobStatus]) -> Iterator[Job]:
    """Every job the filters match, page after page."""
    offset = 0
    while True:
        page = client.jobs(status=sorted(s.value for s in statuses), project=args.project,
                           design=args.design, owner=args.owner, host=args.host, limit=PAGE,
                           offset=offset)
        for job in page.jobs:
            if args.name is None or fnmatch.fnmatchcase(job.name or "", args.name):
                yield job
        offset += len(page.jobs)
        if not page.jobs or offset >= page.total:
            return


def run_bulk(client: SchedulerClient, args: argparse.Namespace,
             act: Callable[[str], Job]) -> BulkOutcome:
    """Act on every matching job once; what was done and what was refused."""
    statuses = applicable_statuses(args.command, args.status)
    outcome = BulkOutcome([], [])
    seen: set[str] = set()
    for _ in range(MAX_ROUNDS):
        todo = [job.job_id for job in matching(client, args, statuses)
                if job.job_id not in seen]
        if not todo:
            break
        for job_id in todo:
            seen.add(job_id)
            try:
                act(job_id)
            except (IllegalTransition, NotFound):
                continue  # it moved on (ended, or was purged) since it was listed
            except (Forbidden, InvalidInput) as exc:
                outcome.refused.append((job_id, exc.message))
                continue
            outcome.touched.append(job_id)
    return outcome
