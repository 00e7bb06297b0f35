"""The LSF shims: bsub/bjobs/bkill/... as EDA tools and Makefiles call them, against a real
daemon, through the scripts ``apr-sched lsf-shims`` writes (real processes, real PATH)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pytest

from apr_sched.lsf.bsub import LsfUsageError, parse_bsub
from apr_sched.lsf.commands import COMMANDS
from apr_sched.lsf.conditions import parse_condition
from apr_sched.models import JobSpec, JobStatus
from tests.test_client_cli import Daemon, clean_env, daemon  # noqa: F401  (fixture)

SUBMITTED = re.compile(r"^Job <(\d+)> is submitted to queue <(\w+)>\.$", re.MULTILINE)


# bsub's options, no daemon ---------------------------------------------------------------
def parse(*argv: str, script: str | None = None, env: dict[str, str] | None = None
          ) -> dict[str, object]:
    submission = parse_bsub(list(argv), script=script, cwd="/work/blk",
                            environ=env or {"HOME": "/root"})
    JobSpec.model_validate(submission.spec)  # what bsub sends is a valid job
    return submission.spec


def test_common_bsub_options_map_onto_the_job() -> None:
    spec = parse("-J", "route", "-n", "8", "-R", "rusage[mem=8000] span[hosts=1]",
                 "-R", "select[tool==innovus && site==sh]", "-M", "10G", "-W", "2:30",
                 "-P", "blk7", "-q", "long", "-cwd", "run", "-o", "route.%J.log",
                 "innovus", "-init", "route tcl")
    assert spec["command"] == "innovus -init 'route tcl'"
    assert spec["name"] == "route" and spec["project"] == "blk7"
    assert spec["workdir"] == "/work/blk/run"
    assert spec["timeout_sec"] == 9000.0
    assert spec["output_path"] == "route.%J.log"
    assert spec["resource_request"] == {"cpu": 8, "memory_gb": 10.0,
                                        "host_labels": {"tool": "innovus", "site": "sh"}}


def test_a_script_on_stdin_with_bsub_directives() -> None:
    script = "#!/bin/sh\n#BSUB -J synth\n#BSUB -n 2\n# a comment\necho hi\n#BSUB -n 9\n"
    spec = parse("-n", "4", script=script)
    assert spec["command"] == script
    assert spec["name"] == "synth"
    assert spec["resource_request"] == {"cpu": 4}  # the command line wins; #BSUB after
    # the first command line is not a directive


@pytest.mark.parametrize(("argv", "named"), [
    (["-x", "true"], "-x"),
    (["-Z", "true"], "-Z"),
    (["-w", "done(1) || done(2)", "true"], "|| is not supported"),
    (["-w", "started(1)", "true"], "'started(1)' is not supported"),
    (["-w", "exit(1, >2)", "true"], "'exit(1, >2)' is not supported"),
    (["-w", "!done(1)", "true"], "'!done(1)' is not supported"),
    (["-b", "tomorrow", "true"], "-b tomorrow"),
    (["-b", "2:30:18:00", "true"], "day is out of range"),
    (["-I", "true"], "-I"),
    (["-R", "rusage[innovus=1]", "true"], "innovus"),
    (["-R", "order[ut]", "true"], "order"),
    (["-R", "select[mem>8000]", "true"], "mem>8000"),
    (["-J", "sweep[1-10]", "true"], "arrays"),
    (["-W", "abc", "true"], "-W"),
    (["-n"], "-n"),
    ([], "no command"),
])
def test_what_bsub_cannot_honour_is_refused_by_name(argv: list[str], named: str) -> None:
    with pytest.raises(LsfUsageError, match=re.escape(named)):
        parse(*argv)


def test_dependencies_hold_and_begin_map_onto_the_job() -> None:
    spec = parse("-w", "done(12) && ended(13)&&exit( 14 ) && 15", "-H", "true")
    assert spec["depends_on"] == {"after_ok": ["12", "15"], "after_any": ["13"],
                                  "after_failed": ["14"]}
    assert spec["hold"] is True
    now = datetime(2026, 3, 10, 17, 0).astimezone()

    def begin(text: str) -> datetime:
        submission = parse_bsub(["-b", text, "true"], script=None, cwd="/", environ={},
                                now=now)
        return datetime.fromisoformat(submission.spec["begin_at"])

    assert begin("18:30") == now.replace(hour=18, minute=30)
    assert begin("16:30") == now.replace(day=11, hour=16, minute=30)  # passed: tomorrow
    assert begin("12:18:30") == now.replace(day=12, hour=18, minute=30)
    assert begin("4:1:9:05") == now.replace(month=4, day=1, hour=9, minute=5)
    assert begin("2027:1:2:3:04") == now.replace(year=2027, month=1, day=2, hour=3, minute=4)


def test_the_environment_travels_as_lsf_copies_it() -> None:
    env = {"PATH": "/opt/eda/bin:/usr/bin", "LM_LICENSE_FILE": "5280@lic", "SHLVL": "2",
           "BASH_FUNC_module%%": "() { :; }", "_": "/usr/bin/bsub"}
    assert parse("true", env=env)["env"] == {"PATH": "/opt/eda/bin:/usr/bin",
                                              "LM_LICENSE_FILE": "5280@lic"}
    assert parse("-env", "none", "true", env=env)["env"] == {}
    assert parse("-env", "all, ~PATH", "true", env=env)["env"] == {
        "LM_LICENSE_FILE": "5280@lic"}
    assert parse("-env", "PATH, X=1", "true", env=env)["env"] == {
        "PATH": "/opt/eda/bin:/usr/bin", "X": "1"}


def test_conditions_say_holds_never_or_not_yet() -> None:
    condition = parse_condition("done(1) && (ended(2) || exit(3))")
    assert condition.job_ids() == {"1", "2", "3"}
    ok, run, bad = JobStatus.SUCCEEDED, JobStatus.RUNNING, JobStatus.FAILED
    assert condition.evaluate({"1": ok, "2": run, "3": run}) is None
    assert condition.evaluate({"1": ok, "2": bad, "3": run}) is True
    assert condition.evaluate({"1": bad, "2": ok, "3": bad}) is False
    assert condition.evaluate({"1": ok, "2": run, "3": ok}) is None  # ended(2) may still
    assert parse_condition("!done(4)").evaluate({"4": bad}) is True
    for wrong in ("done(1) &&", "done(1) & done(2)", "finished(1)", "(done(1)", ""):
        with pytest.raises(LsfUsageError):
            parse_condition(wrong)


# the shims against a real daemon ---------------------------------------------------------
@dataclass
class Shell:
    """Runs shell command lines with the shims first on PATH, like a user's flow."""

    bin_dir: Path
    cwd: Path

    def env(self) -> dict[str, str]:
        return clean_env(PATH=f"{self.bin_dir}:{os.environ['PATH']}")

    def __call__(self, line: str, *, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["sh", "-c", line], capture_output=True, text=True,
                              timeout=timeout, cwd=self.cwd, env=self.env())


@pytest.fixture
def lsf(daemon: Daemon, tmp_path: Path) -> Shell:  # noqa: F811
    bin_dir = tmp_path / "lsf-bin"
    wrote = subprocess.run([sys.executable, "-m", "apr_sched", "lsf-shims", str(bin_dir),
                            "--state-dir", str(daemon.state_dir)],
                           capture_output=True, text=True, timeout=30, env=clean_env())
    assert wrote.returncode == 0 and f"export PATH={bin_dir}:$PATH" in wrote.stdout, wrote
    assert sorted(p.name for p in bin_dir.iterdir()) == sorted(COMMANDS)
    return Shell(bin_dir, tmp_path)


def submitted(out: str) -> str:
    match = SUBMITTED.search(out)
    assert match, out
    return match.group(1)


def test_bsub_prints_the_line_tools_parse_and_bjobs_shows_lsf_columns(
        lsf: Shell, daemon: Daemon,  # noqa: F811
) -> None:
    done = lsf("bsub -J shim-sleep -q normal sleep 30")
    assert done.returncode == 0, done.stderr
    assert SUBMITTED.fullmatch(done.stdout.strip()), done.stdout
    job_id = submitted(done.stdout)
    daemon.wait_status(job_id, JobStatus.RUNNING)
    listing = lsf(f"bjobs {job_id}")
    header, row = listing.stdout.splitlines()
    assert header.split() == ["JOBID", "USER", "STAT", "QUEUE", "FROM_HOST", "EXEC_HOST",
                              "JOB_NAME", "SUBMIT_TIME"]
    assert row.split()[:3] == [job_id, daemon.client().job(job_id).owner, "RUN"]
    assert row.split()[5:7] == ["local", "shim-sleep"]
    long = lsf(f"bjobs -l {job_id}").stdout
    assert f"Job <{job_id}>, Job Name <shim-sleep>" in long and "Status <RUN>" in long
    killed = lsf(f"bkill {job_id}")
    assert killed.stdout.strip() == f"Job <{job_id}> is being terminated"
    daemon.wait_status(job_id, JobStatus.STOPPED)
    assert lsf(f"bjobs -noheader {job_id}").stdout.split()[2] == "EXIT"
    missing = lsf("bjobs 999999")
    assert missing.returncode == 255 and "Job <999999> is not found" in missing.stderr


def test_bsub_k_waits_and_exits_as_the_job_did(lsf: Shell) -> None:
    done = lsf("bsub -K 'echo out; exit 3'")
    assert done.returncode == 3, done.stderr
    lines = done.stdout.splitlines()
    assert SUBMITTED.fullmatch(lines[0]) and lines[1] == "<<Waiting for dispatch ...>>"
    assert lines[2] == "<<Starting on local>>" and lines[-1] == "<<Job is finished>>"
    assert lsf("bsub -K true").returncode == 0
    assert lsf("bsub -K 'kill -KILL $$'").returncode == 128 + 9


def test_a_script_on_stdin_runs_with_its_directives(
        lsf: Shell, daemon: Daemon, tmp_path: Path,  # noqa: F811
) -> None:
    (tmp_path / "job.sh").write_text("#!/bin/sh\n#BSUB -J from-script\necho $MYVAR\n")
    done = lsf("MYVAR=carried bsub -K < job.sh")
    assert done.returncode == 0, done.stderr
    job = daemon.client().job(submitted(done.stdout))
    assert job.name == "from-script"
    assert daemon.client().logs(job.job_id)["lines"] == ["carried"]


def test_refusals_name_the_option_and_queue_nothing(
        lsf: Shell, daemon: Daemon,  # noqa: F811
) -> None:
    before = daemon.client().jobs(limit=1).total
    for line, named in (("bsub -x true", "-x"), ("bsub -Z true", "-Z"),
                        ("bjobs -Q", "-Q"), ("bkill -s USR1 1", "USR1")):
        done = lsf(line)
        assert done.returncode == 255 and named in done.stderr, (line, done.stderr)
        assert "Traceback" not in done.stderr
    assert daemon.client().jobs(limit=1).total == before


def test_a_tool_that_submits_polls_and_kills(lsf: Shell) -> None:
    """What Innovus-style distribution does: bsub, parse the id, poll bjobs, bkill."""
    tool = textwrap.dedent("""
        set -e
        ok=$(bsub -J part1 'echo part1 done')
        ok=${ok#Job <}; ok=${ok%%>*}
        slow=$(bsub -J part2 sleep 60); slow=${slow#Job <}; slow=${slow%%>*}
        while :; do
          stat=$(bjobs -noheader "$ok" | awk '{print $3}')
          [ "$stat" = DONE ] && break
          [ "$stat" = EXIT ] && exit 1
          bwait -w "ended($ok)" -t 1 >/dev/null 2>&1 || true
        done
        bkill "$slow"
        bwait -w "ended($slow)"
        bjobs -noheader "$slow" | awk '{print $3}'
        bpeek "$ok"
    """)
    done = lsf(tool)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-3:] == ["EXIT", "<< output from stdout >>", "part1 done"]


def test_bwait_knows_when_a_condition_can_never_hold(lsf: Shell) -> None:
    failed = submitted(lsf("bsub -K 'exit 1'").stdout)
    never = lsf(f'bwait -w "done({failed})"')
    assert never.returncode == 1 and "never satisfied" in never.stderr
    assert lsf(f'bwait -w "exit({failed})"').returncode == 0


def test_bsub_o_and_e_write_files_in_the_working_directory(lsf: Shell, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    done = lsf("bsub -K -cwd run -o out.%J -e err.%J 'echo to-out; echo to-err >&2'")
    assert done.returncode == 0, done.stderr
    job_id = submitted(done.stdout)
    assert (tmp_path / "run" / f"out.{job_id}").read_text() == "to-out\n"
    assert (tmp_path / "run" / f"err.{job_id}").read_text() == "to-err\n"


def test_bsub_w_waits_in_the_scheduler_and_h_holds(
        lsf: Shell, daemon: Daemon, tmp_path: Path,  # noqa: F811
) -> None:
    gate = tmp_path / "gate"
    first = submitted(lsf(f"bsub -J up 'while [ ! -e {gate} ]; do sleep 0.02; done'").stdout)
    after = submitted(lsf(f'bsub -J down -w "done({first})" true').stdout)
    failed_only = submitted(lsf(f'bsub -w "exit({first})" true').stdout)
    held = submitted(lsf("bsub -H true").stdout)
    assert lsf(f"bjobs -noheader {after}").stdout.split()[2] == "PEND"
    assert lsf(f"bjobs -noheader {held}").stdout.split()[2] == "PSUSP"
    with daemon.client() as client:
        assert client.job(after).depends_on.after_ok == [first]
        assert client.job(after).pending_reason.startswith(f"waiting for job {first}")
    gate.touch()
    done = daemon.wait_status(after, JobStatus.SUCCEEDED)
    assert done.started_at >= daemon.client().job(first).finished_at
    daemon.wait_status(failed_only, JobStatus.CANCELLED)
    assert lsf(f"bjobs -noheader {failed_only}").stdout.split()[2] == "EXIT"
    assert lsf(f"bjobs -noheader {held}").stdout.split()[2] == "PSUSP"
    refused = lsf(f'bsub -w "done({first}) || done(1)" true')
    assert refused.returncode == 255 and "|| is not supported" in refused.stderr
    daemon.client().stop(held)
