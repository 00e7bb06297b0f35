"""The log pane's search, error jumps, wrap and path, on logs real jobs wrote (an in-process
scheduler, and attached over HTTP), and the headless scan (``apr_tui.logsearch``) on real
files, one of 250 MB."""

from __future__ import annotations

import resource
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from rich.style import Style

from apr_sched import JobStatus, Scheduler
from apr_sched.client import find_token
from apr_sched.http.service import HttpService
from apr_sched.logs import attempt_files
from apr_tui.app import AprTui
from apr_tui.backend import AttachedBackend, InProcessBackend
from apr_tui.logsearch import (
    FileLogReader,
    LiteralFinder,
    PatternFinder,
    literal_head,
    read_window,
    search_backward,
    search_forward,
)
from apr_tui.settings import DEFAULT_ERROR_PATTERNS, default_settings_path
from apr_tui.widgets.log import LogPane
from tests.conftest import wait_until
from tests.test_tui_support import (
    open_tui,
    select,
    start_scheduler,
    type_at_once,
    wait_shown,
)

FILLER = "x" * 88
"""Lines are about 100 bytes: a 64 KB window around a match holds some 640 of them."""


def script_job(tmp_path: Path, name: str, body: str) -> dict[str, Any]:
    """A job running a Python script (``out`` is its stdout, binary) that ends by itself."""
    script = tmp_path / f"{name}.py"
    script.write_text("import sys\nout = sys.stdout.buffer\n" + body)
    return {"command": f"{sys.executable} {script}", "workdir": str(tmp_path), "name": name}


def numbered_lines(count: int, marks: dict[int, str]) -> str:
    """Script body: ``count`` numbered lines, line N being ``marks[N]`` where given."""
    return (f"marks = {marks!r}\n"
            f"for i in range({count}):\n"
            f"    text = marks.get(i, 'line %05d {FILLER}' % i)\n"
            f"    out.write(text.encode() + b'\\n')\n")


async def finished_job(scheduler: Scheduler, spec: dict[str, Any]) -> str:
    job = await scheduler.submit(spec)

    async def done() -> bool:
        return (await scheduler.get_job(job.job_id)).status is JobStatus.SUCCEEDED

    await wait_until(done, 60, message=f"job {spec['name']} finished")
    return job.job_id


async def log_selected(app: AprTui, pilot: Any, job_id: str) -> LogPane:
    """The job's log pane once its tail is shown, with the pane selected (``l``)."""
    await wait_shown(app, job_id, "SUCCEEDED")
    await select(app, pilot, job_id)
    pane = app.main.log_pane
    await wait_until(lambda: pane.job_id == job_id and pane.lines, 10, message="log shown")
    await pilot.press("l")
    assert app.focused is pane.view
    return pane


async def search(pilot: Any, pane: LogPane, *keys: str, timeout: float = 10.0) -> str:
    """Press ``keys``, wait for the search to end; the line of the match (it must be in
    view and marked)."""
    before = pane.hit
    await pilot.press(*keys)
    await wait_until(lambda: not pane.searching and pane.hit is not before, timeout,
                     message=f"a match after {keys} ({pane.search_state})")
    await pilot.pause()
    return hit_line_in_view(pane)


def hit_line_in_view(pane: LogPane) -> str:
    view = pane.view
    index = view.hit_line
    assert index is not None, "the matching line is marked"
    assert view.offsets[index] == pane.hit.line_start  # type: ignore[union-attr]
    top = int(view.scroll_offset.y)
    row = view._row_of(index)
    assert top <= row < top + view.size.height, (row, top, view.size)
    return view.lines[index]


def highlighted_texts(pane: LogPane) -> list[str]:
    """Text drawn with the match style, on the screen rows of the view now."""
    view = pane.view
    style: Style = view.get_component_rich_style("log-view--match")
    found = []
    for y in range(view.size.height):
        for segment in view.render_line(y):
            if segment.style is not None and segment.style.bgcolor == style.bgcolor \
                    and segment.text.strip():
                found.append(segment.text)
    return found


# the pane on a real job's log --------------------------------------------------------------
async def test_slash_finds_highlights_and_n_N_go_on_wrapping_around(make_scheduler: Any,
                                                                    tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    marks = {100: "first needle here", 2000: "second NEEDLE here", 2996: "third needle"}
    job_id = await finished_job(scheduler, script_job(tmp_path, "marks",
                                                      numbered_lines(3000, marks)))
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, seen):
        pane = await log_selected(app, pilot, job_id)
        assert len(pane.lines) == 500  # the tail only: lines 2500-2999
        await pilot.press("slash")
        assert app.focused is pane.search_bar
        line = await search(pilot, pane, *"needle", "enter")  # from the view on: the third
        assert line == "third needle" and app.focused is pane.view
        assert highlighted_texts(pane) == ["needle"]
        assert "/needle" in str(pane.border_title)
        line = await search(pilot, pane, "n")  # past the end: wraps to the first
        assert line == "first needle here"
        assert "wrapped around" in str(pane.border_title)
        assert pane.view.first_offset < 200 * 100 and not pane.follow  # lines around it
        line = await search(pilot, pane, "n")  # case-insensitive: lower-case text typed
        assert line == "second NEEDLE here" and "NEEDLE" in highlighted_texts(pane)
        line = await search(pilot, pane, "N")
        assert line == "first needle here"
        line = await search(pilot, pane, "N")  # before the first: wraps to the last
        assert line == "third needle"
        await pilot.press("slash", *"Needle", "enter")  # a capital: case-sensitive
        await wait_until(lambda: not pane.searching, 10)
        assert pane.search_state == "not found" and any("not found" in n for n in seen.notes)
        await pilot.press("escape")  # the highlight goes; esc again is the screen's
        assert pane.finder is None and highlighted_texts(pane) == []
        await pilot.press("f")  # following again: the end of the log is read again
        await wait_until(lambda: pane.lines and pane.lines[-1].startswith("line 02999")
                         and pane.at_tail and pane.follow, 5)


async def test_scrolling_past_the_lines_held_reads_the_next_piece(make_scheduler: Any,
                                                                  tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job_id = await finished_job(scheduler, script_job(tmp_path, "long",
                                                      numbered_lines(3000, {})))
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        pane = await log_selected(app, pilot, job_id)
        first = pane.lines[0]
        assert first.startswith("line 02500")
        await pilot.press("home", "up")  # at the top of what is held: read what is before
        await wait_until(lambda: pane.lines[0].startswith("line 0") and pane.lines[0] < first
                         and not pane._extending, 5)
        assert first in pane.lines and not pane.follow
        index = pane.lines.index(first)
        assert pane.view.offsets[index] == 2500 * (len(first) + 1)  # offsets stay exact
        for _ in range(20):  # all the way up: line 0 is reached, nothing read twice
            await pilot.press("home", "up")
            await wait_until(lambda: not pane._extending, 5)
        assert pane.lines[0].startswith("line 00000") and len(set(pane.lines)) == len(
            pane.lines)


async def test_e_and_E_jump_to_the_first_and_last_error_lines(make_scheduler: Any,
                                                              tmp_path: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    marks = {10: "Info: **ERROR mentioned, not an error line", 50: "**ERROR: (IMPLF-200) first",
             1500: "Error: middle one (CMD-005)", 2200: "[ERROR GRT-0118] openroad",
             2950: "**ERROR: (IMPSP-9025) last"}
    job_id = await finished_job(scheduler, script_job(tmp_path, "errors",
                                                      numbered_lines(3000, marks)))
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        pane = await log_selected(app, pilot, job_id)
        assert await search(pilot, pane, "e") == "**ERROR: (IMPLF-200) first"
        assert "errors" in str(pane.border_title)
        assert highlighted_texts(pane) == ["**ERROR"]
        assert await search(pilot, pane, "n") == "Error: middle one (CMD-005)"
        assert await search(pilot, pane, "n") == "[ERROR GRT-0118] openroad"
        assert await search(pilot, pane, "E") == "**ERROR: (IMPSP-9025) last"
        assert await search(pilot, pane, "N") == "[ERROR GRT-0118] openroad"


async def test_error_patterns_come_from_the_settings_file(make_scheduler: Any,
                                                          tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    settings.write_text("[log]\nerror_patterns = ['^FAIL:', '^Traceback']\n")
    scheduler = await start_scheduler(make_scheduler)
    marks = {5: "**ERROR: not one of ours", 40: "FAIL: test_route", 70: "Traceback (most"}
    job_id = await finished_job(scheduler, script_job(tmp_path, "custom",
                                                      numbered_lines(100, marks)))
    async with open_tui(InProcessBackend(scheduler), settings_path=settings) as (app, pilot, _):
        pane = await log_selected(app, pilot, job_id)
        assert await search(pilot, pane, "e") == "FAIL: test_route"
        assert await search(pilot, pane, "E") == "Traceback (most"


async def test_w_wraps_long_lines_and_the_choice_is_remembered(make_scheduler: Any,
                                                               tmp_path: Path) -> None:
    settings = tmp_path / "settings.toml"
    scheduler = await start_scheduler(make_scheduler)
    body = "out.write(b'short\\n' + b'long ' * 100 + b'\\n' + b'end\\n')\n"
    job_id = await finished_job(scheduler, script_job(tmp_path, "wide", body))
    for wrapped_at_start in (False, True):
        async with open_tui(InProcessBackend(scheduler),
                            settings_path=settings) as (app, pilot, _):
            pane = await log_selected(app, pilot, job_id)
            view = pane.view
            assert view.wrap is wrapped_at_start
            if not wrapped_at_start:
                assert view.virtual_size.height == 3 and view.virtual_size.width >= 500
                await pilot.press("w")
            assert view.wrap and "wrap" in str(pane.border_title)
            width = view.scrollable_content_region.width
            assert view.virtual_size.width == width
            assert view.virtual_size.height == 2 + -(-500 // width)
            rows = ["".join(s.text for s in view.render_line(y)).rstrip()
                    for y in range(view.virtual_size.height)]
            assert rows[0] == "short" and rows[-1] == "end"
            assert "".join(rows[1:-1]) == ("long " * 100).rstrip()
    assert "wrap = true" in settings.read_text()


async def test_y_shows_the_log_path_and_copies_it(make_scheduler: Any, tmp_path: Path,
                                                  state_dir: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job_id = await finished_job(scheduler, script_job(tmp_path, "pathy", "print('hi')\n"))
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, seen):
        await log_selected(app, pilot, job_id)
        await pilot.press("y")
        path = str(attempt_files(state_dir, job_id, 1).log)
        await wait_until(lambda: app.clipboard == path, 5, message="copied to the clipboard")
        assert Path(path).read_text() == "hi\n"
        assert any(path in note for note in seen.notes)


async def test_attached_search_reads_through_the_api(make_scheduler: Any,
                                                     tmp_path: Path) -> None:
    """Attached without the daemon's state dir, the log is read over HTTP by offset."""
    scheduler = await start_scheduler(make_scheduler)
    marks = {30: "**ERROR: over http", 1900: "the needle over http"}
    job_id = await finished_job(scheduler, script_job(tmp_path, "remote",
                                                      numbered_lines(2000, marks)))
    service = HttpService(scheduler, "127.0.0.1", 0)
    await service.start()
    try:
        backend = AttachedBackend(service.url, find_token(None, scheduler.state_dir),
                                  long_poll_sec=0.5)
        async with open_tui(backend) as (app, pilot, seen):
            pane = await log_selected(app, pilot, job_id)
            assert type(backend.log_reader(job_id, 1)).__name__ == "BackendLogReader"
            assert await search(pilot, pane, "e") == "**ERROR: over http"
            assert await search(pilot, pane, "slash", *"needle", "enter") == \
                "the needle over http"
            await pilot.press("y")  # the path is not known here: said so, nothing copied
            await wait_until(lambda: any("not known here" in n for n in seen.notes), 5)
            assert app.clipboard == ""
    finally:
        await service.close()


# a log of hundreds of MB -----------------------------------------------------------------
BIG_MB = 250
NEEDLE_AT_MB = 240


def big_log_script() -> str:
    """250 MB of 100-byte lines in 1 MB writes; a needle 10 MB before the end."""
    return (f"block = (b'{FILLER}' + b' padding\\n') * 10486\n"
            f"for mb in range({BIG_MB}):\n"
            f"    if mb == {NEEDLE_AT_MB}:\n"
            f"        out.write(b'**ERROR: the needle-far line\\n')\n"
            f"    out.write(block)\n")


def peak_rss_reset() -> bool:
    """Reset this process's peak RSS (VmHWM) so it measures from now; False if it cannot."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


@pytest.mark.timeout(300)
async def test_search_in_a_250_mb_log_is_bounded_and_the_app_keeps_answering(
        make_scheduler: Any, tmp_path: Path, state_dir: Path) -> None:
    scheduler = await start_scheduler(make_scheduler)
    job_id = await finished_job(scheduler, script_job(tmp_path, "huge", big_log_script()))
    size = attempt_files(state_dir, job_id, 1).log.stat().st_size
    assert size > BIG_MB * 1_000_000
    async with open_tui(InProcessBackend(scheduler)) as (app, pilot, _):
        pane = await log_selected(app, pilot, job_id)
        await pilot.press("slash", *"needle-far")
        assert peak_rss_reset(), "this Linux cannot reset VmHWM (needs /proc/self/clear_refs)"
        rss_before = peak_rss_mb()
        started = time.monotonic()
        # keys as a terminal sends them (pilot.press would wait for the screen to settle,
        # which it does not while the title shows the search's progress)
        type_at_once(app, "enter")  # from the end: wraps, scans 240 MB from the start
        await wait_until(lambda: pane.searching or pane.hit is not None, 10)
        answered: list[float] = []  # a key's time to take effect while the search runs
        while pane.searching:
            wrapped = pane.view.wrap
            sent = time.monotonic()
            type_at_once(app, "w")  # a key with a visible effect: the wrap flips
            await wait_until(lambda wrapped=wrapped: pane.view.wrap is not wrapped, 10)
            if pane.searching:
                answered.append(time.monotonic() - sent)
        took = time.monotonic() - started
        line = hit_line_in_view(pane)
        assert line == "**ERROR: the needle-far line"
        assert pane.hit is not None and pane.hit.line_start == \
            NEEDLE_AT_MB * 10486 * (len(FILLER) + 9)
        grew = peak_rss_mb() - rss_before
        print(f"\n250 MB search: {took:.2f} s, {len(answered)} keys answered meanwhile, "
              f"median {sorted(answered)[len(answered) // 2] * 1000:.0f} ms, "
              f"slowest {max(answered, default=0) * 1000:.0f} ms, peak RSS +{grew:.0f} MB")
        assert took < 120, f"the search took {took:.1f} s"
        assert answered, "no key was handled while the search ran"
        assert max(answered) < 1.0, f"a key waited {max(answered):.2f} s during the search"
        assert grew < 64, f"peak RSS grew by {grew:.0f} MB: the log was read whole?"
        await pilot.press("E")  # the last error line, scanning back from the end
        await wait_until(lambda: not pane.searching and pane.hit is not None, 60)
        assert hit_line_in_view(pane) == "**ERROR: the needle-far line"


# the scan, headless ------------------------------------------------------------------------
def test_error_patterns_have_literal_heads() -> None:
    assert [literal_head(p) for p in DEFAULT_ERROR_PATTERNS] == [
        b"**ERROR", b"Error", b"ERROR", b"[ERROR", b"**FATAL"]
    assert literal_head("^Errors?") == b"Error"  # the s may be absent
    assert literal_head("^a|b") is None and literal_head("ERROR") is None
    assert literal_head(r"^\d+ errors") is None


@pytest.mark.parametrize("chunk", [32, 64, 1 << 20])  # chunks hold a line at least
async def test_scans_find_lines_across_chunk_edges(tmp_path: Path, chunk: int) -> None:
    lines = [f"line {i}" for i in range(200)]
    lines[3] = "**ERROR: early"
    lines[150] = "a Needle in the middle"
    lines[199] = "**ERROR: last line, no newline"
    path = tmp_path / "log"
    path.write_text("\n".join(lines))
    reader = FileLogReader(path)
    size = path.stat().st_size
    errors = PatternFinder(DEFAULT_ERROR_PATTERNS)
    first = await search_forward(reader, errors, 0, size, chunk=chunk)
    assert first is not None and path.read_bytes()[first.line_start:first.line_end] == \
        b"**ERROR: early"
    last = await search_backward(reader, errors, size, chunk=chunk)
    assert last is not None and last.line_end == size
    assert path.read_bytes()[last.line_start:] == b"**ERROR: last line, no newline"
    middle = await search_forward(reader, LiteralFinder("needle"), first.line_end + 1, size,
                                  chunk=chunk)
    assert middle is not None
    assert path.read_bytes()[middle.line_start:middle.line_end] == b"a Needle in the middle"
    assert await search_forward(reader, LiteralFinder("Needle"), 0, size, chunk=chunk)
    assert await search_forward(reader, LiteralFinder("NEEDLE"), 0, size, chunk=chunk) is None
    window = await read_window(reader, middle.line_start, before=200, after=200)
    assert "a Needle in the middle" in window.lines
    index = window.lines.index("a Needle in the middle")
    assert window.offsets[index] == middle.line_start


def test_settings_path_follows_xdg() -> None:
    assert default_settings_path({"XDG_CONFIG_HOME": "/x/conf"}) == Path(
        "/x/conf/apr_tui/settings.toml")
    assert default_settings_path({"XDG_CONFIG_HOME": "relative"}) == Path.home() / \
        ".config/apr_tui/settings.toml"
