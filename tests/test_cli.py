"""`python -m apr_sched` as people run it: a real daemon process, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from apr_sched.config import load_config
from apr_sched.statedir import read_owner
from tests.conftest import wait_until_sync

HOSTS = textwrap.dedent("""
    [scheduler]
    stop_grace_sec = 3

    [[hosts]]
    host_id = "cpu-1"
    total_slots = 4
    total_cpu = 16
    total_memory_gb = 64

    [hosts.labels]
    tool = "innovus"

    [[hosts]]
    host_id = "cpu-2"
    total_slots = 2
    total_cpu = 8
    total_memory_gb = 32.5
    executor_prefix = "sh -c"
""")


def daemon(state_dir: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "apr_sched", "--state-dir", str(state_dir), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "apr_sched", *args], capture_output=True,
                          text=True, timeout=30)


@pytest.fixture
def running_daemon(tmp_path: Path):
    config = tmp_path / "hosts.toml"
    config.write_text(HOSTS)
    state_dir = tmp_path / "state"
    proc = daemon(state_dir, "--config", str(config), "--port", "0")
    try:
        wait_until_sync(lambda: (read_owner(state_dir) or {}).get("pid") == proc.pid
                        or proc.poll() is not None)
        assert proc.poll() is None, proc.communicate()[0]
        yield proc, state_dir, config
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def test_daemon_owns_the_state_dir_and_shuts_down_on_sigterm(running_daemon):
    proc, state_dir, _ = running_daemon
    second = run_cli("serve", "--state-dir", str(state_dir))
    assert second.returncode == 2
    assert f"pid {proc.pid}" in second.stderr
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0, out
    assert "shutting down" in out
    assert read_owner(state_dir) is None


def test_config_export_round_trips(running_daemon, tmp_path):
    _, state_dir, config = running_daemon
    exported = tmp_path / "exported.toml"
    result = run_cli("config", "export", "--state-dir", str(state_dir), "-o", str(exported))
    assert result.returncode == 0, result.stderr
    assert load_config(exported).hosts == load_config(config).hosts


def test_embedded_default_registers_this_machine(tmp_path):
    state_dir = tmp_path / "state"
    proc = daemon(state_dir, "--port", "0")
    try:
        wait_until_sync(lambda: (read_owner(state_dir) or {}).get("pid") == proc.pid)
        wait_until_sync(lambda: run_cli("config", "export", "--state-dir", str(state_dir))
                        .stdout.count("host_id") == 1)
        text = run_cli("config", "export", "--state-dir", str(state_dir)).stdout
        assert 'host_id = "local"' in text
        assert f"total_cpu = {os.cpu_count()}" in text
    finally:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=15)
    assert proc.returncode == 0


def test_bad_config_is_one_clear_line(tmp_path):
    config = tmp_path / "bad.toml"
    config.write_text('[[hosts]]\nhost_id = "x"\ntotal_slots = 0\ntotal_cpu = 1\n'
                      'total_memory_gb = 1\n')
    result = run_cli("serve", "--config", str(config), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2
    assert "bad.toml" in result.stderr and "hosts[0].total_slots" in result.stderr
    assert result.stderr.count("\n") == 1


def test_export_without_state_says_so(tmp_path):
    result = run_cli("config", "export", "--state-dir", str(tmp_path / "empty"))
    assert result.returncode == 2 and "no scheduler state" in result.stderr


def test_library_never_imports_textual():
    code = ("import sys, apr_sched, apr_sched.cli, apr_sched.blocking; "
            "sys.exit(1 if any(m == 'textual' or m.startswith('textual.') "
            "for m in sys.modules) else 0)")
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_public_api_is_sorted_and_importable():
    import apr_sched

    assert apr_sched.__all__ == sorted(apr_sched.__all__)
    for name in apr_sched.__all__:
        assert getattr(apr_sched, name) is not None


def test_blocking_scheduler_for_plain_scripts(tmp_path):
    from apr_sched import BlockingScheduler, HostSpec, JobStatus

    hosts = [HostSpec(host_id="h", total_slots=2, total_cpu=2, total_memory_gb=1)]
    with BlockingScheduler(tmp_path / "state", hosts=hosts) as s:
        job = s.submit({"command": "echo hello"})
        assert s.wait(job.job_id, timeout=10).status is JobStatus.SUCCEEDED
        assert s.tail_log(job.job_id).lines == ["hello"]


def test_flow_example_runs_three_stages(tmp_path):
    flow = Path(__file__).parent.parent / "examples" / "flow.py"
    env = dict(os.environ, APR_SCHED_HOME=str(tmp_path / "state"))
    result = subprocess.run([sys.executable, str(flow)], capture_output=True, text=True,
                            timeout=60, env=env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "using BlockingScheduler(in-process" in result.stdout
    lines = [line for line in result.stdout.splitlines() if "SUCCEEDED" in line]
    assert [line.split()[0] for line in lines] == ["place", "cts", "route"]


def test_flow_example_uses_a_running_daemon(tmp_path):
    state_dir = tmp_path / "state"
    proc = daemon(state_dir, "--port", "0")
    try:
        wait_until_sync(lambda: (read_owner(state_dir) or {}).get("url"), timeout=20)
        flow = Path(__file__).parent.parent / "examples" / "flow.py"
        env = dict(os.environ, APR_SCHED_HOME=str(state_dir))
        result = subprocess.run([sys.executable, str(flow), "--design", "cpu"],
                                capture_output=True, text=True, timeout=60, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"using SchedulerClient('unix:{state_dir}/apr_sched.sock')" in result.stdout
        lines = [line for line in result.stdout.splitlines() if "SUCCEEDED" in line]
        assert [line.split()[0] for line in lines] == ["place", "cts", "route"]
        assert "routing cpu" in lines[-1]
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=15)
