"""The one error tree of sse-enforcer.

    EnforcerError
    ├── PermanentError            retrying will not help: audit, dead-letter, commit, move on
    │   ├── BadEvent              the Kafka record is not an event we can read
    │   ├── ConfigError           the configuration or policy file is invalid (exit code 2)
    │   ├── AccessDenied          S3 or the KMS refused us
    │   │   ├── CredentialsRejected   ... because it does not know or believe our credentials
    │   │   │                             (at start: exit 2; at run time: the outage gate pauses)
    │   │   └── KmsNotAuthorized  the KMS refused the key (per key, or every key: see outage)
    │   ├── KeyMissing            the required External Key does not exist (alerts per key)
    │   ├── KeyDisabled           the key exists but may not be used (AWS Disabled/PendingDeletion)
    │   ├── ObjectUnreadable      SSE-C object, or one we cannot decrypt
    │   ├── IntegrityError        an envelope object failed authentication (tampered or corrupt)
    │   ├── StorageRejected       S3 refused the request for a reason retrying cannot change
    │   ├── RecordTooLarge        the broker (or producer) refuses a record for its size
    │   ├── PoisonEvent           one event kept failing "transiently" while others succeeded
    │   └── RangeMoved            a backfill range was taken over by another replica (fenced)
    └── TransientError            retry with backoff; the event is not failed
        ├── KmsUnavailable        the KMS (KES / AWS KMS) is unreachable or failing
        ├── StorageUnavailable    S3 5xx, throttling, timeouts, connection errors
        ├── PreconditionFailed    someone wrote the object meanwhile: re-inspect, never overwrite
        ├── KafkaUnavailable      the audit/DLQ producer could not deliver
        └── QueueUnavailable      SQS (``enforcer forward sqs``) is unreachable or failing

Adapters translate library errors (botocore, httpx, aiokafka) into this tree once, at their
boundary, with ``raise ... from exc``. Messages never contain key material.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError


class EnforcerError(Exception):
    """Base of every error sse-enforcer raises on purpose."""

    #: Short machine-readable name, used as ``error_class`` in audit and DLQ records.
    code = "error"


class PermanentError(EnforcerError):
    code = "permanent"


class BadEvent(PermanentError):
    code = "bad_event"


class ConfigError(PermanentError):
    code = "config"


class AccessDenied(PermanentError):
    code = "access_denied"


class CredentialsRejected(AccessDenied):
    """Unknown access key, bad signature, expired token: the credentials, not a permission.
    At start the preflight turns it into a ConfigError; at run time (credentials revoked) the
    outage gate pauses consumption instead of dead-lettering every event."""


class KeyMissing(PermanentError):
    code = "key_missing"

    def __init__(self, message: str, *, key_name: str) -> None:
        super().__init__(message)
        self.key_name = key_name


class KeyDisabled(PermanentError):
    code = "key_disabled"

    def __init__(self, message: str, *, key_name: str) -> None:
        super().__init__(message)
        self.key_name = key_name


class KmsNotAuthorized(AccessDenied):
    """The KMS (or MinIO's KMS) refused a key. For one key among working ones it is permanent;
    when every key is refused, the outage gate treats it as a credentials outage."""


class ObjectUnreadable(PermanentError):
    code = "object_unreadable"


class IntegrityError(PermanentError):
    code = "integrity"


class StorageRejected(PermanentError):
    code = "storage_rejected"


class RecordTooLarge(PermanentError):
    code = "record_too_large"


class PoisonEvent(PermanentError):
    """Failed with an outage-class error round after round while the same dependency served
    other events: not an outage, so it is dead-lettered instead of stalling its partition."""

    code = "poison_event"


class RangeMoved(PermanentError):
    """Another replica opened this backfill range's transaction: ours is aborted, stop."""

    code = "range_moved"


class TransientError(EnforcerError):
    code = "transient"


class KmsUnavailable(TransientError):
    code = "kms_unavailable"


class StorageUnavailable(TransientError):
    code = "storage_unavailable"


class PreconditionFailed(TransientError):
    code = "precondition_failed"


class KafkaUnavailable(TransientError):
    code = "kafka_unavailable"


class ProducerStopped(KafkaUnavailable):
    """The producer's sender stopped for good (an idempotent producer's sequence lost by a
    restarted broker): a new producer is needed before anything is sent again."""


class QueueUnavailable(TransientError):
    code = "queue_unavailable"


def describe_validation(exc: ValidationError, *, limit: int = 300) -> tuple[str, str]:
    """The first problem of a pydantic error as ``(where, message)``: ``where`` is the dotted
    location (empty at the top level). The one place pydantic errors are turned into text; the
    message never repeats the offending input (it may be huge, binary or a secret)."""
    first = exc.errors(include_url=False, include_input=False)[0]
    where = ".".join(str(part) for part in first["loc"])
    return where[:limit], str(first["msg"])[:limit]
