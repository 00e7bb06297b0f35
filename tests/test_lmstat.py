"""Parsing license probes: FlexNet lmstat as printed by lmutil, and the one-integer form."""

from __future__ import annotations

from pathlib import Path

import pytest

from apr_sched.lmstat import (
    FeatureUsage,
    ProbeOutputError,
    parse_integer,
    parse_lmstat,
    seats_in_use,
)

LMSTAT_A = (Path(__file__).parent / "data" / "lmstat_a.txt").read_text()


def test_every_counted_feature_summed_over_servers() -> None:
    assert parse_lmstat(LMSTAT_A) == {
        "innovus": FeatureUsage(issued=20, in_use=7),  # 12 + 8 issued, 5 + 2 in use
        "tempus": FeatureUsage(issued=1, in_use=1),  # "license" in the singular
        "voltus": FeatureUsage(issued=4, in_use=0),
    }


def test_one_feature_as_lmstat_f_prints_it() -> None:
    output = ("Users of innovus:  (Total of 20 licenses issued;  Total of 7 licenses in use)\n"
              "\n  \"innovus\" v21.1, vendor: cdslmd\n")
    assert seats_in_use(output, "innovus") == 7


@pytest.mark.parametrize(("feature", "words"), [
    ("encrypt_nodelock", "reports encrypt_nodelock as (Uncounted, node-locked)"),
    ("genus", "(Error: 2 licenses, unsupported by licensed server)"),
    ("calibre", "no 'Users of calibre:' line"),
    ("innov", "no 'Users of innov:' line"),  # a prefix is not the feature
])
def test_a_feature_without_counts_is_an_error_naming_it(feature: str, words: str) -> None:
    with pytest.raises(ProbeOutputError) as caught:
        seats_in_use(LMSTAT_A, feature)
    assert words in str(caught.value)


def test_one_integer() -> None:
    assert parse_integer(" 7\n") == 7
    for bad in ["", "seven", "-1", "7 8", "x" * 500]:
        with pytest.raises(ProbeOutputError, match="expected one whole number"):
            parse_integer(bad)
    with pytest.raises(ProbeOutputError) as caught:
        parse_integer("x" * 500)
    assert len(str(caught.value)) < 120
