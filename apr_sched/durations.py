"""Durations as people type them: ``90s``, ``4h``, ``1d``, ``1h30m``, or plain seconds.

The CLI accepts these wherever it asks for a length of time (``--timeout``,
``--reconnect-timeout``); JSON and the HTTP API keep plain seconds, as DESIGN.md says.
"""

from __future__ import annotations

import argparse
import math
import re

__all__ = ["UNITS", "duration_arg", "format_duration", "parse_duration"]

UNITS = {"w": 7 * 86400.0, "d": 86400.0, "h": 3600.0, "m": 60.0, "s": 1.0}
"""Seconds per unit, largest first: the order parts must come in (``1h30m``, not ``30m1h``)."""

_PART = r"(\d+(?:\.\d+)?|\.\d+)([wdhms])"
_NUMBER = r"\d+(?:\.\d+)?|\.\d+"
"""Compiled when a duration is parsed (``re`` caches them), not by every command that
merely offers a duration option."""


def parse_duration(text: str) -> float:
    """Seconds in ``text``: a number (seconds) or parts like ``1d``, ``4h``, ``1h30m``,
    ``90s``, ``1.5h``, each unit at most once and largest first. ValueError otherwise."""
    value = text.strip().lower()
    if re.fullmatch(_NUMBER, value):
        return float(value)
    part = re.compile(_PART)
    total, pos, last_rank = 0.0, 0, -1
    order = list(UNITS)
    while pos < len(value):
        match = part.match(value, pos)
        if match is None:
            raise ValueError(f"{text!r} is not a duration (e.g. 90s, 4h, 1d, 1h30m)")
        rank = order.index(match.group(2))
        if rank <= last_rank:
            raise ValueError(f"{text!r}: give each unit once, largest first (e.g. 1h30m)")
        total += float(match.group(1)) * UNITS[match.group(2)]
        pos, last_rank = match.end(), rank
    if not value:
        raise ValueError("an empty duration")
    if not math.isfinite(total):
        raise ValueError(f"{text!r} is too long")
    return total


def duration_arg(text: str) -> float:
    """``parse_duration`` for argparse: a bad value is a usage error naming the forms."""
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: must be longer than 0 seconds")
    return seconds


def format_duration(seconds: float) -> str:
    """12s, 3m05s, 2h03m, 4d07h: short enough for a table cell."""
    s = max(0, int(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"
