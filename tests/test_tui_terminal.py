"""apr-tui in a real terminal (tmux), attached to a real daemon process.

What Pilot cannot show: how bytes reach the app. Keys arrive as bursts (``tmux send-keys``
of a whole form is one write), a bare ESC is only an ESC after a pause (ESC then ``n`` in
one read is alt+n), and a terminal resize comes as SIGWINCH. The daemon
(``python -m apr_sched serve --port 0``) owns a temporary state dir with one local host;
``python -m apr_tui --state-dir`` attaches to it over its Unix socket. Checks read the
screen (``capture-pane``) and the daemon's API.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import wait_until_sync
from tests.test_tui_support import Daemon, clean_env, daemon_process
from tests.tmux import TMUX, Terminal

pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed (CI installs it)")

TICKER = "i=0; while [ $i -lt 3000 ]; do i=$((i+1)); echo tick $i; sleep 0.05; done"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[Daemon]:
    with daemon_process(tmp_path) as running:
        yield running


def open_terminal(daemon: Daemon, width: int, height: int) -> Terminal:
    """apr-tui attached to ``daemon``, once it shows its jobs table."""
    # its own settings file, never the user's (~/.config/apr_tui)
    env = {**clean_env(), "XDG_CONFIG_HOME": str(daemon.state_dir.parent / "xdg")}
    terminal = Terminal([sys.executable, "-m", "apr_tui", "--state-dir", str(daemon.state_dir)],
                        width=width, height=height, env=env)
    try:
        terminal.wait_text("jobs ·", timeout=30)
    except BaseException:
        terminal.close()
        raise
    return terminal


def ticks(screen: str) -> int:
    """The highest ``tick N`` the screen shows (0: none)."""
    return max((int(n) for n in re.findall(r"\btick (\d+)\b", screen)), default=0)


def test_followed_log_keeps_following_after_a_resize(daemon: Daemon) -> None:
    with daemon.client() as client:
        client.submit({"command": TICKER, "name": "ticker", "timeout_sec": 600})
        with open_terminal(daemon, 160, 48) as terminal:
            terminal.wait_for(lambda screen: ticks(screen) >= 20, message="tick 20")
            terminal.resize(80, 24)
            terminal.wait_for(lambda _: terminal.size() == (80, 24), message="80x24")
            screen = terminal.wait_for(lambda screen: ticks(screen) > 0 and "b Batch" in screen,
                                       message="ticks and the footer at 80x24")
            assert "n New" in screen and "q Quit" in screen  # every key still on screen
            after = ticks(screen)
            # following: new lines keep showing, without pressing f
            terminal.wait_for(lambda screen: ticks(screen) >= after + 20, timeout=20,
                              message=f"tick {after + 20} (the pane froze at {after})")
            terminal.resize(160, 48)
            screen = terminal.wait_for(lambda _: terminal.size() == (160, 48), message="160x48")
            grown = ticks(screen)
            terminal.wait_for(lambda screen: ticks(screen) >= grown + 20, timeout=20,
                              message=f"tick {grown + 20} after growing back")


def test_a_whole_form_sent_at_once_lands_in_its_fields(daemon: Daemon, tmp_path: Path) -> None:
    command = "echo from-form $APR_HOST; sleep 20"
    with daemon.client() as client, open_terminal(daemon, 160, 48) as terminal:
        # n, then the fields with Tab between them, then enter: one burst, no waiting
        terminal.keys("n", command, "Tab", str(tmp_path), "Tab", "formjob", "Enter")
        found = wait_until_sync(lambda: client.jobs().jobs, timeout=15, interval=0.05,
                                message="the form's job was submitted")
        job = found[0]
        assert (job.command, job.workdir, job.name) == (command, str(tmp_path), "formjob")
        terminal.wait_for(lambda screen: "New job" not in screen and "formjob" in screen,
                          message="back on the main screen with the new job")
        client.stop(job.job_id)


def test_escape_then_a_key_in_one_read_is_both_keys(daemon: Daemon) -> None:
    """``/zzz``, ESC and ``n`` in one write: the terminal delivers ESC n together, which
    reads as alt+n; the app takes it as ESC (clear the filter) then ``n`` (new job)."""
    with daemon.client() as client:
        client.submit({"command": "true", "name": "visible"})
        with open_terminal(daemon, 120, 36) as terminal:
            terminal.wait_text("1 shown of 1")
            terminal.keys("/", "zzz")
            terminal.wait_text("0 shown of 1")
            terminal.keys("Escape", "n")
            screen = terminal.wait_text("New job")
            assert "zzz" not in screen
            terminal.keys("Escape")  # alone: after the ESC delay it is a bare escape
            screen = terminal.wait_for(lambda screen: "New job" not in screen,
                                       message="the form closed")
            assert "1 shown of 1" in screen


def test_a_log_search_typed_in_one_burst_finds_the_line(daemon: Daemon) -> None:
    """``l``, ``/``, the text and Enter in one write: the text lands in the log's search bar
    (not in the jobs filter), and the match, far above the tail shown, comes into view;
    ``w`` then wraps and is remembered in the settings file."""
    lines = "; ".join([*(f"echo filler {i}" for i in range(30)), "echo the-far-needle",
                       *(f"echo filler {i}" for i in range(30, 600))])
    with daemon.client() as client:
        job = client.submit({"command": lines, "name": "needles"})
        client.wait(job.job_id, timeout=30)
        with open_terminal(daemon, 120, 36) as terminal:
            terminal.wait_text("filler 599")
            terminal.keys("l", "/", "the-far-needle", "Enter")
            screen = terminal.wait_for(
                lambda screen: "· /the-far-needle" in screen and "filler 599" not in screen,
                timeout=20, message="the match in view, named in the log's title")
            assert "\nthe-far-needle" in screen.replace("│", "\n")  # the line itself
            assert "1 shown of 1" in screen  # the jobs filter was not touched
            terminal.keys("w")
            terminal.wait_text("· wrap ·")
    settings = daemon.state_dir.parent / "xdg" / "apr_tui" / "settings.toml"
    assert "wrap = true" in settings.read_text()
