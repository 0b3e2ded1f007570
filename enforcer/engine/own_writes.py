"""The enforcer's own recent writes, so the notification each rewrite raises costs no request.

Every rewrite makes the store announce a new object version. That event names the version's ETag
(and version id on a versioned bucket); when it matches the version the enforcer has just written
and verified, the object's encryption is already known, and the event is audited from memory
instead of with a HEAD. The memory is bounded and each entry is used once: a redelivered or
unmatched event simply takes the normal path and is inspected.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import replace

from enforcer.core.events import ObjectEvent
from enforcer.storage.port import ObjectSnapshot, PreservedAttributes

_NO_ATTRIBUTES = PreservedAttributes()

#: Rewrites remembered until their notification arrives (oldest forgotten first).
DEFAULT_CAPACITY = 10_000


class OwnWrites:
    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._capacity = capacity
        self._written: OrderedDict[tuple[str, str], ObjectSnapshot] = OrderedDict()

    def __len__(self) -> int:
        return len(self._written)

    def remember(self, written: ObjectSnapshot) -> None:
        """``written``: the version the enforcer wrote, as verified."""
        where = (written.bucket, written.key)
        self._written.pop(where, None)
        self._written[where] = replace(written, attributes=_NO_ATTRIBUTES)  # small entries
        while len(self._written) > self._capacity:
            self._written.popitem(last=False)

    def claim(self, event: ObjectEvent) -> ObjectSnapshot | None:
        """The remembered version if ``event`` announces exactly it (then it is forgotten)."""
        where = (event.bucket, event.key)
        written = self._written.get(where)
        if written is None or not _same_version(event, written):
            return None
        del self._written[where]
        return written


def _same_version(event: ObjectEvent, written: ObjectSnapshot) -> bool:
    if not event.etag or _bare(event.etag) != _bare(written.etag):
        return False
    # On a versioned bucket both name the version; an unversioned one has none (or "null").
    ours = written.version_id or None
    theirs = event.version_id if event.version_id not in (None, "", "null") else None
    return ours == theirs


def _bare(etag: str) -> str:
    return etag.strip('"')
