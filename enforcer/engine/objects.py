"""The values the engine and its storage port exchange: objects, their versions, writes and
listings (plain frozen dataclasses, no I/O).

Everything a rewrite must keep unchanged travels in :class:`PreservedAttributes`, so "nothing
else changes" is one value compared before and after. The ports that carry these values are in
:mod:`enforcer.engine.ports`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from enforcer.core.verdict import Encryption
from enforcer.crypto.envelope import PREFIX as ENVELOPE_PREFIX
from enforcer.errors import StorageRejected

#: Rewrites spool at most this much in memory (per object or part), the rest on disk.
SPOOL_IN_MEMORY = 8 * 1024 * 1024


@dataclass(frozen=True)
class PreservedAttributes:
    """Everything about an object a rewrite must carry over unchanged (besides the bytes)."""

    metadata: dict[str, str] = field(default_factory=dict)
    content_type: str | None = None
    content_encoding: str | None = None
    content_disposition: str | None = None
    content_language: str | None = None
    cache_control: str | None = None
    expires: str | None = None
    website_redirect: str | None = None
    storage_class: str | None = None
    lock_mode: str | None = None
    lock_retain_until: datetime | None = None
    legal_hold: str | None = None

    def user_metadata(self) -> dict[str, str]:
        """User metadata without the envelope's own fields (those are rewritten, not kept)."""
        return {k: v for k, v in self.metadata.items() if not k.startswith(ENVELOPE_PREFIX)}

    def is_locked(self, now: datetime) -> bool:
        retained = self.lock_retain_until is not None and self.lock_retain_until > now
        return retained or self.legal_hold == "ON"


@dataclass(frozen=True)
class ObjectSnapshot:
    """One HEAD of one object version."""

    bucket: str
    key: str
    etag: str
    size: int
    encryption: Encryption
    kms_key: str | None = None  # as the server reported it (see keyref for the canonical form)
    version_id: str | None = None
    attributes: PreservedAttributes = field(default_factory=PreservedAttributes)
    #: Tags on the object as the store counted them (``x-amz-tagging-count``); None: unknown.
    tag_count: int | None = None


@dataclass(frozen=True)
class SseKmsTarget:
    """Ask the store to encrypt the new version under ``key_name`` (it builds a fresh chain),
    dual-layer (``aws:kms:dsse``) when ``dsse``."""

    key_name: str
    dsse: bool = False


@dataclass(frozen=True)
class WriteResult:
    """The new version, and the encryption the store reported for it in the write's response
    (``encryption`` is None when the response said nothing: read the object back to verify)."""

    etag: str
    version_id: str | None = None
    encryption: Encryption | None = None
    kms_key: str | None = None


@dataclass(frozen=True)
class ListedFacts:
    """What a listing with metadata told about one entry (no request of its own)."""

    encryption: Encryption
    kms_key: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ListedObject:
    """One listed object (version). ``facts`` is None when the listing did not say."""

    bucket: str
    key: str
    etag: str = ""
    size: int = 0
    version_id: str | None = None
    is_latest: bool = True
    last_modified: datetime | None = None
    facts: ListedFacts | None = None


def check_read_size(snapshot: ObjectSnapshot, size: int) -> None:
    """A GET must return exactly the inspected version's bytes."""
    if size != snapshot.size:
        raise StorageRejected(
            f"read {size} bytes of {snapshot.bucket}/{snapshot.key}, HEAD said {snapshot.size}"
        )
