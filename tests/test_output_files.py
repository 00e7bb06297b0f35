"""A job's output copied into files of its own (LSF ``-o``/``-e``) and the job's umask, on a
local host, a native SSH host and a generic-prefix host (real sshd on 127.0.0.11): the files
hold the command's stdout and stderr while the scheduler's log keeps the combined stream,
the command's exit code or signal is exactly what is recorded, a path that cannot be
opened fails the attempt with the reason in its log, and nothing is added when unused."""

from __future__ import annotations

import os
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from apr_sched import HostSpec, JobStatus, Scheduler
from apr_sched.errors import InvalidInput
from apr_sched.executors.wrapper import JobOutput, wrapper_argv
from apr_sched.models import JobSpec
from tests.conftest import group_members, host, wait_until
from tests.test_prefix_hosts import prefix_spec
from tests.test_ssh_hosts import online, ssh_spec

KINDS = ["local", "ssh", "prefix"]

MakeHost = Callable[[], Awaitable[Scheduler]]


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def scheduler(kind, make_scheduler, request) -> MakeHost:
    """A scheduler whose one host is of ``kind``, online."""

    async def make() -> Scheduler:
        if kind == "local":
            return await make_scheduler(hosts=[host("h1")])
        (ssh_host,) = request.getfixturevalue("ssh_hosts")(1)
        spec: HostSpec = ssh_spec(ssh_host, "h1") if kind == "ssh" else prefix_spec(
            ssh_host, host_id="h1")
        s = await make_scheduler(hosts=[spec])
        await online(s, "h1")
        return s

    return make


async def log_lines(s: Scheduler, job_id: str) -> list[str]:
    return (await s.tail_log(job_id, 1000)).lines


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_stdout_and_stderr_go_to_their_files_and_the_log_keeps_both(scheduler, tmp_path):
    s = await scheduler()
    work = tmp_path / "work"
    (work / "logs").mkdir(parents=True)
    job = await s.submit({  # relative paths are taken in the workdir
        "command": "echo out-1; echo err-1 >&2; echo out-2; echo err-2 >&2; exit 3",
        "workdir": str(work), "output_path": "out.%J.log", "error_path": "logs/err.%J.log"})
    done = await s.wait(job.job_id, 30)
    assert (done.status, done.exit_code, done.signal) == (JobStatus.FAILED, 3, None)
    assert (work / f"out.{job.job_id}.log").read_text() == "out-1\nout-2\n"
    assert (work / "logs" / f"err.{job.job_id}.log").read_text() == "err-1\nerr-2\n"
    assert sorted(await log_lines(s, job.job_id)) == ["err-1", "err-2", "out-1", "out-2"]


async def test_without_error_path_both_streams_go_to_the_output_file(scheduler, tmp_path):
    s = await scheduler()
    job = await s.submit({"command": "echo out; echo err >&2", "workdir": str(tmp_path),
                          "output_path": str(tmp_path / "all.log")})
    assert (await s.wait(job.job_id, 30)).status is JobStatus.SUCCEEDED
    assert (tmp_path / "all.log").read_text() == "out\nerr\n"
    assert await log_lines(s, job.job_id) == ["out", "err"]
    rerun = await s.rerun(job.job_id)
    assert (await s.wait(rerun.job_id, 30)).status is JobStatus.SUCCEEDED
    assert (tmp_path / "all.log").read_text() == "out\nerr\n" * 2  # appended, like LSF -o


async def test_a_signal_that_kills_the_command_is_recorded_as_such(scheduler, tmp_path):
    s = await scheduler()
    job = await s.submit({"command": "echo before; sh -c 'echo dying >&2; kill -SEGV $$'",
                          "workdir": str(tmp_path), "output_path": "out.log",
                          "error_path": "err.log"})
    done = await s.wait(job.job_id, 30)
    assert (done.status, done.exit_code, done.signal) == (JobStatus.FAILED, 139, "SIGSEGV")
    assert (tmp_path / "out.log").read_text() == "before\n"


async def test_the_job_umask_applies_to_its_files_and_the_output_file(scheduler, tmp_path):
    s = await scheduler()
    job = await s.submit({"command": "umask; touch made-by-job", "workdir": str(tmp_path),
                          "umask": "077", "output_path": "out.log"})
    assert (await s.wait(job.job_id, 30)).status is JobStatus.SUCCEEDED
    assert mode(tmp_path / "made-by-job") == 0o600
    assert mode(tmp_path / "out.log") == 0o600
    assert (tmp_path / "out.log").read_text() == "0077\n"
    loose = await s.submit({"command": "touch loose", "workdir": str(tmp_path),
                            "umask": "0002"})
    assert (await s.wait(loose.job_id, 30)).status is JobStatus.SUCCEEDED
    assert mode(tmp_path / "loose") == 0o664  # umask alone, no output file


async def test_an_output_path_that_cannot_be_opened_fails_at_once(scheduler, tmp_path):
    s = await scheduler()
    job = await s.submit({"command": "touch ran", "workdir": str(tmp_path),
                          "output_path": "no-such-dir/out.log"})
    done = await s.wait(job.job_id, 30)
    assert (done.status, done.exit_code) == (JobStatus.FAILED, 126)
    assert not (tmp_path / "ran").exists()
    assert (f"apr_sched: cannot open output_path no-such-dir/out.log (in {tmp_path})"
            in await log_lines(s, job.job_id))


async def test_a_stopped_job_can_still_print_while_it_saves(scheduler, tmp_path):
    s = await scheduler()
    job = await s.submit({
        "command": "trap 'echo saving; sleep 0.2; echo saved; exit 5' TERM; echo started; "
                   "while :; do sleep 0.05; done",
        "workdir": str(tmp_path), "output_path": "out.log", "error_path": "err.log"})
    await wait_until(lambda: (tmp_path / "out.log").exists()
                     and "started" in (tmp_path / "out.log").read_text(), timeout=30)
    await s.stop(job.job_id)
    done = await s.wait(job.job_id, 30)
    assert done.status is JobStatus.STOPPED
    assert (tmp_path / "out.log").read_text() == "started\nsaving\nsaved\n"
    assert {"started", "saving", "saved"} <= set(await log_lines(s, job.job_id))


# --- local only: the model rule, and no cost when unused -------------------------------------

async def test_error_path_without_output_path_is_refused_naming_it(make_scheduler):
    s = await make_scheduler()
    with pytest.raises(InvalidInput) as refused:
        await s.submit({"command": "true", "error_path": "err.log"})
    assert [d["field"] for d in refused.value.details] == ["error_path"]
    assert "needs output_path" in refused.value.details[0]["message"]
    assert (await s.list_jobs()).total == 0
    assert JobSpec(command="true", output_path="o", error_path="e").error_path == "e"


def test_unused_options_add_no_argument():
    assert wrapper_argv("/r.rc", "/w", "true") == wrapper_argv(
        "/r.rc", "/w", "true", None, JobOutput())
    assert wrapper_argv("/r.rc", "/w", "true", "/cg", JobOutput(umask="022"))[-4:] == [
        "/cg", "022", "", ""]


async def test_no_process_is_added_without_an_output_file(make_scheduler, tmp_path):
    s = await make_scheduler(job_cgroups=False)
    plain = await s.submit({"command": "exec sleep 30", "workdir": str(tmp_path)})
    teed = await s.submit({"command": "exec sleep 30", "workdir": str(tmp_path),
                           "output_path": "out.log"})

    def names(job_id: str) -> list[str]:
        pgid = s._jobs[job_id].pgid
        return sorted(Path(f"/proc/{pid}/comm").read_text().strip()
                      for pid in group_members(pgid)) if pgid else []

    await wait_until(lambda: "sleep" in names(plain.job_id) and "sleep" in names(teed.job_id))
    assert names(plain.job_id) == ["sh", "sleep"]
    assert "tee" in names(teed.job_id)
    for job in (plain, teed):
        await s.stop(job.job_id)
        assert (await s.wait(job.job_id, 30)).status is JobStatus.STOPPED
    assert os.path.exists(tmp_path / "out.log")
