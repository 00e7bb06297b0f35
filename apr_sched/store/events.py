"""The event log: one table of job and host events, numbered by one cursor (``seq``).

Followers read it after a seq; a published batch's events not yet in the table are
answered from memory (``StagedBatches._unwritten``) in seq order with the stored ones.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Sequence
from datetime import datetime
from itertools import islice
from typing import Any

from apr_sched.models import Event, HostEvent, JobEvent
from apr_sched.store.base import parse_time
from apr_sched.store.staged import StagedBatches


class EventRows(StagedBatches):
    """Job and host events."""

    def insert_events(self, events: Sequence[Event]) -> None:
        times: dict[datetime, str] = {}  # a batch shares one timestamp: format it once
        self._db.executemany(
            "INSERT INTO events VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [_event_row(e, times) for e in events],
        )

    def max_event_seq(self) -> int:
        stored = int(self._db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])
        return max([stored, *(b.events[-1].seq for b in self._unwritten.values())])

    def job_events(self, job_id: str) -> list[JobEvent]:
        rows = self._db.execute(
            "SELECT * FROM events WHERE kind='job' AND job_id=? ORDER BY seq", (job_id,)
        )
        events = [e for e in map(_event_from_row, rows) if isinstance(e, JobEvent)]
        if self._unwritten and job_id.isdigit():
            for batch in self._unwritten.values():
                index = int(job_id) - batch.events.first_seq
                if batch.written <= index < len(batch.events):
                    events.append(batch.events[index])
                    events.sort(key=lambda e: e.seq)
        return events

    def events_after(self, seq: int, limit: int) -> list[Event]:
        rows = self._db.execute(
            "SELECT * FROM events WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        )
        stored = [_event_from_row(r) for r in rows]
        if not self._unwritten:
            return stored
        pending: list[Event] = []
        for batch in self._unwritten.values():  # seqs the table cannot hold yet
            start = max(batch.written, seq + 1 - batch.events.base)
            pending.extend(batch.events[start:start + limit])
        return list(islice(heapq.merge(stored, sorted(pending, key=lambda e: e.seq),
                                       key=lambda e: e.seq), limit))
    def delete_host_events_before(self, cutoff: str) -> int:
        cursor = self._db.execute(
            "DELETE FROM events WHERE kind='host' AND time < ?", (cutoff,))
        return int(cursor.rowcount)


def _event_row(event: Event, times: dict[datetime, str]) -> tuple[Any, ...]:
    time = times.get(event.time)
    if time is None:
        time = times[event.time] = event.time.isoformat()
    if isinstance(event, JobEvent):
        return (event.seq, time, "job", event.job_id, event.host_id, event.attempt,
                event.from_status, event.to_status, event.reason)
    return (event.seq, time, "host", None, event.host_id, None,
            event.from_state, event.to_state, event.reason)


def _event_from_row(row: sqlite3.Row) -> Event:
    time = parse_time(row["time"])
    if row["kind"] == "job":
        return JobEvent(
            seq=row["seq"], time=time, job_id=row["job_id"], attempt=row["attempt"],
            from_status=row["from_state"], to_status=row["to_state"], reason=row["reason"],
            host_id=row["host_id"],
        )
    return HostEvent(seq=row["seq"], time=time, host_id=row["host_id"],
                     from_state=row["from_state"], to_state=row["to_state"],
                     reason=row["reason"])
