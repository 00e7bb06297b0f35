"""The submitter's environment, directory and umask reach a job submitted from the CLI
(real daemon, real CLI processes); the HTTP API adds nothing; secrets stay private."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import ValidationError

from apr_sched.cli_env import MAX_ENV_NAMES, MAX_ENV_VALUE, submitter_env
from apr_sched.errors import InvalidInput
from apr_sched.models import JobSpec, JobStatus
from tests.cli_daemon import APR_SCHED, CliDaemon, clean_env, running_cli_daemon, submitted_id
from tests.conftest import read_line
from tests.http_helpers import request

SHOW = 'echo "MYVAR=$MYVAR"; echo "OTHER=$OTHER"; echo "PATH=$PATH"'


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliDaemon]:
    with running_cli_daemon(tmp_path_factory.mktemp("env")) as daemon:
        yield daemon


def shell_env(**extra: str) -> dict[str, str]:
    """What a user's shell would pass: MYVAR and a PATH entry set only there."""
    return clean_env(MYVAR="x", OTHER="y", PATH=f"/opt/fake/bin:{os.environ['PATH']}",
                     **extra)


def shown(stdout: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in stdout.splitlines())


def test_the_submitters_environment_reaches_the_job(daemon: CliDaemon) -> None:
    done = daemon.cli("submit", "--wait", "--", "sh", "-c", SHOW, env=shell_env())
    assert done.returncode == 0, done.stderr
    seen = shown(done.stdout)
    assert (seen["MYVAR"], seen["OTHER"]) == ("x", "y")
    assert seen["PATH"] == f"/opt/fake/bin:{os.environ['PATH']}"


def test_env_mode_none_gives_a_clean_environment(daemon: CliDaemon) -> None:
    done = daemon.cli("submit", "--wait", "--env-mode", "none", "--", "sh", "-c", SHOW,
                      env=shell_env())
    assert done.returncode == 0, done.stderr
    seen = shown(done.stdout)
    assert (seen["MYVAR"], seen["OTHER"]) == ("", "")
    assert "/opt/fake/bin" not in seen["PATH"] and seen["PATH"]  # the daemon's clean base
    assert daemon.job(submitted_id(done.stderr)).env == {}


def test_env_mode_names_only_those(daemon: CliDaemon) -> None:
    done = daemon.cli("submit", "--wait", "--env-mode", "MYVAR,NOT_SET_HERE",
                      "--env", "EXTRA=1", "--", "sh", "-c", SHOW, env=shell_env())
    assert done.returncode == 0, done.stderr
    seen = shown(done.stdout)
    assert (seen["MYVAR"], seen["OTHER"]) == ("x", "")
    assert "/opt/fake/bin" not in seen["PATH"]
    assert daemon.job(submitted_id(done.stderr)).env == {"MYVAR": "x", "EXTRA": "1"}
    assert "--env-mode names NOT_SET_HERE, not set here" in done.stderr


def test_what_must_not_travel_stays_and_the_umask_and_workdir_go(daemon: CliDaemon,
                                                                 tmp_path: Path) -> None:
    token = (daemon.state_dir / "token").read_text().strip()  # the client's own secret
    env = shell_env(APR_SCHED_TOKEN=token, APR_JOB_ID="77", SHLVL="3", _="/bin/x",
                    OLDPWD="/old", PWD=str(tmp_path), HOME="/home/someone", USER="someone",
                    SSH_AUTH_SOCK="/tmp/agent.sock")
    done = daemon.cli("submit", "--", "true", env=env, cwd=tmp_path, umask=0o027)
    assert done.returncode == 0, done.stderr
    job = daemon.job(done.stdout.strip())
    assert job.env["MYVAR"] == "x"
    assert not {"APR_SCHED_TOKEN", "APR_JOB_ID", "SHLVL", "_", "OLDPWD", "PWD", "HOME", "USER",
                "SSH_AUTH_SOCK"} & set(job.env)
    assert job.umask == "027"  # sent, and the executor applies it:
    masked = daemon.cli("submit", "--wait", "--", "sh", "-c", "umask", env=env, umask=0o027)
    assert (masked.returncode, masked.stdout) == (0, "0027\n"), masked.stderr
    assert job.workdir == str(tmp_path)
    other = tmp_path / "elsewhere"
    other.mkdir()
    moved = daemon.cli("submit", "--workdir", str(other), "--", "true", env=env, cwd=tmp_path)
    assert daemon.job(moved.stdout.strip()).workdir == str(other)


def test_variables_over_the_limits_are_left_out_with_a_warning(daemon: CliDaemon) -> None:
    env = shell_env(BIG="v" * (MAX_ENV_VALUE + 1), **{"BASH_FUNC_f%%": "() {  true\n}"})
    done = daemon.cli("submit", "--", "true", env=env)
    assert done.returncode == 0, done.stderr
    job = daemon.job(done.stdout.strip())
    assert "BIG" not in job.env and job.env["MYVAR"] == "x"
    warning = next(line for line in done.stderr.splitlines() if "not passed" in line)
    assert "BIG (32,769 characters; the limit is 32,768)" in warning
    assert "BASH_FUNC_f%% (not a name a job can take)" in warning

    def count() -> int:
        with daemon.client() as c:
            return c.jobs(limit=0).total

    before = count()
    crowded = shell_env(**{f"V{i}": "1" for i in range(MAX_ENV_NAMES + 1)})
    refused = daemon.cli("submit", "--", "true", env=crowded)
    assert refused.returncode == 2
    assert "a job takes at most 1,024" in refused.stderr and "--env-mode" in refused.stderr
    explicit = daemon.cli("submit", "--env", f"HUGE={'v' * (MAX_ENV_VALUE + 1)}", "--", "true")
    assert explicit.returncode == 2 and "--env HUGE: 32,769 characters" in explicit.stderr
    assert count() == before  # nothing was submitted
    assert "Traceback" not in refused.stderr + explicit.stderr


def test_a_spec_file_is_taken_as_written(daemon: CliDaemon, tmp_path: Path) -> None:
    spec = tmp_path / "job.json"
    spec.write_text('{"command": "true", "env": {"FROM_FILE": "1"}}')
    done = daemon.cli("submit", "--json", str(spec), env=shell_env())
    job = daemon.job(done.stdout.strip())
    assert job.env == {"FROM_FILE": "1"}  # no --env-mode: none with a spec file
    both = daemon.cli("submit", "--json", str(spec), "--env-mode", "MYVAR", env=shell_env())
    assert daemon.job(both.stdout.strip()).env == {"FROM_FILE": "1", "MYVAR": "x"}


def test_the_http_api_adds_nothing(daemon: CliDaemon) -> None:
    with daemon.client() as c:
        job = c.submit({"command": "true"})
    assert (job.env, job.umask) == ({}, None)


def test_secrets_stay_out_of_command_lines_and_other_users_listings(daemon: CliDaemon) -> None:
    env = shell_env(LICENSE_KEY="s3cr3t-value")
    waiter = daemon.popen("submit", "--wait", "--", "sh", "-c",
                          'echo "key ${#LICENSE_KEY}"; exec sleep 30', env=env)
    assert waiter.stdout is not None and waiter.stderr is not None
    job_id = submitted_id(read_line(waiter.stderr))
    assert read_line(waiter.stdout) == "key 12\n"
    pgid = daemon.wait_status(job_id, JobStatus.RUNNING).pgid
    assert pgid
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                argv = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            assert b"s3cr3t-value" not in argv, proc.name
    added = subprocess.run([*APR_SCHED, "token", "add", "bob", "--state-dir",
                            str(daemon.state_dir)], capture_output=True, text=True, timeout=30)
    token = added.stdout.strip()
    assert added.returncode == 0 and token, added.stderr
    with daemon.client() as c:
        base = c.url
    as_bob = request(base, "GET", f"/scheduler/jobs/{job_id}", token=token)
    assert as_bob.status == 200 and as_bob.data["env"]["LICENSE_KEY"] == "***"
    listing = request(base, "GET", f"/scheduler/jobs?id={job_id}", token=token)
    assert listing.data["jobs"][0]["env"]["LICENSE_KEY"] == "***"
    assert daemon.job(job_id).env["LICENSE_KEY"] == "s3cr3t-value"  # the admin sees it
    with daemon.client() as c:
        c.stop(job_id)
    waiter.communicate(timeout=20)


def test_limits_agree_with_jobspec() -> None:
    def spec(env: dict[str, str]) -> JobSpec:
        return JobSpec.model_validate({"command": "true", "env": env}, strict=False)

    spec({f"V{i}": "1" for i in range(MAX_ENV_NAMES)})
    spec({"V": "v" * MAX_ENV_VALUE})
    with pytest.raises(ValidationError):
        spec({f"V{i}": "1" for i in range(MAX_ENV_NAMES + 1)})
    with pytest.raises(ValidationError):
        spec({"V": "v" * (MAX_ENV_VALUE + 1)})
    picked = submitter_env("all", [("EXTRA", "2")], {"A": "1", "PWD": "/x", "APR_HOST": "h"})
    assert picked.env == {"A": "1", "EXTRA": "2"}
    with pytest.raises(InvalidInput, match="env"):
        submitter_env("none", [("BAD-NAME", "1")], {})
