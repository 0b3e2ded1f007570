"""An in-memory implementation of the storage port, for unit tests of the core.

They are real objects with the same behaviour the pipeline relies on (ETags change on every
write, ``If-Match`` is checked, versions are kept), not mocks of our own code.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import IO

from enforcer.core.policy import BucketDefault
from enforcer.core.verdict import Encryption
from enforcer.crypto.envelope import PREFIX as ENVELOPE_PREFIX
from enforcer.crypto.envelope import is_envelope
from enforcer.engine.objects import ObjectSnapshot, SseKmsTarget, WriteResult
from enforcer.errors import PreconditionFailed

#: Bodies are handed out in chunks of this size, as a GET streams them.
CHUNK = 64 * 1024


@dataclass
class StoredObject:
    snapshot: ObjectSnapshot
    data: bytes
    tags: dict[str, str] = field(default_factory=dict)


class MemoryStorage:
    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], list[StoredObject]] = {}
        self.bucket_keys: dict[str, str | None] = {}
        #: Buckets whose default (``bucket_keys``) is dual-layer SSE-KMS (``aws:kms:dsse``).
        self.dsse_buckets: set[str] = set()
        #: Every SSE-KMS rewrite's target, in order.
        self.write_targets: list[SseKmsTarget] = []
        self.bucket_lookups = 0
        self.heads = 0
        self.tag_reads = 0
        self.writes = 0
        self.uploaded_parts: list[bytes] = []
        self._ids = itertools.count(1)
        #: Called between our read and our write, to simulate a concurrent user write.
        self.before_write: list[Callable[[], object]] = []

    def put(
        self,
        bucket: str,
        key: str,
        data: bytes,
        encryption: Encryption = Encryption.NONE,
        kms_key: str | None = None,
        versioned: bool = False,
        **attributes: object,
    ) -> ObjectSnapshot:
        n = next(self._ids)
        snapshot = ObjectSnapshot(
            bucket=bucket,
            key=key,
            etag=f'"etag-{n}"',
            size=len(data),
            encryption=encryption,
            kms_key=kms_key,
            version_id=f"v{n}" if versioned else None,
            tag_count=0,
            **attributes,  # type: ignore[arg-type]
        )
        versions = self.objects.setdefault((bucket, key), [])
        if not versioned:
            versions.clear()
        versions.append(StoredObject(snapshot, data))
        return snapshot

    def latest(self, bucket: str, key: str) -> StoredObject | None:
        versions = self.objects.get((bucket, key))
        return versions[-1] if versions else None

    async def head(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectSnapshot | None:
        self.heads += 1
        for stored in reversed(self.objects.get((bucket, key), [])):
            if version_id is None or stored.snapshot.version_id == version_id:
                counted = stored.snapshot.tag_count == len(stored.tags)  # tests add tags directly
                return (
                    stored.snapshot
                    if counted
                    else replace(stored.snapshot, tag_count=len(stored.tags))
                )
        return None

    async def bucket_default_key(self, bucket: str) -> BucketDefault | None:
        self.bucket_lookups += 1
        key = self.bucket_keys.get(bucket)
        return BucketDefault(key, bucket in self.dsse_buckets) if key else None

    async def read_tags(self, snapshot: ObjectSnapshot) -> dict[str, str]:
        self.tag_reads += 1
        stored = self.latest(snapshot.bucket, snapshot.key)
        return dict(stored.tags) if stored else {}

    async def rewrite_sse_kms(
        self, snapshot: ObjectSnapshot, target: SseKmsTarget, tags: dict[str, str]
    ) -> WriteResult:
        current = self._current(snapshot)
        self.write_targets.append(target)
        encryption = Encryption.SSE_KMS_DSSE if target.dsse else Encryption.SSE_KMS
        return self._replace(
            snapshot, current.data, tags, encryption, f"arn:aws:kms:{target.key_name}"
        )

    async def read_chunks(self, snapshot: ObjectSnapshot) -> AsyncIterator[bytes]:
        current = self.latest(snapshot.bucket, snapshot.key)
        if current is None or current.snapshot.etag != snapshot.etag:
            raise PreconditionFailed("If-Match failed")  # GET with If-Match
        for start in range(0, len(current.data), CHUNK):
            yield current.data[start : start + CHUNK]

    async def put_if_match(
        self,
        snapshot: ObjectSnapshot,
        body: bytes | IO[bytes],
        length: int,
        *,
        tags: dict[str, str],
        metadata: dict[str, str],
    ) -> WriteResult:
        data = body if isinstance(body, bytes) else body.read(length)
        self._current(snapshot)
        return self._replace_body(snapshot, data, tags, metadata)

    async def upload_if_match(
        self,
        snapshot: ObjectSnapshot,
        parts: AsyncIterator[tuple[IO[bytes], int]],
        *,
        tags: dict[str, str],
        metadata: dict[str, str],
    ) -> WriteResult:
        self.uploaded_parts = [body.read(length) async for body, length in parts]
        self._current(snapshot)  # checked on completion, as CompleteMultipartUpload does
        return self._replace_body(snapshot, b"".join(self.uploaded_parts), tags, metadata)

    def _current(self, snapshot: ObjectSnapshot) -> StoredObject:
        """The stored object if it is still the inspected one (If-Match), else 412."""
        if self.before_write:  # one simulated user write per rewrite attempt
            self.before_write.pop(0)()
        current = self.latest(snapshot.bucket, snapshot.key)
        if current is None or current.snapshot.etag != snapshot.etag:
            raise PreconditionFailed("If-Match failed")
        return current

    def _replace_body(
        self, snapshot: ObjectSnapshot, data: bytes, tags: dict[str, str], metadata: dict[str, str]
    ) -> WriteResult:
        user = snapshot.attributes.user_metadata() | metadata
        kms_key = user.get(f"{ENVELOPE_PREFIX}key") if is_envelope(user) else None
        encryption = Encryption.ENVELOPE if kms_key else Encryption.NONE
        attributes = replace(snapshot.attributes, metadata=user)
        return self._replace(snapshot, data, tags, encryption, kms_key, attributes=attributes)

    def _replace(
        self,
        snapshot: ObjectSnapshot,
        data: bytes,
        tags: dict[str, str],
        encryption: Encryption,
        kms_key: str | None,
        **changes: object,
    ) -> WriteResult:
        n = next(self._ids)
        new = replace(
            snapshot,
            etag=f'"etag-{n}"',
            size=len(data),
            encryption=encryption,
            kms_key=kms_key,
            version_id=f"v{n}" if snapshot.version_id else None,
            tag_count=len(tags),
            **changes,  # type: ignore[arg-type]
        )
        versions = self.objects[(snapshot.bucket, snapshot.key)]
        if snapshot.version_id is None:
            versions.clear()
        versions.append(StoredObject(new, data, dict(tags)))
        self.writes += 1
        # Like MinIO and AWS, the PUT response names the encryption it applied.
        return WriteResult(new.etag, new.version_id, new.encryption, new.kms_key)

    async def delete_version(self, bucket: str, key: str, version_id: str) -> None:
        versions = self.objects.get((bucket, key), [])
        self.objects[(bucket, key)] = [v for v in versions if v.snapshot.version_id != version_id]
