"""Signals to a waiting client: recorded at once, raised only where it is safe.

``apr-sched wait`` / ``submit --wait`` must not cut a line of output in half, nor leave a job
unstopped when a second Ctrl-C comes while the stops are sent: SIGINT, SIGTERM and SIGHUP are
recorded by the handler and raised as ``Interrupted`` only inside ``Signals.blocking()``
(a network wait, a backoff sleep). A SIGHUP ignored at start (``nohup``) stays ignored;
outside the main thread no handler is installed (signals are not ours there).
"""

from __future__ import annotations

import signal

TYPE_CHECKING = False  # typing's, without importing typing (see apr_sched/__init__.py)
if TYPE_CHECKING:
    from types import FrameType
    from typing import Any

__all__ = ["Interrupted", "Signals"]


class Interrupted(BaseException):
    """A signal asked the waiting process to end (BaseException: no handler swallows it)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


class Signals:
    """SIGINT, SIGTERM and SIGHUP recorded, and raised as ``Interrupted`` only inside
    ``blocking()`` (a network wait, a backoff sleep): output is never cut mid-line."""

    NAMES = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)

    def __init__(self) -> None:
        self.received: list[int] = []
        self._taken = 0
        self._armed = False
        self._previous: dict[int, Any] = {}
        self._depth = 0
        """Entered this many times: the handlers are installed at the first, restored at the
        last exit (a caller may install them early, before what it then waits for)."""

    def __enter__(self) -> Signals:
        self._depth += 1
        if self._depth > 1:
            return self
        for signum in self.NAMES:
            if signum == signal.SIGHUP and signal.getsignal(signum) == signal.SIG_IGN:
                continue  # nohup: the caller wants us to outlive the terminal
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals are not ours to handle
                break
        return self

    def __exit__(self, *exc: object) -> None:
        self._depth -= 1
        if self._depth:
            return
        for signum, previous in self._previous.items():
            signal.signal(signum, previous)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received.append(signum)
        if self._armed:
            self.check()

    def check(self) -> None:
        """Raise for a signal not raised yet."""
        if len(self.received) > self._taken:
            self._taken = len(self.received)
            self._armed = False
            raise Interrupted(self.received[-1])

    def blocking(self) -> _Blocking:
        """``with signals.blocking():`` around a wait that a signal may cut short."""
        return _Blocking(self)


class _Blocking:
    """What ``Signals.blocking()`` returns (a class: contextlib is not loaded to wait)."""

    __slots__ = ("_signals",)

    def __init__(self, signals: Signals) -> None:
        self._signals = signals

    def __enter__(self) -> None:
        self._signals.check()
        self._signals._armed = True

    def __exit__(self, *exc: object) -> None:
        self._signals._armed = False
