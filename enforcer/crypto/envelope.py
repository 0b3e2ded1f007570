"""The stored format of strategy ``envelope``: MinIO's chain, built by the enforcer itself.

The object body is DARE 2.0 ciphertext; what is needed to open it lives in user metadata under
``x-amz-meta-enforcer-envelope-*`` (boto ``Metadata`` keys ``enforcer-envelope-*``): the EK name,
the wrapped DEK, the IV, the sealed OEK, the KMS context, the plaintext size and, optionally, the
plaintext SHA-256 *sealed* under a key derived from the OEK (a clear hash would let anyone who can
read metadata confirm a guessed content; MinIO seals ETags for the same reason).

Bodies: as in MinIO, a single-part body is one DARE stream under the OEK itself; a body written
in parts (``part_size`` set) is one DARE stream per part under ``derive_part_key(oek, n)`` with
S3 part numbers from 1, every part but the last holding exactly ``part_size`` plaintext bytes.
So each part can be encrypted and uploaded on its own, and the reader finds the part boundaries
from ``part_size`` alone. The KEK binds bucket and object path: a moved object does not open.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, Final, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from enforcer.crypto import chain, dare
from enforcer.crypto.chain import encode_context
from enforcer.errors import IntegrityError, describe_validation

PREFIX = "enforcer-envelope-"
ENVELOPE_VERSION: Final = 1
_DIGEST_LABEL = b"enforcer-envelope plaintext sha256"
_FIELDS = {  # model field -> metadata key suffix
    "version": "version",
    "kms_kind": "kms",
    "key_name": "key",
    "wrapped_dek": "wrapped-dek",
    "iv": "iv",
    "sealed_oek": "sealed-oek",
    "algorithm": "algorithm",
    "context": "context",
    "plaintext_size": "size",
    "sealed_sha256": "sha256",
    "part_size": "part-size",
}
_BYTES = {"wrapped_dek", "iv", "sealed_oek", "sealed_sha256"}
_INTS = {"version", "plaintext_size", "part_size"}
_OPTIONAL = {"sealed_sha256", "part_size"}
_ASCII = r"^[\x21-\x7e]+$"


class EnvelopeHeaderDraft(BaseModel):
    """The chain of a new envelope, before the body's size and digest are known."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    version: Literal[1] = Field(default=ENVELOPE_VERSION, description="Envelope format version")
    kms_kind: str = Field(pattern=_ASCII, max_length=16, description="KMS that wrapped the DEK")
    key_name: str = Field(pattern=_ASCII, max_length=2048, description="The External Key (EK)")
    wrapped_dek: bytes = Field(min_length=1, max_length=1024, description="DEK wrapped by the EK")
    iv: bytes = Field(
        min_length=chain.IV_SIZE,
        max_length=chain.IV_SIZE,
        description="Random 32-byte IV of the KEK derivation",
    )
    sealed_oek: bytes = Field(
        min_length=chain.SEALED_KEY_SIZE,
        max_length=chain.SEALED_KEY_SIZE,
        description="OEK sealed under the KEK (64-byte DARE 2.0 stream)",
    )
    algorithm: Literal["DAREv2-HMAC-SHA256"] = Field(
        default=chain.SEAL_ALGORITHM, description="Seal algorithm"
    )
    context: dict[str, str] = Field(description="KMS associated data, MinIO form {bucket: path}")

    @field_validator("context")
    @classmethod
    def _context_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("the KMS context binds the object path and cannot be empty")
        return value

    def complete(
        self,
        oek: bytes,
        *,
        plaintext_size: int,
        plaintext_sha256: bytes | None = None,
        part_size: int | None = None,
    ) -> EnvelopeHeader:
        """The full header once the body is known (size from HEAD; digest if computed)."""
        sealed = None if plaintext_sha256 is None else seal_digest(oek, plaintext_sha256)
        return EnvelopeHeader(
            **self.model_dump(),
            plaintext_size=plaintext_size,
            sealed_sha256=sealed,
            part_size=part_size,
        )


class EnvelopeHeader(EnvelopeHeaderDraft):
    """Everything in an envelope object's metadata."""

    plaintext_size: int = Field(ge=0, description="Plaintext bytes")
    sealed_sha256: bytes | None = Field(
        default=None,
        min_length=64,
        max_length=64,
        description="Plaintext SHA-256 sealed under the OEK",
    )
    part_size: int | None = Field(
        default=None, ge=1, description="Plaintext bytes per part (multipart bodies)"
    )

    def to_metadata(self) -> dict[str, str]:
        """S3 user metadata (boto ``Metadata`` keys, without ``x-amz-meta-``); ASCII only."""
        out: dict[str, str] = {}
        for name, suffix in _FIELDS.items():
            value = getattr(self, name)
            if value is None:
                continue
            if name == "context":
                value = encode_context(value)
            if isinstance(value, bytes):
                value = base64.b64encode(value).decode()
            out[PREFIX + suffix] = str(value)
        return out

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> EnvelopeHeader:
        """Parse and validate; anything malformed raises IntegrityError naming the field."""
        lowered = {k.lower(): v for k, v in metadata.items()}
        fields = {name: _parse_field(name, lowered) for name in _FIELDS}
        try:
            return cls(**{k: v for k, v in fields.items() if v is not None})
        except ValidationError as exc:
            loc, reason = describe_validation(exc)
            field = loc.split(".")[0] or "version"
            where = PREFIX + _FIELDS.get(field, field)
            raise IntegrityError(f"envelope metadata {where!r} is invalid: {reason}") from None


def metadata_json_schema() -> dict[str, Any]:
    """JSON Schema of the metadata as stored (``x-amz-meta-enforcer-envelope-*``), for schemas/."""
    properties: dict[str, Any] = {}
    for name, suffix in _FIELDS.items():
        field = EnvelopeHeader.model_fields[name]
        if name in _INTS:
            form: dict[str, Any] = {"type": "string", "pattern": "^[0-9]+$"}
        elif name in _BYTES:
            form = {"type": "string", "contentEncoding": "base64"}
        elif name == "context":
            form = {
                "type": "string",
                "contentEncoding": "base64",
                "contentMediaType": "application/json",
            }
        else:
            form = {"type": "string"}
        properties[f"x-amz-meta-{PREFIX}{suffix}"] = {
            "description": field.description or name,
            **form,
        }
    required = sorted(f"x-amz-meta-{PREFIX}{s}" for n, s in _FIELDS.items() if n not in _OPTIONAL)
    return {
        "title": "Envelope object metadata",
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": True,
    }


def is_envelope(metadata: Mapping[str, str]) -> bool:
    """Whether object metadata says the body is an envelope (whether or not it is valid)."""
    return any(k.lower() == PREFIX + "version" for k in metadata)


def _parse_field(name: str, metadata: Mapping[str, str]) -> Any:
    key = PREFIX + _FIELDS[name]
    raw = metadata.get(key)
    if raw is None:
        if name in _OPTIONAL:
            return None
        raise IntegrityError(f"envelope metadata lacks {key!r}")
    try:
        if name in _INTS:
            if not raw.isascii() or not raw.isdigit():
                raise ValueError(raw)
            return int(raw)
        if name in _BYTES or name == "context":
            decoded = base64.b64decode(raw, validate=True)
            return _parse_context(decoded) if name == "context" else decoded
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise IntegrityError(f"envelope metadata {key!r} is malformed") from None
    return raw


def _parse_context(raw: bytes) -> dict[str, str]:
    value = json.loads(raw.decode("utf-8"))
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise ValueError("the context is not a JSON object of strings")
    return value


def _digest_key(oek: bytes) -> bytes:
    return hmac.new(oek, _DIGEST_LABEL, hashlib.sha256).digest()


def seal_digest(oek: bytes, digest: bytes) -> bytes:
    """Seal a 32-byte SHA-256 under a key derived from the OEK (64 bytes)."""
    if len(digest) != 32:
        raise ValueError("a SHA-256 digest is 32 bytes")
    return dare.encrypt(_digest_key(oek), digest)


def open_digest(oek: bytes, sealed: bytes) -> bytes:
    try:
        return dare.decrypt(_digest_key(oek), sealed)
    except IntegrityError as exc:
        raise IntegrityError(f"the sealed plaintext digest does not open ({exc})") from exc


def encrypt_part(
    oek: bytes, part_number: int, chunks: Iterable[bytes | memoryview]
) -> Iterator[bytearray]:
    """The DARE stream of one part, for uploading parts one by one."""
    return dare.encrypt_stream(chain.derive_part_key(oek, part_number), chunks)


def encrypted_size(plaintext_size: int, part_size: int | None = None) -> int:
    """Body size of an envelope (Content-Length to send, or to check a stored body against)."""
    if part_size is None:
        return dare.encrypted_size(plaintext_size)
    full, rest = divmod(plaintext_size, part_size)
    return full * dare.encrypted_size(part_size) + dare.encrypted_size(rest)


def _pieces(chunks: Iterable[bytes | memoryview], size: int) -> Iterator[tuple[int, memoryview]]:
    """Re-cut ``chunks`` at every ``size`` bytes; tag each piece with its segment's index."""
    used = index = 0
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            if used == size:
                used, index = 0, index + 1
            take = min(len(view), size - used)
            yield index, view[:take]
            used += take
            view = view[take:]


def encrypt_chunks(
    oek: bytes, chunks: Iterable[bytes], *, part_size: int | None = None
) -> Iterator[bytearray]:
    """Encrypt a body: one stream under the OEK, or one stream per ``part_size`` bytes.

    Lazy all the way down: a package is sealed when the consumer asks for it, so a consumer that
    writes each one out holds one package, not a chunk's worth (see dare.Encryptor._packages).
    """
    if part_size is None:
        yield from dare.encrypt_stream(oek, chunks)
        return
    if part_size < 1:
        raise ValueError("part_size must be positive")
    for index, pieces in itertools.groupby(_pieces(chunks, part_size), key=_first):
        yield from encrypt_part(oek, index + 1, (piece for _, piece in pieces))


def _first(item: tuple[int, memoryview]) -> int:
    return item[0]


class _PartsDecryptor:
    """A body fed in chunks of any size: one DARE stream, or one per part of known size."""

    def __init__(self, oek: bytes, part_size: int | None, allow_empty: bool) -> None:
        self._oek = oek
        self._limit = None if part_size is None else dare.encrypted_size(part_size)
        self._number = 1
        self._used = 0
        self._current = dare.Decryptor(self._key(1), allow_empty=allow_empty)

    def _key(self, number: int) -> bytes:
        return self._oek if self._limit is None else chain.derive_part_key(self._oek, number)

    def update(self, chunk: bytes | memoryview) -> list[bytes]:
        if self._limit is None:
            return self._current.update(chunk)
        out: list[bytes] = []
        view = memoryview(chunk)
        while view:
            if self._used == self._limit:  # the part is complete and more follows
                self._current.finalize()
                self._number += 1
                self._used = 0
                self._current = dare.Decryptor(self._key(self._number))
            take = min(len(view), self._limit - self._used)
            out += self._current.update(view[:take])
            self._used += take
            view = view[take:]
        return out

    def finalize(self) -> None:
        self._current.finalize()


class BodyDecryptor:
    """Push-style decryption of an envelope body, verified against its header.

    ``update`` returns plaintext as it is authenticated package by package; the body as a whole
    (size, and the digest when one is sealed) is verified by ``finalize``.
    """

    def __init__(self, oek: bytes, header: EnvelopeHeader) -> None:
        self._oek = oek
        self._header = header
        self._parts = _PartsDecryptor(oek, header.part_size, header.plaintext_size == 0)
        self._size = 0
        self._digest = hashlib.sha256()

    def update(self, chunk: bytes | memoryview) -> list[bytes]:
        pieces = self._parts.update(chunk)
        for piece in pieces:
            self._size += len(piece)
            self._digest.update(piece)
        if self._size > self._header.plaintext_size:
            raise IntegrityError(f"body holds more than {self._header.plaintext_size} bytes")
        return pieces

    def finalize(self) -> None:
        self._parts.finalize()
        expected = self._header.plaintext_size
        if self._size != expected:
            raise IntegrityError(f"body holds {self._size} plaintext bytes, not {expected}")
        sealed = self._header.sealed_sha256
        if sealed is not None and not hmac.compare_digest(
            open_digest(self._oek, sealed), self._digest.digest()
        ):
            raise IntegrityError("the plaintext SHA-256 does not match the header")


def decrypt_chunks(
    oek: bytes,
    chunks: Iterable[bytes | memoryview],
    *,
    part_size: int | None = None,
    allow_empty: bool = False,
) -> Iterator[bytes]:
    """Decrypt a body written by :func:`encrypt_chunks` (same ``part_size``); lazy like it."""
    if part_size is None:
        yield from dare.decrypt_stream(oek, chunks, allow_empty=allow_empty)
        return
    parts = itertools.groupby(_pieces(chunks, dare.encrypted_size(part_size)), key=_first)
    empty = True
    for index, pieces in parts:
        empty = False
        key = chain.derive_part_key(oek, index + 1)
        yield from dare.decrypt_stream(key, (piece for _, piece in pieces))
    if empty:  # no part at all: as valid as an empty single stream
        yield from dare.decrypt_stream(chain.derive_part_key(oek, 1), (), allow_empty=allow_empty)


def decrypt_body(oek: bytes, header: EnvelopeHeader, chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Decrypt and verify a whole body (see :class:`BodyDecryptor`)."""
    decryptor = BodyDecryptor(oek, header)
    for chunk in chunks:
        yield from decryptor.update(chunk)
    decryptor.finalize()
