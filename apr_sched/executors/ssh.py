"""Native SSH hosts: one asyncssh connection per host, one agent channel on it.

The agent (``remote_agent.py``, run by the host's python3) starts wrappers in the remote
spool, signals process groups, streams log bytes and reports exits. The login shell runs
once per connection, not once per job. Log bytes are appended to the local per-attempt log
by offset, so after a reconnect streaming resumes exactly where the local file ends: nothing
is duplicated, nothing is missed.

Connection trouble never ends a job by itself: the executor tells the scheduler the host is
unreachable (it goes OFFLINE), keeps reconnecting with backoff, and re-attaches every
attempt it was watching. Only the scheduler decides, after ``host_lost_after_sec``, that an
attempt is lost.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

from apr_sched.errors import AprError
from apr_sched.executors.base import ExitStatus, Launch, RunHandle, StartFailed
from apr_sched.executors.local import exit_status_from_rc, signal_name
from apr_sched.executors.ssh_target import SshTarget
from apr_sched.executors.wrapper import WRAPPER_SCRIPT
from apr_sched.logs import AttemptFiles, read_rc
from apr_sched.models import HostLoad

log = logging.getLogger("apr_sched.ssh")

AGENT_SOURCE = (Path(__file__).parent / "remote_agent.py").read_bytes()
PROBE_INTERVAL_SEC = 5.0
REPLY_TIMEOUT_SEC = 15.0
BACKOFF_MAX_SEC = 10.0
HOST_KEY_RETRY_SEC = 30.0


class HostUnavailable(AprError):
    """An action needs the host, and the host cannot be reached right now."""

    code = "host_unavailable"
    http_status = 409


ReachabilityCallback = Callable[[str, bool, str], None]
LoadCallback = Callable[[str, HostLoad], None]


@dataclass(eq=False)
class _Watch:
    """An attempt whose log and exit we follow; survives reconnects."""

    job_id: str
    attempt: int
    files: AttemptFiles
    pgid: int | None
    done: asyncio.Future[ExitStatus]
    offset: int = 0
    attached: bool = False
    notes: list[str] = field(default_factory=list)

    def append(self, offset: int, data: bytes) -> None:
        """Write log bytes that start at ``offset``; what we already have is skipped."""
        if offset > self.offset:
            log.warning("log gap for job %s attempt %d: have %d bytes, got data at %d",
                        self.job_id, self.attempt, self.offset, offset)
        elif offset < self.offset:
            data = data[self.offset - offset:]
        if data:
            with open(self.files.log, "ab") as f:
                f.write(data)
            self.offset += len(data)


class SshExecutor:
    """Runs attempts on one SSH host through its agent."""

    def __init__(self, host_id: str, target: SshTarget, spool: str, *,
                 on_reachable: ReachabilityCallback, on_load: LoadCallback) -> None:
        self.host_id = host_id
        self.target = target
        self.spool = spool
        self._on_reachable = on_reachable
        self._on_load = on_load
        self._conn: asyncssh.SSHClientConnection | None = None
        self._agent: asyncssh.SSHClientProcess[bytes] | None = None
        self._ready = asyncio.Event()
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._watches: dict[tuple[str, int], _Watch] = {}
        self._req = itertools.count(1)
        self._abandoned: dict[tuple[str, int], int] = {}
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.reason = "connecting"

    # lifecycle -------------------------------------------------------------------------
    def open(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._maintain())

    async def close(self) -> None:
        """Drop the connection; the agent exits, jobs keep running on the host."""
        self._closing = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._disconnect("closed")

    def control_refusal(self) -> str | None:
        return None

    def connect_options(self) -> dict[str, Any]:
        t = self.target
        options: dict[str, Any] = {
            "host": t.host, "port": t.port, "connect_timeout": t.connect_timeout_sec,
            "login_timeout": t.connect_timeout_sec, "keepalive_interval": 5,
            "keepalive_count_max": 3,
        }
        if t.user:
            options["username"] = t.user
        if t.identity_file:
            options["client_keys"] = [os.path.expanduser(t.identity_file)]
        if not t.check_host_key:
            options["known_hosts"] = None
        elif t.known_hosts:
            options["known_hosts"] = os.path.expanduser(t.known_hosts)
        return options

    def agent_command(self) -> str:
        config = base64.b64encode(json.dumps(
            {"spool": self.spool, "wrapper": WRAPPER_SCRIPT}).encode()).decode()
        source = base64.b64encode(AGENT_SOURCE).decode()
        return ("exec python3 -u -c 'import base64,sys;exec(base64.b64decode(sys.argv[1]))' "
                f"{source} {config}")

    async def _maintain(self) -> None:
        backoff = 0.5
        if not self.target.check_host_key:
            log.warning("host %s: host key checking is OFF (StrictHostKeyChecking=no)",
                        self.host_id)
        while not self._closing:
            wait = backoff
            try:
                await self._connect()
                backoff = 0.5
                await self._serve()
                reason = "agent connection ended"
            except asyncssh.HostKeyNotVerifiable as exc:
                reason = (f"host key of {self.target.describe()} not verified against "
                          f"{self.target.known_hosts or '~/.ssh/known_hosts'}: {exc}; "
                          f"nothing runs there until the key is known (ssh-keyscan)")
                wait = HOST_KEY_RETRY_SEC
            except asyncssh.PermissionDenied as exc:
                reason = f"login to {self.target.describe()} refused: {exc}"
                wait = HOST_KEY_RETRY_SEC
            except (OSError, asyncssh.Error, TimeoutError, ValueError) as exc:
                reason = f"cannot reach {self.target.describe()}: {type(exc).__name__} {exc}"
            self._disconnect(reason)
            if self._closing:
                return
            log.warning("host %s unreachable: %s (retry in %.1fs)", self.host_id, reason, wait)
            await asyncio.sleep(wait)  # reconnection backoff, not a wait for a condition
            backoff = min(backoff * 2, BACKOFF_MAX_SEC)

    async def _connect(self) -> None:
        self._conn = await asyncssh.connect(**self.connect_options())
        self._agent = await self._conn.create_process(self.agent_command(), encoding=None)
        async with asyncio.timeout(REPLY_TIMEOUT_SEC):
            line = await self._agent.stdout.readline()
        if not line:
            stderr = (await self._agent.stderr.read(4096)).decode(errors="replace").strip()
            raise OSError(f"agent did not start (is python3 installed there?) {stderr}")
        hello = json.loads(line)
        log.info("host %s: agent %s up (python %s, spool %s)", self.host_id, hello.get("pid"),
                 hello.get("python"), hello.get("spool"))

    async def _serve(self) -> None:
        """Read agent messages, probe, and re-attach watches, until the connection fails."""
        assert self._agent is not None
        reader = asyncio.get_running_loop().create_task(self._read_messages(self._agent))
        self._ready.set()
        self.reason = "online"
        self._on_reachable(self.host_id, True, f"connected to {self.target.describe()}")
        try:
            self._send_abandoned()
            for watch in list(self._watches.values()):
                await self._attach(watch)
            while not reader.done():
                probe = await self._request({"op": "probe"})
                self._on_load(self.host_id, HostLoad(
                    load_avg_1m=probe.get("load_avg_1m"),
                    free_memory_gb=probe.get("free_memory_gb"),
                    free_disk_gb=probe.get("free_disk_gb")))
                await asyncio.wait([reader], timeout=PROBE_INTERVAL_SEC)
            reader.result()
        finally:
            reader.cancel()

    def _disconnect(self, reason: str) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        self.reason = reason
        for future in self._pending.values():
            if not future.done():
                future.set_exception(HostUnavailable(f"host {self.host_id} unreachable: "
                                                     f"{reason}"))
        self._pending.clear()
        for watch in self._watches.values():
            watch.attached = False
        if self._agent is not None:
            self._agent.close()
            self._agent = None
        if self._conn is not None:
            self._conn.abort()
            self._conn = None
        if was_ready or reason != "closed":
            self._on_reachable(self.host_id, False, reason)

    # agent messages ----------------------------------------------------------------------
    async def _read_messages(self, agent: asyncssh.SSHClientProcess[bytes]) -> None:
        while True:
            line = await agent.stdout.readline()
            if not line:
                raise OSError("agent channel closed")
            message = json.loads(line)
            op = message.get("op")
            if op == "log":
                watch = self._watches.get((message["job_id"], message["attempt"]))
                if watch is not None:
                    watch.append(message["offset"], base64.b64decode(message["data"]))
            elif op == "exit":
                self._on_exit(message)
            elif "req" in message:
                future = self._pending.pop(message["req"], None)
                if future is not None and not future.done():
                    future.set_result(message)

    def _on_exit(self, message: dict[str, Any]) -> None:
        watch = self._watches.pop((message["job_id"], message["attempt"]), None)
        if watch is None or watch.done.done():
            return
        rc = message.get("rc")
        if rc is not None:
            status = exit_status_from_rc(int(rc))
            watch.files.rc.write_text(f"{rc}\n")
        elif message.get("signal"):
            name = signal_name(int(message["signal"]))
            status = ExitStatus(None, signal=name, detail=f"job wrapper killed by {name}")
        else:
            status = ExitStatus(None, lost=True, detail="job wrapper ended without an rc file")
        watch.done.set_result(status)

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if not self._ready.is_set() or self._agent is None:
            raise HostUnavailable(f"host {self.host_id} is unreachable: {self.reason}",
                                  {"host_id": self.host_id})
        req = next(self._req)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[req] = future
        self._agent.stdin.write(json.dumps({**message, "req": req}).encode() + b"\n")
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_SEC):
                reply = await future
        except TimeoutError:
            self._pending.pop(req, None)
            if self._conn is not None:
                self._conn.abort()  # a silent agent is a dead connection
            raise HostUnavailable(f"host {self.host_id} did not answer",
                                  {"host_id": self.host_id}) from None
        if reply.get("op") == "error":
            raise AprError(f"host {self.host_id}: {reply.get('message')}")
        return reply

    async def _attach(self, watch: _Watch) -> None:
        """Ask the agent to report on an attempt from where our local log ends."""
        watch.offset = _size(watch.files.log)
        reply = await self._request({"op": "watch", "job_id": watch.job_id,
                                     "attempt": watch.attempt, "offset": watch.offset,
                                     "pgid": watch.pgid})
        watch.attached = True
        if reply.get("pgid"):
            watch.pgid = int(reply["pgid"])
        if reply.get("state") == "lost" and not watch.done.done():
            self._watches.pop((watch.job_id, watch.attempt), None)
            watch.done.set_result(ExitStatus(
                None, lost=True, detail=f"no wrapper and no rc file on {self.host_id}"))

    # the Executor protocol --------------------------------------------------------------
    async def start(self, launch: Launch) -> RunHandle:
        if not self._ready.is_set():
            raise StartFailed(f"host {self.host_id} is unreachable: {self.reason}")
        files = launch.files
        files.dir.mkdir(parents=True, exist_ok=True)
        watch = _Watch(launch.job_id, launch.attempt, files, None,
                       asyncio.get_running_loop().create_future(), offset=_size(files.log),
                       attached=True)
        key = (launch.job_id, launch.attempt)
        self._watches[key] = watch  # before the start: its first log bytes may come at once
        env = {**launch.env, "APR_JOB_ID": launch.job_id, "APR_ATTEMPT": str(launch.attempt),
               "APR_HOST": launch.host_id}
        try:
            reply = await self._request({
                "op": "start", "job_id": launch.job_id, "attempt": launch.attempt,
                "command": launch.command, "workdir": launch.workdir, "env": env,
                "offset": watch.offset})
        except AprError as exc:
            self._watches.pop(key, None)
            raise StartFailed(exc.message) from exc
        watch.pgid = int(reply["pgid"])
        return RunHandle(launch.job_id, launch.attempt, watch.pgid, files)

    async def signal(self, handle: RunHandle, signum: int) -> None:
        await self._request({"op": "signal", "pgid": handle.pgid, "signal": int(signum)})

    async def wait(self, handle: RunHandle) -> ExitStatus:
        key = (handle.job_id, handle.attempt)
        watch = self._watches.get(key)
        if watch is None:
            watch = _Watch(handle.job_id, handle.attempt, handle.files, handle.pgid or None,
                           asyncio.get_running_loop().create_future())
            self._watches[key] = watch
            if self._ready.is_set():
                with contextlib.suppress(HostUnavailable):
                    await self._attach(watch)
        try:
            return await asyncio.shield(watch.done)
        finally:
            if not watch.done.done():  # cancelled: the scheduler stopped following it
                self._watches.pop(key, None)
                self._tell({"op": "forget", "job_id": handle.job_id, "attempt": handle.attempt})

    def abandon(self, handle: RunHandle) -> None:
        """The scheduler declared this attempt lost: if it still runs when the host comes
        back, kill it, so a requeued job never runs twice."""
        self._abandoned[(handle.job_id, handle.attempt)] = handle.pgid
        if self._ready.is_set():
            self._send_abandoned()

    def _send_abandoned(self) -> None:
        for (job_id, attempt), pgid in list(self._abandoned.items()):
            if self._tell({"op": "abandon", "job_id": job_id, "attempt": attempt,
                           "pgid": pgid}):
                del self._abandoned[(job_id, attempt)]

    def _tell(self, message: dict[str, Any]) -> bool:
        """Send a command without waiting for its reply (False when not connected)."""
        if not self._ready.is_set() or self._agent is None:
            return False
        self._agent.stdin.write(json.dumps({**message, "req": 0}).encode() + b"\n")
        return True

    async def recover(self, job_id: str, attempt: int, files: AttemptFiles,
                      pgid: int | None) -> RunHandle | ExitStatus:
        """Local rc file: it ended and was fully streamed. Otherwise watch it (the agent
        finds it again once the host answers)."""
        rc = read_rc(files.rc)
        if rc is not None:
            return exit_status_from_rc(rc)
        return RunHandle(job_id, attempt, pgid or 0, files)

    def is_reachable(self) -> bool:
        return self._ready.is_set()


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
