"""DARE 2.0, the package format MinIO (minio/sio) encrypts object data and sealed keys with.

A stream is a sequence of packages: a 16-byte header (version 0x20, cipher, payload length - 1
as uint16 LE, a 12-byte nonce chosen once per stream whose top bit marks the final package), the
AEAD ciphertext of 1 B..64 KiB of plaintext and a 16-byte tag. Package *n* is sealed with the header
nonce whose last four bytes (uint32 LE) are XORed with *n*, and authenticates header bytes 0-3.
Because the final flag sits in the nonce and the sequence number in the AEAD nonce, a reader that
checks every tag also detects reordering, duplication, truncation and trailing data.

Empty plaintext: like sio (``EncryptedSize(0) == 0``) the encryptor emits no package at all. A
reader cannot tell that from a stream cut to nothing, so :class:`Decryptor` rejects an empty
stream unless the caller knows from its metadata that the plaintext is empty (``allow_empty``).

Memory is bounded: both sides hold at most one package plus the chunk they were handed.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from enforcer.errors import IntegrityError

VERSION_20 = 0x20
AES_256_GCM = 0x00
CHACHA20_POLY1305 = 0x01
HEADER_SIZE = 16
TAG_SIZE = 16
MAX_PAYLOAD = 1 << 16
MAX_PACKAGE = HEADER_SIZE + MAX_PAYLOAD + TAG_SIZE
MAX_PACKAGES = 1 << 32  # the sequence number is a uint32
KEY_SIZE = 32
NONCE_SIZE = 12
_FINAL = 0x80

_Aead = AESGCM | ChaCha20Poly1305


def _aead(cipher: int, key: bytes) -> _Aead:
    if len(key) != KEY_SIZE:
        raise ValueError("DARE keys are 32 bytes")
    if cipher == AES_256_GCM:
        return AESGCM(key)
    if cipher == CHACHA20_POLY1305:
        return ChaCha20Poly1305(key)
    raise IntegrityError(f"DARE: unsupported cipher {cipher:#04x}")


def _package_nonce(header_nonce: bytes, seq: int) -> bytes:
    """The AEAD nonce of package ``seq``: the header nonce with its last word XORed with ``seq``.

    Read as one little-endian integer, the last word of the 12-byte nonce is bits 64-95.
    """
    return (int.from_bytes(header_nonce, "little") ^ (seq << 64)).to_bytes(NONCE_SIZE, "little")


def _header(cipher: int, length: int, nonce: bytes) -> bytes:
    """A package header: version, cipher, payload length - 1 (uint16 LE), the 12-byte nonce."""
    return bytes((VERSION_20, cipher)) + (length - 1).to_bytes(2, "little") + nonce


def encrypted_size(plaintext_size: int) -> int:
    """Ciphertext bytes for ``plaintext_size`` bytes of plaintext (sio.EncryptedSize)."""
    full, rest = divmod(plaintext_size, MAX_PAYLOAD)
    return full * MAX_PACKAGE + (rest + HEADER_SIZE + TAG_SIZE if rest else 0)


def decrypted_size(ciphertext_size: int) -> int:
    """Plaintext bytes in a well-formed stream of ``ciphertext_size`` bytes (sio.DecryptedSize)."""
    full, rest = divmod(ciphertext_size, MAX_PACKAGE)
    if 0 < rest <= HEADER_SIZE + TAG_SIZE:
        raise IntegrityError(f"DARE: {ciphertext_size} bytes is not a valid stream size")
    return full * MAX_PAYLOAD + (rest - HEADER_SIZE - TAG_SIZE if rest else 0)


class Encryptor:
    """Turns plaintext chunks of any size into DARE 2.0 packages.

    A full 64 KiB payload is held back until more plaintext arrives, because only then is it
    known not to be the final package. Packages are fresh ``bytearray`` objects the caller owns.

    Speed (benchmarks/envelope_throughput.py): each package is one buffer the AEAD writes into
    (``encrypt_into``), so the ciphertext is never copied to put the header in front, and
    payloads are read straight from the caller's chunk; only a payload that is held back or
    spans two chunks is copied, once, into the buffer.
    """

    def __init__(
        self, key: bytes, *, nonce: bytes | None = None, cipher: int = AES_256_GCM
    ) -> None:
        nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
        if len(nonce) != NONCE_SIZE:
            raise ValueError("DARE nonces are 12 bytes")
        self._aead = _aead(cipher, key)
        self._cipher = cipher
        self._nonce = bytes([nonce[0] & ~_FINAL & 0xFF]) + nonce[1:]
        self._seq = 0
        self._buffer = bytearray()
        self._done = False
        # Every package but the last is a full one: its header never changes.
        self._full_header = _header(cipher, MAX_PAYLOAD, self._nonce)

    def update(self, chunk: bytes | memoryview) -> list[bytearray]:
        """Buffer ``chunk``; return the packages that are now complete."""
        return list(self._packages(chunk))

    def finalize(self) -> list[bytearray]:
        """Seal what is left as the final package (nothing at all for an empty stream)."""
        if self._done:
            return []
        self._done = True
        if not self._buffer:
            return []
        nonce = bytes([self._nonce[0] | _FINAL]) + self._nonce[1:]
        package = self._seal(_header(self._cipher, len(self._buffer), nonce), self._buffer)
        self._buffer.clear()
        return [package]

    def _packages(self, chunk: bytes | memoryview) -> Iterator[bytearray]:
        """The packages ``chunk`` completes, each sealed when it is asked for.

        Lazy, so a consumer that writes each package out before asking for the next one keeps
        one package in memory (and in cache) rather than a chunk's worth. It must be run to the
        end before the next call: only :meth:`update` and :func:`encrypt_stream` use it.
        """
        if self._done:
            raise ValueError("DARE: update after finalize")
        view = memoryview(chunk)
        pos = 0
        if self._buffer:
            pos = MAX_PAYLOAD - len(self._buffer)
            if len(view) <= pos:
                self._buffer += view
                return
            self._buffer += view[:pos]
            package = self._seal(self._full_header, self._buffer)
            self._buffer.clear()
            yield package
        last = len(view) - MAX_PAYLOAD  # a payload that starts at ``last`` or later may be final
        pos = yield from self._seal_full(view, pos, last)
        self._buffer += view[pos:]

    def _seal_full(self, view: memoryview, pos: int, last: int) -> Generator[bytearray, None, int]:
        """:meth:`_seal` every full payload of ``view`` from ``pos`` on that starts before
        ``last``; return where the rest begins.

        The hot loop, with the per-stream values hoisted: a method call per 64 KiB package
        costs about 5% of the throughput (benchmarks/envelope_throughput.py).
        """
        header, aad = self._full_header, self._full_header[:4]
        nonce = int.from_bytes(self._nonce, "little")
        encrypt_into = self._aead.encrypt_into
        while pos < last:
            seq = self._seq
            if seq >= MAX_PACKAGES:
                raise ValueError("DARE: a stream holds at most 2**32 packages")
            self._seq = seq + 1
            package = bytearray(MAX_PACKAGE)
            package[:HEADER_SIZE] = header
            encrypt_into(
                (nonce ^ (seq << 64)).to_bytes(NONCE_SIZE, "little"),
                view[pos : pos + MAX_PAYLOAD],
                aad,
                memoryview(package)[HEADER_SIZE:],
            )
            yield package
            pos += MAX_PAYLOAD
        return pos

    def _seal(self, header: bytes, payload: bytearray | memoryview) -> bytearray:
        seq = self._seq
        if seq >= MAX_PACKAGES:
            raise ValueError("DARE: a stream holds at most 2**32 packages")
        self._seq = seq + 1
        package = bytearray(HEADER_SIZE + len(payload) + TAG_SIZE)
        package[:HEADER_SIZE] = header
        sealed = memoryview(package)[HEADER_SIZE:]
        self._aead.encrypt_into(_package_nonce(header[4:], seq), payload, header[:4], sealed)
        return package


class Decryptor:
    """Turns a DARE 2.0 stream, fed in chunks of any size, back into plaintext.

    Every violation raises :class:`~enforcer.errors.IntegrityError` naming the package and the
    check that failed; after one, the decryptor must be discarded. Packages are opened straight
    from the caller's chunk; only one that spans two chunks is copied into the buffer.
    """

    def __init__(self, key: bytes, *, allow_empty: bool = False) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("DARE keys are 32 bytes")
        self._key = key
        self._allow_empty = allow_empty
        self._aead: _Aead | None = None  # for the cipher of package 0, which all must share
        self._first: bytes | None = None  # header of package 0
        self._full_header: bytes | None = None  # what every non-final header must be
        self._seq = 0
        self._final_seen = False
        self._buffer = bytearray()  # the start of a package that spans chunks

    def update(self, chunk: bytes | memoryview) -> list[bytes]:
        """Buffer ``chunk``; return the plaintext of every package that is now complete."""
        return list(self._plaintexts(chunk))

    def finalize(self) -> None:
        """Check that the stream ended exactly after its final package."""
        if self._buffer:
            raise IntegrityError(
                f"DARE: stream ends inside package {self._seq} ({len(self._buffer)} bytes left)"
            )
        if self._final_seen or (self._seq == 0 and self._allow_empty):
            return
        if self._seq == 0:
            raise IntegrityError("DARE: empty stream where ciphertext was expected")
        raise IntegrityError(f"DARE: stream ends after package {self._seq - 1} without a final one")

    def _plaintexts(self, chunk: bytes | memoryview) -> Iterator[bytes]:
        """The plaintext of each package ``chunk`` completes, opened when it is asked for.

        Lazy for the reason :meth:`Encryptor._packages` is; it must be run to the end.
        """
        view = memoryview(chunk)
        if self._buffer:
            view = yield from self._complete_buffered(view)
        pos, size = 0, len(view)
        while size - pos >= HEADER_SIZE:
            header = bytes(view[pos : pos + HEADER_SIZE])
            end = pos + self._package_size(header)
            if end > size:
                break
            yield self._open(header, view[pos + HEADER_SIZE : end])
            pos = end
        if pos < size:
            if self._final_seen:
                raise IntegrityError(f"DARE: data after the final package (package {self._seq})")
            self._buffer += view[pos:]

    def _complete_buffered(self, view: memoryview) -> Generator[bytes, None, memoryview]:
        """Top the buffered package up from ``view``, open it once whole; return the rest."""
        buffer = self._buffer
        if len(buffer) < HEADER_SIZE:
            take = HEADER_SIZE - len(buffer)
            buffer += view[:take]
            view = view[take:]
            if len(buffer) < HEADER_SIZE:
                return view
        header = bytes(buffer[:HEADER_SIZE])
        size = self._package_size(header)
        take = size - len(buffer)
        buffer += view[:take]
        if len(buffer) == size:
            plaintext = self._open(header, memoryview(buffer)[HEADER_SIZE:])
            buffer.clear()
            yield plaintext
        return view[take:]

    def _package_size(self, header: bytes) -> int:
        """Check the next header (before waiting for a payload that may never come)."""
        if self._final_seen:
            raise IntegrityError(f"DARE: data after the final package (package {self._seq})")
        if self._seq >= MAX_PACKAGES:
            raise IntegrityError("DARE: more than 2**32 packages")
        if header == self._full_header:  # the common case passes every check below
            return MAX_PACKAGE
        length = int.from_bytes(header[2:4], "little") + 1
        self._check_header(header, length)
        return HEADER_SIZE + length + TAG_SIZE

    def _check_header(self, header: bytes, length: int) -> None:
        if header[0] != VERSION_20:
            raise IntegrityError(f"DARE: package {self._seq}: unsupported version {header[0]:#04x}")
        if header[1] not in (AES_256_GCM, CHACHA20_POLY1305):
            raise IntegrityError(f"DARE: package {self._seq}: unsupported cipher {header[1]:#04x}")
        first = self._first if self._first is not None else header
        if header[1] != first[1]:
            raise IntegrityError(f"DARE: package {self._seq}: cipher differs from package 0")
        if not header[4] & _FINAL and length != MAX_PAYLOAD:
            raise IntegrityError(f"DARE: package {self._seq}: non-final package is not 64 KiB")
        if (header[4] & ~_FINAL) != (first[4] & ~_FINAL) or header[5:] != first[5:]:
            raise IntegrityError(f"DARE: package {self._seq}: nonce differs from package 0")

    def _open(self, header: bytes, sealed: bytearray | memoryview) -> bytes:
        aead = self._aead
        if aead is None:  # package 0: it fixes the cipher and the nonce of the stream
            aead = self._aead = _aead(header[1], self._key)
            self._first = header
            nonce = bytes([header[4] & ~_FINAL]) + header[5:]
            self._full_header = _header(header[1], MAX_PAYLOAD, nonce)
        try:
            plaintext = aead.decrypt(_package_nonce(header[4:], self._seq), sealed, header[:4])
        except InvalidTag:
            raise IntegrityError(f"DARE: package {self._seq}: authentication failed") from None
        self._final_seen = bool(header[4] & _FINAL)
        self._seq += 1
        return plaintext


def encrypt_stream(
    key: bytes,
    chunks: Iterable[bytes | memoryview],
    *,
    nonce: bytes | None = None,
    cipher: int = AES_256_GCM,
) -> Iterator[bytearray]:
    """Yield the DARE 2.0 packages of the plaintext ``chunks``."""
    encryptor = Encryptor(key, nonce=nonce, cipher=cipher)
    for chunk in chunks:
        yield from encryptor._packages(chunk)  # same module; run to the end
    yield from encryptor.finalize()


def decrypt_stream(
    key: bytes, chunks: Iterable[bytes | memoryview], *, allow_empty: bool = False
) -> Iterator[bytes]:
    """Yield the plaintext of a DARE 2.0 stream; raise IntegrityError at the first violation."""
    decryptor = Decryptor(key, allow_empty=allow_empty)
    for chunk in chunks:
        yield from decryptor._plaintexts(chunk)  # same module; run to the end
    decryptor.finalize()


def encrypt(
    key: bytes, plaintext: bytes, *, nonce: bytes | None = None, cipher: int = AES_256_GCM
) -> bytes:
    """Encrypt a whole buffer (sealed keys, small values)."""
    return b"".join(encrypt_stream(key, [plaintext], nonce=nonce, cipher=cipher))


def decrypt(key: bytes, ciphertext: bytes, *, allow_empty: bool = False) -> bytes:
    """Decrypt a whole buffer."""
    return b"".join(decrypt_stream(key, [ciphertext], allow_empty=allow_empty))
