"""Key ranges (enforcer.core.keyspace) and the splitter (enforcer.storage.split): whatever the
keys and the boundaries, every key falls in exactly one range."""

from __future__ import annotations

import asyncio
import bisect

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.core.keyspace import (
    MAX_CHAR,
    KeyRange,
    boundaries_between,
    boundaries_from_groups,
    common_prefix,
    pick,
    range_of,
    ranges_from_boundaries,
)
from enforcer.storage.split import split_keyspace

# S3 keys: any Unicode text S3 can hold (UTF-8, so no lone surrogates), including the
# awkward ones: empty-looking segments, delimiters, the highest code point.
keys = st.text(
    alphabet=st.characters(exclude_categories=["Cs"]), min_size=0, max_size=12
) | st.sampled_from(["", "/", "a/", "a//b", "a/b/", MAX_CHAR, "é/ü", "a\x00", " "])


@given(st.lists(keys, max_size=60), st.lists(keys, max_size=12))
def test_any_boundaries_cover_every_key_exactly_once(names: list[str], cuts: list[str]) -> None:
    ranges = ranges_from_boundaries(cuts)
    assert len(ranges) == len(set(cuts)) + 1
    for key in names:
        holders = [n for n, r in enumerate(ranges) if key in r]
        assert holders == [range_of(key, ranges)], (key, ranges)


@given(st.lists(keys, min_size=1, max_size=40, unique=True), st.integers(1, 20))
def test_group_boundaries_keep_each_group_whole(groups: list[str], count: int) -> None:
    groups.sort()
    ranges = ranges_from_boundaries(boundaries_from_groups(groups, count))
    assert len(ranges) <= max(count, 1)
    for group in groups:
        assert sum(group in r for r in ranges) == 1


def test_ranges_are_half_open_like_start_after_and_a_stop_key() -> None:
    low, middle, high = ranges_from_boundaries(["b", "d"])
    assert (low, middle, high) == (KeyRange(None, "b"), KeyRange("b", "d"), KeyRange("d", None))
    assert "b" in low and "b" not in middle and "b\x00" in middle and "d" in middle
    assert "d0" in high and 5 not in high
    with pytest.raises(ValueError, match="empty key range"):
        KeyRange("d", "b")
    assert middle.describe() == "('b', 'd']" and KeyRange().describe() == "(start, end]"


def test_pick_and_character_cuts() -> None:
    assert pick(["a", "b", "c", "d"], 2) == ["c"]
    assert pick(["a"], 5) == [] and pick(["a", "b"], 1) == []
    cuts = boundaries_between("obj-", "0", "9", 10)
    assert cuts == [f"obj-{d}{MAX_CHAR}" for d in "012345678"]
    assert boundaries_between("p", "\ud7fe", "\ue001", 8) == []  # every cut a surrogate
    assert all(not 0xD800 <= ord(c[1]) < 0xE000 for c in boundaries_between("p", "a", "\uffff", 64))
    assert boundaries_between("p", "a", "a", 4) == []
    assert common_prefix("obj-01", "obj-09") == "obj-0" and common_prefix("", "x") == ""


class SortedListing:
    """A bucket as one sorted list, answering the two listings the splitter makes (the page
    limit of ``list_groups`` shrunk so tests reach the sampling path)."""

    def __init__(self, names: list[str], page_groups: int = 50) -> None:
        self.keys = sorted(set(names))
        self.page_groups = page_groups
        self.requests = 0

    async def list_groups(self, bucket: str, prefix: str) -> tuple[list[str], bool]:
        self.requests += 1
        groups: set[str] = set()
        for key in self.keys:
            if key.startswith(prefix):
                rest = key[len(prefix) :]
                groups.add(prefix + rest[: rest.index("/") + 1] if "/" in rest else key)
                if len(groups) > self.page_groups:
                    return sorted(groups), False
        return sorted(groups), True

    async def key_after(self, bucket: str, prefix: str, start_after: str | None) -> str | None:
        self.requests += 1
        start = bisect.bisect_right(self.keys, start_after) if start_after else 0
        for key in self.keys[start:]:
            if key.startswith(prefix):
                return key
            if key > prefix and not key.startswith(prefix):
                return None
        return None


@settings(max_examples=60, deadline=None)
@given(st.lists(keys, max_size=120), st.integers(1, 24), st.sampled_from(["", "a", "a/"]))
def test_split_of_any_bucket_covers_each_key_once(
    names: list[str], count: int, prefix: str
) -> None:
    listing = SortedListing(names, page_groups=8)
    ranges = asyncio.run(split_keyspace(listing, "b", prefix, count))
    assert 1 <= len(ranges) <= count
    for key in listing.keys:
        assert sum(key in r for r in ranges) == 1


@pytest.mark.parametrize(
    ("names", "count", "at_least"),
    [
        ([f"obj-{n:07d}" for n in range(0, 1_000_000, 997)], 10, 8),  # one flat prefix
        ([f"data/{n % 40:02d}/{n}" for n in range(2000)], 8, 8),  # one top-level prefix
        ([f"{c}/x" for c in "abcdefghijklmnop"], 4, 4),  # many top-level prefixes
        ([f"h/{n:x}" for n in range(4096)], 8, 6),  # hex names under one prefix
    ],
)
def test_split_finds_cuts_inside_awkward_layouts(
    names: list[str], count: int, at_least: int
) -> None:
    listing = SortedListing(names)
    ranges = asyncio.run(split_keyspace(listing, "b", "", count))
    sizes = [sum(k in r for k in listing.keys) for r in ranges]
    assert sum(sizes) == len(listing.keys)
    assert len([s for s in sizes if s]) >= at_least, sizes
    assert listing.requests < 400


def test_an_empty_bucket_and_a_single_range() -> None:
    assert asyncio.run(split_keyspace(SortedListing([]), "b", "", 8)) == [KeyRange()]
    assert asyncio.run(split_keyspace(SortedListing(["a"]), "b", "", 1)) == [KeyRange()]
