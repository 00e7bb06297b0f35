"""Helpers for the identity tests: real local users, and code run as one of them.

The test users (``apr-test-a``, ``apr-test-b``) are created with ``useradd -M`` when missing
(CI runs as root; .ci/run creates them too). Code runs as a user in a forked child that has
dropped to the user's uid, gid and groups: the interpreter under /root is not executable by
other users, so ``setpriv ... python`` would not start, but a fork already has it loaded
(which is why everything the child uses is imported here, before it drops privileges).
"""

from __future__ import annotations

import contextlib
import encodings.idna  # noqa: F401  (host names in a child that can no longer import)
import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import apr_sched.cli
import apr_sched.cli_client
from apr_sched.errors import AprError

USER_A = "apr-test-a"
USER_B = "apr-test-b"
CHILD_TIMEOUT_SEC = 60


def local_user(name: str) -> pwd.struct_passwd:
    """The local account ``name``, created (no home directory) if it does not exist."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    if os.geteuid() != 0:
        pytest.skip(f"test user {name} does not exist and only root can create it")
    # Another test process may create it at the same moment: look again either way.
    subprocess.run(["useradd", "-M", "-s", "/bin/sh", name], capture_output=True, check=False)
    return pwd.getpwnam(name)


@contextlib.contextmanager
def open_dir(prefix: str = "apr-identity-") -> Iterator[Path]:
    """A temporary directory other users can pass through (0711), unlike pytest's tmp_path
    under the 0700 /tmp/pytest-of-root."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@dataclass
class Outcome:
    """What a child running as another user returned, or the AprError it raised."""

    value: Any = None
    error: str | None = None
    """The AprError's class name, e.g. ``Forbidden``."""
    message: str = ""
    details: Any = None

    def refused(self, error: str) -> Outcome:
        assert self.error == error, self
        return self


def as_user(name: str, action: Callable[[], Any]) -> Outcome:
    """Run ``action`` (returning JSON-able data) in a forked child as user ``name``."""
    account = local_user(name)
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: drop to the user, act, report, and leave at once
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(account.pw_gid)
            os.setuid(account.pw_uid)
            for variable in ("APR_SCHED_URL", "APR_SCHED_TOKEN", "APR_SCHED_HOME"):
                os.environ.pop(variable, None)
            os.environ.update(USER=name, LOGNAME=name, HOME="/tmp")
            try:
                report: dict[str, Any] = {"value": action()}
            except AprError as exc:
                report = {"error": type(exc).__name__, "message": exc.message,
                          "details": exc.details}
            data = json.dumps(report, default=str).encode()
        except BaseException as exc:  # anything else is reported, not raised
            data = json.dumps({"error": "crash", "message": repr(exc)}).encode()
        try:
            with os.fdopen(write_end, "wb") as pipe:
                pipe.write(data)
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        raw = pipe.read()
    os.waitpid(pid, 0)
    report = json.loads(raw)
    assert report.get("error") != "crash", report["message"]
    return Outcome(report.get("value"), report.get("error"), report.get("message", ""),
                   report.get("details"))


def cli_as_user(name: str, argv: list[str]) -> tuple[int, str, str]:
    """``apr-sched ARGV`` (a client command) run in-process as user ``name``: exit code,
    stdout and stderr."""
    def run() -> list[Any]:
        out, err = io.StringIO(), io.StringIO()
        sys.stdout, sys.stderr = out, err
        try:
            code = apr_sched.cli_client.run_client_command(
                apr_sched.cli.build_parser().parse_args(argv))
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
        return [code, out.getvalue(), err.getvalue()]

    code, out, err = as_user(name, run).value
    return int(code), str(out), str(err)
