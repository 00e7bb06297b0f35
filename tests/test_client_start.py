"""What a client command does without, and still does right (issue 9: a flow starts the CLI
once per step): the few lines that stand in for urllib.parse, a regex or textwrap answer
exactly as those would; the submit reply says where the job's events start; the garbage
collector is held off only where a client command's start makes no garbage."""

from __future__ import annotations

import asyncio
import random
import re
import socket
import string
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator
from urllib.parse import urlencode

import pytest

from apr_sched import Scheduler
from apr_sched.cli_env import _is_name
from apr_sched.discovery import DaemonUrl, parse_daemon_url
from apr_sched.errors import InvalidInput
from apr_sched.http.api import LAST_EVENT_SEQ_HEADER
from apr_sched.http.service import HttpService
from apr_sched.outcomes import EXIT_CODES, EXIT_CODES_HELP
from apr_sched.rawclient import LAST_EVENT_SEQ_HEADER as CLIENT_HEADER
from apr_sched.rawclient import RawClient, query_string
from apr_sched.states import ID_PATTERN, is_valid_id
from tests.daemon_process import clean_env, running_daemon
from tests.http_helpers import Api

TRICKY = ["", "a", "A", "0", "_", "-", ".", "a-b.c_d", "-a", ".a", "_a", "a-", "a\n", "\na",
          "a b", "a/b", "../a", "a\x00", "é", "٣", "²", "Ａ", "ß", "İ", "a" * 63, "a" * 64,
          "a" * 65, "a" * 127, "a" * 128, "a" * 129, "if", "BASH_FUNC_f%%", "1A", "A1"]


def corpus(alphabet: str, lengths: list[int], count: int = 20_000) -> list[str]:
    rng = random.Random(9)  # the same strings every run
    return TRICKY + ["".join(rng.choice(alphabet) for _ in range(rng.choice(lengths)))
                     for _ in range(count)]


def test_query_string_encodes_as_urlencode() -> None:
    values = [*TRICKY, "1,2,3", "a b+c", "x&y=z", "100%", "~user", "π", "\U0001f600", "#?",
              "[::1]", "é ü"]
    pairs = [(f"k{i}", v) for i, v in enumerate(values)] + [(v, "x") for v in values]
    assert query_string(pairs) == urlencode(pairs)
    for value in values:
        assert query_string([("id", value)]) == urlencode([("id", value)])


def test_ids_are_checked_as_the_pattern_says() -> None:
    pattern = re.compile(ID_PATTERN.removeprefix("^").removesuffix("$"))
    alphabet = string.ascii_letters + string.digits + "._-" + " \n/é٣²Ａ\x00"
    for text in corpus(alphabet, [0, 1, 2, 3, 8, 63, 64, 65]):
        assert is_valid_id(text) == (pattern.fullmatch(text) is not None), repr(text)


def test_env_names_are_checked_as_the_pattern_says() -> None:
    pattern = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
    alphabet = string.ascii_letters + string.digits + "_" + " -.%é٣²Ａ\x00"
    for text in corpus(alphabet, [0, 1, 2, 3, 8, 127, 128, 129]):
        assert _is_name(text) == (pattern.fullmatch(text) is not None), repr(text)


def test_exit_code_table_is_wrapped_as_textwrap_would() -> None:
    lines = ["exit codes:"]
    for code, meaning in EXIT_CODES:
        lines += textwrap.wrap(meaning, 79, initial_indent=f"  {code:<12} ",
                               subsequent_indent=" " * 15)
    lines += textwrap.wrap(
        "several jobs: the worst outcome, in this order: the wait failed, lost, cannot "
        "start, CANCELLED, STOPPED, TIMEOUT, killed by a signal, a non-zero exit, 0 (the "
        "first job given wins a tie)", 79, initial_indent="  ", subsequent_indent="  ")
    assert "\n".join(lines) + "\n" == EXIT_CODES_HELP


@pytest.mark.parametrize(("url", "parsed"), [
    ("unix:/run/s/apr_sched.sock", DaemonUrl("unix", "/run/s/apr_sched.sock", 0, "/scheduler",
                                             "localhost")),
    ("127.0.0.1:5000", DaemonUrl("http", "127.0.0.1", 5000, "/scheduler", "127.0.0.1:5000")),
    ("http://LOCALHOST:80/", DaemonUrl("http", "localhost", 80, "/scheduler", "LOCALHOST:80")),
    ("https://head.example", DaemonUrl("https", "head.example", 443, "/scheduler",
                                       "head.example")),
    ("http://[::1]:5000/apr", DaemonUrl("http", "::1", 5000, "/apr/scheduler", "[::1]:5000")),
])
def test_daemon_urls(url: str, parsed: DaemonUrl) -> None:
    assert parse_daemon_url(url) == parsed


@pytest.mark.parametrize("url", ["unix:relative.sock", "ftp://host", "http://:5000",
                                 "http://host:99999", "http://host:port"])
def test_bad_daemon_urls_name_the_field(url: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_daemon_url(url)
    assert caught.value.details[0]["field"] == "url"


def test_an_ipv6_loopback_daemon_is_reached() -> None:
    """``http://[::1]:PORT``: the brackets go in the Host header, not in the address."""
    try:
        server = socket.create_server(("::1", 0), family=socket.AF_INET6)
    except OSError:
        pytest.skip("no IPv6 loopback here")
    port = server.getsockname()[1]
    reply = (b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 15\r\n\r\n'
             b'{"status":"ok"}')
    heads: list[bytes] = []

    def answer() -> None:
        conn, _ = server.accept()
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(4096)
            heads.append(data)
            conn.sendall(reply)

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    with server, RawClient(f"http://[::1]:{port}") as client:
        assert client.health() == {"status": "ok"}
    thread.join(5)
    assert f"Host: [::1]:{port}\r\n".encode() in heads[0]


# Last-Event-Seq ----------------------------------------------------------------------------
@pytest.fixture
async def served(make_scheduler) -> AsyncIterator[tuple[Api, str]]:
    scheduler: Scheduler = await make_scheduler()
    async with HttpService(scheduler, "127.0.0.1", 0) as service:
        token = (scheduler.state_dir / "token").read_text().strip()
        yield Api(service.url, token), service.url


def test_the_client_reads_the_header_the_daemon_sends() -> None:
    assert LAST_EVENT_SEQ_HEADER.lower() == CLIENT_HEADER


async def test_a_submit_reply_says_where_the_jobs_events_start(served) -> None:
    api, _ = served
    await api.post("/scheduler/jobs", {"command": "true"})  # events before ours
    reply = await api.post("/scheduler/jobs", {"command": "true"})
    assert reply.status == 201 and set(reply.data) >= {"job_id", "status"}
    since = int(reply.headers[LAST_EVENT_SEQ_HEADER.lower()])
    job_id = reply.data["job_id"]
    page = await api.get(f"/scheduler/events?since={since}&wait=10")
    mine = [e for e in page.data["events"] if e.get("job_id") == job_id]
    assert mine and (mine[0]["to_status"], mine[0]["reason"]) == ("PENDING", "submitted")
    everything = await api.get("/scheduler/events?since=0")
    assert all(e["seq"] > since for e in everything.data["events"]
               if e.get("job_id") == job_id)


async def test_a_replayed_submit_has_no_event_number(served) -> None:
    """A replay may come long after the job's events: the client must look, not trust."""
    api, url = served
    headers = {"Idempotency-Key": "k-1"}
    first = await api.post("/scheduler/jobs", {"command": "true"}, headers=headers)
    replay = await api.post("/scheduler/jobs", {"command": "true"}, headers=headers)
    assert LAST_EVENT_SEQ_HEADER.lower() in first.headers
    assert replay.headers.get("idempotent-replayed") == "true"
    assert LAST_EVENT_SEQ_HEADER.lower() not in replay.headers
    reply, since = await asyncio.to_thread(submit_raw, url, api.token)
    assert isinstance(since, int) and reply["job_id"]


def submit_raw(url: str, token: str | None) -> tuple[dict[str, object], int | None]:
    with RawClient(url, token) as client:
        return client.submit_dict({"command": "true"})


# the garbage collector ---------------------------------------------------------------------
RUN = """
import atexit, gc, sys
sys.argv = ["apr-sched", "status", "--state-dir", {state!r}, "1"]
from apr_sched.cli import main
code = main({argv})
assert gc.isenabled(), "the collector stays off"
atexit._run_exitfuncs()
print(code, gc.get_freeze_count() > 0)
"""


def test_only_a_client_commands_own_process_skips_the_last_collection(tmp_path) -> None:
    with running_daemon(tmp_path) as daemon:
        state = str(daemon.state_dir)
        outcomes = {}
        for name, argv in (("script", ""), ("in-process", repr(["status", "--state-dir",
                                                               state, "1"]))):
            done = subprocess.run([sys.executable, "-c", RUN.format(state=state, argv=argv)],
                                  capture_output=True, text=True, timeout=60, env=clean_env())
            assert done.returncode == 0, done.stderr
            outcomes[name] = done.stdout.split()[-2:]  # after the status word
    # an unknown job is "failed" with exit 0; only the console script's process freezes
    assert outcomes == {"script": ["0", "True"], "in-process": ["0", "False"]}
