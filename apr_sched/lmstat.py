"""Reading license use from the tools that report it: FlexNet ``lmstat`` and one integer.

A counted resource (a license feature such as ``innovus``) may be used outside apr_sched
(an engineer's interactive session). A probe command, run now and then, tells how many
seats are in use; these parsers turn its output into numbers. Pure: no processes here.

FlexNet prints, per feature (``lmutil lmstat -a`` or ``-f FEATURE``)::

    Users of innovus:  (Total of 20 licenses issued;  Total of 7 licenses in use)

one such line per license server that serves the feature (a feature split over servers
is summed), ``license`` in the singular for 1, and for features it does not count
``Users of X:  (Uncounted, node-locked)`` or ``(Error: ...)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FeatureUsage", "ProbeOutputError", "parse_integer", "parse_lmstat", "seats_in_use"]

_USERS_OF = re.compile(
    r"^\s*Users of (?P<feature>[^\s:]+):\s*\(\s*Total of (?P<issued>\d+) licenses? issued;"
    r"\s*Total of (?P<used>\d+) licenses? in use\s*\)", re.MULTILINE)
_UNCOUNTED = re.compile(r"^\s*Users of (?P<feature>[^\s:]+):\s*\((?P<what>[^)]*)\)",
                        re.MULTILINE)


class ProbeOutputError(ValueError):
    """The probe's output does not say what it must (the message quotes what is missing)."""


@dataclass(frozen=True)
class FeatureUsage:
    """One feature as the license servers report it (summed over servers)."""

    issued: int
    in_use: int


def parse_lmstat(text: str) -> dict[str, FeatureUsage]:
    """Every counted feature in ``lmstat`` output -> seats issued and in use."""
    found: dict[str, FeatureUsage] = {}
    for match in _USERS_OF.finditer(text):
        feature = match.group("feature")
        before = found.get(feature, FeatureUsage(0, 0))
        found[feature] = FeatureUsage(before.issued + int(match.group("issued")),
                                      before.in_use + int(match.group("used")))
    return found


def seats_in_use(text: str, feature: str) -> int:
    """Seats of ``feature`` in use, from ``lmstat`` output; ProbeOutputError when the
    output does not count that feature (absent, uncounted, or reported as an error)."""
    usage = parse_lmstat(text).get(feature)
    if usage is not None:
        return usage.in_use
    for match in _UNCOUNTED.finditer(text):
        if match.group("feature") == feature:
            raise ProbeOutputError(f"lmstat reports {feature} as ({match.group('what').strip()}),"
                                   " not as counted seats")
    raise ProbeOutputError(f"no 'Users of {feature}:' line with seat counts in the output")


def parse_integer(text: str) -> int:
    """The generic form: the output is one whole number (surrounding blanks allowed)."""
    value = text.strip()
    if not value.isdigit():
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ProbeOutputError(f"expected one whole number, got {shown!r}")
    return int(value)
