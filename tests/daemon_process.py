"""A real `apr-sched serve` process on a temp state dir (one local host, 127.0.0.1 only),
for tests that need a daemon to talk to; its -v log names every request it served."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from apr_sched.statedir import read_owner
from tests.conftest import wait_until_sync

HOSTS = """
[scheduler]
stop_grace_sec = 2

[[hosts]]
host_id = "local"
total_slots = 4
total_cpu = 4
total_memory_gb = 4
"""


def clean_env(**extra: str) -> dict[str, str]:
    """Our environment without anything that points a client at another daemon."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("APR_SCHED_URL", "APR_SCHED_TOKEN", "APR_SCHED_HOME")}
    return {**env, **extra}


@dataclass
class DaemonProcess:
    proc: subprocess.Popen[bytes]
    state_dir: Path
    log_path: Path

    def requests(self) -> list[str]:
        """The requests served so far, as "METHOD target" (from the -v log)."""
        lines = self.log_path.read_text(errors="replace").splitlines()
        return [" ".join(line.split()[4:6]) for line in lines
                if " apr_sched.http: " in line and " /scheduler/" in line]


@contextmanager
def running_daemon(root: Path) -> Iterator[DaemonProcess]:
    config = root / "hosts.toml"
    config.write_text(HOSTS)
    state_dir = root / "state"
    log_path = root / "daemon.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "apr_sched", "serve", "--state-dir", str(state_dir),
             "--config", str(config), "--host", "127.0.0.1", "--port", "0",
             "--stop-jobs-on-exit", "-v"],
            stdout=log, stderr=subprocess.STDOUT, env=clean_env())
    try:
        wait_until_sync(lambda: (read_owner(state_dir) or {}).get("url")
                        or proc.poll() is not None, timeout=20)
        assert proc.poll() is None, log_path.read_text()
        yield DaemonProcess(proc, state_dir, log_path)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
