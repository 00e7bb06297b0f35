"""Import hygiene: a client command starts without the daemon's modules.

Flows run `apr-sched job ID` / `status ID` once per step; what the process imports is what
each step pays (issue 9: <= 150 ms). Checked in fresh interpreters, as a user runs them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from apr_sched import connect
from tests.daemon_process import clean_env, running_daemon

SERVER_SIDE = ("asyncssh", "textual", "cryptography", "h11", "asyncio",
               "apr_sched.scheduler", "apr_sched.executors", "apr_sched.store",
               "apr_sched.http", "apr_sched.blocking")
"""Never loaded by a client command."""
LOADED_ON_USE = ("pydantic", "rich", "apr_sched.models", "apr_sched.config")
"""Not loaded just to start: only by the command that parses a reply or prints a table."""

DUMP_MODULES = "import json, sys; print(json.dumps(sorted(sys.modules)), file=sys.stderr)"


def loaded(code: str) -> set[str]:
    """The modules a fresh interpreter holds after running ``code``."""
    done = subprocess.run([sys.executable, "-c", f"{code}\n{DUMP_MODULES}"],
                          capture_output=True, text=True, timeout=60, env=clean_env())
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stderr.strip().splitlines()[-1]))


def offending(modules: set[str], prefixes: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in prefixes))


@pytest.mark.parametrize("module", ["apr_sched", "apr_sched.cli", "apr_sched.cli_client",
                                    "apr_sched.client", "apr_sched.connection",
                                    "apr_sched.lsf.commands"])
def test_starting_a_client_loads_nothing_heavy(module: str) -> None:
    modules = loaded(f"import {module}")
    assert offending(modules, SERVER_SIDE + LOADED_ON_USE) == []


CLIENT_PATH_NEVER = (*SERVER_SIDE, *LOADED_ON_USE, "logging", "http.client", "email",
                     "dataclasses", "inspect", "typing", "pathlib", "urllib", "ipaddress",
                     "textwrap", "contextlib", "shlex", "socket")
"""What the flow commands never load: they read raw replies (``views``), print no rich
table when piped, log nothing, and speak HTTP over a socket (``wire``); nor the standard
modules a few lines do without, each milliseconds of every start: ``typing``
(annotations are strings; ``TYPE_CHECKING`` is our own), ``pathlib`` (which brings
``urllib.parse`` and ``ipaddress``: paths are ``os.path`` strings), ``urllib.parse``
itself (``rawclient.query_string``; only an ``http://`` URL is parsed with it),
``textwrap``, ``contextlib``, ``shlex`` (a one-word command needs no quoting), ``socket``
(its C module ``_socket`` reaches a Unix socket; ``socket`` is for TCP only)."""
PRINTS_NO_TIME = ("datetime",)
"""Loaded only by the commands that print a time (``job``, the ``jobs`` table)."""
SETS_NO_HANDLER = ("signal",)
"""Loaded only by the commands that wait (they stop the job on Ctrl-C) or follow."""
REPO = Path(__file__).resolve().parents[1]


def interpreter_floor() -> set[str]:
    """What ``python -S -c pass`` imports: the interpreter's own, not ours."""
    done = subprocess.run([sys.executable, "-S", "-X", "importtime", "-c", "pass"],
                          capture_output=True, text=True, timeout=60, env=clean_env())
    return {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
            if line.startswith("import time:") and "|" in line}


def imported_by(argv: list[str], stdin: str | None = None) -> tuple[set[str], str]:
    """The modules the real ``apr-sched`` entry point imports to run ``argv``, from
    ``-X importtime`` (a real process, as a flow runs it), and its stdout. Run with ``-S``
    and the sources on PYTHONPATH: site's own imports (and an editable install's finder,
    which loads pathlib at every start) would hide ours."""
    script = Path(sys.executable).parent / "apr-sched"
    done = subprocess.run([sys.executable, "-S", "-X", "importtime", str(script), *argv],
                          capture_output=True, text=True, timeout=60,
                          env=clean_env(PYTHONPATH=str(REPO)), input=stdin)
    assert done.returncode == 0, done.stderr[-2000:]
    names = {line.rsplit("|", 1)[1].strip() for line in done.stderr.splitlines()
             if line.startswith("import time:") and "|" in line}
    assert "apr_sched.cli" in names  # the listing is real
    return names, done.stdout


def test_the_flow_commands_import_no_models_rich_logging_or_server_code(
        tmp_path: Path) -> None:
    floor = interpreter_floor()
    with running_daemon(tmp_path) as daemon:
        where = ["--state-dir", str(daemon.state_dir)]
        names, out = imported_by(["submit", *where, "--", "echo hi"])
        job_id = out.strip()
        quiet = (*PRINTS_NO_TIME, *SETS_NO_HANDLER)
        commands: list[tuple[list[str], tuple[str, ...]]] = [
            (["submit", "--wait", *where, "--", "echo waited"], PRINTS_NO_TIME),
            (["submit", "--wait", "--quiet", *where, "--", "true"], PRINTS_NO_TIME),
            (["wait", job_id, *where], PRINTS_NO_TIME),
            (["status", job_id, *where], quiet),
            (["job", job_id, *where], SETS_NO_HANDLER),
            (["jobs", "--json", *where], quiet),
            (["jobs", *where], SETS_NO_HANDLER),
            (["logs", job_id, *where], quiet),
            (["logs", "--follow", job_id, *where], PRINTS_NO_TIME),
            (["stop", job_id, *where, "--json"], quiet),
        ]
        loaded_by = {"submit": (names, quiet)}
        for argv, also_never in commands:
            if argv[0] == "stop":  # a stop of a finished job exits 1: stop a running one
                argv[1] = imported_by(["submit", *where, "--", "sleep 30"])[1].strip()
            loaded_by[" ".join(argv[:2])] = (imported_by(argv)[0], also_never)
    assert "typing" not in floor and "pathlib" not in floor  # else the check sees nothing
    bad = {command: offending(modules - floor, (*CLIENT_PATH_NEVER, *also_never))
           for command, (modules, also_never) in loaded_by.items()}
    assert all(not names for names in bad.values()), bad


def test_a_status_poll_builds_no_models(tmp_path: Path) -> None:
    """What a fast `apr-sched status ID` stands on: the client's raw path needs no pydantic."""
    with running_daemon(tmp_path) as daemon:
        run = ("from apr_sched.client import SchedulerClient, find_daemon\n"
               f"with SchedulerClient(*find_daemon(None, None, None, {str(daemon.state_dir)!r}))"
               " as client:\n"
               "    job_id = client.submit_batch_ids([{'command': 'true'}])[0]\n"
               "    status = client.job_statuses([job_id])[job_id]\n"
               "    assert status in ('PENDING', 'RUNNING', 'SUCCEEDED'), status")
        modules = loaded(run)
    assert offending(modules, SERVER_SIDE + LOADED_ON_USE) == []


def test_public_names_load_on_first_use() -> None:
    code = ("import sys, apr_sched\n"
            "assert 'apr_sched.scheduler' not in sys.modules\n"
            "from apr_sched import Scheduler, SchedulerClient, connect, JobStatus\n"
            "import apr_sched.scheduler, apr_sched.client, apr_sched.connection\n"
            "assert Scheduler is apr_sched.scheduler.Scheduler\n"
            "assert SchedulerClient is apr_sched.client.SchedulerClient\n"
            "assert connect is apr_sched.connection.connect\n"
            "assert set(apr_sched.__all__) <= set(dir(apr_sched))")
    assert "apr_sched.scheduler" in loaded(code)


def test_public_api_matches_its_table() -> None:
    import apr_sched

    assert set(apr_sched.__all__) == {*apr_sched._EXPORTS, "__version__"}
    with pytest.raises(AttributeError, match="no attribute 'Schedular'"):
        apr_sched.Schedular  # noqa: B018


def test_the_cli_spells_the_open_network_flag_as_the_server_does() -> None:
    from apr_sched.cli import OPEN_NETWORK_FLAG
    from apr_sched.http.service import OPEN_NETWORK_FLAG as SERVER_FLAG

    assert OPEN_NETWORK_FLAG == SERVER_FLAG


def test_apr_sched_status_builds_no_models(tmp_path: Path) -> None:
    """`apr-sched status ID` is what workflow engines poll: no pydantic, no rich."""
    with running_daemon(tmp_path) as daemon:
        where = ["--state-dir", str(daemon.state_dir)]
        with connect(state_dir=daemon.state_dir) as client:
            job_id = client.submit({"command": "true"}).job_id
        run = ("import contextlib, io\n"
               "from apr_sched.cli import main\n"
               "out = io.StringIO()\n"
               "with contextlib.redirect_stdout(out):\n"
               f"    assert main(['status', {job_id!r}, '--detail', *{where!r}]) == 0\n"
               "assert out.getvalue().strip() in ('PENDING', 'RUNNING', 'SUCCEEDED'), out")
        modules = loaded(run)
    assert offending(modules, SERVER_SIDE + LOADED_ON_USE) == []
