"""What a job takes from the shell that submits it: environment, working directory, umask.

A job submitted from the command line runs as if started there, as LSF does and Slurm's
``--export=ALL``: a tool set up by ``module load``, a license server in ``LM_LICENSE_FILE``
or a ``PATH`` entry reach it. The HTTP API adds nothing of the kind: a spec's ``env`` is
exactly what the request says, and the executor puts it on top of a clean base
(``executors/local.py``: PATH, HOME, USER, LANG, ... of the daemon's account).

``--env-mode``
    ``all`` (default for a command given on the command line): every variable of the
    submitter's environment except those that must not travel (``NEVER_SENT``, ``APR_*``).
    ``none`` (default with ``--json FILE``: the file says what the job needs): nothing;
    the job gets the clean base. ``NAME,NAME...``: only those (one not set here is named
    in a warning).
``--env K=V`` adds or overrides on top. Argv is visible to every user (``ps``), so a secret
belongs in the environment, not in ``--env``: the environment travels in the request
body, is stored with the job, reaches the job through its process environment (never a
command line), and is shown to no one but its owner and admins.

Limits of a job's environment (JobSpec): ``MAX_ENV_NAMES`` variables, values of at most
``MAX_ENV_VALUE`` characters, names ``[A-Za-z_][A-Za-z0-9_]*`` of at most 128. What ``all``
picks up beyond them (bash's exported functions ``BASH_FUNC_f%%``, a huge value) is left
out with one warning naming each variable; a variable named on purpose (``--env``, a
``NAME`` list) that does not fit is an error, as is an environment with more variables
than a job may have.
"""

from __future__ import annotations

import argparse
import os

from apr_sched.errors import InvalidInput

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "MAX_ENV_NAMES",
    "MAX_ENV_VALUE",
    "NEVER_SENT",
    "SubmitterEnv",
    "current_umask",
    "current_workdir",
    "parse_env_mode",
    "submitter_env",
]

MAX_ENV_NAMES = 1024
MAX_ENV_VALUE = 32768
"""As JobSpec.env allows (tests/test_cli_env.py checks they agree)."""
MAX_NAME_LENGTH = 128


def _is_name(text: str) -> bool:
    """``[A-Za-z_][A-Za-z0-9_]{0,127}``, the names a job's env may hold (an ASCII identifier
    is exactly that; no regex to compile for every submit)."""
    return len(text) <= MAX_NAME_LENGTH and text.isascii() and text.isidentifier()

NEVER_SENT = frozenset({"_", "SHLVL", "PWD", "OLDPWD", "HOME", "USER", "LOGNAME",
                        "XDG_RUNTIME_DIR", "SSH_AUTH_SOCK", "SSH_AGENT_PID"})
"""What ``all`` leaves out. The submitting shell's own bookkeeping (``_``, ``SHLVL``; the
job starts in ``--workdir`` and its shell sets ``PWD``); who the job runs as (``HOME``,
``USER``, ``LOGNAME``: the executor sets them for the account that runs it); what belongs
to the login session, which may end long before the job (``XDG_RUNTIME_DIR``, the ssh
agent's socket: a credential). Every ``APR_*`` variable stays too: the daemon sets the
job's own (``APR_JOB_ID``, ``APR_ATTEMPT``, ``APR_HOST``, ``APR_SCHED_RUN``), and
``APR_SCHED_TOKEN``/``URL``/``HOME`` configure this client (the token is a secret). Any of
them can still be passed on purpose, by name (``--env-mode NAME,...``) or ``--env``."""
NEVER_SENT_PREFIX = "APR_"


class SubmitterEnv:
    """The variables to send, and what ``all`` left out (name -> why), for a warning."""

    __slots__ = ("env", "left_out", "not_set")

    def __init__(self) -> None:
        self.env: dict[str, str] = {}
        self.left_out: dict[str, str] = {}
        self.not_set: list[str] = []

    def warnings(self) -> list[str]:
        notes = []
        if self.left_out:
            notes.append("not passed to the job: " + "; ".join(
                f"{name} ({why})" for name, why in sorted(self.left_out.items())))
        if self.not_set:
            notes.append(f"--env-mode names {', '.join(self.not_set)}, not set here")
        return notes


def _unfit(name: str, value: str) -> str | None:
    """Why a variable cannot be part of a job's environment, or None."""
    if not _is_name(name):
        return "not a name a job can take"
    if len(value) > MAX_ENV_VALUE:
        return f"{len(value):,} characters; the limit is {MAX_ENV_VALUE:,}"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "not valid UTF-8"
    return None


def parse_env_mode(text: str) -> str | list[str]:
    """``all``, ``none`` or a list of names (argparse type of ``--env-mode``)."""
    word = text.strip()
    if word.lower() in ("all", "none"):
        return word.lower()
    names = [part.strip() for part in word.split(",") if part.strip()]
    bad = [name for name in names if not _is_name(name)]
    if not names or bad:
        raise argparse.ArgumentTypeError(
            f"expected all, none or NAME,NAME... (bad name: {', '.join(bad) or text!r})")
    return names


def submitter_env(mode: str | Sequence[str], extra: Sequence[tuple[str, str]] = (),
                  environ: Mapping[str, str] | None = None) -> SubmitterEnv:
    """The job's ``env`` for ``--env-mode mode`` and the ``--env`` pairs in ``extra``.
    InvalidInput when a variable asked for by name does not fit, or there are too many."""
    source = os.environ if environ is None else environ
    result = SubmitterEnv()
    if mode == "all":
        for name, value in source.items():
            if name in NEVER_SENT or name.startswith(NEVER_SENT_PREFIX):
                continue
            why = _unfit(name, value)
            if why is None:
                result.env[name] = value
            else:
                result.left_out[name] = why
    elif mode != "none":
        for name in mode:
            if name not in source:
                result.not_set.append(name)
            else:
                _require_fit(name, source[name], "--env-mode")
                result.env[name] = source[name]
    for name, value in extra:
        _require_fit(name, value, "--env")
        result.env[name] = value
    if len(result.env) > MAX_ENV_NAMES:
        raise InvalidInput(
            f"env: {len(result.env):,} variables to pass; a job takes at most "
            f"{MAX_ENV_NAMES:,}: name the ones it needs with --env-mode NAME,NAME... "
            "(or --env-mode none and --env K=V)",
            [{"field": "env", "message": f"at most {MAX_ENV_NAMES} variables"}])
    return result


def _require_fit(name: str, value: str, option: str) -> None:
    why = _unfit(name, value)
    if why is not None:
        raise InvalidInput(f"{option} {name}: {why}",
                           [{"field": f"env.{name}", "message": why}])


def current_umask() -> str:
    """This process's umask as JobSpec writes it (``"022"``), read without changing it."""
    try:
        with open("/proc/self/status", encoding="utf-8") as status:
            lines = status.read().splitlines()
        for line in lines:
            if line.startswith("Umask:"):
                return f"{int(line.split()[1], 8):03o}"
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o077)  # no /proc: set and put back (the CLI has one thread)
    os.umask(mask)
    return f"{mask:03o}"


def current_workdir() -> str:
    """The directory the submitter is in, as its shell names it (``$PWD``, which keeps
    symlinks such as automounted project paths) when that is the same directory."""
    cwd = os.getcwd()
    logical = os.environ.get("PWD", "")
    if logical.startswith("/") and logical != cwd:
        try:
            if os.path.samefile(logical, cwd):
                return logical
        except OSError:
            pass
    return cwd
