"""Where to cut a bucket's keyspace into ranges for parallel listers, found with a few cheap
listings (the arithmetic is :mod:`enforcer.core.keyspace`, pure).

1. **Groups.** One listing with the delimiter ``/`` under the scanned prefix gives its top level:
   common prefixes (``photos/``) and the keys beside them. With at least as many groups as
   ranges wanted, cuts fall between groups, evenly by count.
2. **Fewer groups.** Every group is cut off from the next, and each common prefix is split
   again inside, the same way, a few levels down.
3. **No structure** (a flat prefix whose first listing pages are all keys, or one huge prefix
   without a delimiter below it): sampled boundaries. One-key listings with ``StartAfter``
   enumerate the distinct characters that follow the prefix (each probe starts after every key
   that continues with the character found last), and cuts fall between them — one character
   deeper while all keys share the next one, or while there are fewer characters than ranges
   (``obj-0000000``…``obj-0999999`` → ``obj-0`` + ``0``…``9``). Over 64 distinct characters, a
   binary search of probes finds the highest and cuts go at evenly spaced code points.

Cuts only decide how even the ranges are: any set of boundaries covers every key exactly once.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Protocol

from enforcer.core.keyspace import (
    MAX_CHAR,
    KeyRange,
    boundaries_between,
    boundaries_from_groups,
    boundary_before,
    pick,
    ranges_from_boundaries,
)

#: Levels of common prefixes split again when the top level has too few groups.
MAX_DEPTH = 3
#: Characters a flat prefix is followed into while all its keys share the next one.
MAX_COMMON_CHARS = 64
#: Distinct next characters enumerated one by one; a wider alphabet is cut by code point.
MAX_FANOUT = 64
_SURROGATES = range(0xD800, 0xE000)


class GroupListing(Protocol):
    """What splitting asks of the storage (:class:`~enforcer.storage.listing.S3Listing`)."""

    async def list_groups(self, bucket: str, prefix: str) -> tuple[list[str], bool]: ...

    async def key_after(self, bucket: str, prefix: str, start_after: str | None) -> str | None: ...


async def split_keyspace(
    listing: GroupListing, bucket: str, prefix: str, count: int
) -> list[KeyRange]:
    """At most ``count`` ranges covering every key of ``bucket`` under ``prefix``."""
    if count <= 1:
        return [KeyRange()]
    found = sorted({c for c in await _split(listing, bucket, prefix, count, 0) if c > prefix})
    cuts = found if len(found) < count else [found[0], *pick(found, count - 1)]
    return ranges_from_boundaries(cuts)


async def _split(
    listing: GroupListing, bucket: str, prefix: str, count: int, depth: int
) -> list[str]:
    groups, complete = await listing.list_groups(bucket, prefix)
    if not groups:
        return []
    if not complete:  # thousands of keys right here: no structure to follow
        return await _sample(listing, bucket, prefix, count)
    if len(groups) >= count:
        return boundaries_from_groups(groups, count)
    cuts = [b for b in (boundary_before(g) for g in groups[1:]) if b]
    share = -(-count // len(groups))
    for group in groups:
        if group.endswith("/") and share > 1 and depth < MAX_DEPTH:
            cuts += await _split(listing, bucket, group, share, depth + 1)
    if len(groups) == 1 and len(cuts) == 0:  # one key, or one prefix without sub-structure
        cuts = await _sample(listing, bucket, prefix, count)
    return cuts


async def _sample(
    listing: GroupListing, bucket: str, prefix: str, count: int, depth: int = 0
) -> list[str]:
    """Cuts between the characters that follow ``prefix`` in its keys, found one probe each
    (deeper while they are all one, or while there are fewer than ``count``)."""
    chars = await _next_chars(listing, bucket, prefix)
    if len(chars) > MAX_FANOUT:  # a wide alphabet: evenly spaced code points instead
        high = await _highest_next(listing, bucket, prefix, ord(chars[0]))
        return boundaries_between(prefix, chars[0], chr(high), count)
    if len(chars) == 1 and depth < MAX_COMMON_CHARS:
        return await _sample(listing, bucket, prefix + chars[0], count, depth + 1)
    cuts_before = {c: prefix + before + MAX_CHAR for before, c in pairwise(chars)}
    if len(chars) >= count:
        return [cuts_before[c] for c in pick(chars, count)]
    cuts = list(cuts_before.values())
    share = -(-count // max(len(chars), 1))
    if share > 1 and depth < MAX_COMMON_CHARS:
        for c in chars:
            cuts += await _sample(listing, bucket, prefix + c, share, depth + 1)
    return cuts


async def _next_chars(listing: GroupListing, bucket: str, prefix: str) -> list[str]:
    """The distinct characters that follow ``prefix`` in its keys, in order (at most
    ``MAX_FANOUT + 1``): each probe skips every key that continues with the last one found."""
    chars: list[str] = []
    after: str | None = prefix or None
    while len(chars) <= MAX_FANOUT:
        key = await listing.key_after(bucket, prefix, after)
        if key is None:
            break
        if len(key) > len(prefix):
            chars.append(key[len(prefix)])
            after = prefix + chars[-1] + MAX_CHAR
        elif after == key or not key:
            break  # (an empty key: only in tests; S3 has none)
        else:
            after = key  # the key equal to the prefix itself
    return chars


async def _highest_next(listing: GroupListing, bucket: str, prefix: str, low: int) -> int:
    """The highest character following ``prefix`` in some key: a binary search on whether any
    key sorts after ``prefix + chr(c)``, then one probe for a key ``prefix + chr(c + 1)``."""
    found, top = low, 0x10FFFF
    while found < top:
        middle = (found + top + 1) // 2
        if middle in _SURROGATES:  # no UTF-8 form: probe just past the gap
            middle = _SURROGATES.stop if _SURROGATES.stop <= top else _SURROGATES.start - 1
            if middle <= found:
                break
        if await listing.key_after(bucket, prefix, prefix + chr(middle)) is not None:
            found = middle
        else:
            top = middle - 1
    beyond = await listing.key_after(bucket, prefix, prefix + chr(found) + MAX_CHAR)
    return found + 1 if beyond is not None and found < ord(MAX_CHAR) else found
