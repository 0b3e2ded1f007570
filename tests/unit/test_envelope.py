"""Envelope objects: the chain through a KMS, the metadata format, and the body streams."""

from __future__ import annotations

import base64
import hashlib
import itertools
import random
from collections.abc import Iterator, Mapping

import pytest
from doubles.kms import InMemoryKms
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from enforcer.crypto import chain, dare, envelope
from enforcer.crypto.envelope import EnvelopeHeader
from enforcer.engine import envelope as sealing
from enforcer.engine.ports import DataKey
from enforcer.errors import IntegrityError

BUCKET, KEY = "photos", "2024/cat.jpg"
KIB64 = 64 * 1024


class RecordingKms(InMemoryKms):
    """The fake KMS, remembering the DEKs it handed out (to look for leaks)."""

    def __init__(self) -> None:
        super().__init__(keys=("ek-1",))
        self.handed_out: list[DataKey] = []

    async def generate_data_key(self, key_name: str, context: Mapping[str, str]) -> DataKey:
        key = await super().generate_data_key(key_name, context)
        self.handed_out.append(key)
        return key


@pytest.fixture
def kms() -> RecordingKms:
    return RecordingKms()


async def new_header(
    kms: RecordingKms, data: bytes = b"hello", part_size: int | None = None
) -> tuple[EnvelopeHeader, bytes]:
    draft, oek = await sealing.seal_new_envelope(kms, "ek-1", BUCKET, KEY)
    digest = hashlib.sha256(data).digest()
    return draft.complete(
        oek, plaintext_size=len(data), plaintext_sha256=digest, part_size=part_size
    ), oek


# --- the chain through the KMS --------------------------------------------------------------


async def test_seal_and_open(kms: RecordingKms, spans: InMemorySpanExporter) -> None:
    header, oek = await new_header(kms)
    names = [s.name for s in spans.get_finished_spans()]
    assert names == ["dek.generate", "oek.generate", "kek.derive", "seal"]
    assert (header.kms_kind, header.key_name) == ("fake", "ek-1")
    assert header.context == {BUCKET: f"{BUCKET}/{KEY}"}
    assert await sealing.open_envelope(kms, header, BUCKET, KEY) == oek


async def test_each_envelope_gets_a_fresh_chain(kms: RecordingKms) -> None:
    (first, oek1), (second, oek2) = await new_header(kms), await new_header(kms)
    assert oek1 != oek2
    assert first.iv != second.iv
    assert first.wrapped_dek != second.wrapped_dek
    assert kms.handed_out[0].plaintext != kms.handed_out[1].plaintext


async def test_no_key_material_in_metadata_repr_or_spans(
    kms: RecordingKms, spans: InMemorySpanExporter
) -> None:
    header, oek = await new_header(kms, b"secret data")
    await sealing.open_envelope(kms, header, BUCKET, KEY)
    dek = kms.handed_out[0].plaintext
    forms = [form for k in (dek, oek) for form in (k.hex(), base64.b64encode(k).decode(), str(k))]
    forms.append(hashlib.sha256(b"secret data").hexdigest())  # the digest is stored sealed
    forms.append(base64.b64encode(hashlib.sha256(b"secret data").digest()).decode())
    attributes = [str(dict(s.attributes or {})) for s in spans.get_finished_spans()]
    haystacks = [*header.to_metadata().values(), repr(header), repr(kms.handed_out[0]), *attributes]
    for form in forms:
        assert not any(form in hay for hay in haystacks)


@pytest.mark.parametrize(
    ("bucket", "key"), [(BUCKET, "2024/dog.jpg"), ("other", KEY), (BUCKET, "2024/cat.jpg/x")]
)
async def test_moved_object_does_not_open(kms: RecordingKms, bucket: str, key: str) -> None:
    header, _ = await new_header(kms)
    with pytest.raises(IntegrityError, match="not bound to"):
        await sealing.open_envelope(kms, header, bucket, key)


async def test_moved_object_with_rewritten_context_still_fails(kms: RecordingKms) -> None:
    """Even if the context is edited to the new path, the wrapped DEK and the KEK refuse it."""
    header, _ = await new_header(kms)
    forged = header.model_copy(update={"context": {BUCKET: f"{BUCKET}/2024/dog.jpg"}})
    with pytest.raises(IntegrityError):
        await sealing.open_envelope(kms, forged, BUCKET, "2024/dog.jpg")


async def test_kek_binds_the_path_even_if_the_kms_agrees(kms: RecordingKms) -> None:
    """The DEK decrypts (same context), but the KEK of another path cannot unseal the OEK."""
    header, _ = await new_header(kms)
    dek = await kms.decrypt("ek-1", header.wrapped_dek, header.context)
    kek = chain.derive_kek(dek, header.iv, BUCKET, "2024/dog.jpg")
    with pytest.raises(IntegrityError, match="cannot unseal"):
        chain.unseal_oek(kek, header.sealed_oek)


async def test_tampered_iv_or_sealed_key(kms: RecordingKms) -> None:
    header, _ = await new_header(kms)
    for field, value in (("iv", bytes(32)), ("sealed_oek", bytes(64))):
        broken = header.model_copy(update={field: value})
        with pytest.raises(IntegrityError, match="cannot unseal"):
            await sealing.open_envelope(kms, broken, BUCKET, KEY)


# --- metadata -------------------------------------------------------------------------------


async def test_metadata_round_trip(kms: RecordingKms) -> None:
    header, _ = await new_header(kms, part_size=8 * 1024 * 1024)
    metadata = header.to_metadata()
    assert all(k.startswith("enforcer-envelope-") for k in metadata)
    assert all(v.isascii() and v.isprintable() for v in metadata.values())
    assert metadata["enforcer-envelope-algorithm"] == "DAREv2-HMAC-SHA256"
    assert base64.b64decode(metadata["enforcer-envelope-context"]) == (
        b'{"photos":"photos/2024/cat.jpg"}'
    )
    assert EnvelopeHeader.from_metadata(metadata) == header
    # S3 returns metadata keys lower-cased; some clients capitalise them. Unknown keys are ignored.
    shouted = {k.title(): v for k, v in metadata.items()} | {"other": "x"}
    assert EnvelopeHeader.from_metadata(shouted) == header
    assert envelope.is_envelope(shouted)
    assert not envelope.is_envelope({"other": "x"})


async def test_optional_fields_absent(kms: RecordingKms) -> None:
    draft, oek = await sealing.seal_new_envelope(kms, "ek-1", BUCKET, KEY)
    header = draft.complete(oek, plaintext_size=3)
    metadata = header.to_metadata()
    assert "enforcer-envelope-sha256" not in metadata
    assert "enforcer-envelope-part-size" not in metadata
    assert EnvelopeHeader.from_metadata(metadata) == header


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


MALFORMED = [
    ("version", None, "lacks 'enforcer-envelope-version'"),
    ("key", None, "lacks 'enforcer-envelope-key'"),
    ("wrapped-dek", None, "lacks 'enforcer-envelope-wrapped-dek'"),
    ("iv", None, "lacks 'enforcer-envelope-iv'"),
    ("sealed-oek", None, "lacks 'enforcer-envelope-sealed-oek'"),
    ("algorithm", None, "lacks 'enforcer-envelope-algorithm'"),
    ("context", None, "lacks 'enforcer-envelope-context'"),
    ("size", None, "lacks 'enforcer-envelope-size'"),
    ("kms", None, "lacks 'enforcer-envelope-kms'"),
    ("version", "2", "'enforcer-envelope-version' is invalid"),
    ("version", "one", "'enforcer-envelope-version' is malformed"),
    ("iv", "not base64!", "'enforcer-envelope-iv' is malformed"),
    ("iv", b64(bytes(31)), "'enforcer-envelope-iv' is invalid"),
    ("sealed-oek", b64(bytes(65)), "'enforcer-envelope-sealed-oek' is invalid"),
    ("wrapped-dek", "", "'enforcer-envelope-wrapped-dek' is invalid"),
    ("algorithm", "DARE-SHA256", "'enforcer-envelope-algorithm' is invalid"),
    ("size", "-1", "'enforcer-envelope-size' is malformed"),
    ("size", "1e3", "'enforcer-envelope-size' is malformed"),
    ("size", "١٢", "'enforcer-envelope-size' is malformed"),  # Arabic-Indic digits
    ("part-size", "0", "'enforcer-envelope-part-size' is invalid"),
    ("sha256", b64(bytes(32)), "'enforcer-envelope-sha256' is invalid"),
    ("context", b64(b"[1]"), "'enforcer-envelope-context' is malformed"),
    ("context", b64(b"{not json"), "'enforcer-envelope-context' is malformed"),
    ("context", b64(b'{"a":1}'), "'enforcer-envelope-context' is malformed"),
    ("context", b64(b"\xff"), "'enforcer-envelope-context' is malformed"),
    ("context", b64(b"{}"), "'enforcer-envelope-context' is invalid"),
    ("kms", "two words", "'enforcer-envelope-kms' is invalid"),
    ("key", "", "'enforcer-envelope-key' is invalid"),
]


@pytest.mark.parametrize(("field", "value", "reason"), MALFORMED)
async def test_malformed_metadata(
    kms: RecordingKms, field: str, value: str | None, reason: str
) -> None:
    header, _ = await new_header(kms, part_size=KIB64)
    metadata = header.to_metadata()
    if value is None:
        del metadata[f"enforcer-envelope-{field}"]
    else:
        metadata[f"enforcer-envelope-{field}"] = value
    with pytest.raises(IntegrityError, match=reason):
        EnvelopeHeader.from_metadata(metadata)


# --- bodies ---------------------------------------------------------------------------------

PART_SIZES = [None, 1000, KIB64, KIB64 + 1, 200_000]
SIZES = [0, 1, KIB64 - 1, KIB64, KIB64 + 1, 200_000, 3 * 1024 * 1024 + 3]


def rechunk(data: bytes, cuts: list[int]) -> Iterator[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return (data[a:b] for a, b in itertools.pairwise(points))


def header_for(oek: bytes, data: bytes, part_size: int | None) -> EnvelopeHeader:
    draft = envelope.EnvelopeHeaderDraft(
        kms_kind="fake",
        key_name="ek-1",
        wrapped_dek=b"w",
        iv=bytes(32),
        sealed_oek=bytes(64),
        context={BUCKET: f"{BUCKET}/{KEY}"},
    )
    digest = hashlib.sha256(data).digest()
    return draft.complete(
        oek, plaintext_size=len(data), plaintext_sha256=digest, part_size=part_size
    )


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from(SIZES),
    part_size=st.sampled_from(PART_SIZES),
    seed=st.integers(0, 2**32),
    cuts=st.lists(st.integers(0, 2**24), max_size=10),
    read_cuts=st.lists(st.integers(0, 2**24), max_size=10),
)
def test_body_round_trip(
    size: int, part_size: int | None, seed: int, cuts: list[int], read_cuts: list[int]
) -> None:
    data = random.Random(seed).randbytes(size)
    oek = random.Random(seed + 1).randbytes(32)
    body = b"".join(envelope.encrypt_chunks(oek, rechunk(data, cuts), part_size=part_size))
    assert len(body) == envelope.encrypted_size(size, part_size)
    header = header_for(oek, data, part_size)
    assert b"".join(envelope.decrypt_body(oek, header, rechunk(body, read_cuts))) == data


def split_parts(body: bytes, part_size: int) -> list[bytes]:
    step = dare.encrypted_size(part_size)
    return [body[i : i + step] for i in range(0, len(body), step)]


def test_parts_are_standalone_streams_under_part_keys() -> None:
    oek, data = bytes(range(32)), random.Random(7).randbytes(2 * 100_000 + 5)
    body = b"".join(envelope.encrypt_chunks(oek, [data], part_size=100_000))
    parts = split_parts(body, 100_000)
    assert len(parts) == 3
    for number, part in enumerate(parts, start=1):
        plain = dare.decrypt(chain.derive_part_key(oek, number), part)
        assert plain == data[(number - 1) * 100_000 : number * 100_000]
    # Uploading part by part gives a body the reader accepts just the same.
    uploaded = b"".join(
        b"".join(envelope.encrypt_part(oek, n, [data[(n - 1) * 100_000 : n * 100_000]]))
        for n in (1, 2, 3)
    )
    assert b"".join(envelope.decrypt_chunks(oek, [uploaded], part_size=100_000)) == data


def test_single_part_body_uses_the_oek_itself() -> None:
    oek = bytes(range(32))
    body = b"".join(envelope.encrypt_chunks(oek, [b"abc"]))
    assert dare.decrypt(oek, body) == b"abc"


@pytest.fixture
def multipart() -> tuple[bytes, bytes, EnvelopeHeader, list[bytes]]:
    oek, data = bytes(range(32)), random.Random(3).randbytes(3 * 50_000)
    body = b"".join(envelope.encrypt_chunks(oek, [data], part_size=50_000))
    return oek, data, header_for(oek, data, 50_000), split_parts(body, 50_000)


def read(oek: bytes, header: EnvelopeHeader, body: bytes) -> bytes:
    return b"".join(envelope.decrypt_body(oek, header, [body]))


def test_swapped_parts(multipart: tuple[bytes, bytes, EnvelopeHeader, list[bytes]]) -> None:
    oek, _, header, parts = multipart
    with pytest.raises(IntegrityError, match="authentication failed"):
        read(oek, header, parts[1] + parts[0] + parts[2])


def test_dropped_last_part(multipart: tuple[bytes, bytes, EnvelopeHeader, list[bytes]]) -> None:
    oek, _, header, parts = multipart
    with pytest.raises(IntegrityError, match="100000 plaintext bytes, not 150000"):
        read(oek, header, parts[0] + parts[1])


def test_appended_valid_part(multipart: tuple[bytes, bytes, EnvelopeHeader, list[bytes]]) -> None:
    oek, _, header, parts = multipart
    extra = b"".join(envelope.encrypt_part(oek, 4, [b"more"]))
    with pytest.raises(IntegrityError, match="more than 150000 bytes"):
        read(oek, header, b"".join(parts) + extra)


def test_wrong_part_size(multipart: tuple[bytes, bytes, EnvelopeHeader, list[bytes]]) -> None:
    oek, data, _, parts = multipart
    with pytest.raises(IntegrityError):
        read(oek, header_for(oek, data, None), b"".join(parts))


def test_digest_mismatch(multipart: tuple[bytes, bytes, EnvelopeHeader, list[bytes]]) -> None:
    oek, _, header, parts = multipart
    lying = header.model_copy(
        update={"sealed_sha256": envelope.seal_digest(oek, hashlib.sha256(b"x").digest())}
    )
    with pytest.raises(IntegrityError, match="SHA-256 does not match"):
        read(oek, lying, b"".join(parts))
    other_oek = bytes(32)
    with pytest.raises(IntegrityError, match="digest does not open"):
        envelope.open_digest(other_oek, header.sealed_sha256 or b"")


def test_empty_body() -> None:
    oek = bytes(range(32))
    assert list(envelope.encrypt_chunks(oek, [b""])) == []
    assert read(oek, header_for(oek, b"", None), b"") == b""
    with pytest.raises(IntegrityError, match="empty stream"):
        read(oek, header_for(oek, b"abc", None), b"")


def test_push_style_body_decryptor(
    multipart: tuple[bytes, bytes, EnvelopeHeader, list[bytes]],
) -> None:
    oek, data, header, parts = multipart
    body = b"".join(parts)
    decryptor = envelope.BodyDecryptor(oek, header)
    out = [p for i in range(0, len(body), 7001) for p in decryptor.update(body[i : i + 7001])]
    decryptor.finalize()
    assert b"".join(out) == data
    cut = envelope.BodyDecryptor(oek, header)
    cut.update(body[:-1])
    with pytest.raises(IntegrityError, match="ends inside package"):
        cut.finalize()
