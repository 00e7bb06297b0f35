"""``apr-sched submit --wait -- true`` end to end vs the same done by hand with curl.

The peer, measured in the same run (interleaved rounds, medians): one ``curl`` POSTs the job
and a second ``curl`` long-polls ``GET /scheduler/events?since=N&wait=30`` until the job's
final event (another long poll if the first answer holds no final event for it), ``N``
taken from the submit reply's ``Last-Event-Seq`` header (a daemon without it: from a
``GET /scheduler/health`` first, and the line says ``requests: 3``). Also measured, for
comparison with figures from before that header: the three-request peer, health first
(``curl_health_submit_long_poll_ms``). All talk to the same daemon (a real subprocess on a
temp state dir, one local host, loopback only). Goal (issue 9): ours <= 2x the curl pair.

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

FINAL = {"SUCCEEDED", "FAILED", "TIMEOUT", "STOPPED", "CANCELLED"}


def by_curl(url: str, token: str, *, health_first: bool) -> tuple[float, int]:
    """Wall time of submit + long poll(s) by curl, and how many requests it took."""
    start = time.perf_counter()
    auth = ["-H", f"Authorization: Bearer {token}"]
    since: int | None = None
    requests = 0
    if health_first:
        health = json.loads(subprocess.run(["curl", "-sf", *auth, f"{url}/scheduler/health"],
                                           capture_output=True, check=True).stdout)
        since, requests = int(health["last_event_seq"]), 1
    posted = subprocess.run(
        ["curl", "-sf", "-D", "-", *auth, "-H", "Content-Type: application/json", "-d",
         '{"command": "true"}', f"{url}/scheduler/jobs"],
        capture_output=True, check=True).stdout.decode()  # bytes: keep the CRLFs
    head, _, body = posted.partition("\r\n\r\n")
    job = json.loads(body)
    requests += 1
    if since is None:
        seq = [line.split(":", 1)[1].strip() for line in head.split("\r\n")
               if line.lower().startswith("last-event-seq:")]
        if not seq:  # a daemon without the header: the reply cannot say where to start
            return by_curl(url, token, health_first=True)
        since = int(seq[0])
    while True:
        requests += 1
        page = json.loads(subprocess.run(
            ["curl", "-sf", *auth, f"{url}/scheduler/events?since={since}&wait=30"],
            capture_output=True, check=True).stdout)
        since = int(page["last_seq"])
        if any(e.get("job_id") == job["job_id"] and e.get("to_status") in FINAL
               for e in page["events"]):
            return time.perf_counter() - start, requests


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
        curl_requests: list[int] = []
        curl_health: list[float] = []
        ours: dict[str, list[float]] = {name: [] for name in modes}
        for _ in range(args.rounds):
            wall, requests = by_curl(url, token, health_first=False)
            curl.append(wall)
            curl_requests.append(requests)
            curl_health.append(by_curl(url, token, health_first=True)[0])
            for name, mode in modes.items():
                ours[name].append(by_cli(mode))
        peer = statistics.median(curl)
        emit("wait", "curl_submit_and_long_poll_ms", peer * 1000, rounds=args.rounds,
             requests=statistics.median(curl_requests))
        emit("wait", "curl_health_submit_long_poll_ms", statistics.median(curl_health) * 1000,
             rounds=args.rounds)
        for name, walls in ours.items():
            mine = statistics.median(walls)
            emit("wait", f"submit_wait{modes[name].suffix()}_ms", mine * 1000, mode=name,
                 ratio_to_curl=mine / peer, goal_ratio=2.0, met=mine / peer <= 2.0,
                 load_avg_1m=os.getloadavg()[0])


if __name__ == "__main__":
    main()
