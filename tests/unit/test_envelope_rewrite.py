"""The ``envelope`` strategy (enforcer.engine.envelope) on the in-memory store and KMS: the
same port the S3 adapter implements, so the strategy is tested without a server."""

from __future__ import annotations

import io
import os

import pytest
from doubles.kms import InMemoryKms
from doubles.storage import MemoryStorage

from enforcer.core.policy import RequiredKey, Strategy
from enforcer.core.verdict import Encryption
from enforcer.crypto.envelope import PREFIX, EnvelopeHeader
from enforcer.engine.envelope import decrypt_object, envelope_rewriter
from enforcer.engine.objects import PreservedAttributes
from enforcer.errors import PreconditionFailed

REQUIRED = RequiredKey(key="ek", strategy=Strategy.ENVELOPE, source="policy:b/")
MiB = 1024 * 1024
PARTS = {"multipart_threshold": 5 * MiB, "part_size": 5 * MiB}


@pytest.fixture
def storage() -> MemoryStorage:
    return MemoryStorage()


@pytest.fixture
def kms() -> InMemoryKms:
    return InMemoryKms(keys=("ek",))


async def read_back(storage: MemoryStorage, kms: InMemoryKms, key: str) -> bytes:
    sink = io.BytesIO()
    await decrypt_object(storage, kms, "b", key, sink)
    return sink.getvalue()


@pytest.mark.parametrize(
    "size", [0, 1, 64 * 1024 + 1, 11 * MiB], ids=["empty", "1B", "64K+1", "11M"]
)
async def test_rewrite_then_decrypt_gives_the_plaintext_back(
    storage: MemoryStorage, kms: InMemoryKms, size: int
) -> None:
    data = os.urandom(size)
    snapshot = storage.put("b", "k", data)
    written = await envelope_rewriter(storage, kms, **PARTS)(snapshot, REQUIRED, {"t": "1"})

    stored = storage.latest("b", "k")
    assert stored is not None and stored.snapshot.etag == written.etag
    assert stored.snapshot.encryption is Encryption.ENVELOPE and stored.snapshot.kms_key == "ek"
    assert stored.data != data or size == 0  # the body is ciphertext
    assert stored.tags == {"t": "1"}
    assert await read_back(storage, kms, "k") == data


async def test_large_objects_go_up_in_parts_each_its_own_stream(
    storage: MemoryStorage, kms: InMemoryKms
) -> None:
    snapshot = storage.put("b", "k", os.urandom(11 * MiB))
    await envelope_rewriter(storage, kms, **PARTS)(snapshot, REQUIRED, {})

    assert len(storage.uploaded_parts) == 3  # 5 + 5 + 1 MiB of plaintext
    stored = storage.latest("b", "k")
    assert stored is not None
    header = EnvelopeHeader.from_metadata(stored.snapshot.attributes.metadata)
    assert header.part_size == 5 * MiB and header.sealed_sha256 is None


async def test_user_metadata_and_attributes_are_kept_beside_the_envelope(
    storage: MemoryStorage, kms: InMemoryKms
) -> None:
    attributes = PreservedAttributes(metadata={"dept": "fin"}, cache_control="no")
    snapshot = storage.put("b", "k", b"x", attributes=attributes)
    await envelope_rewriter(storage, kms, **PARTS)(snapshot, REQUIRED, {})

    stored = storage.latest("b", "k")
    assert stored is not None
    metadata = stored.snapshot.attributes.metadata
    assert metadata["dept"] == "fin" and stored.snapshot.attributes.cache_control == "no"
    assert {k for k in metadata if k.startswith(PREFIX)} >= {PREFIX + "version", PREFIX + "key"}


async def test_a_concurrent_user_write_wins(storage: MemoryStorage, kms: InMemoryKms) -> None:
    snapshot = storage.put("b", "k", b"old")
    storage.before_write.append(lambda: storage.put("b", "k", b"the user's"))

    with pytest.raises(PreconditionFailed):
        await envelope_rewriter(storage, kms, **PARTS)(snapshot, REQUIRED, {})
    stored = storage.latest("b", "k")
    assert stored is not None and stored.data == b"the user's"
    assert stored.snapshot.encryption is Encryption.NONE


async def test_an_envelope_under_another_key_is_rewritten_from_its_plaintext(
    storage: MemoryStorage, kms: InMemoryKms
) -> None:
    kms.create_key("old-ek")
    old = RequiredKey(key="old-ek", strategy=Strategy.ENVELOPE, source="policy:b/")
    rewrite = envelope_rewriter(storage, kms, **PARTS)
    await rewrite(storage.put("b", "k", b"data"), old, {})
    first = storage.latest("b", "k")
    assert first is not None and first.snapshot.kms_key == "old-ek"

    await rewrite(first.snapshot, REQUIRED, {})  # wrong key: a fresh chain under "ek"

    second = storage.latest("b", "k")
    assert second is not None and second.snapshot.kms_key == "ek"
    assert await read_back(storage, kms, "k") == b"data"  # not the old ciphertext
