"""Which state dir: ``--state-dir``, else the environment, else the XDG default.

Apart from ``statedir`` (the lock and owner record, which the daemon needs) so that a client
command finds its daemon with ``os.path`` alone: no ``pathlib``, which with ``urllib.parse``
and ``ipaddress`` behind it costs every start milliseconds.
"""

from __future__ import annotations

import os

from apr_sched.errors import InvalidInput

__all__ = ["LEGACY_BASE_ENV", "STATE_DIR_ENV", "state_dir_name"]

STATE_DIR_ENV = "APR_SCHED_HOME"
LEGACY_BASE_ENV = "EDX_TMP_BASE"
"""Set on the original deployment's head nodes; its state lived under ``$EDX_TMP_BASE``."""


def state_dir_name(explicit: str | os.PathLike[str] | None = None) -> str:
    """The state dir to use, absolute: the first of these that is set and not empty.

    ``explicit`` (``--state-dir``), ``$APR_SCHED_HOME``, ``$EDX_TMP_BASE/apr_sched`` (so the
    original deployment keeps working unchanged), ``$XDG_STATE_HOME/apr_sched``, and
    ``~/.local/state/apr_sched``. ``~`` is expanded; symlinks are left alone.
    """
    if explicit is not None:
        chosen = os.fspath(explicit)
        if not chosen:
            raise InvalidInput("state dir must not be empty", [
                {"field": "state_dir", "message": "must not be empty"}
            ])
    elif home := os.environ.get(STATE_DIR_ENV):
        chosen = home
    elif base := os.environ.get(LEGACY_BASE_ENV):
        chosen = os.path.join(base, "apr_sched")
    elif (xdg := os.environ.get("XDG_STATE_HOME")) and os.path.isabs(xdg):
        chosen = os.path.join(xdg, "apr_sched")  # the XDG spec says to ignore a relative value
    else:
        chosen = "~/.local/state/apr_sched"
    return os.path.abspath(os.path.expanduser(chosen))
