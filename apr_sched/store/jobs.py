"""The jobs and attempts tables: a job's row follows its status, an attempt's row its run.

Readers leave staged batches out (``StagedBatches._visible``); filters are indexed columns
(``job_filter``), and listings page by seq, so no read walks every job.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterator, Sequence
from typing import Any

from apr_sched.models import Attempt, JobSpec, JobStatus
from apr_sched.store.base import _iso, parse_time
from apr_sched.store.staged import JobFilter, StagedBatches

UNFINISHED = ("PENDING", "HELD", "RUNNING", "PAUSED")

JOB_COLUMNS = (
    "seq", "job_id", "spec", "status", "attempt", "host_id", "submitted_at", "started_at",
    "finished_at", "exit_code", "signal", "queue_seq", "retries_used", "run_sec", "resumed_at",
    "pgid", "ending", "term_sent_at", "owner", "project", "design",
)
ATTEMPT_COLUMNS = (
    "job_id", "attempt", "host_id", "status", "queued_at", "started_at", "finished_at",
    "exit_code", "signal", "reason", "run_sec",
)


_UPSTREAMS_OF_UNFINISHED = (
    "SELECT edges.upstream FROM jobs AS waiting JOIN edges ON edges.job_id = waiting.job_id"
    f" WHERE waiting.status IN {UNFINISHED!r}")


def pending_job_row(seq: int, spec: JobSpec, submitted_at: str,
                    queue_seq: int) -> tuple[Any, ...]:
    """A new job's row, PENDING (HELD with ``hold``) at attempt 1, in JOB_COLUMNS order
    (its id is its seq)."""
    status = "HELD" if spec.hold else "PENDING"
    return (seq, str(seq), spec.model_dump_json(), status, 1, None, submitted_at, None,
            None, None, None, queue_seq, 0, 0.0, None, None, None, None, spec.owner,
            spec.project, spec.design)


def job_filter(*, statuses: Sequence[str] | None = None, project: str | None = None,
               design: str | None = None, owner: str | None = None, host: str | None = None,
               ids: Sequence[str] | None = None) -> JobFilter:
    """Each given filter is an indexed column (status, owner, project, host, id)."""
    where: list[str] = []
    args: list[Any] = []
    for column, value in (("project", project), ("design", design), ("owner", owner),
                          ("host_id", host)):
        if value is not None:
            where.append(f"{column}=?")
            args.append(value)
    for column, values in (("status", statuses), ("job_id", ids)):
        if values is not None:
            where.append(f"{column} IN ({', '.join('?' * len(values))})" if values else "0")
            args.extend(values)
    return (f" WHERE {' AND '.join(where)}" if where else ""), args


class JobRows(StagedBatches):
    """Jobs and their attempts."""

    def insert_jobs(self, rows: list[tuple[Any, ...]]) -> None:
        """New jobs, each a tuple in ``JOB_COLUMNS`` order with times as ISO strings."""
        placeholders = ", ".join("?" * len(JOB_COLUMNS))
        self._db.executemany(
            f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({placeholders})", rows)

    def update_job(self, job_id: str, **columns: Any) -> None:
        assignments = ", ".join(f"{name}=?" for name in columns)
        self._db.execute(
            f"UPDATE jobs SET {assignments} WHERE job_id=?",
            (*(_iso(v) for v in columns.values()), job_id),
        )

    def load_unfinished_jobs(self) -> Iterator[sqlite3.Row]:
        """What a restarted scheduler keeps in memory: finished jobs are read on demand."""
        clause, args = self._visible((f" WHERE status IN {UNFINISHED!r}", []))
        return self._db.execute(f"SELECT * FROM jobs{clause} ORDER BY seq", args)

    def load_job(self, job_id: str) -> sqlite3.Row | None:
        clause, args = self._visible((" WHERE job_id=?", [job_id]))
        row: sqlite3.Row | None = self._db.execute(
            f"SELECT * FROM jobs{clause}", args).fetchone()
        return row

    def count_by_status(self) -> dict[str, int]:
        clause, args = self._visible(("", []))
        return {row[0]: row[1] for row in self._db.execute(
            f"SELECT status, COUNT(*) FROM jobs{clause} GROUP BY status", args)}

    def count_jobs(self, where: JobFilter) -> int:
        clause, args = self._visible(where)
        return int(self._db.execute(f"SELECT COUNT(*) FROM jobs{clause}", args).fetchone()[0])

    def page_jobs(self, where: JobFilter, *, after_seq: int = 0, limit: int = -1,
                  offset: int = 0) -> list[sqlite3.Row]:
        """Jobs in submit order after ``after_seq`` (keyset paging), ``limit`` -1 = all."""
        clause, args = self._visible(where)
        clause = f"{clause} AND seq > ?" if clause else " WHERE seq > ?"
        return list(self._db.execute(
            f"SELECT * FROM jobs{clause} ORDER BY seq LIMIT ? OFFSET ?",
            [*args, after_seq, limit, offset]))

    def finished_before(self, cutoff: str, limit: int) -> list[tuple[str, str]]:
        """``(job_id, status)`` of final jobs that finished before ``cutoff``, oldest first;
        none of a batch whose events are still being written (a purged job's event must
        not be written after it), and none that an unfinished job depends on (its
        status decides the dependent, at restart too)."""
        clause, args = self._visible(
            (f" WHERE finished_at < ? AND status NOT IN {UNFINISHED!r}"
             f" AND job_id NOT IN ({_UPSTREAMS_OF_UNFINISHED})", [cutoff]),
            unwritten=True)
        return [(row[0], row[1]) for row in self._db.execute(
            f"SELECT job_id, status FROM jobs{clause} ORDER BY finished_at LIMIT ?",
            [*args, limit])]

    def delete_jobs(self, job_ids: Sequence[str]) -> None:
        """Forget final jobs with their attempts and events (retention)."""
        marks = ", ".join("?" * len(job_ids))
        for table in ("events", "attempts", "edges", "jobs"):
            self._db.execute(f"DELETE FROM {table} WHERE job_id IN ({marks})", list(job_ids))

    def finished_since(self, since: str) -> int:
        return int(self._db.execute(
            "SELECT COUNT(*) FROM attempts WHERE finished_at >= ?", (since,)).fetchone()[0])

    def max_job_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM jobs").fetchone()[0])

    def max_queue_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MAX(queue_seq), 0) FROM jobs").fetchone()[0])

    def min_queue_seq(self) -> int:
        return int(self._db.execute("SELECT COALESCE(MIN(queue_seq), 1) FROM jobs").fetchone()[0])

    # attempts ----------------------------------------------------------------------------
    def save_attempt(self, job_id: str, attempt: int, **columns: Any) -> None:
        names = ("job_id", "attempt", *columns)
        updates = ", ".join(f"{n}=excluded.{n}" for n in columns)
        self._db.execute(
            f"INSERT INTO attempts ({', '.join(names)}) VALUES ({', '.join('?' * len(names))}) "
            f"ON CONFLICT(job_id, attempt) DO UPDATE SET {updates}",
            (job_id, attempt, *(_iso(v) for v in columns.values())),
        )

    def insert_first_attempts(self, job_ids: list[str], queued_at: str,
                              held: Collection[str] = ()) -> None:
        """Attempt 1, PENDING (HELD for the ``held`` ids), of each new job."""
        self._db.executemany(
            "INSERT INTO attempts (job_id, attempt, status, queued_at) VALUES (?, 1, ?, ?)",
            [(job_id, "HELD" if job_id in held else "PENDING", queued_at)
             for job_id in job_ids])

    def load_attempts(self, job_id: str) -> list[Attempt]:
        rows = self._db.execute(
            "SELECT * FROM attempts WHERE job_id=? ORDER BY attempt", (job_id,)
        )
        return [
            Attempt(attempt=r["attempt"], host_id=r["host_id"], status=JobStatus(r["status"]),
                    started_at=parse_time(r["started_at"]),
                    finished_at=parse_time(r["finished_at"]), exit_code=r["exit_code"],
                    signal=r["signal"], reason=r["reason"])
            for r in rows
        ]

    def recent_attempt_times(self, limit: int) -> list[sqlite3.Row]:
        """Queue and run times of the latest started attempts, to seed metrics on restart."""
        return list(self._db.execute(
            "SELECT queued_at, started_at, finished_at, run_sec FROM attempts "
            "WHERE started_at IS NOT NULL ORDER BY started_at DESC LIMIT ?", (limit,)
        ))
