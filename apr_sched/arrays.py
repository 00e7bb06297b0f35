"""Job arrays as people write them: ``1-100``, ``1-100:5``, ``1,4,9-12``, ``1-1000%50``.

One spec run for many indices, like LSF ``-J "sweep[1-200]%20"`` and Slurm
``--array=1-200%20``. This module only reads and writes the range text and names the
elements; it knows nothing of the scheduler. Indices are kept as ranges, never expanded
into a list, so a 10,000-element array costs a few objects here.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "MAX_ARRAY_INDEX",
    "ArraySpec",
    "element_id",
    "parse_array",
    "split_element_id",
]

MAX_ARRAY_INDEX = 10_000_000
"""Largest index an element may have (Slurm's default MaxArraySize is 1,001; LSF's 1,000;
indices here are only names, so they may be large; how many elements is limited apart)."""

_PART = re.compile(r"(\d{1,9})(?:-(\d{1,9})(?::(\d{1,9}))?)?")
_ELEMENT_ID = re.compile(r"(.+)\.(\d{1,9})")


@dataclass(frozen=True)
class ArraySpec:
    """The indices of an array, in ascending order, and its running limit (``%N``)."""

    parts: tuple[range, ...]
    """Disjoint, ascending, each non-empty: the indices are their concatenation."""
    limit: int | None = None
    """At most this many elements running at once; ``None``: no limit of its own."""

    def __len__(self) -> int:
        return sum(len(part) for part in self.parts)

    def __iter__(self) -> Iterator[int]:
        for part in self.parts:
            yield from part

    def __contains__(self, index: object) -> bool:
        return any(index in part for part in self.parts)

    @property
    def first(self) -> int:
        return self.parts[0][0]

    @property
    def last(self) -> int:
        return self.parts[-1][-1]

    def text(self) -> str:
        """The canonical form: what ``parse_array`` reads back to an equal spec."""
        pieces = []
        for part in self.parts:
            if len(part) == 1:
                pieces.append(str(part[0]))
            elif part.step == 1:
                pieces.append(f"{part[0]}-{part[-1]}")
            else:
                pieces.append(f"{part[0]}-{part[-1]}:{part.step}")
        body = ",".join(pieces)
        return body if self.limit is None else f"{body}%{self.limit}"

    def __str__(self) -> str:
        return self.text()


def parse_array(text: str, *, max_elements: int) -> ArraySpec:
    """The array ``text`` describes; ValueError naming what is wrong otherwise.

    Parts are ``N``, ``A-B`` or ``A-B:S`` (every S-th from A up to B), separated by commas,
    optionally followed by ``%N``. Indices are 0..MAX_ARRAY_INDEX and no index may appear
    twice (``1-10,5`` is refused rather than silently run once or twice).
    """
    value = text.strip()
    if not value:
        raise ValueError("is empty: give indices such as 1-100, 1-100:5 or 1,4,9-12")
    body, percent, limit_text = value.partition("%")
    limit = None
    if percent:
        if not limit_text.isdigit() or int(limit_text) < 1:
            raise ValueError(f"{text!r}: %N needs a whole number of at least 1 after %")
        limit = int(limit_text)
    parts = [_parse_part(piece, text) for piece in body.split(",")]
    parts.sort(key=lambda part: part[0])
    for before, after in itertools.pairwise(parts):
        if before[-1] >= after[0]:
            smaller = min(before, after, key=len)[:10_000]  # bounded: names one if it can
            twice = next((index for index in smaller if index in before and index in after),
                         None)
            if twice is not None:
                raise ValueError(f"{text!r}: index {twice} is listed twice")
            raise ValueError(f"{text!r}: parts overlap ({_part_text(before)} and "
                             f"{_part_text(after)}); list each index once, in order")
    spec = ArraySpec(tuple(parts), limit)
    if len(spec) > max_elements:
        raise ValueError(f"{text!r} has {len(spec)} elements; at most {max_elements} "
                         "are allowed in one array")
    return spec


def _parse_part(piece: str, text: str) -> range:
    match = _PART.fullmatch(piece.strip())
    if match is None:
        raise ValueError(f"{text!r}: {piece.strip()!r} is not an index, a range A-B or "
                         "a stepped range A-B:S")
    start = int(match.group(1))
    stop = int(match.group(2)) if match.group(2) is not None else start
    step = int(match.group(3)) if match.group(3) is not None else 1
    if stop > MAX_ARRAY_INDEX:
        raise ValueError(f"{text!r}: index {stop} is above the largest, {MAX_ARRAY_INDEX}")
    if stop < start:
        raise ValueError(f"{text!r}: range {start}-{stop} runs backwards")
    if step < 1:
        raise ValueError(f"{text!r}: step must be at least 1")
    return range(start, stop + 1, step)


def _part_text(part: range) -> str:
    return str(part[0]) if len(part) == 1 else f"{part[0]}-{part[-1]}"


def element_id(array_id: str, index: int) -> str:
    """The id of one element: ``<array_id>.<index>`` (``57.3``)."""
    return f"{array_id}.{index}"


def split_element_id(job_id: str) -> tuple[str, int] | None:
    """``("57", 3)`` for ``"57.3"``; ``None`` for an id that names no element."""
    match = _ELEMENT_ID.fullmatch(job_id)
    if match is None:
        return None
    return match.group(1), int(match.group(2))
