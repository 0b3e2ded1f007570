"""The enforcer's own recent writes, so the notification each rewrite raises costs no request.

Every rewrite makes the store announce a new object version. That event names the version's ETag
(and version id on a versioned bucket); when it matches the version the enforcer has just written
and verified, the object's encryption is already known, and the event is audited from memory
instead of with a HEAD. The memory is bounded and each entry is used once: a redelivered or
unmatched event simply takes the normal path and is inspected.

An entry may also carry the old version whose purge failed after the rewrite (the store went
away right after the write): the notification of the write, which the consumer takes once the
store is back, tries that purge again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, replace

from enforcer.core.events import ObjectEvent
from enforcer.engine.objects import ObjectSnapshot, PreservedAttributes

_NO_ATTRIBUTES = PreservedAttributes()

#: Rewrites remembered until their notification arrives (oldest forgotten first).
DEFAULT_CAPACITY = 10_000


@dataclass(frozen=True)
class OwnWrite:
    written: ObjectSnapshot  #: the version the enforcer wrote, as verified
    unpurged: ObjectSnapshot | None = None  #: the old version, if its purge failed


class OwnWrites:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._written: OrderedDict[tuple[str, str], OwnWrite] = OrderedDict()

    def __len__(self) -> int:
        return len(self._written)

    def remember(self, written: ObjectSnapshot, unpurged: ObjectSnapshot | None = None) -> None:
        where = (written.bucket, written.key)
        self._written.pop(where, None)
        # Small entries; an unpurged old version keeps its attributes (its lock decides).
        small = replace(written, attributes=_NO_ATTRIBUTES)
        self._written[where] = OwnWrite(small, unpurged)
        while len(self._written) > self._capacity:
            self._written.popitem(last=False)

    def claim(self, event: ObjectEvent) -> OwnWrite | None:
        """The remembered write if ``event`` announces exactly it (then it is forgotten)."""
        where = (event.bucket, event.key)
        own = self._written.get(where)
        if own is None or not _same_version(event, own.written):
            return None
        del self._written[where]
        return own


def _same_version(event: ObjectEvent, written: ObjectSnapshot) -> bool:
    if not event.etag or _bare(event.etag) != _bare(written.etag):
        return False
    # On a versioned bucket both name the version; an unversioned one has none (or "null").
    ours = written.version_id or None
    theirs = event.version_id if event.version_id not in (None, "", "null") else None
    return ours == theirs


def _bare(etag: str) -> str:
    return etag.strip('"')
