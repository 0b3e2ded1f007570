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
import struct
from collections.abc import Iterable, Iterator

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
    """The AEAD nonce of package ``seq``: the header nonce with its last word XORed with ``seq``."""
    (last,) = struct.unpack_from("<I", header_nonce, 8)
    return header_nonce[:8] + struct.pack("<I", last ^ seq)


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
    known not to be the final package.
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

    def update(self, chunk: bytes | memoryview) -> list[bytes]:
        """Buffer ``chunk``; return the packages that are now complete."""
        if self._done:
            raise ValueError("DARE: update after finalize")
        out: list[bytes] = []
        view = memoryview(chunk)
        if self._buffer:
            room = MAX_PAYLOAD - len(self._buffer)
            if len(view) <= room:
                self._buffer += view
                return out
            self._buffer += view[:room]
            view = view[room:]
            out.append(self._seal(bytes(self._buffer), final=False))
            self._buffer.clear()
        while len(view) > MAX_PAYLOAD:
            out.append(self._seal(view[:MAX_PAYLOAD], final=False))
            view = view[MAX_PAYLOAD:]
        self._buffer += view
        return out

    def finalize(self) -> list[bytes]:
        """Seal what is left as the final package (nothing at all for an empty stream)."""
        if self._done:
            return []
        self._done = True
        if not self._buffer:
            return []
        package = self._seal(bytes(self._buffer), final=True)
        self._buffer.clear()
        return [package]

    def _seal(self, payload: bytes | memoryview, *, final: bool) -> bytes:
        if self._seq >= MAX_PACKAGES:
            raise ValueError("DARE: a stream holds at most 2**32 packages")
        nonce = bytes([self._nonce[0] | (_FINAL if final else 0)]) + self._nonce[1:]
        header = bytes([VERSION_20, self._cipher]) + struct.pack("<H", len(payload) - 1) + nonce
        sealed = self._aead.encrypt(_package_nonce(nonce, self._seq), bytes(payload), header[:4])
        self._seq += 1
        return header + sealed


class Decryptor:
    """Turns a DARE 2.0 stream, fed in chunks of any size, back into plaintext.

    Every violation raises :class:`~enforcer.errors.IntegrityError` naming the package and the
    check that failed; after one, the decryptor must be discarded.
    """

    def __init__(self, key: bytes, *, allow_empty: bool = False) -> None:
        if len(key) != KEY_SIZE:
            raise ValueError("DARE keys are 32 bytes")
        self._key = key
        self._allow_empty = allow_empty
        self._aeads: dict[int, _Aead] = {}
        self._first: bytes | None = None  # header of package 0
        self._seq = 0
        self._final_seen = False
        self._buffer = bytearray()

    def update(self, chunk: bytes | memoryview) -> list[bytes]:
        """Buffer ``chunk``; return the plaintext of every package that is now complete."""
        self._buffer += chunk
        out: list[bytes] = []
        pos = 0
        while len(self._buffer) - pos >= HEADER_SIZE:
            if self._final_seen:
                raise IntegrityError(f"DARE: data after the final package (package {self._seq})")
            header = bytes(self._buffer[pos : pos + HEADER_SIZE])
            length = struct.unpack_from("<H", header, 2)[0] + 1
            self._check_header(header, length)  # before waiting for a payload that may never come
            end = pos + HEADER_SIZE + length + TAG_SIZE
            if len(self._buffer) < end:
                break
            out.append(self._open(bytes(self._buffer[pos:end])))
            pos = end
        del self._buffer[:pos]
        if self._final_seen and self._buffer:
            raise IntegrityError(f"DARE: data after the final package (package {self._seq})")
        return out

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
        if self._seq >= MAX_PACKAGES:
            raise IntegrityError("DARE: more than 2**32 packages")

    def _open(self, package: bytes) -> bytes:
        header = package[:HEADER_SIZE]
        if self._first is None:
            self._first = header
        aead = self._aeads.get(header[1])
        if aead is None:
            aead = self._aeads[header[1]] = _aead(header[1], self._key)
        try:
            plaintext = aead.decrypt(
                _package_nonce(header[4:], self._seq), package[HEADER_SIZE:], header[:4]
            )
        except InvalidTag:
            raise IntegrityError(f"DARE: package {self._seq}: authentication failed") from None
        self._final_seen = bool(header[4] & _FINAL)
        self._seq += 1
        return plaintext


def encrypt_stream(
    key: bytes, chunks: Iterable[bytes], *, nonce: bytes | None = None, cipher: int = AES_256_GCM
) -> Iterator[bytes]:
    """Yield the DARE 2.0 packages of the plaintext ``chunks``."""
    encryptor = Encryptor(key, nonce=nonce, cipher=cipher)
    for chunk in chunks:
        yield from encryptor.update(chunk)
    yield from encryptor.finalize()


def decrypt_stream(
    key: bytes, chunks: Iterable[bytes], *, allow_empty: bool = False
) -> Iterator[bytes]:
    """Yield the plaintext of a DARE 2.0 stream; raise IntegrityError at the first violation."""
    decryptor = Decryptor(key, allow_empty=allow_empty)
    for chunk in chunks:
        yield from decryptor.update(chunk)
    decryptor.finalize()


def encrypt(
    key: bytes, plaintext: bytes, *, nonce: bytes | None = None, cipher: int = AES_256_GCM
) -> bytes:
    """Encrypt a whole buffer (sealed keys, small values)."""
    return b"".join(encrypt_stream(key, [plaintext], nonce=nonce, cipher=cipher))


def decrypt(key: bytes, ciphertext: bytes, *, allow_empty: bool = False) -> bytes:
    """Decrypt a whole buffer."""
    return b"".join(decrypt_stream(key, [ciphertext], allow_empty=allow_empty))
