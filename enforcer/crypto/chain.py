"""MinIO's SSE-KMS key chain: DEK → KEK (sealing key) → OEK → part keys.

Byte for byte what MinIO's ``internal/crypto/key.go`` does, so an object sealed here can be
opened by MinIO's rules and vice versa (tests/integration/test_minio_chain.py proves it against a
running MinIO):

- OEK = HMAC-SHA256(DEK, "object-encryption-key generation" || 32 random bytes)
- KEK = HMAC-SHA256(DEK, IV || domain || algorithm || path.Join(bucket, object))
- sealed OEK = DARE 2.0(KEK, OEK), 64 bytes
- part key = HMAC-SHA256(OEK, uint32 LE part number); single-part objects use the OEK itself.

The object path is joined with Go's ``path.Join`` semantics (it cleans ``//``, ``.`` and ``..``),
because the KEK and the KMS context both bind it and must match MinIO's spelling exactly.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from collections.abc import Mapping
from typing import Final

from enforcer.crypto import dare
from enforcer.errors import IntegrityError

DOMAIN_SSE_KMS = "SSE-KMS"
SEAL_ALGORITHM: Final = "DAREv2-HMAC-SHA256"
KEY_SIZE = 32
IV_SIZE = 32
SEALED_KEY_SIZE = 64
_OEK_CONTEXT = b"object-encryption-key generation"


def _require_key(name: str, key: bytes) -> None:
    if len(key) != KEY_SIZE:
        raise ValueError(f"{name} must be {KEY_SIZE} bytes")


def clean_path(path: str) -> str:
    """Go's ``path.Clean``: collapse ``//``, drop ``.``, resolve ``..`` lexically."""
    if not path:
        return "."
    rooted = path.startswith("/")
    parts: list[str] = []
    for segment in path.split("/"):
        if segment in ("", "."):
            continue
        if segment != "..":
            parts.append(segment)
        elif parts and parts[-1] != "..":
            parts.pop()
        elif not rooted:
            parts.append("..")
    cleaned = ("/" if rooted else "") + "/".join(parts)
    return cleaned or ("/" if rooted else ".")


def object_path(bucket: str, object_name: str) -> str:
    """``path.Join(bucket, object)`` as MinIO computes it for the KEK and the KMS context."""
    joined = "/".join(part for part in (bucket, object_name) if part)
    return clean_path(joined) if joined else ""


def kms_context(
    bucket: str, object_name: str, extra: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The KMS associated data for an object's DEK: ``{bucket: "bucket/object"}`` plus ``extra``.

    As in MinIO, a client-supplied entry for the bucket name is kept as given.
    """
    context = dict(extra or {})
    context.setdefault(bucket, object_path(bucket, object_name))
    return context


def encode_context(context: Mapping[str, str]) -> bytes:
    """MinIO's canonical associated data (``kms.Context.MarshalText``).

    A JSON object with keys sorted, no spaces, and Go's HTML-safe escaping (``<``, ``>``, ``&``,
    control characters, U+2028/9 as ``\\u`` escapes; other non-ASCII as raw UTF-8). The KMS
    binds the DEK to these exact bytes, so they must match what MinIO sends.
    """
    items = sorted(context.items())
    body = ",".join(f'"{_escape(k)}":"{_escape(v)}"' for k, v in items)
    return ("{" + body + "}").encode("utf-8")


_SIMPLE_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(text: str) -> str:
    out: list[str] = []
    for char in text:
        code = ord(char)
        if char in _SIMPLE_ESCAPES:
            out.append(_SIMPLE_ESCAPES[char])
        elif code < 0x20 or char in "<>&":
            out.append(f"\\u00{code:02x}")
        elif char in "\u2028\u2029":
            out.append(f"\\u202{code & 0xF:x}")
        elif 0xD800 <= code <= 0xDFFF:  # a lone surrogate is invalid UTF-8: Go writes U+FFFD
            out.append("\\ufffd")
        else:
            out.append(char)
    return "".join(out)


def generate_iv() -> bytes:
    """A fresh random 32-byte IV for :func:`derive_kek`."""
    return os.urandom(IV_SIZE)


def generate_oek(dek_plaintext: bytes, random32: bytes | None = None) -> bytes:
    """A new object encryption key derived from the DEK and 32 random bytes."""
    _require_key("the DEK", dek_plaintext)
    random32 = os.urandom(32) if random32 is None else random32
    if len(random32) != 32:
        raise ValueError("random32 must be 32 bytes")
    return hmac.new(dek_plaintext, _OEK_CONTEXT + random32, hashlib.sha256).digest()


def derive_kek(
    dek_plaintext: bytes,
    iv32: bytes,
    bucket: str,
    object_name: str,
    *,
    domain: str = DOMAIN_SSE_KMS,
    algorithm: str = SEAL_ALGORITHM,
) -> bytes:
    """The sealing key, bound to the IV, the SSE domain and the object's path."""
    _require_key("the DEK", dek_plaintext)
    if len(iv32) != IV_SIZE:
        raise IntegrityError(f"the sealing IV must be {IV_SIZE} bytes, not {len(iv32)}")
    if algorithm != SEAL_ALGORITHM:
        raise IntegrityError(f"unsupported seal algorithm {algorithm!r}")
    message = b"".join(
        (iv32, domain.encode(), algorithm.encode(), object_path(bucket, object_name).encode())
    )
    return hmac.new(dek_plaintext, message, hashlib.sha256).digest()


def seal_oek(kek: bytes, oek: bytes, *, nonce: bytes | None = None) -> bytes:
    """Encrypt the OEK as one DARE 2.0 stream under the KEK: exactly 64 bytes."""
    _require_key("the KEK", kek)
    _require_key("the OEK", oek)
    return dare.encrypt(kek, oek, nonce=nonce)


def unseal_oek(kek: bytes, sealed: bytes) -> bytes:
    """Recover the OEK; a wrong DEK, IV, bucket or object path fails authentication here."""
    _require_key("the KEK", kek)
    if len(sealed) != SEALED_KEY_SIZE:
        raise IntegrityError(f"a sealed OEK is {SEALED_KEY_SIZE} bytes, not {len(sealed)}")
    try:
        oek = dare.decrypt(kek, sealed)
    except IntegrityError as exc:
        raise IntegrityError(f"cannot unseal the object key ({exc})") from exc
    if len(oek) != KEY_SIZE:
        raise IntegrityError("the unsealed object key has the wrong length")
    return oek


def derive_part_key(oek: bytes, part_number: int) -> bytes:
    """The key of one multipart part: HMAC-SHA256(OEK, uint32 LE part number)."""
    _require_key("the OEK", oek)
    if not 0 <= part_number < 1 << 32:
        raise ValueError("part numbers are uint32")
    return hmac.new(oek, struct.pack("<I", part_number), hashlib.sha256).digest()
