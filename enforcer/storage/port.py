"""The storage port: what the pipeline needs from S3, as values and a Protocol.

:class:`~enforcer.storage.s3.S3Storage` implements it on aiobotocore; the tests' ``MemoryStorage``
(``tests/doubles/storage.py``) in memory. Everything the rewrite must keep unchanged travels in
:class:`PreservedAttributes`, so "nothing else changes" is one value compared before and after.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Protocol

from enforcer.core.policy import BucketDefault
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


class Storage(Protocol):
    async def head(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectSnapshot | None:
        """The object's facts, or None when it does not exist (any more)."""

    async def bucket_default_key(self, bucket: str) -> BucketDefault | None:
        """The bucket's default SSE-KMS key (``mc encrypt set sse-kms``), if any, and whether
        it is dual-layer."""

    async def read_tags(self, snapshot: ObjectSnapshot) -> dict[str, str]: ...

    async def rewrite_sse_kms(
        self, snapshot: ObjectSnapshot, target: SseKmsTarget, tags: dict[str, str]
    ) -> WriteResult:
        """Rewrite the object in place, all data, under ``target``.

        Raises PreconditionFailed when the object is no longer the one in ``snapshot``.
        """

    async def delete_version(self, bucket: str, key: str, version_id: str) -> None: ...


class BodyStorage(Storage, Protocol):
    """The port for a strategy that rewrites the bytes itself (``envelope``): read exactly the
    inspected version, write a new body that replaces it only while it is still current.

    Both writes carry ``snapshot.attributes`` over unchanged, set ``tags``, and add ``metadata``
    to the user metadata; they raise PreconditionFailed when a user wrote meanwhile.
    """

    def read_chunks(self, snapshot: ObjectSnapshot) -> AsyncIterator[bytes]:
        """The inspected version's bytes (raises PreconditionFailed once it changed)."""

    async def put_if_match(
        self,
        snapshot: ObjectSnapshot,
        body: bytes | IO[bytes],
        length: int,
        *,
        tags: dict[str, str],
        metadata: dict[str, str],
    ) -> WriteResult:
        """Replace the object with ``body`` in one request."""

    async def upload_if_match(
        self,
        snapshot: ObjectSnapshot,
        parts: AsyncIterator[tuple[IO[bytes], int]],
        *,
        tags: dict[str, str],
        metadata: dict[str, str],
    ) -> WriteResult:
        """Replace the object with ``parts`` (body, length), completed only if still current."""


def check_read_size(snapshot: ObjectSnapshot, size: int) -> None:
    """A GET must return exactly the inspected version's bytes."""
    if size != snapshot.size:
        raise StorageRejected(
            f"read {size} bytes of {snapshot.bucket}/{snapshot.key}, HEAD said {snapshot.size}"
        )
