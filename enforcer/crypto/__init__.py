"""Envelope cryptography compatible with MinIO: the DEK/KEK/OEK chain and DARE 2.0.

:mod:`.dare` and :mod:`.chain` are pure and synchronous; :mod:`.envelope` adds the stored
metadata format. All of it is pure: the parts that call a KMS live in the engine
(:mod:`enforcer.engine.envelope`).
"""

from __future__ import annotations

from enforcer.crypto.chain import (
    derive_kek,
    derive_part_key,
    encode_context,
    generate_iv,
    generate_oek,
    kms_context,
    object_path,
    seal_oek,
    unseal_oek,
)
from enforcer.crypto.dare import Decryptor, Encryptor, decrypt_stream, encrypt_stream
from enforcer.crypto.envelope import (
    BodyDecryptor,
    EnvelopeHeader,
    EnvelopeHeaderDraft,
    decrypt_body,
    decrypt_chunks,
    encrypt_chunks,
    encrypt_part,
    is_envelope,
)

__all__ = [
    "BodyDecryptor",
    "Decryptor",
    "Encryptor",
    "EnvelopeHeader",
    "EnvelopeHeaderDraft",
    "decrypt_body",
    "decrypt_chunks",
    "decrypt_stream",
    "derive_kek",
    "derive_part_key",
    "encode_context",
    "encrypt_chunks",
    "encrypt_part",
    "encrypt_stream",
    "generate_iv",
    "generate_oek",
    "is_envelope",
    "kms_context",
    "object_path",
    "seal_oek",
    "unseal_oek",
]
