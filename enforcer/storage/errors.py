"""botocore errors → the enforcer's error tree, in one place (MinIO and AWS codes).

MinIO reports KMS trouble through S3 error codes (docs/storage-facts.md): ``kms:KeyNotFound`` (404),
``kms:NotAuthorized`` (403), ``kms:KeyGenerationFailed``/``kms:DecryptionFailed`` (500 while the
KMS is unreachable). AWS uses ``KMS.NotFoundException``, ``KMS.DisabledException`` and friends.
A HEAD has no error body: MinIO then names the error in ``x-minio-error-code`` and
``x-minio-error-desc`` headers, which are read here. Client-side checks (botocore refusing a
bucket name before any request) are permanent: the event named something no store can hold.
"""

from __future__ import annotations

import re

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

from enforcer.errors import (
    AccessDenied,
    BadEvent,
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
_CREDENTIALS = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "InvalidClientTokenId",
}
_ACCESS = {"AccessDenied", "AllAccessDisabled"}
_KMS_REFUSED = {"kms:NotAuthorized", "KMS.AccessDeniedException"}
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
# The store refuses the name itself (MinIO: '..' or empty path segments, over-long keys).
_INVALID_NAME = {
    "InvalidBucketName",
    "XMinioInvalidObjectName",
    "XMinioInvalidResourceName",
    "KeyTooLongError",
    "XMinioInvalidObjectNamePrefixSlash",
}
#: The exact refusal of a read of an SSE-C object without its customer key (MinIO and AWS).
SSE_C_REFUSAL = ("InvalidRequest", "stored using a form of Server Side Encryption")
_KEY_IN_MESSAGE = re.compile(r"key[^']*'([^']+)'")


def translate(  # noqa: PLR0911 - a table
    exc: ClientError | BotoCoreError, where: str, key_name: str = ""
) -> EnforcerError:
    """Map one botocore error; the caller raises the result ``from exc``.

    ``key_name``: the EK this request used (the object's own on reads, the target on writes);
    MinIO's KMS errors do not name it, and key alerts must blame the right key.
    """
    if isinstance(exc, BotoCoreError):
        return _translate_client_side(exc, where)
    code, detail = error_code(exc)
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    message = f"{where}: {code or status} {detail}".strip()
    if code in ("PreconditionFailed", "412") or status == 412:
        return PreconditionFailed(message)
    if code in _KMS_MISSING:
        return KeyMissing(message, key_name=key_name or _key_name(detail))
    if code in _KMS_DISABLED:
        return KeyDisabled(message, key_name=key_name or _key_name(detail))
    if code in _KMS_DOWN:
        return KmsUnavailable(message)
    if (refusal := _refusal(code, status, message)) is not None:
        return refusal
    if code in _INVALID_NAME:
        return BadEvent(f"the store refuses the object name: {message}")
    if code in _THROTTLED or status >= 500 or status in (429, 499):
        return StorageUnavailable(message)
    return StorageRejected(message)


def _refusal(code: str, status: int, message: str) -> AccessDenied | None:
    """Who refused: the KMS (a key), S3 (our credentials as such), or S3 (this request)."""
    if code in _KMS_REFUSED:
        return KmsNotAuthorized(message)
    if code in _CREDENTIALS:
        return CredentialsRejected(message)
    if code in _ACCESS or status == 403:
        return AccessDenied(message)
    return None


def error_code(exc: ClientError) -> tuple[str, str]:
    """The S3 error code and message; from MinIO's headers when the response had no body."""
    error = exc.response.get("Error", {})
    code, message = str(error.get("Code", "")), str(error.get("Message", ""))
    if not code or code.isdigit():  # botocore puts the status there when the body was empty
        headers = exc.response.get("ResponseMetadata", {}).get("HTTPHeaders", {})
        code = headers.get("x-minio-error-code", code)
        message = headers.get("x-minio-error-desc", message).strip('"')
    return code, message


def is_sse_c_refusal(code: str, message: str) -> bool:
    """Did the store refuse a read because the object is SSE-C and no customer key was sent?"""
    return code == SSE_C_REFUSAL[0] and SSE_C_REFUSAL[1] in message


def _translate_client_side(exc: BotoCoreError, where: str) -> EnforcerError:
    if isinstance(exc, ParamValidationError):  # botocore refused before sending anything
        first_line = str(exc).splitlines()[-1][:200]
        return BadEvent(f"{where}: the S3 client refuses the request: {first_line}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return AccessDenied(f"{where}: {exc}")
    return StorageUnavailable(f"{where}: {type(exc).__name__}")  # connection refused, timeouts


def _key_name(message: str) -> str:
    match = _KEY_IN_MESSAGE.search(message)
    return match.group(1) if match else ""
