"""botocore errors → the enforcer's error tree, in one place (MinIO and AWS codes).

MinIO reports KMS trouble through S3 error codes (docs/storage-facts.md): ``kms:KeyNotFound`` (404),
``kms:NotAuthorized`` (403), ``kms:KeyGenerationFailed``/``kms:DecryptionFailed`` (500 while the
KMS is unreachable). AWS uses ``KMS.NotFoundException``, ``KMS.DisabledException`` and friends.
"""

from __future__ import annotations

import re

from botocore.exceptions import BotoCoreError, ClientError

from enforcer.errors import (
    AccessDenied,
    CredentialsRejected,
    EnforcerError,
    KeyDisabled,
    KeyMissing,
    KmsNotAuthorized,
    KmsUnavailable,
    PreconditionFailed,
    StorageRejected,
    StorageUnavailable,
)

_KMS_MISSING = {"kms:KeyNotFound", "KMS.NotFoundException", "NotFoundException"}
_KMS_DISABLED = {
    "KMS.DisabledException",
    "KMS.KMSInvalidStateException",
    "KMSInvalidStateException",
}
_KMS_DOWN = {
    "kms:KeyGenerationFailed",
    "kms:DecryptionFailed",
    "KMS.KMSInternalException",
    "KMS.DependencyTimeoutException",
    "KMS.ThrottlingException",
}
_ACCESS = {"AccessDenied", "AllAccessDisabled"}
_KMS_REFUSED = {"kms:NotAuthorized", "KMS.AccessDeniedException"}
# The identity itself is refused, whatever the object: revoked or rotated credentials.
_IDENTITY_REFUSED = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
_THROTTLED = {
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestTimeout",
    "ServiceUnavailable",
    "InternalError",
    "XMinioServerNotInitialized",
    # MinIO (499) when the server stops or drops the connection mid-request, e.g. on shutdown.
    "ClientDisconnected",
}
_KEY_IN_MESSAGE = re.compile(r"key[^']*'([^']+)'")


def translate(  # noqa: PLR0911 - a table
    exc: ClientError | BotoCoreError, where: str, key_name: str = ""
) -> EnforcerError:
    """Map one botocore error; the caller raises the result ``from exc``.

    ``key_name``: the EK this request used (the object's own on reads, the target on writes);
    MinIO's KMS errors do not name it, and key alerts must blame the right key.
    """
    if isinstance(exc, BotoCoreError):  # connection refused, timeouts, broken streams
        return StorageUnavailable(f"{where}: {type(exc).__name__}")
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = f"{where}: {code or status} {error.get('Message', '')}".strip()
    if code in ("PreconditionFailed", "412") or status == 412:
        return PreconditionFailed(message)
    if code in _KMS_MISSING:
        return KeyMissing(message, key_name=key_name or _key_name(error))
    if code in _KMS_DISABLED:
        return KeyDisabled(message, key_name=key_name or _key_name(error))
    if code in _KMS_DOWN:
        return KmsUnavailable(message)
    if code in _KMS_REFUSED:
        return KmsNotAuthorized(message)
    if code in _IDENTITY_REFUSED:
        return CredentialsRejected(message)
    if code in _ACCESS or status == 403:
        return AccessDenied(message)
    if code in _THROTTLED or status >= 500 or status in (429, 499):
        return StorageUnavailable(message)
    return StorageRejected(message)


def _key_name(error: dict[str, str]) -> str:
    match = _KEY_IN_MESSAGE.search(error.get("Message", ""))
    return match.group(1) if match else ""
