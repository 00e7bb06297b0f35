"""Array range text: what is accepted, what it means, and what is refused with a reason."""

from __future__ import annotations

import pytest

from apr_sched.arrays import (
    MAX_ARRAY_INDEX,
    ArraySpec,
    element_id,
    parse_array,
    split_element_id,
)


@pytest.mark.parametrize(("text", "indices", "limit"), [
    ("1-5", [1, 2, 3, 4, 5], None),
    ("0", [0], None),
    ("1-10:3", [1, 4, 7, 10], None),
    ("1-11:5", [1, 6, 11], None),
    ("1,4,9-12", [1, 4, 9, 10, 11, 12], None),
    ("9-12,1,4", [1, 4, 9, 10, 11, 12], None),
    (" 1-3 %2", [1, 2, 3], 2),
    ("1-1000%50", list(range(1, 1001)), 50),
])
def test_accepted_forms(text: str, indices: list[int], limit: int | None) -> None:
    spec = parse_array(text, max_elements=10_000)
    assert list(spec) == indices
    assert len(spec) == len(indices)
    assert spec.limit == limit
    assert spec.first == indices[0] and spec.last == indices[-1]
    assert all(index in spec for index in indices)
    assert max(indices) + 1 not in spec


@pytest.mark.parametrize("text", ["1-5", "1-10:3", "1,4,9-12", "1-1000%50", "7", "1-3,5-9:2%4"])
def test_text_reads_back_to_the_same_spec(text: str) -> None:
    spec = parse_array(text, max_elements=10_000)
    assert parse_array(spec.text(), max_elements=10_000) == spec
    assert str(spec) == spec.text()


def test_stepped_range_is_written_with_its_real_last_index() -> None:
    assert parse_array("1-11:5", max_elements=100).text() == "1-11:5"
    assert parse_array("1-12:5", max_elements=100).text() == "1-11:5"


@pytest.mark.parametrize(("text", "words"), [
    ("", "is empty"),
    ("  ", "is empty"),
    ("a-b", "'a-b' is not an index"),
    ("1-", "'1-' is not an index"),
    ("-3", "is not an index"),
    ("5-1", "runs backwards"),
    ("1-10:0", "step must be at least 1"),
    ("1-10,5", "index 5 is listed twice"),
    ("1,1", "index 1 is listed twice"),
    ("1-10:2,4-6:2", "overlap"),
    ("1-3%", "%N needs a whole number"),
    ("1-3%0", "%N needs a whole number"),
    ("1-3%x", "%N needs a whole number"),
    (f"1-{MAX_ARRAY_INDEX + 1}", "is above the largest"),
    ("1-101", "has 101 elements; at most 100"),
])
def test_refused_with_a_reason(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        parse_array(text, max_elements=100)


def test_interleaved_steps_are_refused_as_overlapping() -> None:
    """Parts stay disjoint and ascending, so elements start in index order."""
    with pytest.raises(ValueError, match="overlap"):
        parse_array("1-9:2,2-10:2", max_elements=100)


def test_a_large_array_is_not_expanded() -> None:
    spec = parse_array("1-10000000", max_elements=10_000_000)
    assert len(spec) == 10_000_000
    assert spec.parts == (range(1, 10_000_001),)


def test_element_ids() -> None:
    assert element_id("57", 3) == "57.3"
    assert split_element_id("57.3") == ("57", 3)
    assert split_element_id("57") is None
    assert split_element_id("57.x") is None
    assert isinstance(parse_array("1", max_elements=1), ArraySpec)
