"""A bucket's keyspace cut into ranges that cover every key exactly once (pure).

A :class:`KeyRange` is the half-open interval ``(after, through]``: the keys greater than
``after`` (None: from the start) and at most ``through`` (None: to the end). ``after`` is what S3
calls ``StartAfter``; ``through`` is the listing's stop key. Cut at sorted boundaries
``b1 < b2 < … < bk`` the keyspace is ``(None, b1], (b1, b2], …, (bk, None)``: any key belongs to
exactly one of them, whatever the key names — a boundary may be any string, a real key or not, so
where the boundaries fall decides only how even the ranges are, never whether a key is covered.

Keys compare as S3 lists them, by their UTF-8 bytes, which for Python strings is code-point
order (``str``'s own ordering: the two agree for every string S3 can hold).

Where the boundaries come from (:func:`boundaries_from_groups`, :func:`boundaries_between`):
the top-level groups of a listing with a delimiter (common prefixes, and single objects beside
them), or, inside one group that has no structure of its own, the characters seen at the first
position where its keys differ (sampled with ``StartAfter`` probes by the storage adapter).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

#: The largest code point: ``prefix + MAX_CHAR`` sorts after ``prefix + c`` for every other ``c``.
MAX_CHAR = "\U0010ffff"


@dataclass(frozen=True, order=True)
class KeyRange:
    """The keys ``k`` with ``after < k <= through`` (either bound None: unbounded)."""

    after: str | None = None
    through: str | None = None

    def __post_init__(self) -> None:
        if self.after is not None and self.through is not None and self.after >= self.through:
            raise ValueError(f"empty key range ({self.after!r}, {self.through!r}]")

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        return (self.after is None or key > self.after) and (
            self.through is None or key <= self.through
        )

    def describe(self) -> str:
        low = "start" if self.after is None else repr(self.after)
        high = "end" if self.through is None else repr(self.through)
        return f"({low}, {high}]"


def ranges_from_boundaries(boundaries: Iterable[str]) -> list[KeyRange]:
    """The ranges between sorted, de-duplicated ``boundaries``, the two open ends included."""
    cuts = sorted(set(boundaries))
    lows: list[str | None] = [None, *cuts]
    highs: list[str | None] = [*cuts, None]
    return [KeyRange(low, high) for low, high in zip(lows, highs, strict=True)]


def range_of(key: str, ranges: Sequence[KeyRange]) -> int:
    """The index of the range holding ``key``, for ranges from :func:`ranges_from_boundaries`."""
    highs = [r.through or "" for r in ranges[:-1]]  # the last range is open above
    return bisect.bisect_left(highs, key)


def pick(items: Sequence[str], count: int) -> list[str]:
    """At most ``count - 1`` boundaries spread evenly over sorted ``items`` (cutting before
    the chosen item: the range below ends just under it)."""
    if count <= 1 or len(items) <= 1:
        return []
    parts = min(count, len(items))
    chosen = {items[round(n * len(items) / parts)] for n in range(1, parts)}
    return sorted(chosen)


def boundary_before(item: str) -> str:
    """A cut that puts ``item`` and every key that starts with it above, and most of what sorts
    before it below: ``item`` less its last character (``"b/"`` → ``"b"``). Where exactly it
    falls changes only how even the ranges are, never which keys are covered."""
    return item[:-1]


def boundaries_from_groups(groups: Sequence[str], count: int) -> list[str]:
    """Boundaries for ``count`` ranges from the sorted top-level groups of a listing (common
    prefixes like ``"a/"`` and single keys): each cut falls just before a group, so one
    group's keys stay together."""
    return [b for b in (boundary_before(g) for g in pick(groups, count)) if b]


def boundaries_between(prefix: str, low: str, high: str, count: int) -> list[str]:
    """Boundaries for ``count`` ranges among keys under ``prefix`` whose next character (at
    ``len(prefix)``) lies between the characters ``low`` and ``high``: cuts at evenly spaced
    code points, each ``prefix + c + MAX_CHAR`` so a key ``prefix + c…`` falls below it (never
    a surrogate: it has no UTF-8 form to send)."""
    first, last = ord(low), ord(high)
    if count <= 1 or last <= first:
        return []
    width = last - first + 1  # characters from low to high, both included
    points = {first + n * width // count - 1 for n in range(1, count)}
    usable = sorted(p for p in points if first <= p < last and not 0xD800 <= p < 0xE000)
    return [prefix + chr(point) + MAX_CHAR for point in usable]


def common_prefix(first: str, last: str) -> str:
    """The longest common prefix of two keys."""
    size = 0
    for a, b in zip(first, last, strict=False):
        if a != b:
            break
        size += 1
    return first[:size]
