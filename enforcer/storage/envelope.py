"""Strategy ``envelope``: re-encrypt an object in place with a chain the enforcer builds itself.

The bytes stream through with bounded memory: GET (If-Match) → DARE 2.0 encryption → a spool of
at most one part (memory up to 8 MiB, then disk) → PUT or multipart upload completed under
If-Match, so a user's concurrent write still wins. Objects up to the multipart threshold are one
DARE stream under the OEK with the plaintext SHA-256 sealed in the header; larger ones are one
stream per part under ``derive_part_key(oek, n)`` (the digest is not known when the upload must
begin, so it is omitted there). Reading back: :func:`decrypt_object`.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from typing import IO, Any

from enforcer.config import S3Settings
from enforcer.core.policy import RequiredKey
from enforcer.crypto import chain, dare
from enforcer.crypto.envelope import (
    EnvelopeHeader,
    EnvelopeHeaderDraft,
    decrypt_body,
    encrypted_size,
    open_envelope,
    seal_new_envelope,
)
from enforcer.engine.pipeline import Rewriter
from enforcer.errors import IntegrityError, ObjectUnreadable
from enforcer.kms.base import Kms
from enforcer.storage.port import ObjectSnapshot, WriteResult
from enforcer.storage.responses import write_headers
from enforcer.storage.s3 import SPOOL_IN_MEMORY, S3Storage, check_read_size
from enforcer.telemetry import step


def envelope_rewriter(storage: S3Storage, kms: Kms, settings: S3Settings) -> Rewriter:
    async def rewrite(
        snapshot: ObjectSnapshot, required: RequiredKey, tags: dict[str, str]
    ) -> WriteResult:
        draft, oek = await seal_new_envelope(kms, required.key, snapshot.bucket, snapshot.key)
        base = write_headers(snapshot.attributes, tags)
        if snapshot.size > settings.multipart_threshold:
            return await _write_parts(storage, snapshot, draft, oek, base, settings.part_size)
        return await _write_single(storage, snapshot, draft, oek, base)

    return rewrite


async def _write_single(
    storage: S3Storage,
    snapshot: ObjectSnapshot,
    draft: EnvelopeHeaderDraft,
    oek: bytes,
    headers: dict[str, Any],
) -> WriteResult:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool, step("encrypt"):
        encryptor = dare.Encryptor(oek)
        digest = hashlib.sha256()
        size = 0
        async for chunk in storage.read_chunks(snapshot):
            digest.update(chunk)
            size += len(chunk)
            spool.writelines(encryptor.update(chunk))
        spool.writelines(encryptor.finalize())
        check_read_size(snapshot, size)
        header = draft.complete(oek, plaintext_size=size, plaintext_sha256=digest.digest())
        length = spool.tell()
        spool.seek(0)
        with step("upload", bytes=length):
            return await storage.put_if_match(
                snapshot, spool, length, _with_envelope(headers, header)
            )


async def _write_parts(
    storage: S3Storage,
    snapshot: ObjectSnapshot,
    draft: EnvelopeHeaderDraft,
    oek: bytes,
    headers: dict[str, Any],
    part_size: int,
) -> WriteResult:
    header = draft.complete(oek, plaintext_size=snapshot.size, part_size=part_size)

    async def parts() -> AsyncIterator[tuple[IO[bytes], int]]:
        number, size = 1, 0
        spool, encryptor = _new_part(oek, number)
        try:
            async for chunk in _recut(storage.read_chunks(snapshot), part_size):
                if spool.tell() and size % part_size == 0:  # a part is full: hand it over
                    yield _finish_part(spool, encryptor)
                    spool.close()  # uploaded: at most one part is ever spooled
                    number += 1
                    spool, encryptor = _new_part(oek, number)
                spool.writelines(encryptor.update(chunk))
                size += len(chunk)
            check_read_size(snapshot, size)
            yield _finish_part(spool, encryptor)
        finally:
            spool.close()

    with step("upload", parts=-(-snapshot.size // part_size)):
        return await storage.multipart_if_match(snapshot, _with_envelope(headers, header), parts())


def _new_part(oek: bytes, number: int) -> tuple[IO[bytes], dare.Encryptor]:
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY)  # noqa: SIM115 - parts() closes it
    return spool, dare.Encryptor(chain.derive_part_key(oek, number))


def _finish_part(spool: IO[bytes], encryptor: dare.Encryptor) -> tuple[IO[bytes], int]:
    spool.writelines(encryptor.finalize())
    length = spool.tell()
    spool.seek(0)
    return spool, length


async def _recut(chunks: AsyncIterator[bytes], size: int) -> AsyncIterator[bytes]:
    """Re-cut a stream so no chunk crosses a multiple of ``size`` bytes."""
    used = 0
    async for chunk in chunks:
        view = memoryview(chunk)
        while view:
            take = min(len(view), size - used)
            yield bytes(view[:take])
            used = (used + take) % size
            view = view[take:]


def _with_envelope(headers: dict[str, Any], header: EnvelopeHeader) -> dict[str, Any]:
    return headers | {"Metadata": headers.get("Metadata", {}) | header.to_metadata()}


async def decrypt_object(
    storage: S3Storage, kms: Kms, bucket: str, key: str, sink: IO[bytes]
) -> int:
    """Write the verified plaintext of an envelope object to ``sink``; return its size.

    The ciphertext is spooled first (memory up to 8 MiB, then disk) so the decryption itself is
    the plain synchronous :func:`decrypt_body`. Any tampering raises IntegrityError; by then
    ``sink`` may hold a prefix of authenticated plaintext, which the caller must discard.
    """
    snapshot = await storage.head(bucket, key)
    if snapshot is None:
        raise ObjectUnreadable(f"{bucket}/{key} does not exist")
    header = EnvelopeHeader.from_metadata(snapshot.attributes.metadata)
    expected = encrypted_size(header.plaintext_size, header.part_size)
    if snapshot.size != expected:
        raise IntegrityError(
            f"body is {snapshot.size} bytes; this header's envelope has {expected}"
        )
    oek = await open_envelope(kms, header, bucket, key)
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as cipher:
        async for chunk in storage.read_chunks(snapshot):
            cipher.write(chunk)
        cipher.seek(0)
        written = 0
        with step("decrypt"):
            for piece in decrypt_body(oek, header, iter(lambda: cipher.read(1024 * 1024), b"")):
                sink.write(piece)
                written += len(piece)
    return written
