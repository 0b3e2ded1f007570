"""DARE 2.0: known answers, round trips over awkward sizes and chunkings, and tampering."""

from __future__ import annotations

import hashlib
import itertools
import random
import struct

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer.crypto import dare
from enforcer.errors import IntegrityError

KEY = bytes(range(32))
NONCE = bytes(0xA0 + i for i in range(12))  # top bit set: sio clears it on non-final packages
KIB64 = 64 * 1024
CHACHA = dare.CHACHA20_POLY1305


def pattern(n: int) -> bytes:
    return bytes(i % 251 for i in range(n))


def packages(stream: bytes) -> list[bytes]:
    """Split a well-formed stream at its package boundaries."""
    out, pos = [], 0
    while pos < len(stream):
        length = struct.unpack_from("<H", stream, pos + 2)[0] + 1
        out.append(stream[pos : pos + 16 + length + 16])
        pos += 32 + length
    return out


# --- known answers --------------------------------------------------------------------------


def test_two_package_stream_by_hand() -> None:
    """65537 bytes under a nonce with the top bit clear, checked field by field.

    Package 0: 20 (v2.0) 00 (AES-256-GCM) ff ff (65536-1) + nonce 10..1b, final bit clear.
    Package 1: 20 00 00 00 (1-1) + nonce with byte 4 = 0x10|0x80 (final).
    AEAD nonce of package n = header nonce with its last 4 bytes (LE uint32) XORed with n;
    associated data = header bytes 0-3.
    """
    nonce = bytes(range(0x10, 0x1C))
    plaintext = pattern(KIB64 + 1)
    first, last = packages(dare.encrypt(KEY, plaintext, nonce=nonce))
    assert first[:16] == bytes.fromhex("2000ffff") + nonce
    assert last[:16] == bytes.fromhex("20000000") + bytes([0x90]) + nonce[1:]
    aes = AESGCM(KEY)
    assert first[16:] == aes.encrypt(nonce, plaintext[:KIB64], first[:4])
    aead_nonce_1 = bytes([0x90]) + nonce[1:8] + bytes([0x18 ^ 1, 0x19, 0x1A, 0x1B])
    assert last[16:] == aes.encrypt(aead_nonce_1, plaintext[KIB64:], last[:4])


# SHA-256 of the ciphertext of pattern(n) under KEY/NONCE. Computed here and cross-checked once,
# offline, against github.com/minio/sio v0.4.1 (sio.Encrypt with Config{Key, Nonce,
# CipherSuites: {cipher}}): the bytes are identical. n=0 is no package at all, as in sio.
SIO_VECTORS = [
    (dare.AES_256_GCM, 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"),
    (dare.AES_256_GCM, 1, "c5900906f0706f93dd2a732602c15dbb9bd6395f43961087e15727cd17cf7b2a"),
    (dare.AES_256_GCM, 5, "d8d477b6bb94fd3a70ca3e4eb4e91dd2916f716218248573f32084aca2bf858b"),
    (dare.AES_256_GCM, 65536, "398d42e4078c733c46532059316d4d29c05252cebf46ed35c7c5e4b88c4fce84"),
    (dare.AES_256_GCM, 65537, "b5251eaa9179edb88a49b1f04913f233061e417a464a6cbb06be9d94bebab808"),
    (dare.AES_256_GCM, 200000, "0668eecb8c34ac8bf54548cf842f73b11b4bd8fd2037e9d33930bdc3e7fd1b2d"),
    (CHACHA, 1, "364cd482d8ef2e3a3eadd361cd5f9cfa824a7cee2d251b6643e3028dddf84e2e"),
    (CHACHA, 65537, "2f0c67b1456073bc848852c2f6c1ecf03fbb85bf18895ac3435054971710502b"),
    (CHACHA, 200000, "766bab73516f9b24cc764eb87dfd8d5a66effa3d0d172b0958f0ac2aee36a6f4"),
]


@pytest.mark.parametrize(("cipher", "size", "digest"), SIO_VECTORS)
def test_matches_minio_sio(cipher: int, size: int, digest: str) -> None:
    ciphertext = dare.encrypt(KEY, pattern(size), nonce=NONCE, cipher=cipher)
    assert hashlib.sha256(ciphertext).hexdigest() == digest
    assert len(ciphertext) == dare.encrypted_size(size)
    assert dare.decrypt(KEY, ciphertext, allow_empty=size == 0) == pattern(size)


def test_final_package_keeps_nonce_top_bit_and_non_final_clears_it() -> None:
    first, last = packages(dare.encrypt(KEY, pattern(KIB64 + 1), nonce=NONCE))
    assert (first[4], last[4]) == (0x20, 0xA0)


@pytest.mark.parametrize(
    ("plain", "cipher"),
    [
        (0, 0),
        (1, 33),
        (KIB64, KIB64 + 32),
        (KIB64 + 1, KIB64 + 32 + 33),
        (3 * KIB64, 3 * (KIB64 + 32)),
    ],
)
def test_sizes(plain: int, cipher: int) -> None:
    assert dare.encrypted_size(plain) == cipher
    assert dare.decrypted_size(cipher) == plain


@pytest.mark.parametrize("bad", [1, 32, KIB64 + 32 + 32])
def test_impossible_stream_sizes(bad: int) -> None:
    with pytest.raises(IntegrityError, match="not a valid stream size"):
        dare.decrypted_size(bad)


# --- round trips ----------------------------------------------------------------------------

SIZES = [0, 1, KIB64 - 1, KIB64, KIB64 + 1, 2 * KIB64, 3 * 1024 * 1024 + 7]


def rechunk(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=40, deadline=None)
@given(
    size=st.sampled_from(SIZES),
    seed=st.integers(0, 2**32),
    enc_cuts=st.lists(st.integers(0, 2**24), max_size=12),
    dec_cuts=st.lists(st.integers(0, 2**24), max_size=12),
    cipher=st.sampled_from([dare.AES_256_GCM, dare.CHACHA20_POLY1305]),
)
def test_round_trip_any_chunking(
    size: int, seed: int, enc_cuts: list[int], dec_cuts: list[int], cipher: int
) -> None:
    data = random.Random(seed).randbytes(size)
    ciphertext = b"".join(dare.encrypt_stream(KEY, rechunk(data, enc_cuts), cipher=cipher))
    assert len(ciphertext) == dare.encrypted_size(size)
    for package in packages(ciphertext)[:-1]:
        assert len(package) == dare.MAX_PACKAGE  # every package but the last carries 64 KiB
    chunks = rechunk(ciphertext, dec_cuts)
    plain = b"".join(dare.decrypt_stream(KEY, chunks, allow_empty=size == 0))
    assert plain == data


def test_byte_by_byte_decryption() -> None:
    data = pattern(KIB64 + 100)
    ciphertext = dare.encrypt(KEY, data)
    decryptor = dare.Decryptor(KEY)
    out = [p for i in range(len(ciphertext)) for p in decryptor.update(ciphertext[i : i + 1])]
    decryptor.finalize()
    assert b"".join(out) == data


def test_encryptor_emits_bounded_packages_for_a_large_chunk() -> None:
    encryptor = dare.Encryptor(KEY)
    emitted = encryptor.update(bytes(5 * KIB64))
    assert [len(p) for p in emitted] == [dare.MAX_PACKAGE] * 4  # the fifth waits for more data
    assert [len(p) for p in encryptor.finalize()] == [dare.MAX_PACKAGE]


def test_encryptor_misuse() -> None:
    encryptor = dare.Encryptor(KEY)
    encryptor.finalize()
    with pytest.raises(ValueError, match="after finalize"):
        encryptor.update(b"x")
    with pytest.raises(ValueError, match="12 bytes"):
        dare.Encryptor(KEY, nonce=b"short")
    with pytest.raises(ValueError, match="32 bytes"):
        dare.Encryptor(b"short")


# --- tampering ------------------------------------------------------------------------------


def three_packages() -> list[bytearray]:
    """Two full packages and a final one of 10 bytes."""
    return [bytearray(p) for p in packages(dare.encrypt(KEY, pattern(2 * KIB64 + 10)))]


def join(parts: list[bytearray]) -> bytes:
    return b"".join(parts)


def flip(index: int, offset: int, mask: int = 0x01) -> bytes:
    parts = three_packages()
    parts[index][offset] ^= mask
    return join(parts)


@pytest.mark.parametrize(
    ("stream", "reason"),
    [
        (lambda: flip(0, 0, 0x30), "package 0: unsupported version 0x10"),
        (lambda: flip(1, 1, 0x02), "package 1: unsupported cipher 0x02"),
        (lambda: flip(1, 1, 0x01), "package 1: cipher differs from package 0"),
        (lambda: flip(1, 2, 0x01), "package 1: non-final package is not 64 KiB"),
        (lambda: flip(1, 9, 0x40), "package 1: nonce differs from package 0"),
        (lambda: flip(2, 15, 0x01), "package 2: nonce differs from package 0"),
        (lambda: flip(0, 4, 0x80), "package 0: authentication failed"),
        (lambda: flip(2, 4, 0x80), "package 2: non-final package is not 64 KiB"),
        (lambda: flip(0, 100), "package 0: authentication failed"),
        (lambda: flip(2, len(three_packages()[2]) - 1), "package 2: authentication failed"),
        (lambda: flip(1, 5, 0x80), "package 1: nonce differs"),
    ],
    ids=[
        "version",
        "unknown-cipher",
        "cipher-switch",
        "length",
        "nonce-middle",
        "nonce-final",
        "final-flag-set-early",
        "final-flag-cleared",
        "payload-bit",
        "tag-bit",
        "nonce-byte-5",
    ],
)
def test_tampered_header_or_body(stream: object, reason: str) -> None:
    assert callable(stream)
    with pytest.raises(IntegrityError, match=reason):
        dare.decrypt(KEY, stream())


@pytest.mark.parametrize(
    ("order", "reason"),
    [
        ([1, 0, 2], "package 0: authentication failed"),
        ([0, 0, 1, 2], "package 1: authentication failed"),
        ([0, 2], "package 1: authentication failed"),
        ([0, 1], "ends after package 1 without a final one"),
        ([0, 1, 2, 2], "data after the final package"),
        ([2, 0, 1], "package 0: authentication failed"),
    ],
    ids=["swapped", "duplicated", "dropped-middle", "dropped-final", "final-twice", "final-first"],
)
def test_reordered_duplicated_truncated(order: list[int], reason: str) -> None:
    parts = three_packages()
    with pytest.raises(IntegrityError, match=reason):
        dare.decrypt(KEY, b"".join(parts[i] for i in order))


def test_truncated_inside_a_package() -> None:
    whole = join(three_packages())
    for cut in (1, 15, 16, 100, len(whole) - 1):
        with pytest.raises(IntegrityError, match=r"ends inside package|without a final"):
            dare.decrypt(KEY, whole[:cut])


@pytest.mark.parametrize("trailer", [b"\x00", b"x" * 15, b"x" * 16, bytes(dare.MAX_PACKAGE)])
def test_trailing_bytes(trailer: bytes) -> None:
    with pytest.raises(IntegrityError, match="data after the final package"):
        dare.decrypt(KEY, join(three_packages()) + trailer)


def test_empty_stream_needs_permission() -> None:
    with pytest.raises(IntegrityError, match="empty stream"):
        dare.decrypt(KEY, b"")
    assert dare.decrypt(KEY, b"", allow_empty=True) == b""


def test_wrong_key() -> None:
    with pytest.raises(IntegrityError, match="package 0: authentication failed"):
        dare.decrypt(bytes(32), join(three_packages()))


def test_error_does_not_leak_key_or_plaintext() -> None:
    secret = b"top secret plaintext"
    stream = bytearray(dare.encrypt(KEY, secret))
    stream[20] ^= 1
    with pytest.raises(IntegrityError) as info:
        dare.decrypt(KEY, bytes(stream))
    text = str(info.value)
    assert KEY.hex() not in text
    assert "secret" not in text
