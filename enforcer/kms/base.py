"""The KMS port: what the enforcer needs from a key management service, and its value types.

Adapters (:mod:`.kes`, :mod:`.aws`, :mod:`.fake`) translate their library's errors into
:mod:`enforcer.errors` once, at their boundary. Plaintext keys never reach a repr, a log line, an
error message or a span attribute.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol, TypeVar

from enforcer.retrying import RetryPolicy, retry_transient
from enforcer.telemetry import step

T = TypeVar("T")


@dataclass(frozen=True)
class DataKey:
    """A fresh DEK: its plaintext (memory only) and the form wrapped under the External Key."""

    plaintext: bytes = field(repr=False)
    ciphertext: bytes
    key_name: str  # the EK as the KMS names it (KES: the name; AWS: the key ARN)


class KeyState(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"
    PENDING_DELETION = "pending_deletion"


@dataclass(frozen=True)
class KeyInfo:
    name: str  # as asked for (name, key id, ARN or alias)
    key_id: str  # canonical id (KES: the name; AWS: the key id)
    arn: str | None
    state: KeyState


class Kms(Protocol):
    """An External Key service. ``context`` is the associated data the DEK is bound to."""

    kind: str  # "kes" | "aws" | "fake": recorded in envelope headers and span attributes

    async def generate_data_key(self, key_name: str, context: Mapping[str, str]) -> DataKey: ...

    async def decrypt(
        self, key_name: str, ciphertext: bytes, context: Mapping[str, str]
    ) -> bytes: ...

    async def describe_key(self, key_name: str) -> KeyInfo:
        """Raise :class:`~enforcer.errors.KeyMissing` if the key does not exist."""
        ...

    async def check_ready(self) -> None:
        """Raise :class:`~enforcer.errors.KmsUnavailable` if the KMS cannot serve requests."""
        ...

    async def aclose(self) -> None: ...


# A readiness probe answers once; the consumer's probe loop owns the cadence.
PROBE_POLICY = RetryPolicy(attempts=1)


async def traced(
    span_name: str,
    call: Callable[[], Awaitable[T]],
    policy: RetryPolicy | None = None,
    **attributes: str,
) -> T:
    """Run one KMS call in a span, retrying transient failures; the span records the attempts."""
    with step(span_name, **attributes) as span:
        value, attempts = await retry_transient(call, policy)
        span.set_attribute("kms.attempts", attempts)
        return value


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
