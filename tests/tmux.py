"""A real terminal for TUI tests: a private tmux server, one detached session of a fixed
size, keys sent with ``send-keys``, the screen read with ``capture-pane -p``.

Each ``Terminal`` has its own server socket in a fresh temporary directory, so tests never
touch a user's tmux; ``close`` kills that server only. Waits poll the screen with a bound.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType

TMUX = shutil.which("tmux")
COMMAND_TIMEOUT_SEC = 10.0


class Terminal:
    """``command`` running in a ``width`` x ``height`` tmux pane (the session ends with it
    only after ``close``: the pane stays so its last screen can be read)."""

    def __init__(self, command: Sequence[str], *, width: int, height: int,
                 env: Mapping[str, str] | None = None, cwd: Path | None = None) -> None:
        if TMUX is None:
            raise RuntimeError("tmux is not installed")
        self._dir = Path(tempfile.mkdtemp(prefix="apr-tmux-"))
        self.socket = self._dir / "tmux.sock"
        self._env = {**(os.environ if env is None else env), "TERM": "xterm-256color"}
        self._tmux("-f", os.devnull, "new-session", "-d", "-s", "tui", "-x", str(width),
                   "-y", str(height), "-c", str(cwd or self._dir), "--", *command)
        # keep the pane (and its last screen) if the program exits; report its size exactly
        self._tmux("set-option", "-t", "tui", "remain-on-exit", "on")
        self._tmux("set-option", "-t", "tui", "window-size", "manual")

    def _tmux(self, *args: str) -> str:
        assert TMUX is not None
        done = subprocess.run([TMUX, "-S", str(self.socket), *args], capture_output=True,
                              text=True, env=self._env, timeout=COMMAND_TIMEOUT_SEC,
                              check=False)
        if done.returncode != 0:
            raise RuntimeError(f"tmux {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    # input ---------------------------------------------------------------------------------
    def keys(self, *keys: str) -> None:
        """tmux key names (``Tab``, ``Escape``, ``Enter``, ``n``), in one ``send-keys``: the
        program reads them as one burst."""
        self._tmux("send-keys", "-t", "tui", *keys)

    def type(self, text: str) -> None:
        """``text`` literally, in one ``send-keys -l`` (one write to the program)."""
        self._tmux("send-keys", "-t", "tui", "-l", text)

    def resize(self, width: int, height: int) -> None:
        self._tmux("resize-window", "-t", "tui", "-x", str(width), "-y", str(height))

    # output --------------------------------------------------------------------------------
    def screen(self) -> str:
        """What the pane shows now, one line per row."""
        return self._tmux("capture-pane", "-p", "-t", "tui")

    def size(self) -> tuple[int, int]:
        width, height = self._tmux("display-message", "-p", "-t", "tui",
                                   "#{pane_width} #{pane_height}").split()
        return int(width), int(height)

    def dead(self) -> bool:
        """True once the program in the pane has exited."""
        return self._tmux("display-message", "-p", "-t", "tui", "#{pane_dead}").strip() == "1"

    def wait_for(self, predicate: Callable[[str], object], timeout: float = 15.0,
                 message: str = "") -> str:
        """Poll the screen until ``predicate(screen)`` is truthy; return that screen. On
        timeout the assertion shows the last screen."""
        deadline = time.monotonic() + timeout
        while True:
            screen = self.screen()
            if predicate(screen):
                return screen
            if time.monotonic() > deadline:
                raise AssertionError(f"screen never showed {message or predicate} within "
                                     f"{timeout}s; last screen:\n{screen}")
            time.sleep(0.05)

    def wait_text(self, text: str, timeout: float = 15.0) -> str:
        return self.wait_for(lambda screen: text in screen, timeout, repr(text))

    # lifetime ------------------------------------------------------------------------------
    def close(self) -> None:
        """Kill this terminal's own tmux server (and the program in it)."""
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self._tmux("kill-server")
        shutil.rmtree(self._dir, ignore_errors=True)

    def __enter__(self) -> Terminal:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.close()
