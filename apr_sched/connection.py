"""``apr_sched.connect()``: one call that gives a flow script the scheduler, wherever it runs.

    with apr_sched.connect() as client:
        job = client.submit({"command": "make place", "workdir": "/proj/top"})
        print(client.wait(job.job_id).status)

When a daemon (or an attached TUI) owns the state dir, or a url is given, the client talks
to it (``SchedulerClient``, over the state dir's Unix socket when there is one); otherwise
the scheduler runs inside the script (``BlockingScheduler``, started here, stopped when the
``with`` block ends). Both have the same methods, arguments and return types, so the flow
is one code path.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

from apr_sched.client import URL_ENV, SchedulerClient, find_daemon
from apr_sched.errors import AprError
from apr_sched.statedir import read_owner, resolve_state_dir

if TYPE_CHECKING:
    from apr_sched.blocking import BlockingScheduler

__all__ = ["Client", "connect"]

Client: TypeAlias = "SchedulerClient | BlockingScheduler"
"""What ``connect`` returns: either way the same API."""

DAEMON_START_GRACE_SEC = 10.0
"""How long to wait for a daemon that holds the state dir to say where it listens (it
writes its url once its store is restored and its socket bound)."""
_RECORD_POLL_SEC = 0.05


def connect(state_dir: str | os.PathLike[str] | None = None, url: str | None = None,
            token: str | None = None, *, timeout: float = 30.0,
            **scheduler_options: Any) -> Client:
    """The daemon client if ``url`` (or ``$APR_SCHED_URL``) is given or a daemon owns the
    state dir; else a started in-process ``BlockingScheduler`` on the state dir, built with
    ``scheduler_options`` (the Scheduler's keyword options, e.g. ``hosts=``; they apply only
    in-process). Use it as a context manager, or call ``close()``.

    ``state_dir`` defaults as everywhere (``$APR_SCHED_HOME``, ...). ``timeout`` bounds each
    request to a daemon (a long poll waits longer, as it must).
    """
    directory = resolve_state_dir(state_dir)
    if url or os.environ.get(URL_ENV, "").strip():
        return SchedulerClient(*find_daemon(url, token, None, directory), timeout=timeout)
    try:
        owner = read_owner(directory)
    except PermissionError:  # another user's state dir: only its daemon can be reached
        return SchedulerClient(*find_daemon(None, token, None, directory), timeout=timeout)
    if owner is not None:
        return _attach(directory, owner, token, timeout)
    from apr_sched.blocking import BlockingScheduler  # the scheduler's modules load only here

    scheduler = BlockingScheduler(directory, **scheduler_options)
    scheduler.start()  # StateDirLocked if a daemon took the dir in between: it names it
    return scheduler


def _attach(state_dir: Path, owner: dict[str, Any], token: str | None,
            timeout: float) -> SchedulerClient:
    """A client for the scheduler that holds ``state_dir``, once it says where it listens.

    A daemon that has just started holds the lock before it records its url (which it does
    once its socket and port listen): wait for the record a little (bounded), since the
    lock file has no event to wait on.
    """
    deadline = time.monotonic() + DAEMON_START_GRACE_SEC
    while not owner.get("url"):
        if time.monotonic() >= deadline:
            pid = f"pid {owner['pid']}" if "pid" in owner else "another process"
            raise AprError(
                f"state dir {state_dir} is in use by {pid}, which serves no API to connect "
                "to (a TUI without --serve?); stop it, or use another state dir",
                {"state_dir": str(state_dir), "owner": owner})
        time.sleep(_RECORD_POLL_SEC)
        refreshed = read_owner(state_dir)
        if refreshed is None:  # it went away: start in-process after all
            raise AprError(f"the scheduler that held {state_dir} stopped while connecting; "
                           "try again", {"state_dir": str(state_dir)})
        owner = refreshed
    return SchedulerClient(*find_daemon(None, token, None, state_dir), timeout=timeout)
