"""The edges table: which jobs wait for which, kept for the lookups a spec cannot answer.

A job's own dependencies are in its spec; the table answers the other way round, by
upstream: a job's dependents, for ``graph``, ``rerun --with-dependents`` and retention.
An edge row is written in the submit's transaction (a large batch's with its staged
chunks, hidden like its jobs by the dependent's ``seq``) and deleted with its dependent.
Whether an edge is met is not stored: it follows from the upstream's status, at restart
too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from apr_sched.models import JobSpec
from apr_sched.store.staged import StagedBatches

EdgeRow = tuple[int, str, str, str]
"""(dependent's seq, dependent's id, upstream id, condition)."""


def edge_rows(seq: int, spec: JobSpec) -> list[EdgeRow]:
    """A new job's edges, from its spec (whose references are job ids by now)."""
    if not spec.depends_on:
        return []
    job_id = str(seq)
    return [(seq, job_id, upstream, condition)
            for condition, upstreams in spec.depends_on.as_mapping().items()
            for upstream in dict.fromkeys(upstreams)]


class EdgeRows(StagedBatches):
    """Edges between jobs, by dependent and by upstream."""

    def insert_edges(self, rows: Iterable[EdgeRow]) -> None:
        self._db.executemany("INSERT OR IGNORE INTO edges VALUES (?, ?, ?, ?)", rows)

    def dependents(self, upstream: str) -> list[tuple[str, str]]:
        """``(job id, condition)`` of the jobs that depend on ``upstream``, in submit
        order (staged batches left out)."""
        clause, args = self._visible((" WHERE upstream=?", [upstream]))
        return [(row[0], row[1]) for row in self._db.execute(
            f"SELECT job_id, condition FROM edges{clause} ORDER BY seq", args)]

    def upstreams(self, job_id: str) -> list[tuple[str, str]]:
        """``(upstream id, condition)`` of the jobs ``job_id`` depends on."""
        return [(row[0], row[1]) for row in self._db.execute(
            "SELECT upstream, condition FROM edges WHERE job_id=?", (job_id,))]

    def job_status(self, job_id: str) -> str | None:
        """One job's status without reading its spec (None: no such job, or staged)."""
        clause, args = self._visible((" WHERE job_id=?", [job_id]))
        row = self._db.execute(f"SELECT status FROM jobs{clause}", args).fetchone()
        return None if row is None else str(row[0])

    def job_statuses(self, job_ids: Sequence[str]) -> dict[str, str]:
        """``{job id: status}`` of many jobs, a query per 500 (unknown ids left out)."""
        found: dict[str, str] = {}
        for start in range(0, len(job_ids), 500):
            chunk = list(job_ids[start:start + 500])
            clause, args = self._visible(
                (f" WHERE job_id IN ({', '.join('?' * len(chunk))})", chunk))
            found.update((row[0], row[1]) for row in self._db.execute(
                f"SELECT job_id, status FROM jobs{clause}", args))
        return found

    def job_briefs(self, job_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """``{job id: (status, name)}`` of many jobs, a query per 500 (unknown ids left
        out)."""
        found: dict[str, tuple[str, str | None]] = {}
        for start in range(0, len(job_ids), 500):
            chunk = list(job_ids[start:start + 500])
            clause, args = self._visible(
                (f" WHERE job_id IN ({', '.join('?' * len(chunk))})", chunk))
            found.update((row[0], (row[1], row[2])) for row in self._db.execute(
                f"SELECT job_id, status, json_extract(spec, '$.name') FROM jobs{clause}",
                args))
        return found
