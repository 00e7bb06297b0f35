"""``apr-sched submit --wait`` and ``apr-sched wait``: real daemon, real CLI processes.

The exit code is the job's outcome (``waiting.EXIT_CODES``); output is streamed while the
job runs, each line once, across a daemon restart too; a signal to the waiting client
stops the job.
"""

from __future__ import annotations

import io
import os
import shlex
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from apr_sched.interrupts import Signals
from apr_sched.models import Attempt, Job, JobEvent, JobStatus, utcnow
from apr_sched.rawclient import RawClient
from apr_sched.waiting import (
    EXIT_CANNOT_START,
    EXIT_CODES_HELP,
    EXIT_LOST,
    EXIT_STOPPED,
    EXIT_TIMEOUT,
    EXIT_WAIT_FAILED,
    exit_code_for,
    wait_for_jobs,
    worst_exit_code,
)
from tests.cli_daemon import CliDaemon, Done, running_cli_daemon, submitted_id
from tests.conftest import read_line, wait_until_sync


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliDaemon]:
    with running_cli_daemon(tmp_path_factory.mktemp("wait")) as daemon:
        yield daemon


@pytest.fixture(autouse=True)
def no_waiter_left_behind(daemon: CliDaemon) -> Iterator[None]:
    """A failed test must not leave its waiting client to act in the next one."""
    yield
    daemon.reap()


def gate(tmp_path: Path, name: str = "gate") -> tuple[Path, str]:
    """A file the test creates, and the shell loop a job waits for it with."""
    path = tmp_path / name
    return path, f"while [ ! -e {shlex.quote(str(path))} ]; do sleep 0.02; done"


def finish(proc: subprocess.Popen[str], timeout: float = 30) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


# outcomes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(("script", "code", "output"), [
    ("echo fine", 0, "fine\n"),
    ("echo three; exit 3", 3, "three\n"),
    # the job's own process dies by SIGKILL (not the wrapper): the shell's 128+9 (and the
    # shell's own "Killed" note in the output)
    ("echo doomed; sh -c 'kill -9 $$'", 128 + 9, "doomed\nKilled\n"),
])
def test_submit_wait_exits_with_the_jobs_exit_code(daemon: CliDaemon, script: str, code: int,
                                                   output: str) -> None:
    done = daemon.cli("submit", "--wait", "--", "sh", "-c", script)
    assert (done.returncode, done.stdout) == (code, output), done.stderr
    job = daemon.job(submitted_id(done.stderr))
    assert job.status is (JobStatus.SUCCEEDED if code == 0 else JobStatus.FAILED)
    assert "Traceback" not in done.stderr


def test_timeout_and_quiet(daemon: CliDaemon) -> None:
    done = daemon.cli("submit", "--wait", "--quiet", "--timeout", "1s", "--",
                      "sh", "-c", "echo hidden; exec sleep 30")
    assert (done.returncode, done.stdout) == (EXIT_TIMEOUT, "")
    assert done.stderr.startswith("apr-sched: job ") and "submitted" not in done.stderr
    job_id = done.stderr.split()[2]
    assert daemon.job(job_id).status is JobStatus.TIMEOUT
    assert done.stderr == f"apr-sched: job {job_id} TIMEOUT (signal SIGTERM)\n"
    again = daemon.cli("wait", job_id)  # an ended job: its output and outcome at once
    assert (again.returncode, again.stdout) == (EXIT_TIMEOUT, "hidden\nTerminated\n")


def served_during(daemon: CliDaemon, command: list[str]) -> tuple[Done, list[str]]:
    """Run the CLI; the requests the daemon answered meanwhile. Complete: one of our own
    after it is logged last (the daemon logs each request as it answers it, in turn)."""
    before = len(daemon.requests_served())
    done = daemon.cli(*command)
    with daemon.client() as c:
        c.health()
    wait_until_sync(lambda: "GET /scheduler/health" in daemon.requests_served()[before:])
    served = daemon.requests_served()[before:]
    return done, served[:served.index("GET /scheduler/health")]


def test_submit_wait_asks_for_the_submit_and_the_events_only(daemon: CliDaemon) -> None:
    """The submit reply's ``Last-Event-Seq`` says where the job's events start, and a
    SUCCEEDED event is the whole outcome (exit code 0): the requests of a curl user's
    submit and long poll, no /health before, no look at the job after."""
    done, served = served_during(daemon, ["submit", "--wait", "--quiet", "--", "true"])
    assert done.returncode == 0, done.stderr
    assert served[0] == "POST /scheduler/jobs" and len(served) >= 2, served
    assert all(r.startswith("GET /scheduler/events?since=") for r in served[1:]), served


def test_a_failed_job_is_read_once_for_its_exit_code(daemon: CliDaemon) -> None:
    """Only the job says how a failure ended (exit code, signal, lost): one look, at the
    end."""
    done, served = served_during(daemon, ["submit", "--wait", "--quiet", "--", "exit 3"])
    assert done.returncode == 3, done.stderr
    reads = [r for r in served if r.startswith("GET /scheduler/jobs")]
    assert served[0] == "POST /scheduler/jobs" and len(reads) == 1, served
    assert not [r for r in served if "/health" in r], served


def test_stopped_by_someone_else(daemon: CliDaemon, tmp_path: Path) -> None:
    waiter = daemon.popen("submit", "--wait", "--", "sh", "-c", "echo up; exec sleep 30")
    assert waiter.stdout is not None and waiter.stderr is not None
    job_id = submitted_id(read_line(waiter.stderr))
    assert read_line(waiter.stdout) == "up\n"
    with daemon.client() as c:
        c.stop(job_id)
    code, out, err = finish(waiter)
    assert (code, out) == (EXIT_STOPPED, "Terminated\n"), err  # the shell's note
    assert daemon.job(job_id).status is JobStatus.STOPPED


def test_cannot_start(daemon: CliDaemon) -> None:
    """The job's log directory cannot be made (a dangling symlink stands in its place):
    the attempt never starts, and the wait says so with its own code."""
    with daemon.client() as c:
        next_id = str(int(c.submit({"command": "true"}).job_id) + 1)
    (daemon.state_dir / "logs" / next_id).symlink_to(daemon.root / "nowhere")
    done = daemon.cli("submit", "--wait", "--", "true")
    assert submitted_id(done.stderr) == next_id
    assert done.returncode == EXIT_CANNOT_START, done.stderr
    assert "could not start" in done.stderr


def test_wait_for_several_streams_each_line_once_and_gives_the_worst(
        daemon: CliDaemon, tmp_path: Path) -> None:
    opened, wait_gate = gate(tmp_path)
    with daemon.client() as c:
        ids = [c.submit({"command": f"echo a1; {wait_gate}; echo a2"}).job_id,
               c.submit({"command": f"echo b1; {wait_gate}; echo b2; exit 4"}).job_id]
    for job_id in ids:
        daemon.wait_status(job_id, JobStatus.RUNNING)
    waiter = daemon.popen("wait", *ids)
    assert waiter.stdout is not None
    first = {read_line(waiter.stdout), read_line(waiter.stdout)}
    assert first == {f"{ids[0]}: a1\n", f"{ids[1]}: b1\n"}  # printed while they still run
    opened.touch()
    code, out, err = finish(waiter)
    assert code == 4, err
    assert sorted(out.splitlines()) == [f"{ids[0]}: a2", f"{ids[1]}: b2"]
    unknown = daemon.cli("wait", ids[0], "999999")
    assert unknown.returncode == EXIT_WAIT_FAILED
    assert "no job '999999'" in unknown.stderr
    bad_id = daemon.cli("wait", "../etc")
    assert bad_id.returncode == 2 and "not a valid job id" in bad_id.stderr


def test_output_streams_while_running_exactly_once(daemon: CliDaemon, tmp_path: Path) -> None:
    opened, wait_gate = gate(tmp_path)
    lines = [f"line {i} {'x' * (i * 37 % 300)}" for i in range(400)]
    script = f"echo first; {wait_gate}; i=0; while [ $i -lt 400 ]; do " \
             "printf 'line %d %s\\n' $i \"$(printf %*s $((i * 37 % 300)) '' | tr ' ' x)\"; " \
             "i=$((i + 1)); done; printf 'no newline at the end'"
    waiter = daemon.popen("submit", "--wait", "--", "sh", "-c", script)
    assert waiter.stdout is not None
    assert read_line(waiter.stdout) == "first\n"  # before the job has ended
    opened.touch()
    code, out, err = finish(waiter)
    assert code == 0, err
    assert out.splitlines() == [*lines, "no newline at the end"]  # after "first", read above


# interrupts --------------------------------------------------------------------------------
@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143),
                                              (signal.SIGHUP, 129)])
def test_a_signal_to_the_waiting_client_stops_the_job(daemon: CliDaemon, signum: int,
                                                      code: int) -> None:
    waiter = daemon.popen("submit", "--wait", "--", "sh", "-c",
                          "trap 'echo got TERM; exit 9' TERM; echo started; "
                          "while :; do sleep 0.05; done")
    assert waiter.stdout is not None and waiter.stderr is not None
    job_id = submitted_id(read_line(waiter.stderr))
    assert read_line(waiter.stdout) == "started\n"
    waiter.send_signal(signum)
    returncode, out, err = finish(waiter)
    assert returncode == code, err
    assert "got TERM\n" in out  # the job's last words, printed before leaving
    assert daemon.job(job_id).status is JobStatus.STOPPED  # ended before the client left
    assert f"stopping job {job_id}" in err and "Traceback" not in err


def test_a_signal_before_the_wait_began_stops_the_job(daemon: CliDaemon) -> None:
    """``submit --wait`` installs its handlers before it submits: a Ctrl-C that comes
    between the submit and the wait is kept, and stops the job once the wait begins."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers are the main thread's")
    with daemon.client() as c:
        job_id = c.submit({"command": "sleep 30"}).job_id
        url, token = c.url, c.token
    with Signals() as signals, RawClient(url, token) as client:
        os.kill(os.getpid(), signal.SIGINT)  # recorded, not raised: no wait has begun
        result = wait_for_jobs(client, [job_id], signals=signals, notices=io.StringIO())
    assert (result.code, result.interrupted) == (130, signal.SIGINT)
    assert daemon.job(job_id).status is JobStatus.STOPPED


def test_no_stop_on_interrupt_leaves_the_job_running(daemon: CliDaemon) -> None:
    waiter = daemon.popen("submit", "--wait", "--no-stop-on-interrupt", "--",
                          "sh", "-c", "echo started; exec sleep 30")
    assert waiter.stdout is not None and waiter.stderr is not None
    job_id = submitted_id(read_line(waiter.stderr))
    assert read_line(waiter.stdout) == "started\n"
    waiter.send_signal(signal.SIGINT)
    returncode, _, err = finish(waiter)
    assert returncode == 130 and f"job {job_id} keeps running" in err
    assert daemon.job(job_id).status is JobStatus.RUNNING
    with daemon.client() as c:
        c.stop(job_id)
    daemon.wait_status(job_id, JobStatus.STOPPED)


def test_a_second_signal_leaves_at_once(daemon: CliDaemon) -> None:
    """The job ignores SIGTERM (its stop takes the 2 s grace): a second Ctrl-C does not wait."""
    script = "trap '' TERM; echo started; while :; do sleep 0.05; done"
    waiter = daemon.popen("submit", "--wait", f"exec sh -c {shlex.quote(script)}")
    assert waiter.stdout is not None and waiter.stderr is not None
    job_id = submitted_id(read_line(waiter.stderr))
    assert read_line(waiter.stdout) == "started\n"
    waiter.send_signal(signal.SIGINT)
    notice = read_line(waiter.stderr, timeout=20)
    assert "stopping job" in notice, notice
    waiter.send_signal(signal.SIGINT)
    returncode, _, _ = finish(waiter, timeout=10)
    assert returncode == 130
    assert daemon.job(job_id).status is JobStatus.RUNNING  # still in its stop grace
    daemon.wait_status(job_id, JobStatus.STOPPED)


# daemon restarts -----------------------------------------------------------------------------
def test_a_daemon_restart_is_ridden_out(tmp_path: Path) -> None:
    """SIGTERM the daemon while two clients wait, start it again on the same state dir.
    One job keeps running and writes while no daemon is there: its client gets every line
    exactly once and the job's exit code. The other job's wrapper is killed meanwhile (no
    rc file is left): the restarted daemon finds it lost, and its client says so."""
    first, wait_first = gate(tmp_path, "first")
    second, wait_second = gate(tmp_path, "second")
    script = (f"echo before; {wait_first}; i=0; while [ $i -lt 50 ]; do echo during $i; "
              f"i=$((i + 1)); done; {wait_second}; echo after; exit 5")
    with running_cli_daemon(tmp_path / "d") as daemon:
        waiter = daemon.popen("submit", "--wait", "--", "sh", "-c", script)
        doomed = daemon.popen("submit", "--wait", "--", "sh", "-c", "echo up; exec sleep 30")
        assert waiter.stdout is not None and waiter.stderr is not None
        assert doomed.stdout is not None and doomed.stderr is not None
        job_id = submitted_id(read_line(waiter.stderr))
        lost_id = submitted_id(read_line(doomed.stderr))
        assert read_line(waiter.stdout) == "before\n"
        assert read_line(doomed.stdout) == "up\n"
        pgid = daemon.wait_status(lost_id, JobStatus.RUNNING).pgid
        assert pgid
        daemon.stop(signal.SIGTERM)
        os.killpg(pgid, signal.SIGKILL)
        first.touch()  # the job writes while no daemon runs
        log = daemon.state_dir / "logs" / job_id / "1.log"
        wait_until_sync(lambda: b"during 49" in log.read_bytes(), timeout=10)
        assert "trying again" in read_line(waiter.stderr)
        daemon.start()
        second.touch()
        code, out, err = finish(waiter)
        assert code == 5, err
        assert out.splitlines() == [*(f"during {i}" for i in range(50)), "after"]  # + before
        assert "answers again" in err
        code, out, err = finish(doomed)
        assert (code, out) == (EXIT_LOST, ""), err
        assert daemon.job(lost_id).status is JobStatus.FAILED


# the outcome table -------------------------------------------------------------------------
def job(status: JobStatus, exit_code: int | None = None, signal_name: str | None = None,
        reason: str = "") -> Job:
    now = utcnow()
    return Job(job_id="1", command="true", submitted_at=now, status=status,
               exit_code=exit_code, signal=signal_name,
               attempts=[Attempt(attempt=1, status=status, reason=reason)],
               events=[JobEvent(seq=1, time=now, job_id="1", attempt=1, from_status=None,
                                to_status=status, reason=reason)])


def test_outcomes_map_to_distinct_codes() -> None:
    assert exit_code_for(job(JobStatus.SUCCEEDED, 0)) == 0
    assert exit_code_for(job(JobStatus.FAILED, 3)) == 3
    assert exit_code_for(job(JobStatus.FAILED, 137, "SIGKILL")) == 137
    assert exit_code_for(job(JobStatus.FAILED, None, "SIGSEGV")) == 128 + 11
    assert exit_code_for(job(JobStatus.TIMEOUT, None, "SIGTERM")) == EXIT_TIMEOUT
    assert exit_code_for(job(JobStatus.STOPPED, 143, "SIGTERM")) == EXIT_STOPPED
    assert exit_code_for(job(JobStatus.FAILED, reason="lost: host h unreachable")) == EXIT_LOST
    assert exit_code_for(job(JobStatus.FAILED, reason="could not start: no log")) == \
        EXIT_CANNOT_START
    assert exit_code_for(None) == EXIT_WAIT_FAILED
    codes = {0, 137, EXIT_TIMEOUT, EXIT_STOPPED, EXIT_LOST, EXIT_CANNOT_START, EXIT_WAIT_FAILED}
    assert len(codes) == 7 and all(str(c) in EXIT_CODES_HELP for c in codes - {0, 137})
    assert worst_exit_code([0, 3, 1]) == 3  # the first of equals
    assert worst_exit_code([3, 137, EXIT_TIMEOUT, 0]) == EXIT_TIMEOUT
    assert worst_exit_code([EXIT_STOPPED, EXIT_LOST, EXIT_TIMEOUT]) == EXIT_LOST
    assert worst_exit_code([0, 0]) == 0


def test_waiting_costs_the_daemon_nothing_between_events(daemon: CliDaemon,
                                                         tmp_path: Path) -> None:
    """A quiet wait on a pending job sends one long poll and sits in it; only events wake
    it (here those of another job), and it reads no log."""
    opened, wait_gate = gate(tmp_path)
    with daemon.client() as c:
        job_id = c.submit({"command": "true", "allow_pending": True,
                           "resource_request": {"host_labels": {"pool": "none"}}}).job_id
    served_before = len(daemon.requests_served())
    waiter = daemon.popen("wait", "--quiet", job_id)
    wait_until_sync(lambda: f"GET /scheduler/jobs?id={job_id}&limit=1"
                    in daemon.requests_served()[served_before:], timeout=10)
    with daemon.client() as c:
        other = c.submit({"command": wait_gate}).job_id
    daemon.wait_status(other, JobStatus.RUNNING)
    opened.touch()
    daemon.wait_status(other, JobStatus.SUCCEEDED)
    with daemon.client() as c:
        c.stop(job_id)
    code, _, err = finish(waiter)
    assert code == EXIT_STOPPED, err
    mine = [r for r in daemon.requests_served()[served_before:]
            if not r.startswith("POST") and f"/jobs/{other}" not in r]
    polls = [r for r in mine if r.startswith("GET /scheduler/events")]
    assert not [r for r in mine if f"/jobs/{job_id}/logs" in r]
    # one poll, one more per event since (the other job: submitted, started, ended;
    # this one: stopped), and the states read when an event named it
    assert 1 <= len(polls) <= 5, mine
    assert len(mine) <= len(polls) + 4, mine
