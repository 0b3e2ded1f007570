"""Strategy ``envelope``: re-encrypt an object in place with a chain the enforcer builds itself.

The bytes stream through with bounded memory: GET (If-Match) → DARE 2.0 encryption → a spool of
at most one part (memory up to 8 MiB, then disk) → PUT or multipart upload completed under
If-Match, so a user's concurrent write still wins. Objects up to the multipart threshold are one
DARE stream under the OEK with the plaintext SHA-256 sealed in the header; larger ones are one
stream per part under ``derive_part_key(oek, n)`` (the digest is not known when the upload must
begin, so it is omitted there). Reading back: :func:`decrypt_object`. It talks to the KMS and
the storage only through the engine's ports; the cryptography itself is :mod:`enforcer.crypto`.
"""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO

from enforcer.core.policy import RequiredKey
from enforcer.core.verdict import Encryption
from enforcer.crypto import chain, dare
from enforcer.crypto.envelope import (
    BodyDecryptor,
    EnvelopeHeader,
    EnvelopeHeaderDraft,
    decrypt_body,
    encrypted_size,
)
from enforcer.engine.objects import SPOOL_IN_MEMORY, ObjectSnapshot, WriteResult, check_read_size
from enforcer.engine.pipeline import Rewriter
from enforcer.engine.ports import BodyStorage, Kms
from enforcer.errors import IntegrityError, ObjectUnreadable
from enforcer.telemetry import step


async def seal_new_envelope(
    kms: Kms, key_name: str, bucket: str, key: str
) -> tuple[EnvelopeHeaderDraft, bytes]:
    """Build a fresh chain for ``bucket/key`` under EK ``key_name``; return it and the OEK."""
    context = chain.kms_context(bucket, key)
    with step("dek.generate", key=key_name):
        data_key = await kms.generate_data_key(key_name, context)
    with step("oek.generate"):
        oek = chain.generate_oek(data_key.plaintext)
    with step("kek.derive"):
        iv = chain.generate_iv()
        kek = chain.derive_kek(data_key.plaintext, iv, bucket, key)
    with step("seal"):
        sealed = chain.seal_oek(kek, oek)
    draft = EnvelopeHeaderDraft(
        kms_kind=kms.kind,
        key_name=data_key.key_name,
        wrapped_dek=data_key.ciphertext,
        iv=iv,
        sealed_oek=sealed,
        context=context,
    )
    return draft, oek


async def open_envelope(kms: Kms, header: EnvelopeHeaderDraft, bucket: str, key: str) -> bytes:
    """Unwrap the DEK through the KMS and unseal the OEK of the envelope at ``bucket/key``."""
    expected = chain.object_path(bucket, key)
    if header.context.get(bucket) != expected:
        raise IntegrityError(f"the envelope is not bound to {expected!r}: was the object moved?")
    with step("dek.decrypt", key=header.key_name):
        dek = await kms.decrypt(header.key_name, header.wrapped_dek, header.context)
    with step("kek.derive"):
        kek = chain.derive_kek(dek, header.iv, bucket, key, algorithm=header.algorithm)
    with step("unseal"):
        return chain.unseal_oek(kek, header.sealed_oek)


def envelope_rewriter(
    storage: BodyStorage, kms: Kms, *, multipart_threshold: int, part_size: int
) -> Rewriter:
    """The ``envelope`` strategy's rewrite: objects above ``multipart_threshold`` bytes go up in
    parts of ``part_size``."""

    async def rewrite(
        snapshot: ObjectSnapshot, required: RequiredKey, tags: dict[str, str]
    ) -> WriteResult:
        source = await _plaintext_of(storage, kms, snapshot)
        draft, oek = await seal_new_envelope(kms, required.key, snapshot.bucket, snapshot.key)
        if source.size > multipart_threshold:
            return await _write_parts(storage, snapshot, source, draft, oek, tags, part_size)
        return await _write_single(storage, snapshot, source, draft, oek, tags)

    return rewrite


@dataclass(frozen=True)
class _Plaintext:
    chunks: AsyncIterator[bytes]
    size: int


async def _plaintext_of(storage: BodyStorage, kms: Kms, snapshot: ObjectSnapshot) -> _Plaintext:
    """What the new chain must wrap: the object's plaintext. The store takes its own encryption
    off on GET; an envelope object (under another EK) is opened with its own chain on the way
    through, so the new envelope never wraps the old ciphertext."""
    raw = _exactly(storage.read_chunks(snapshot), snapshot)
    if snapshot.encryption is not Encryption.ENVELOPE:
        return _Plaintext(raw, snapshot.size)
    header = EnvelopeHeader.from_metadata(snapshot.attributes.metadata)
    oek = await open_envelope(kms, header, snapshot.bucket, snapshot.key)
    return _Plaintext(_decrypted(raw, BodyDecryptor(oek, header)), header.plaintext_size)


async def _exactly(chunks: AsyncIterator[bytes], snapshot: ObjectSnapshot) -> AsyncIterator[bytes]:
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        yield chunk
    check_read_size(snapshot, size)


async def _decrypted(
    chunks: AsyncIterator[bytes], decryptor: BodyDecryptor
) -> AsyncIterator[bytes]:
    async for chunk in chunks:
        for piece in decryptor.update(chunk):
            yield piece
    decryptor.finalize()  # authenticates the end of the stream


async def _write_single(
    storage: BodyStorage,
    snapshot: ObjectSnapshot,
    source: _Plaintext,
    draft: EnvelopeHeaderDraft,
    oek: bytes,
    tags: dict[str, str],
) -> WriteResult:
    with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool, step("encrypt"):
        encryptor = dare.Encryptor(oek)
        digest = hashlib.sha256()
        size = 0
        async for chunk in source.chunks:
            digest.update(chunk)
            size += len(chunk)
            spool.writelines(encryptor.update(chunk))
        spool.writelines(encryptor.finalize())
        header = draft.complete(oek, plaintext_size=size, plaintext_sha256=digest.digest())
        length = spool.tell()
        spool.seek(0)
        with step("upload", bytes=length):
            return await storage.put_if_match(
                snapshot, spool, length, tags=tags, metadata=header.to_metadata()
            )


async def _write_parts(
    storage: BodyStorage,
    snapshot: ObjectSnapshot,
    source: _Plaintext,
    draft: EnvelopeHeaderDraft,
    oek: bytes,
    tags: dict[str, str],
    part_size: int,
) -> WriteResult:
    header = draft.complete(oek, plaintext_size=source.size, part_size=part_size)

    async def parts() -> AsyncIterator[tuple[IO[bytes], int]]:
        number, size = 1, 0
        spool, encryptor = _new_part(oek, number)
        try:
            async for chunk in _recut(source.chunks, part_size):
                if spool.tell() and size % part_size == 0:  # a part is full: hand it over
                    yield _finish_part(spool, encryptor)
                    spool.close()  # uploaded: at most one part is ever spooled
                    number += 1
                    spool, encryptor = _new_part(oek, number)
                spool.writelines(encryptor.update(chunk))
                size += len(chunk)
            yield _finish_part(spool, encryptor)
        finally:
            spool.close()

    with step("upload", parts=-(-source.size // part_size)):
        return await storage.upload_if_match(
            snapshot, parts(), tags=tags, metadata=header.to_metadata()
        )


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


async def decrypt_object(
    storage: BodyStorage, kms: Kms, bucket: str, key: str, sink: IO[bytes]
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
