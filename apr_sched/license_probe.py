"""Asking a license server how many seats are in use, now and then, without trusting it.

A probe is an admin's command line from the config (``lmutil lmstat -c 5280@lic01 -f
innovus``). It runs in its own process group with a time limit and a cap on what it may
print; its output is parsed (``lmstat`` or one integer). A probe that fails — exits
non-zero, runs too long, prints nothing useful — keeps the last good reading and says why
and since when, so a flaky license server neither frees seats that are in use nor blocks
every job.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
from dataclasses import dataclass
from typing import Literal

from apr_sched.lmstat import ProbeOutputError, parse_integer, seats_in_use

__all__ = ["ProbeReading", "ProbeSpec", "run_probe"]

LINGER_SEC = 5.0
"""After the time limit's kill, how long the pipes may take to close."""
MAX_OUTPUT_BYTES = 4 << 20
"""lmstat -a of a large site prints a few hundred kB; more than this is a broken probe."""


@dataclass(frozen=True)
class ProbeSpec:
    feature: str
    command: str
    """Run by ``/bin/sh -c`` as the daemon's user: it comes from the admin's config."""
    format: Literal["lmstat", "integer"] = "lmstat"
    timeout_sec: float = 30.0


@dataclass(frozen=True)
class ProbeReading:
    """What the last probe said, and the last good value it or an earlier one gave."""

    in_use: int | None
    """Seats in use by everyone (apr_sched's jobs included), from the last good probe;
    None before any probe succeeded."""
    good_at: float | None
    """time.time() of that good probe."""
    error: str | None = None
    """Why the latest probe gave no value (then ``in_use`` is older)."""
    error_at: float | None = None

    def after(self, result: int | str, now: float) -> ProbeReading:
        """The reading once a probe gave ``result``: a count, or the error text."""
        if isinstance(result, int):
            return ProbeReading(result, now)
        return ProbeReading(self.in_use, self.good_at, result, now)

    def describe(self, now: float) -> str:
        if self.error is None:
            return f"{self.in_use} in use (probed {now - (self.good_at or now):.0f}s ago)"
        kept = ("no value yet" if self.in_use is None
                else f"keeping {self.in_use} from {now - (self.good_at or now):.0f}s ago")
        return f"probe failing: {self.error}; {kept}"


async def run_probe(spec: ProbeSpec) -> int | str:
    """Seats in use per the probe, or the reason it gave none (never raises for a bad
    probe: its failures are data)."""
    loop = asyncio.get_running_loop()
    try:
        transport, capture = await loop.subprocess_exec(
            _Capture, "/bin/sh", "-c", spec.command, stdin=subprocess.DEVNULL,
            start_new_session=True)
    except OSError as exc:
        return f"cannot start {spec.command!r}: {exc.strerror or exc}"
    pid = transport.get_pid()
    capture.pid = pid
    timer = loop.call_later(spec.timeout_sec, capture.time_up)
    try:
        await asyncio.wait_for(capture.done, spec.timeout_sec + LINGER_SEC)
    except TimeoutError:  # a process that left the group holds the pipes open
        _kill_group(pid)
        return f"{spec.command!r} ran past {spec.timeout_sec:g}s and its output never ended"
    finally:
        timer.cancel()
        transport.close()
    if capture.timed_out:
        return f"{spec.command!r} ran past {spec.timeout_sec:g}s and was killed"
    if capture.over:
        return f"{spec.command!r} printed more than {MAX_OUTPUT_BYTES >> 20} MB"
    code = transport.get_returncode()
    if code != 0:
        last = bytes(capture.errors).decode(errors="replace").strip().splitlines()[-1:] or [""]
        detail = f": {last[0][:200]}" if last[0] else ""
        return f"{spec.command!r} exited with {code}{detail}"
    text = bytes(capture.output).decode(errors="replace")
    try:
        if spec.format == "integer":
            return parse_integer(text)
        return seats_in_use(text, spec.feature)
    except ProbeOutputError as exc:
        return str(exc)


class _Capture(asyncio.SubprocessProtocol):
    """Collects stdout and stderr up to the cap; past it, or past the time limit, the
    probe's process group is killed (its pipes then end and it is reaped)."""

    def __init__(self) -> None:
        self.output = bytearray()
        self.errors = bytearray()
        self.over = False
        self.timed_out = False
        self.pid = 0
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def pipe_data_received(self, fd: int, data: bytes) -> None:
        if self.over:
            return
        buffer = self.output if fd == 1 else self.errors
        buffer += data
        if len(self.output) + len(self.errors) > MAX_OUTPUT_BYTES:
            self.over = True
            self.output.clear()
            self.errors.clear()
            _kill_group(self.pid)

    def time_up(self) -> None:
        self.timed_out = True
        _kill_group(self.pid)

    def connection_lost(self, exc: Exception | None) -> None:
        """Called once the process exited and all its pipes closed: the output is whole."""
        if not self.done.done():
            self.done.set_result(None)


def _kill_group(pid: int) -> None:
    """The probe and whatever it started (``lmutil`` under a shell) go together."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
