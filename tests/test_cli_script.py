"""A CLI scripts can drive: one-word status, plain tables for pipes, chosen columns, bulk
actions by filter, help for every option, no abbreviations, durations, and a submit that
refuses what no host could ever run (real daemon, real CLI processes)."""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import apr_sched.cli_bulk
from apr_sched.cli import build_parser
from apr_sched.cli_client import run_client_command
from apr_sched.durations import parse_duration
from apr_sched.errors import InvalidInput
from apr_sched.models import JobSpec, JobStatus, ResourceRequest
from apr_sched.placement import HostCapacity, HostPool, check_runnable
from tests.cli_daemon import APR_SCHED, CliDaemon, Done, clean_env, running_cli_daemon
from tests.http_helpers import request

PENDING = ["--label", "pool=nowhere", "--allow-pending"]
"""Options that keep a job pending (no host has the label) without it being refused."""


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliDaemon]:
    with running_cli_daemon(tmp_path_factory.mktemp("script")) as daemon:
        yield daemon


Run = Callable[..., Done]


@pytest.fixture
def apr(daemon: CliDaemon, capsys: pytest.CaptureFixture[str]) -> Run:
    """``apr-sched COMMAND ...`` in-process (a CLI process costs a second of start-up here):
    the same parser and handlers, stdout captured (not a terminal, as in a pipe)."""
    def run(command: str, *args: str) -> Done:
        capsys.readouterr()
        try:
            code = run_client_command(build_parser().parse_args(
                [command, "--state-dir", str(daemon.state_dir), *args]))
        except SystemExit as exc:  # argparse refusing the arguments
            code = int(exc.code or 0)
        out, err = capsys.readouterr()
        return Done(code, out, err)

    return run


def submit(apr: Run, *args: str) -> str:
    done = apr("submit", "--env-mode", "none", *args)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


# status ------------------------------------------------------------------------------------
def test_status_prints_one_word_per_job(daemon: CliDaemon, apr: Run) -> None:
    ok = submit(apr, "--", "true")
    bad = submit(apr, "--", "sh", "-c", "exit 1")
    waiting = submit(apr, *PENDING, "--", "true")
    daemon.wait_status(ok, JobStatus.SUCCEEDED)
    daemon.wait_status(bad, JobStatus.FAILED)
    words = daemon.cli("status", ok, bad, waiting, "424242", ok)
    assert (words.returncode, words.stdout) == (0, "success\nfailed\nrunning\nfailed\nsuccess\n")
    assert words.stderr == "apr-sched: no job '424242'\n"
    detail = apr("status", "--detail", waiting, ok, "bad/id")
    assert (detail.returncode, detail.stdout) == (0, "PENDING\nSUCCEEDED\nUNKNOWN\n")
    as_json = json.loads(apr("status", "--json", ok, "424242").stdout)
    assert as_json == {ok: "SUCCEEDED", "424242": None}


# tables for pipes --------------------------------------------------------------------------
def test_a_piped_table_is_one_line_per_job_never_cut(daemon: CliDaemon, apr: Run) -> None:
    long_name = "a_place_and_route_run_with_a_rather_long_name_{i:03d}"
    jobs = [{"command": "true", "project": "PIPE", "name": long_name.format(i=i),
             "resource_request": {"host_labels": {"pool": "nowhere"}}} for i in range(300)]
    with daemon.client() as c:
        c.submit_batch([{**job, "allow_pending": True} for job in jobs])
    table = daemon.cli("jobs", "--project", "PIPE", env=clean_env(COLUMNS="80"))
    lines = table.stdout.splitlines()
    assert len(lines) == 301 and table.stderr == ""
    assert lines[0].split() == ["ID", "NAME", "PROJECT", "OWNER", "PRIO", "STATUS", "HOST",
                                "ATT", "WAIT/RAN", "REASON"]
    assert long_name.format(i=299) in lines[-1]
    assert lines[-1].endswith("no host has label pool=nowhere")
    assert all(line == line.rstrip() for line in lines)
    picked = apr("jobs", "--project", "PIPE", "-o", "id,status,name", "--noheader",
                 "--limit", "2")
    rows = [line.split() for line in picked.stdout.splitlines()]
    assert [row[1:] for row in rows] == [["PENDING", long_name.format(i=i)] for i in (0, 1)]
    assert picked.stderr.startswith("2 of 300 matching jobs shown")  # not in the rows
    unknown = apr("jobs", "-o", "id,colour")
    assert unknown.returncode == 2 and "unknown column 'colour'" in unknown.stderr
    assert "id,name,project,design" in unknown.stderr  # the choices are named
    stopped = apr("stop", "--project", "PIPE")
    assert stopped.stdout == "stopped 300 jobs\n", stopped.stderr


# bulk actions ------------------------------------------------------------------------------
def test_bulk_stop_by_name_touches_only_the_matching_jobs(daemon: CliDaemon, apr: Run) -> None:
    wanted = [submit(apr, "--name", f"bulk-a-{i}", *PENDING, "--", "true") for i in range(3)]
    other = submit(apr, "--name", "bulk-b", *PENDING, "--", "true")
    held = apr("pause", "--name", "bulk-a-*")
    assert held.stdout == f"paused or held 3 jobs: {', '.join(wanted)}\n", held.stderr
    resumed = apr("resume", "--name", "bulk-?-*", "--status", "HELD")
    assert resumed.stdout == f"resumed 3 jobs: {', '.join(wanted)}\n"
    stopped = apr("stop", "--name", "bulk-a-*")
    assert (stopped.returncode, stopped.stdout) == (0, f"stopped 3 jobs: {', '.join(wanted)}\n")
    assert all(daemon.job(job_id).status is JobStatus.STOPPED for job_id in wanted)
    assert daemon.job(other).status is JobStatus.PENDING
    again = apr("stop", "--name", "bulk-a-*")
    assert again.stdout == "stopped 0 jobs\n"

    nothing = apr("stop")
    assert nothing.returncode == 2 and "which jobs?" in nothing.stderr and "--all" in nothing.stderr
    both = apr("stop", other, "--name", "x")
    assert both.returncode == 2 and "not both" in both.stderr
    wrong = apr("pause", "--status", "SUCCEEDED", "--name", "x")
    assert wrong.returncode == 2 and "pause applies to jobs that are" in wrong.stderr
    assert daemon.job(other).status is JobStatus.PENDING  # refusals changed nothing
    assert apr("stop", other).returncode == 0


def test_bulk_pages_through_the_listing(daemon: CliDaemon, apr: Run,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Pages of 2 jobs (the daemon's are 5,000): every match is acted on once."""
    with daemon.client() as c:
        ids = c.submit_batch_ids([{"command": "true", "name": "paged", "project": "PAGED",
                               "allow_pending": True,
                               "resource_request": {"host_labels": {"pool": "nowhere"}}}] * 5)
    monkeypatch.setattr(apr_sched.cli_bulk, "PAGE", 2)
    held = apr("pause", "--project", "PAGED")
    assert (held.returncode, held.stdout) == (0, f"paused or held 5 jobs: {', '.join(ids)}\n")
    stopped = apr("stop", "--all", "--project", "PAGED")
    assert stopped.stdout.startswith("stopped 5 jobs")


# parsing -----------------------------------------------------------------------------------
def all_parsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    yield parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from all_parsers(sub)


def test_every_option_has_help_and_none_is_abbreviated() -> None:
    parsers = list(all_parsers(build_parser()))
    assert len(parsers) > 20
    for parser in parsers:
        assert parser.allow_abbrev is False, parser.prog
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._VersionAction,
                                   argparse._SubParsersAction)):
                continue
            assert action.help and action.help != argparse.SUPPRESS, (parser.prog, action.dest)


def test_no_arguments_prints_help_and_abbreviations_are_refused(daemon: CliDaemon,
                                                               apr: Run) -> None:
    script = Path(sys.executable).parent / "apr-sched"
    bare = subprocess.run([str(script)], capture_output=True, text=True, timeout=30,
                          env=clean_env())
    assert bare.returncode == 2 and bare.stderr.startswith("usage: apr-sched")
    assert "serve" in bare.stderr and not (daemon.root / "nothing").exists()
    options_first = subprocess.run([str(script), "--state-dir", "/nonexistent"],
                                   capture_output=True, text=True, timeout=30, env=clean_env())
    assert options_first.returncode == 2 and "give a command" in options_first.stderr
    abbreviated = apr("submit", "--mem", "4", "--", "true")
    assert abbreviated.returncode == 2 and "--mem" in abbreviated.stderr


def test_ctrl_c_while_starting_prints_no_traceback(tmp_path: Path) -> None:
    """Interrupted while it waits for a daemon that accepted but never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.settimeout(30)
        url = f"http://127.0.0.1:{server.getsockname()[1]}"
        # Ctrl-C at a terminal reaches a foreground command with SIGINT at its default,
        # whatever the test runner was started with (a background `&` ignores it)
        proc = subprocess.Popen([*APR_SCHED, "status", "1", "--url", url, "--token", "t"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=clean_env(),
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        conn, _ = server.accept()
        with conn:
            proc.send_signal(signal.SIGINT)
            out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (130, "")
    assert "Traceback" not in err


INTERRUPT_WHILE_LOADING = """
import sys
import apr_sched


class CtrlC:
    \"\"\"Ctrl-C, exactly while the CLI loads its client commands.\"\"\"

    def find_spec(self, name, path, target=None):
        if name == "apr_sched.cli_client":
            raise KeyboardInterrupt


sys.meta_path.insert(0, CtrlC())
from apr_sched.cli import main

sys.exit(main(["jobs"]))
"""


def test_ctrl_c_while_loading_prints_no_traceback() -> None:
    """The part of start-up that is the CLI's own: the package itself (apr_sched/__init__)
    loads before any CLI code runs."""
    done = subprocess.run([sys.executable, "-c", INTERRUPT_WHILE_LOADING],
                          capture_output=True, text=True, timeout=30, env=clean_env())
    assert (done.returncode, done.stdout, done.stderr) == (130, "", "")


def test_durations() -> None:
    assert [parse_duration(text) for text in ("90s", "4h", "1d", "1h30m", "2.5", "1.5h",
                                              "1w2d", "45m")] == \
        [90, 4 * 3600, 86400, 5400, 2.5, 5400, 9 * 86400, 2700]
    for bad in ("", "h", "5x", "30m1h", "1h1h", "-4h", "1 h"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_timeout_takes_a_duration(daemon: CliDaemon, apr: Run) -> None:
    job_id = submit(apr, "--timeout", "1h30m", *PENDING, "--", "true")
    assert daemon.job(job_id).timeout_sec == 5400
    assert apr("stop", job_id).returncode == 0
    bad = apr("submit", "--timeout", "5x", "--", "true")
    assert bad.returncode == 2 and "'5x' is not a duration" in bad.stderr


# what no host could ever run ---------------------------------------------------------------
def test_a_job_no_host_could_run_is_refused_unless_allowed(daemon: CliDaemon,
                                                          apr: Run) -> None:
    with daemon.client() as c:
        before = c.jobs(limit=0).total
    refused = daemon.cli("submit", "--cpu", "100", "--", "true")
    assert refused.returncode == 2
    assert "resource_request.cpu: needs 100 cpu; largest host has 8" in refused.stderr
    assert "--allow-pending" in refused.stderr
    allowed = submit(apr, "--cpu", "100", "--allow-pending", "--", "true")
    job = daemon.job(allowed)
    assert job.status is JobStatus.PENDING and job.allow_pending
    assert apr("stop", allowed).returncode == 0

    with daemon.client() as c:
        url, token = c.url, c.token
        ok = {"command": "true", "resource_request": {"host_labels": {"pool": "nowhere"}},
              "allow_pending": True}
        batch = [{"command": "true"}, {"command": "true", "resource_request": {"cpu": 100}},
                 ok, {"command": "true", "resource_request": {"host_labels": {"tool": "x"}}}]
        reply = request(url, "POST", "/scheduler/jobs/batch", {"jobs": batch}, token=token)
        assert reply.status == 400
        fields = [d["field"] for d in reply.data["error"]["details"]]
        assert fields == ["jobs[1].resource_request.cpu",
                          "jobs[3].resource_request.host_labels.tool"]
        assert "no job queued" in reply.data["error"]["message"]
        assert c.jobs(limit=0).total == before + 1  # only the single allowed one


def pool(*hosts: HostCapacity) -> HostPool:
    result = HostPool()
    for host in hosts:
        result.upsert(host)
    return result


def capacity(host_id: str, cpu: int = 8, memory: float = 16, accepting: bool = True,
             **labels: str) -> HostCapacity:
    return HostCapacity(host_id, 4, cpu, memory, dict(labels), accepting=accepting)


def spec(allow_pending: bool = False, **request: object) -> JobSpec:
    return JobSpec(command="true", owner="u", allow_pending=allow_pending,
                   resource_request=ResourceRequest.model_validate(request, strict=False))


def test_check_runnable_names_the_field_and_the_reason() -> None:
    hosts = pool(capacity("a", cpu=8, memory=64, tool="icc2"), capacity("b", cpu=32))
    check_runnable(hosts, [spec(cpu=32), spec(memory_gb=64, host_labels={"tool": "icc2"})],
                   batch=True)
    cases = [
        (spec(cpu=100), "resource_request.cpu", "needs 100 cpu; largest host has 32"),
        (spec(memory_gb=65), "resource_request.memory_gb",
         "needs 65 GB memory; largest host has 64 GB"),
        (spec(slots=5), "resource_request.slots", "needs 5 slots; largest host has 4"),
        (spec(host_labels={"tool": "innovus"}), "resource_request.host_labels.tool",
         "no host has label tool=innovus"),
        (spec(cpu=32, memory_gb=64), "resource_request",
         "needs 1 slot, 32 cpu and 64 GB on one host; no host has all of that"),
    ]
    for job, field, reason in cases:
        with pytest.raises(InvalidInput) as info:
            check_runnable(hosts, [job], batch=False)
        assert info.value.details == [{"field": field, "message": reason}]
        check_runnable(hosts, [job.model_copy(update={"allow_pending": True})], batch=False)
    with pytest.raises(InvalidInput) as info:
        check_runnable(hosts, [spec(), spec(cpu=100), spec(), spec(cpu=100)], batch=True)
    assert [d["field"] for d in info.value.details] == ["jobs[1].resource_request.cpu",
                                                        "jobs[3].resource_request.cpu"]
    with pytest.raises(InvalidInput, match="no hosts registered"):
        check_runnable(HostPool(), [spec()], batch=False)
    check_runnable(HostPool(), [spec(allow_pending=True)], batch=False)
    # a host that exists but takes no jobs now (OFFLINE, DRAINING) may come back: it counts
    check_runnable(pool(capacity("off", cpu=64, accepting=False)), [spec(cpu=64)], batch=False)
