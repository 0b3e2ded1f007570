"""The DEK -> KEK -> OEK -> part-key chain: known answers and what each derivation binds."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enforcer.crypto import chain
from enforcer.errors import IntegrityError

DEK = bytes(32)
IV = bytes([1]) * 32
RANDOM = bytes([2]) * 32

# docs/storage-facts.md (the chain): part keys of an all-zero OEK.
PART_KEYS = [
    (0, "aa7855e13839dd767cd5da7c1ff5036540c9264b7a803029315e55375287b4af"),
    (1, "a3e7181c6eed030fd52f79537c56c4d07da92e56d374ff1dd2043350785b37d8"),
    (10000, "f86e65c396ed52d204ee44bd1a0bbd86eb8b01b7354e67a3b3ae0e34dd5bd115"),
]

# DEK = 32 zero bytes, IV = 32 x 0x01, random = 32 x 0x02, bucket/object = "bucket"/"object",
# DARE nonce = 12 zero bytes. Computed here and cross-checked once, offline, with Go's crypto/hmac
# and github.com/minio/sio v0.4.1 following MinIO's internal/crypto/key.go (identical bytes).
KEK = "e2d331f935c90f194d104f923ea7e36b80ca89aedb03cd1cde70ebb3e23dc79b"
OEK = "5623b7d9297afe2f132339a07d743354ef385940f07df88aff1a87b2000ac9b2"
SEALED = (
    "20001f00800000000000000000000000"  # v2.0, AES-GCM, 32-1 bytes, final flag + zero nonce
    "dcbe05844286c1b8df5f554b8c63789ac18ccb84a69de008b023d18fcc439bf1"  # ciphertext of the OEK
    "f84cb08cc02cf5db4573b7c5b9a277f1"  # tag
)


@pytest.mark.parametrize(("number", "expected"), PART_KEYS)
def test_part_key_vectors(number: int, expected: str) -> None:
    assert chain.derive_part_key(bytes(32), number).hex() == expected


def test_part_numbers_are_uint32() -> None:
    with pytest.raises(ValueError, match="uint32"):
        chain.derive_part_key(bytes(32), 2**32)
    with pytest.raises(ValueError, match="uint32"):
        chain.derive_part_key(bytes(32), -1)


def test_kek_vector_and_its_message() -> None:
    kek = chain.derive_kek(DEK, IV, "bucket", "object")
    message = IV + b"SSE-KMS" + b"DAREv2-HMAC-SHA256" + b"bucket/object"
    assert kek == hmac.new(DEK, message, hashlib.sha256).digest()
    assert kek.hex() == KEK


def test_oek_vector() -> None:
    oek = chain.generate_oek(DEK, RANDOM)
    assert oek == hmac.new(DEK, b"object-encryption-key generation" + RANDOM, "sha256").digest()
    assert oek.hex() == OEK


def test_sealed_oek_vector() -> None:
    sealed = chain.seal_oek(bytes.fromhex(KEK), bytes.fromhex(OEK), nonce=bytes(12))
    assert sealed.hex() == SEALED
    assert chain.unseal_oek(bytes.fromhex(KEK), sealed).hex() == OEK


def test_fresh_values_are_random() -> None:
    assert chain.generate_oek(DEK) != chain.generate_oek(DEK)
    assert chain.generate_iv() != chain.generate_iv()
    assert len(chain.generate_iv()) == 32


@given(oek=st.binary(min_size=32, max_size=32), dek=st.binary(min_size=32, max_size=32))
def test_seal_unseal_round_trip(oek: bytes, dek: bytes) -> None:
    kek = chain.derive_kek(dek, IV, "b", "k")
    sealed = chain.seal_oek(kek, oek)
    assert len(sealed) == 64
    assert chain.unseal_oek(kek, sealed) == oek


@pytest.mark.parametrize(
    ("dek", "iv", "bucket", "obj", "domain"),
    [
        (bytes([9]) * 32, IV, "bucket", "object", "SSE-KMS"),
        (DEK, bytes([3]) * 32, "bucket", "object", "SSE-KMS"),
        (DEK, IV, "other", "object", "SSE-KMS"),
        (DEK, IV, "bucket", "object2", "SSE-KMS"),
        (DEK, IV, "bucket/object", "", "SSE-KMS"),  # same joined path is the same key: see below
        (DEK, IV, "bucket", "object", "SSE-S3"),
    ],
    ids=["dek", "iv", "bucket", "object", "path-split", "domain"],
)
def test_unseal_binds_dek_iv_path_and_domain(
    dek: bytes, iv: bytes, bucket: str, obj: str, domain: str
) -> None:
    sealed = chain.seal_oek(chain.derive_kek(DEK, IV, "bucket", "object"), bytes(32))
    kek = chain.derive_kek(dek, iv, bucket, obj, domain=domain)
    if (bucket, obj) == ("bucket/object", ""):
        # MinIO binds path.Join(bucket, object), not the pair: this is MinIO's behaviour too.
        assert chain.unseal_oek(kek, sealed) == bytes(32)
        return
    with pytest.raises(IntegrityError, match="cannot unseal the object key"):
        chain.unseal_oek(kek, sealed)


@pytest.mark.parametrize("index", range(64))
def test_any_flipped_bit_of_the_sealed_key_fails(index: int) -> None:
    kek = bytes.fromhex(KEK)
    sealed = bytearray(bytes.fromhex(SEALED))
    sealed[index] ^= 0x04
    with pytest.raises(IntegrityError):
        chain.unseal_oek(kek, bytes(sealed))


def test_malformed_inputs() -> None:
    with pytest.raises(IntegrityError, match="64 bytes"):
        chain.unseal_oek(bytes(32), bytes(63))
    with pytest.raises(IntegrityError, match="IV must be 32 bytes"):
        chain.derive_kek(DEK, bytes(16), "b", "k")
    with pytest.raises(IntegrityError, match="unsupported seal algorithm"):
        chain.derive_kek(DEK, IV, "b", "k", algorithm="DARE-SHA256")
    with pytest.raises(ValueError, match="32 bytes"):
        chain.generate_oek(bytes(16))
    with pytest.raises(ValueError, match="32 bytes"):
        chain.seal_oek(bytes(32), bytes(31))


# Go's path.Join, checked with go1.26 for each row.
@pytest.mark.parametrize(
    ("bucket", "obj", "joined"),
    [
        ("bucket", "a/b", "bucket/a/b"),
        ("bucket", "a//b/", "bucket/a/b"),
        ("b", "./x", "b/x"),
        ("b", "x/../y", "b/y"),
        ("b", "../x", "x"),
        ("b", "", "b"),
        ("", "", ""),
        ("b", "/x", "b/x"),
        ("b", "a/../../..", ".."),
        ("", "/x", "/x"),
        ("b", "x/.", "b/x"),
        ("b", "dir/ü ñ+%2F.txt", "b/dir/ü ñ+%2F.txt"),
    ],
)
def test_object_path_is_go_path_join(bucket: str, obj: str, joined: str) -> None:
    assert chain.object_path(bucket, obj) == joined


def test_kms_context_is_minios() -> None:
    assert chain.kms_context("bucket", "a//b") == {"bucket": "bucket/a/b"}
    assert chain.kms_context("bucket", "k", {"x": "y"}) == {"x": "y", "bucket": "bucket/k"}
    # A client-supplied entry for the bucket is kept as given (MinIO does the same).
    assert chain.kms_context("bucket", "k", {"bucket": "mine"}) == {"bucket": "mine"}
