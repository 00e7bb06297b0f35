"""``apr-sched submit --wait -- true`` end to end vs the same done by hand with curl.

The peer, measured in the same run (interleaved rounds, medians): one ``curl`` POSTs the job
and a second ``curl`` long-polls ``GET /scheduler/events?since=N&wait=30`` until the job's
final event (another long poll if the first answer holds no final event for it). Both talk
to the same daemon (a real subprocess on a temp state dir, one local host, loopback only).
Goal (issue 9): ours <= 2x the curl pair.

Ours runs two ways in the same rounds (see bench_cli_startup): ``source``, the environment as
it is (an editable install under PYTHONDONTWRITEBYTECODE=1 compiles our modules at every
start), and ``bytecode``, compiled once as an installed package is.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import cli_daemon, emit

FINAL = {"SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "CANCELLED"}


def by_curl(url: str, token: str) -> float:
    start = time.perf_counter()
    auth = ["-H", f"Authorization: Bearer {token}"]
    health = json.loads(subprocess.run(["curl", "-sf", *auth, f"{url}/scheduler/health"],
                                       capture_output=True, check=True).stdout)
    since = int(health["last_event_seq"])
    job = json.loads(subprocess.run(
        ["curl", "-sf", *auth, "-H", "Content-Type: application/json", "-d",
         '{"command": "true"}', f"{url}/scheduler/jobs"],
        capture_output=True, check=True).stdout)
    while True:
        page = json.loads(subprocess.run(
            ["curl", "-sf", *auth, f"{url}/scheduler/events?since={since}&wait=30"],
            capture_output=True, check=True).stdout)
        since = int(page["last_seq"])
        if any(e.get("job_id") == job["job_id"] and e.get("to_status") in FINAL
               for e in page["events"]):
            return time.perf_counter() - start


def by_cli(env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(["apr-sched", "submit", "--wait", "--quiet", "--", "true"], env=env,
                   check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()
    emit("wait", "setup", None, rounds=args.rounds, load_avg_1m=os.getloadavg()[0])
    with tempfile.TemporaryDirectory() as tmp, cli_daemon(Path(tmp)) as (state, env):
        url = json.loads((state / "scheduler.json").read_text())["url"]
        token = (state / "token").read_text().strip()
        compiled = {k: v for k, v in env.items() if k != "PYTHONDONTWRITEBYTECODE"}
        compiled["PYTHONPYCACHEPREFIX"] = str(Path(tmp) / "pycache")
        envs = {"source": env, "bytecode": compiled}
        for mode_env in envs.values():  # warm up (and write the bytecode once)
            by_cli(mode_env)
        curl: list[float] = []
        ours: dict[str, list[float]] = {mode: [] for mode in envs}
        for _ in range(args.rounds):
            curl.append(by_curl(url, token))
            for mode, mode_env in envs.items():
                ours[mode].append(by_cli(mode_env))
        peer = statistics.median(curl)
        emit("wait", "curl_submit_and_long_poll_ms", peer * 1000, rounds=args.rounds)
        for mode, walls in ours.items():
            mine = statistics.median(walls)
            emit("wait", "submit_wait_ms" if mode == "source" else f"submit_wait_{mode}_ms",
                 mine * 1000, mode=mode, ratio_to_curl=mine / peer, goal_ratio=2.0,
                 met=mine / peer <= 2.0, load_avg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
