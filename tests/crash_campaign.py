"""A crash campaign: a real daemon is ``kill -9``ed at random moments while jobs run, and
restarted each time. Every job appends to a shared ledger when it starts and ends and
prints numbered lines; afterwards nothing may be lost, run twice, or logged twice.

Used by tests/test_crash_campaign.py (a short form in the suite) and by
bench/bench_crash.py (the long form, whose figures README records).
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from apr_sched.client import SchedulerClient
from apr_sched.logs import attempt_files
from apr_sched.statedir import read_owner

HOSTS = """
[[hosts]]
host_id = "local"
total_slots = {slots}
total_cpu = 64
total_memory_gb = 64
"""


@dataclass
class CampaignResult:
    jobs: int
    kills: int
    lines_expected: int
    lost: list[str] = field(default_factory=list)
    """Jobs that did not end SUCCEEDED."""
    ran_twice: list[str] = field(default_factory=list)
    """Jobs whose command started more than once (by the ledger)."""
    log_mismatches: list[str] = field(default_factory=list)
    """Jobs whose log is not exactly their numbered lines, once each."""
    event_problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def clean(self) -> bool:
        return not (self.lost or self.ran_twice or self.log_mismatches or self.event_problems)


class Daemon:
    """``python -m apr_sched serve`` on a state dir, restartable, killed by its pid."""

    def __init__(self, state_dir: Path, config: Path) -> None:
        self.state_dir, self.config = state_dir, config
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> SchedulerClient:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "apr_sched", "serve", "--state-dir", str(self.state_dir),
             "--config", str(self.config), "--port", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            owner = read_owner(self.state_dir) or {}
            if owner.get("pid") == self.proc.pid and owner.get("url"):
                token = (self.state_dir / "token").read_text().strip()
                return SchedulerClient(str(owner["url"]), token, timeout=10)
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"daemon did not come up (exit {self.proc.poll()})")
            time.sleep(0.01)  # bounded poll on the lock record

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def job_command(ledger: Path, lines: int, pause: float) -> str:
    return (f'echo "start $APR_JOB_ID" >> {ledger}; i=1; while [ $i -le {lines} ]; do '
            f'echo "line-$i"; sleep {pause}; i=$((i+1)); done; echo "end $APR_JOB_ID" >> {ledger}')


def run_campaign(root: Path, *, jobs: int, kills: int, lines: int = 20, pause: float = 0.02,
                 slots: int = 4, seed: int = 1, gap: tuple[float, float] = (0.2, 0.8),
                 finish_timeout: float = 300.0) -> CampaignResult:
    rng = random.Random(seed)
    state_dir, ledger, config = root / "state", root / "ledger", root / "hosts.toml"
    config.write_text(HOSTS.format(slots=slots))
    ledger.touch()
    result = CampaignResult(jobs=jobs, kills=kills, lines_expected=lines)
    daemon = Daemon(state_dir, config)
    began = time.monotonic()
    try:
        client = daemon.start()
        ids = client.submit_batch_ids([{"command": job_command(ledger, lines, pause),
                                        "name": f"c{n}"} for n in range(jobs)])
        for _ in range(kills):
            time.sleep(rng.uniform(*gap))  # a random moment to crash at, not a wait
            client.close()
            daemon.kill9()
            client = daemon.start()
        deadline = time.monotonic() + finish_timeout
        while client.jobs(status="PENDING,HELD,RUNNING,PAUSED", limit=0).total:
            if time.monotonic() > deadline:
                raise AssertionError("jobs still unfinished after the campaign")
            time.sleep(0.05)  # bounded poll on the daemon's count
        result.seconds = time.monotonic() - began
        _check(result, client, state_dir, ledger, ids, lines)
        client.close()
    finally:
        daemon.stop()
    return result


def _check(result: CampaignResult, client: SchedulerClient, state_dir: Path, ledger: Path,
           ids: list[str], lines: int) -> None:
    starts = Counter(line.split()[1] for line in ledger.read_text().splitlines()
                     if line.startswith("start "))
    expected_log = "".join(f"line-{i}\n" for i in range(1, lines + 1))
    for job_id in ids:
        job = client.job(job_id)
        if job.status.value != "SUCCEEDED":
            result.lost.append(f"{job_id}: {job.status.value}")
        if starts[job_id] != 1:
            result.ran_twice.append(f"{job_id}: started {starts[job_id]} times")
        text = attempt_files(state_dir, job_id, job.attempt).log.read_text()
        if text != expected_log:
            result.log_mismatches.append(f"{job_id}: {len(text.splitlines())} lines")
        seqs = [e.seq for e in job.events]
        dispatched = sum(1 for e in job.events if e.to_status.value == "RUNNING"
                         and e.from_status is not None and e.from_status.value == "PENDING")
        never_started = sum(1 for e in job.events if "never started" in e.reason)
        if seqs != sorted(set(seqs)) or job.events[0].to_status.value != "PENDING" \
                or job.events[-1].to_status.value != "SUCCEEDED" \
                or dispatched - never_started != 1:
            result.event_problems.append(
                f"{job_id}: " + ", ".join(f"{e.from_status}->{e.to_status}" for e in job.events))
