"""Idempotency keys for in-process submits, meaning what they mean over HTTP.

``BlockingScheduler.submit(spec, idempotency_key="k")`` and ``SchedulerClient.submit(...)``
take the same string key, so a flow that retries a submit (after a crash of the script, say)
gets the job created the first time instead of a second one, in-process or against a
daemon. The key is remembered in the state dir's store with the same fingerprint (the action
and the request body exactly as ``SchedulerClient`` sends it) and the same reply as the
HTTP layer keeps, so a key first used in-process is honoured by the daemon later (for the
same user), and the other way round.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from apr_sched.client import encode_json
from apr_sched.errors import InvalidInput
from apr_sched.http.api import (
    _IDEMPOTENCY_KEY,
    _batch_reply,
    _submit_reply,
    idempotency_fingerprint,
    stored_reply,
)
from apr_sched.models import Job, JobSpec, current_user
from apr_sched.scheduler import Scheduler
from apr_sched.store import IdempotencyKey

__all__ = ["submit_batch_once", "submit_once"]


async def submit_once(scheduler: Scheduler, spec: JobSpec | Mapping[str, Any],
                      key: str) -> Job:
    """``scheduler.submit`` under ``key``: the first job again if the key was used for it."""
    ident = _key("submit", spec, key, _submit_reply)
    stored = _replayed(scheduler, ident)
    if stored is not None:
        return Job.model_validate_json(stored)
    return await scheduler.submit(spec, idempotency_key=ident)


async def submit_batch_once(scheduler: Scheduler, specs: Sequence[JobSpec | Mapping[str, Any]],
                            key: str) -> list[Job]:
    """``scheduler.submit_batch`` under ``key``: the first batch's jobs again if used."""
    ident = _key("batch", {"jobs": list(specs)}, key, _batch_reply)
    stored = _replayed(scheduler, ident)
    if stored is not None:
        job_ids = [str(job_id) for job_id in json.loads(stored)["job_ids"]]
        return [await scheduler.get_job(job_id) for job_id in job_ids]
    return await scheduler.submit_batch(specs, idempotency_key=ident)


def _key(action: str, body: Any, key: str, reply: Any) -> IdempotencyKey:
    if not isinstance(key, str) or not _IDEMPOTENCY_KEY.fullmatch(key.strip()):
        raise InvalidInput("idempotency_key must be 1 to 255 visible ASCII characters (one "
                           "key, no spaces), e.g. a UUID",
                           [{"field": "idempotency_key",
                             "message": "1 to 255 visible ASCII characters"}])
    return IdempotencyKey(current_user(), key.strip(),
                          idempotency_fingerprint(action, encode_json(body)), reply)


def _replayed(scheduler: Scheduler, key: IdempotencyKey) -> bytes | None:
    """The stored reply body for this key, None if it is new; refused for another request."""
    stored = stored_reply(scheduler.store, key, field="idempotency_key",
                          other="spec or batch")
    return None if stored is None else stored.body
