"""The ports: what the engine needs from the world, as Protocols it owns.

The engine (pipeline, per-object guard, outage gate, scanner) talks only to these. Adapters
implement them — :mod:`enforcer.storage` (S3), :mod:`enforcer.kms` (KES, AWS KMS),
:mod:`enforcer.kafka` (record sink, event publisher, the consumer that delivers
:class:`Message`) — and import the engine, never the reverse; :mod:`enforcer.app` wires the two
sides. Unit tests run the engine on in-memory fakes of the same ports (``tests/doubles/``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Protocol

from enforcer.core.policy import BucketDefault
from enforcer.engine.objects import ObjectSnapshot, SseKmsTarget, WriteResult

if TYPE_CHECKING:
    from enforcer.engine.range_tasks import RangeProgress
    from enforcer.engine.records import AuditRecord, DeadLetterRecord

# ---------------------------------------------------------------- storage


class Storage(Protocol):
    async def head(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectSnapshot | None:
        """The object's facts, or None when it does not exist (any more)."""

    async def bucket_default_key(self, bucket: str) -> BucketDefault | None:
        """The bucket's default SSE-KMS key (``mc encrypt set sse-kms``), if any, and whether
        it is dual-layer."""

    async def read_tags(self, snapshot: ObjectSnapshot) -> dict[str, str]: ...

    async def rewrite_sse_kms(
        self, snapshot: ObjectSnapshot, target: SseKmsTarget, tags: dict[str, str]
    ) -> WriteResult:
        """Rewrite the object in place, all data, under ``target``.

        Raises PreconditionFailed when the object is no longer the one in ``snapshot``.
        """

    async def delete_version(self, bucket: str, key: str, version_id: str) -> None: ...


class BodyStorage(Storage, Protocol):
    """The port for a strategy that rewrites the bytes itself (``envelope``): read exactly the
    inspected version, write a new body that replaces it only while it is still current.

    Both writes carry ``snapshot.attributes`` over unchanged, set ``tags``, and add ``metadata``
    to the user metadata; they raise PreconditionFailed when a user wrote meanwhile.
    """

    def read_chunks(self, snapshot: ObjectSnapshot) -> AsyncIterator[bytes]:
        """The inspected version's bytes (raises PreconditionFailed once it changed)."""

    async def put_if_match(
        self,
        snapshot: ObjectSnapshot,
        body: bytes | IO[bytes],
        length: int,
        *,
        tags: dict[str, str],
        metadata: dict[str, str],
    ) -> WriteResult:
        """Replace the object with ``body`` in one request."""

    async def upload_if_match(
        self,
        snapshot: ObjectSnapshot,
        parts: AsyncIterator[tuple[IO[bytes], int]],
        *,
        tags: dict[str, str],
        metadata: dict[str, str],
    ) -> WriteResult:
        """Replace the object with ``parts`` (body, length), completed only if still current."""


# ---------------------------------------------------------------- KMS


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
    """An External Key service. ``context`` is the associated data the DEK is bound to.
    Plaintext keys never reach a repr, a log line, an error message or a span attribute."""

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


# ---------------------------------------------------------------- records and events


class RecordSink(Protocol):
    """Where audit and dead-letter records go; a publish returns once the record is durable."""

    async def publish_audit(self, record: AuditRecord) -> None: ...

    async def send_audit(self, record: AuditRecord) -> Awaitable[None]:
        """Hand ``record`` over without waiting for the broker; the record is durable once the
        returned acknowledgement has been awaited (it raises what a publish would)."""

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None: ...


class RangeRecords(Protocol):
    """The final records of one backfill range, in an open transaction: they become visible
    (to ``read_committed`` readers) only together with the range's progress."""

    async def publish_audit(self, record: AuditRecord) -> None: ...

    async def publish_dead_letter(self, record: DeadLetterRecord, key: bytes | None) -> None: ...

    async def commit(self, progress: RangeProgress) -> None:
        """Publish ``progress`` and commit it with every record since the last commit, then
        open the next transaction."""


class BackfillCapacity(Protocol):
    """When backfill work may take a work slot: live notifications first (the backfill lane's
    rule)."""

    async def admit(self) -> None:
        """Return once one more backfill object may start."""


class EventPublisher(Protocol):
    """Where ``enforcer scan --enqueue`` puts one backfill event per object."""

    async def publish_event(self, key: bytes, value: bytes) -> None: ...


@dataclass(frozen=True)
class Message:
    """One input record as the consumer delivers it to the engine."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes] = field(default_factory=dict)


class ParkingListener(Protocol):
    """What the consumer is told about a message it handed over: parked."""

    def parked(self, message: Message) -> None:
        """``message`` waits for its key (missing, disabled or refused): it holds no work slot
        and must no longer take room in the consumer's window. It is not done: its offset
        stays uncommitted until the handler returns (enforced, or dead-lettered after the
        patience), so a restart handles it again."""


class ConsumptionGate(Protocol):
    """What the consumer reads of the outage gate: whether to pause its partitions."""

    @property
    def is_open(self) -> bool: ...

    def describe(self) -> str: ...
