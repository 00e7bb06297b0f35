"""Searching and browsing logs of hundreds of MB without reading them whole.

Headless. A ``LogReader`` gives bytes at an offset: ``FileLogReader`` reads the attempt's
file (in-process, or attached to a daemon on this machine whose files we may read),
``BackendLogReader`` reads through the backend's ``read_log`` (attached over HTTP). The scan
reads ``CHUNK`` bytes at a time, cut at a line end, and matches each chunk in a worker
thread (``asyncio.to_thread``), so the UI loop only waits for awaits and the memory used is
a chunk or two, whatever the size of the log.

Matching is line-based: a ``Finder`` reports where a match is in a chunk that starts at a
line start. ``LiteralFinder`` looks for typed text (``/``; case-insensitive unless the text
has a capital, like less's smart case); ``PatternFinder`` for any of the error patterns
(``^\\*\\*ERROR`` ...). Anchored patterns with a literal head are found with ``bytes.find``
of ``"\\n" + head`` and then checked with the regex: about ten times faster than ``re``
over the whole chunk, and the GIL is held for less time.
"""

from __future__ import annotations

import asyncio
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from apr_tui.backend import Backend

CHUNK = 1 << 20
"""Bytes read and matched per step."""
WINDOW_BEFORE = 16 * 1024
WINDOW_AFTER = 48 * 1024
"""Bytes read around a match to show it with its neighbours."""

Span = tuple[int, int]
Progress = Callable[[int], None]


class LogReader(ABC):
    """Bytes of one attempt's log, by offset."""

    @abstractmethod
    async def size(self) -> int:
        """Where the log ends now."""

    @abstractmethod
    async def read(self, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset`` (fewer at the end)."""


class FileLogReader(LogReader):
    """A log file on this machine, read with ``pread`` in a worker thread."""

    def __init__(self, path: Path) -> None:
        self.path = path

    async def size(self) -> int:
        try:
            return (await asyncio.to_thread(os.stat, self.path)).st_size
        except FileNotFoundError:
            return 0

    async def read(self, offset: int, length: int) -> bytes:
        return await asyncio.to_thread(self._read, offset, length)

    def _read(self, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            return b""
        try:
            return os.pread(fd, max(0, length), max(0, offset))
        finally:
            os.close(fd)


class BackendLogReader(LogReader):
    """A log read through ``Backend.read_log`` (complete lines, at most 1 MB a call). Lines
    come back decoded, so offsets inside a read are exact only for valid UTF-8."""

    def __init__(self, backend: Backend, job_id: str, attempt: int) -> None:
        self.backend, self.job_id, self.attempt = backend, job_id, attempt

    async def size(self) -> int:
        return (await self.backend.tail_log(self.job_id, 0, self.attempt)).offset

    async def read(self, offset: int, length: int) -> bytes:
        more = await self.backend.read_log(self.job_id, offset, self.attempt)
        data = b"".join(line.encode() + b"\n" for line in more.lines)
        return data[:length]


# matching ------------------------------------------------------------------------------
class Finder(Protocol):
    label: str
    """How the title names it: ``/route`` or ``errors``."""

    def first(self, data: bytes) -> Span | None:
        """The first match in ``data`` (which starts at a line start)."""

    def last(self, data: bytes) -> Span | None:
        """The last match in ``data``."""

    def spans(self, line: str) -> list[Span]:
        """Where it matches in one shown line (characters), to highlight them."""


class LiteralFinder:
    """Text as typed; case-insensitive unless it has a capital letter (smart case)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.label = f"/{text}"
        self.ignore_case = text == text.lower()
        self._needle = (text.lower() if self.ignore_case else text).encode()

    def _hay(self, data: bytes) -> bytes:
        return data.lower() if self.ignore_case else data

    def first(self, data: bytes) -> Span | None:
        index = self._hay(data).find(self._needle)
        return None if index < 0 else (index, index + len(self._needle))

    def last(self, data: bytes) -> Span | None:
        index = self._hay(data).rfind(self._needle)
        return None if index < 0 else (index, index + len(self._needle))

    def spans(self, line: str) -> list[Span]:
        hay = line.lower() if self.ignore_case else line
        needle = self.text.lower() if self.ignore_case else self.text
        found, start = [], hay.find(needle)
        while start >= 0 and needle:
            found.append((start, start + len(needle)))
            start = hay.find(needle, start + len(needle))
        return found


_LITERAL = re.compile(r"(?:\\[^A-Za-z0-9]|[A-Za-z0-9 _\-:=,;'\"/<>@#%&~!])")
_QUANTIFIER = "*?{"


def literal_head(pattern: str) -> bytes | None:
    """The text every match of ``^...`` starts with (``^\\*\\*ERROR`` -> ``**ERROR``), or
    None when the pattern is not anchored, has alternatives, or starts with no literal."""
    if not pattern.startswith("^") or "|" in pattern:
        return None
    head, pos = [], 1
    while match := _LITERAL.match(pattern, pos):
        token = match.group()
        after = pattern[match.end(): match.end() + 1]
        if after and after in _QUANTIFIER:
            break  # the character may be absent
        head.append(token[-1])
        pos = match.end()
    return "".join(head).encode() or None


class _Pattern:
    def __init__(self, pattern: str) -> None:
        self.bytes = re.compile(pattern.encode(), re.MULTILINE)
        self.text = re.compile(pattern, re.MULTILINE)
        self.head = literal_head(pattern)

    def first(self, data: bytes) -> Span | None:
        head = self.head
        if head is None:
            match = self.bytes.search(data)
            return None if match is None else match.span()
        pos = 0 if data.startswith(head) else data.find(b"\n" + head)
        while pos >= 0:
            start = pos + 1 if data[pos:pos + 1] == b"\n" else pos
            match = self.bytes.match(data, start)
            if match is not None:
                return match.span()
            pos = data.find(b"\n" + head, start)
        return None

    def last(self, data: bytes) -> Span | None:
        head = self.head
        if head is None:
            found = None
            for found in self.bytes.finditer(data):  # noqa: B007 - the last one is wanted
                pass
            return None if found is None else found.span()
        end = len(data)
        while True:
            pos = data.rfind(b"\n" + head, 0, end)
            start = pos + 1 if pos >= 0 else 0
            if pos < 0 and not data.startswith(head):
                return None
            match = self.bytes.match(data, start)
            if match is not None:
                return match.span()
            if pos < 0:
                return None
            end = pos


class PatternFinder:
    """Any of several regular expressions (the error patterns), matched line by line."""

    def __init__(self, patterns: Sequence[str], label: str = "errors") -> None:
        self.patterns = [_Pattern(pattern) for pattern in patterns]
        self.label = label

    def first(self, data: bytes) -> Span | None:
        found = [span for p in self.patterns if (span := p.first(data)) is not None]
        return min(found) if found else None

    def last(self, data: bytes) -> Span | None:
        found = [span for p in self.patterns if (span := p.last(data)) is not None]
        return max(found) if found else None

    def spans(self, line: str) -> list[Span]:
        return sorted(m.span() for p in self.patterns for m in p.text.finditer(line)
                      if m.end() > m.start())


# scanning ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Hit:
    """A matching line: byte offsets of its start and of its end (its newline, or EOF)."""

    line_start: int
    line_end: int


def _hit(region: bytes, base: int, span: Span) -> Hit:
    start = region.rfind(b"\n", 0, span[0]) + 1
    end = region.find(b"\n", span[0])
    return Hit(base + start, base + (len(region) if end < 0 else end))


async def search_forward(reader: LogReader, finder: Finder, start: int, stop: int,
                         progress: Progress | None = None, chunk: int = CHUNK) -> Hit | None:
    """The first matching line starting in [``start``, ``stop``); ``start`` should be a
    line start. Reads ``chunk`` bytes at a time, each cut after its last newline."""
    pos = start
    while pos < stop:
        data = await reader.read(pos, min(chunk, stop - pos))
        if not data:
            return None
        cut = data.rfind(b"\n")
        region = data if cut < 0 or pos + len(data) >= stop else data[:cut + 1]
        span = await asyncio.to_thread(finder.first, region)
        if span is not None:
            return _hit(region, pos, span)
        pos += len(region)
        if progress is not None:
            progress(pos)
    return None


async def search_backward(reader: LogReader, finder: Finder, end: int, stop: int = 0,
                          progress: Progress | None = None, chunk: int = CHUNK) -> Hit | None:
    """The last matching line starting in [``stop``, ``end``); ``end`` should be a line
    start (or the end of the log). Reads backwards, ``chunk`` bytes at a time."""
    pos = end
    while pos > stop:
        low = max(stop, pos - chunk)
        data = await reader.read(low, pos - low)
        if not data:
            return None
        base, region = low, data
        if low > stop:
            cut = data.find(b"\n")
            if 0 <= cut < len(data) - 1:
                base, region = low + cut + 1, data[cut + 1:]
        span = await asyncio.to_thread(finder.last, region)
        if span is not None:
            return _hit(region, base, span)
        pos = base
        if progress is not None:
            progress(pos)
    return None


@dataclass(slots=True)
class Window:
    """Complete lines read around an offset, each with the offset where it starts."""

    lines: list[str]
    offsets: list[int]
    end: int
    """Offset just past the last line."""
    at_end: bool
    """The read reached the end of the log."""


def split_lines(data: bytes, base: int, *, keep_partial: bool) -> Window:
    """``data`` (read at ``base``, starting at a line start) as lines with their offsets; an
    unfinished last line is left out unless ``keep_partial``."""
    lines, offsets = [], []
    pos = 0
    while pos < len(data):
        end = data.find(b"\n", pos)
        if end < 0:
            if not keep_partial:
                break
            end = len(data)
        lines.append(data[pos:end].decode("utf-8", errors="replace"))
        offsets.append(base + pos)
        pos = end + 1
    return Window(lines, offsets, base + min(pos, len(data)), False)


async def read_window(reader: LogReader, offset: int, before: int = WINDOW_BEFORE,
                      after: int = WINDOW_AFTER) -> Window:
    """The lines around ``offset`` (about ``before`` bytes before it and ``after`` from it)."""
    low = max(0, offset - before)
    want = offset - low + after
    data = await reader.read(low, want)
    at_end = len(data) < want
    base = low
    if low > 0:
        cut = data.find(b"\n", 0, max(0, offset - low))
        if cut >= 0:
            base, data = low + cut + 1, data[cut + 1:]
    giant = b"\n" not in data and not at_end  # one line longer than the read: show a piece
    window = split_lines(data, base, keep_partial=giant)
    window.at_end = at_end and window.end == base + len(data)
    return window


async def read_before(reader: LogReader, offset: int, size: int = WINDOW_AFTER) -> Window:
    """Complete lines that end just before ``offset`` (a line start), about ``size`` bytes."""
    low = max(0, offset - size)
    data = await reader.read(low, offset - low)
    base = low
    if low > 0:
        cut = data.find(b"\n")
        if 0 <= cut < len(data) - 1:
            base, data = low + cut + 1, data[cut + 1:]
    return split_lines(data, base, keep_partial=True)


async def read_after(reader: LogReader, offset: int, size: int = WINDOW_AFTER) -> Window:
    """Complete lines from ``offset`` on, about ``size`` bytes; ``at_end`` when no more."""
    data = await reader.read(offset, size)
    giant = b"\n" not in data and len(data) >= size
    window = split_lines(data, offset, keep_partial=giant)
    window.at_end = len(data) < size and window.end == offset + len(data)
    return window
