"""Native SSH hosts: one asyncssh connection per host, one agent channel on it.

The agent (``remote_agent.py``, run by the host's python3) starts wrappers in the remote
spool, signals process groups, streams log bytes and reports exits. The login shell runs
once per connection, not once per job.

Log bytes carry their offset in the remote log, and the local log file's own size is the one
truth of how much arrived: bytes before it are dropped (an overlap, e.g. after a re-attach),
bytes past it are never written (a gap: the agent is asked to resume from the local size),
and an exit is accepted only once the local log is as long as the remote one. After a
reconnect streaming resumes exactly where the local file ends: nothing is duplicated,
nothing is missed. Both logs start empty when an attempt starts.

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
import secrets
from collections.abc import Callable
from dataclasses import dataclass
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
"""A request (or the agent's hello) unanswered this long means the agent is stuck: the
connection is dropped and made again."""
EXIT_RESYNCS = 3
"""How often an exit reported before the local log is complete is answered by asking for
the missing bytes again, before the attempt is closed with what arrived."""
BACKOFF_MAX_SEC = 10.0
HOST_KEY_RETRY_SEC = 30.0


class HostUnavailable(AprError):
    """An action needs the host, and the host cannot be reached right now."""

    code = "host_unavailable"
    http_status = 409


class ReplyLost(HostUnavailable):
    """A request was sent but its reply never came: it may or may not have been done."""


class AgentFailed(Exception):
    """The agent did not start, or ended; the message says why (its stderr included)."""


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
    attached: bool = False
    resyncing: bool = False
    """A request to resume the stream from the local size is on its way."""
    exit_resyncs: int = 0

    def append(self, offset: int, data: bytes) -> bool:
        """Write what of ``data`` (remote log bytes from ``offset``) the local log lacks.
        False for a gap (the bytes start past the local end): nothing is written."""
        fd = os.open(self.files.log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            have = os.fstat(fd).st_size
            if offset > have:
                return False
            fresh = memoryview(data)[have - offset:]
            while fresh:
                fresh = fresh[os.write(fd, fresh):]
        finally:
            os.close(fd)
        return True


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
        self._abandoned: dict[tuple[str, int], tuple[int, str | None]] = {}
        """Attempts to kill when the host answers: pgid (0: unknown) and the token of a
        start whose reply was lost (the agent then refuses it, should it read it late)."""
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._failure: str | None = None
        self._background: set[asyncio.Task[None]] = set()
        self.reason = "connecting"
        self.agent_pid: int | None = None
        """The remote agent's pid while connected (for diagnostics)."""

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
            self._failure = None
            try:
                await self._connect()
                backoff = 0.5
                await self._serve()
                reason = "agent connection ended"
            except AgentFailed as exc:
                reason = str(exc)
            except HostUnavailable as exc:
                reason = exc.message
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
            reason = self._failure or reason  # the first cause, not its consequences
            self._disconnect(reason)
            if self._closing:
                return
            log.warning("host %s unreachable: %s (retry in %.1fs)", self.host_id, reason, wait)
            await asyncio.sleep(wait)  # reconnection backoff, not a wait for a condition
            backoff = min(backoff * 2, BACKOFF_MAX_SEC)

    async def _connect(self) -> None:
        self._conn = await asyncssh.connect(**self.connect_options())
        self._agent = agent = await self._conn.create_process(self.agent_command(),
                                                              encoding=None)
        hello = await self._hello(agent)
        self.agent_pid = hello.get("pid")
        log.info("host %s: agent %s up (python %s, spool %s)", self.host_id, hello.get("pid"),
                 hello.get("python"), hello.get("spool"))

    async def _hello(self, agent: asyncssh.SSHClientProcess[bytes]) -> dict[str, Any]:
        """The agent's first message. Lines a login script prints before it are skipped."""
        where = self.target.describe()
        skipped: list[bytes] = []
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_SEC):
                while line := await agent.stdout.readline():
                    with contextlib.suppress(ValueError):
                        message = json.loads(line)
                        if isinstance(message, dict) and message.get("op") == "hello":
                            return message
                    skipped = [*skipped[-4:], line.strip()]
        except TimeoutError:
            raise AgentFailed(f"agent on {where} did not start within {REPLY_TIMEOUT_SEC:g}s"
                              ) from None
        output = b" | ".join(skipped).decode(errors="replace")
        raise AgentFailed(f"agent on {where} did not start (python3 >= 3.6 is needed "
                          f"there): {await _stderr_tail(agent) or output or 'no output'}")

    async def _serve(self) -> None:
        """Read agent messages, probe, and re-attach watches, until the connection fails."""
        assert self._agent is not None
        reader = asyncio.get_running_loop().create_task(self._read_messages(self._agent))
        reader.add_done_callback(self._reader_ended)
        self._ready.set()
        self.reason = "online"
        self._on_reachable(self.host_id, True, f"connected to {self.target.describe()}")
        try:
            self._send_abandoned()
            for watch in list(self._watches.values()):
                try:
                    await self._attach(watch)
                except HostUnavailable:
                    raise
                except AprError as exc:  # one attempt the agent cannot follow
                    self._end_watch(watch, ExitStatus(None, lost=True, detail=exc.message))
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

    def _reader_ended(self, reader: asyncio.Task[None]) -> None:
        """The agent's output ended: no request pending or to come will be answered, so
        none may wait for its timeout (a write that failed can leave one waiting)."""
        if reader.cancelled():
            return
        exc = reader.exception()
        reason = str(exc) if isinstance(exc, AgentFailed) else (
            f"cannot reach {self.target.describe()}: {type(exc).__name__} {exc}")
        self._failure = self._failure or reason
        self._ready.clear()
        self._fail_pending(reason)

    def _fail_pending(self, reason: str) -> None:
        for future in self._pending.values():
            if not future.done():
                future.set_exception(ReplyLost(f"host {self.host_id} unreachable: {reason}",
                                               {"host_id": self.host_id}))
                future.exception()  # its waiter may be cancelled meanwhile (a close): no warning
        self._pending.clear()

    def _disconnect(self, reason: str) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        self.reason = reason
        self._fail_pending(reason)
        for watch in self._watches.values():
            watch.attached = False
        if self._agent is not None:
            self._agent.close()
            self._agent = None
            self.agent_pid = None
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
                stderr = await _stderr_tail(agent)
                raise AgentFailed(f"agent on {self.target.describe()} ended: "
                                  f"{stderr or 'connection closed'}")
            message = json.loads(line)
            op = message.get("op")
            if op == "log":
                watch = self._watches.get((message["job_id"], message["attempt"]))
                if watch is not None:
                    self._on_log(watch, int(message["offset"]),
                                 base64.b64decode(message["data"]))
            elif op == "exit":
                self._on_exit(message)
            elif "req" in message:
                future = self._pending.pop(message["req"], None)
                if future is not None and not future.done():
                    future.set_result(message)

    def _on_log(self, watch: _Watch, offset: int, data: bytes) -> None:
        try:
            in_sync = watch.append(offset, data)
        except OSError as exc:  # e.g. the local disk is full: ask again later
            log.error("job %s attempt %d: cannot write its log %s: %s", watch.job_id,
                      watch.attempt, watch.files.log, exc.strerror)
            in_sync = False
        if not in_sync:
            self._resync(watch)

    def _resync(self, watch: _Watch) -> None:
        """Ask the agent to stream again from where the local log ends (one ask at a time;
        bytes in flight meanwhile are dropped as gaps or trimmed as overlaps)."""
        if watch.resyncing or not self._ready.is_set():
            return  # a reconnect re-attaches every watch anyway
        log.warning("job %s attempt %d: log resumed from byte %d", watch.job_id,
                    watch.attempt, _size(watch.files.log))
        watch.resyncing = True

        async def ask() -> None:
            try:
                await self._attach(watch)
            except AprError as exc:
                log.warning("job %s: resuming its log failed: %s", watch.job_id, exc.message)
            finally:
                watch.resyncing = False

        task = asyncio.get_running_loop().create_task(ask())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _on_exit(self, message: dict[str, Any]) -> None:
        watch = self._watches.get((message["job_id"], message["attempt"]))
        if watch is None or watch.done.done():
            self._watches.pop((message["job_id"], message["attempt"]), None)
            return
        have, size = _size(watch.files.log), int(message.get("size") or 0)
        if have < size and watch.exit_resyncs < EXIT_RESYNCS:
            watch.exit_resyncs += 1  # the agent streams the rest and reports the exit again
            self._resync(watch)
            return
        rc = message.get("rc")
        if rc is not None:
            status = exit_status_from_rc(int(rc))
            try:
                watch.files.rc.write_text(f"{rc}\n")
            except OSError as exc:  # a restarted scheduler asks the agent instead
                log.error("job %s: cannot write %s: %s", watch.job_id, watch.files.rc,
                          exc.strerror)
        elif message.get("signal"):
            name = signal_name(int(message["signal"]))
            status = ExitStatus(None, signal=name, detail=f"job wrapper killed by {name}")
        else:
            status = ExitStatus(None, lost=True, detail="job wrapper ended without an rc file")
        if have < size:
            log.error("job %s attempt %d: log incomplete, %d of %d bytes", watch.job_id,
                      watch.attempt, have, size)
        self._end_watch(watch, status)

    def _end_watch(self, watch: _Watch, status: ExitStatus) -> None:
        self._watches.pop((watch.job_id, watch.attempt), None)
        if not watch.done.done():
            watch.done.set_result(status)

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        if not self._ready.is_set() or self._agent is None:
            raise HostUnavailable(f"host {self.host_id} is unreachable: {self.reason}",
                                  {"host_id": self.host_id})
        req = next(self._req)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        if not self._write(self._agent, {**message, "req": req}):
            raise HostUnavailable(f"host {self.host_id} is unreachable: channel closed",
                                  {"host_id": self.host_id})
        self._pending[req] = future
        try:
            async with asyncio.timeout(REPLY_TIMEOUT_SEC):
                reply = await future
        except TimeoutError:
            self._pending.pop(req, None)
            failure = (f"agent on {self.target.describe()} did not answer a "
                       f"{message.get('op')} request within {REPLY_TIMEOUT_SEC:g}s")
            self._failure = self._failure or failure
            if self._conn is not None:
                self._conn.abort()  # a silent agent is a dead connection
            raise ReplyLost(f"host {self.host_id}: {failure}", {"host_id": self.host_id}
                            ) from None
        if reply.get("op") == "error":
            raise AprError(f"host {self.host_id}: {reply.get('message')}")
        return reply

    async def _attach(self, watch: _Watch) -> None:
        """Ask the agent to report on an attempt from where our local log ends."""
        reply = await self._request({"op": "watch", "job_id": watch.job_id,
                                     "attempt": watch.attempt,
                                     "offset": _size(watch.files.log), "pgid": watch.pgid})
        watch.attached = True
        if reply.get("pgid"):
            watch.pgid = int(reply["pgid"])
        if reply.get("state") == "lost":
            self._end_watch(watch, ExitStatus(
                None, lost=True, detail=f"no wrapper and no rc file on {self.host_id}"))

    # the Executor protocol --------------------------------------------------------------
    async def start(self, launch: Launch) -> RunHandle:
        if not self._ready.is_set():
            raise StartFailed(f"host {self.host_id} is unreachable: {self.reason}")
        files = launch.files
        files.dir.mkdir(parents=True, exist_ok=True)
        try:  # the remote log starts empty, so must ours: offsets are the same bytes
            os.close(os.open(files.log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600))
        except OSError as exc:
            raise StartFailed(f"cannot create log {files.log}: {exc.strerror}") from exc
        watch = _Watch(launch.job_id, launch.attempt, files, None,
                       asyncio.get_running_loop().create_future(), attached=True)
        key = (launch.job_id, launch.attempt)
        self._watches[key] = watch  # before the start: its first log bytes may come at once
        env = {**launch.env, "APR_JOB_ID": launch.job_id, "APR_ATTEMPT": str(launch.attempt),
               "APR_HOST": launch.host_id}
        token = secrets.token_hex(8)
        try:
            reply = await self._request({
                "op": "start", "job_id": launch.job_id, "attempt": launch.attempt,
                "command": launch.command, "workdir": launch.workdir, "env": env,
                "token": token, "output": launch.output().args()})
        except AprError as exc:
            self._watches.pop(key, None)
            if isinstance(exc, ReplyLost):  # it may have started: it must not run unseen
                self._abandoned[key] = (0, token)
                raise StartFailed(f"{exc.message}; if it started there, it is killed when "
                                  f"the host answers again") from exc
            raise StartFailed(exc.message) from exc
        watch.pgid = int(reply["pgid"])
        return RunHandle(launch.job_id, launch.attempt, watch.pgid, files)

    async def signal(self, handle: RunHandle, signum: int) -> None:
        """Signal the attempt's process group and every process carrying its marker."""
        watch = self._watches.get((handle.job_id, handle.attempt))
        pgid = handle.pgid or (watch.pgid if watch is not None else None)
        await self._request({"op": "signal", "pgid": pgid or None, "signal": int(signum),
                             "job_id": handle.job_id, "attempt": handle.attempt})

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

    def log_trimmed(self, handle: RunHandle, dropped: tuple[int, int]) -> None:
        """Drop the same bytes from the spool's copy of the log. They have all arrived here
        (the local log is never longer than the remote one), and the stream resumes from
        the local size, past them: the hole is never streamed. Not connected: the next
        trim covers the range again (it always starts at the hole's start)."""
        self._tell({"op": "trim", "job_id": handle.job_id, "attempt": handle.attempt,
                    "start": dropped[0], "end": dropped[1]})

    def abandon(self, handle: RunHandle) -> None:
        """The scheduler declared this attempt lost: if it still runs when the host comes
        back, kill it, so a requeued job never runs twice."""
        self._abandoned[(handle.job_id, handle.attempt)] = (handle.pgid, None)
        if self._ready.is_set():
            self._send_abandoned()

    def _send_abandoned(self) -> None:
        for (job_id, attempt), (pgid, token) in list(self._abandoned.items()):
            if self._tell({"op": "abandon", "job_id": job_id, "attempt": attempt,
                           "pgid": pgid or None, "token": token}):
                del self._abandoned[(job_id, attempt)]

    def _tell(self, message: dict[str, Any]) -> bool:
        """Send a command without waiting for its reply (False when not connected)."""
        if not self._ready.is_set() or self._agent is None:
            return False
        return self._write(self._agent, {**message, "req": 0})

    @staticmethod
    def _write(agent: asyncssh.SSHClientProcess[bytes], message: dict[str, Any]) -> bool:
        """Send one command line; False when the channel is already closed (not sent)."""
        try:
            agent.stdin.write(json.dumps(message).encode() + b"\n")
        except (OSError, asyncssh.Error):
            return False
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


async def _stderr_tail(agent: asyncssh.SSHClientProcess[bytes]) -> str:
    """The line of the agent's (or its login shell's) stderr that says what went wrong:
    the last one naming an error, else the last one; and its exit status when known."""
    data = b""
    with contextlib.suppress(TimeoutError, OSError, asyncssh.Error):
        async with asyncio.timeout(1.0):
            data = await agent.stderr.read(1 << 16)
            await agent.wait_closed()
    lines = [line.strip() for line in data.decode(errors="replace").splitlines()
             if line.strip()]
    errors = [line for line in lines if "rror" in line or "not found" in line]
    text = (errors or lines or [""])[-1]
    if agent.returncode is not None:
        text = f"{text} (exit status {agent.returncode})".lstrip()
    return text


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0
