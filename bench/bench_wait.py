"""``apr-sched submit --wait -- true`` end to end vs the same done by hand with curl.

The peer, measured in the same run (interleaved rounds, medians): one ``curl`` POSTs the job
and a second ``curl`` long-polls ``GET /scheduler/events?since=N&wait=30`` until the job's
final event (another long poll if the first answer holds no final event for it). Both talk
to the same daemon (a real subprocess on a temp state dir, one local host, loopback only).
Goal (issue 9): ours <= 2x the curl pair.

Ours runs in each of ``--modes`` in the same rounds (``_modes``): ``source`` and
``bytecode``, the dev venv (an editable install) without and with compiled modules, and
``installed``, a plain ``pip install`` of this repo in a venv of its own, as users get it.
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
from _modes import MODES, Mode, build_modes, mode_names

FINAL = {"SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED"}


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


def by_cli(mode: Mode) -> float:
    start = time.perf_counter()
    subprocess.run([*mode.apr_sched(), "submit", "--wait", "--quiet", "--", "true"],
                   env=mode.env, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--modes", type=mode_names, default=list(MODES),
                        help=f"comma-separated, of {','.join(MODES)} (default: all)")
    parser.add_argument("--installed-venv", type=Path, metavar="DIR",
                        help="where installed mode's venv is built and kept")
    args = parser.parse_args()
    emit("wait", "setup", None, rounds=args.rounds, load_avg_1m=os.getloadavg()[0])
    with tempfile.TemporaryDirectory() as tmp, cli_daemon(Path(tmp)) as (state, env):
        url = json.loads((state / "scheduler.json").read_text())["url"]
        token = (state / "token").read_text().strip()
        modes = build_modes(args.modes, env, Path(tmp) / "pycache", args.installed_venv)
        for mode in modes.values():  # warm up (and write the bytecode once)
            by_cli(mode)
        curl: list[float] = []
        ours: dict[str, list[float]] = {name: [] for name in modes}
        for _ in range(args.rounds):
            curl.append(by_curl(url, token))
            for name, mode in modes.items():
                ours[name].append(by_cli(mode))
        peer = statistics.median(curl)
        emit("wait", "curl_submit_and_long_poll_ms", peer * 1000, rounds=args.rounds)
        for name, walls in ours.items():
            mine = statistics.median(walls)
            emit("wait", f"submit_wait{modes[name].suffix()}_ms", mine * 1000, mode=name,
                 ratio_to_curl=mine / peer, goal_ratio=2.0, met=mine / peer <= 2.0,
                 load_avg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
