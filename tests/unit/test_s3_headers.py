"""HEAD response → snapshot → write parameters: the pure half of the S3 adapter."""

import datetime as dt

import pytest
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ParamValidationError,
)

from enforcer.core.verdict import Encryption
from enforcer.errors import (
    AccessDenied,
    BadEvent,
    CredentialsRejected,
    KeyMissing,
    KmsNotAuthorized,
    KmsUnavailable,
    PreconditionFailed,
    StorageRejected,
    StorageUnavailable,
)
from enforcer.storage.errors import error_code, is_sse_c_refusal, translate
from enforcer.storage.responses import snapshot_from_head, write_headers

UNTIL = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
HEAD = {
    "ContentLength": 42,
    "ETag": '"abc"',
    "VersionId": "v1",
    "ContentType": "text/csv",
    "ContentEncoding": "gzip",
    "ContentDisposition": "inline",
    "ContentLanguage": "fr",
    "CacheControl": "no-cache",
    "ExpiresString": "Wed, 01 Jan 2031 00:00:00 GMT",
    "WebsiteRedirectLocation": "/x",
    "StorageClass": "STANDARD_IA",
    "ObjectLockMode": "COMPLIANCE",
    "ObjectLockRetainUntilDate": UNTIL,
    "ObjectLockLegalHoldStatus": "OFF",
    "Metadata": {"Team": "a", "enforcer-envelope-version": "1", "enforcer-envelope-key": "ek"},
}


def test_every_attribute_becomes_a_write_parameter() -> None:
    snapshot = snapshot_from_head("b", "k", HEAD)
    params = write_headers(snapshot.attributes, {"t": "1", "sp ace": "a&b"})
    assert params == {
        "ContentType": "text/csv",
        "ContentEncoding": "gzip",
        "ContentDisposition": "inline",
        "ContentLanguage": "fr",
        "CacheControl": "no-cache",
        "Expires": dt.datetime(2031, 1, 1, tzinfo=dt.UTC),
        "WebsiteRedirectLocation": "/x",
        "StorageClass": "STANDARD_IA",
        "ObjectLockMode": "COMPLIANCE",
        "ObjectLockRetainUntilDate": UNTIL,
        "ObjectLockLegalHoldStatus": "OFF",
        "Tagging": "t=1&sp+ace=a%26b",
        "Metadata": {"team": "a"},  # the envelope's own fields are rewritten, not copied
    }


@pytest.mark.parametrize(
    ("head", "encryption", "kms_key"),
    [
        ({}, Encryption.NONE, None),
        ({"ServerSideEncryption": "AES256"}, Encryption.SSE_S3, None),
        (
            {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "arn:aws:kms:k"},
            Encryption.SSE_KMS,
            "arn:aws:kms:k",
        ),
        ({"SSECustomerAlgorithm": "AES256"}, Encryption.SSE_C, None),
        (
            {
                "Metadata": {"enforcer-envelope-version": "1", "enforcer-envelope-key": "ek"},
                "ServerSideEncryption": "aws:kms",
                "SSEKMSKeyId": "arn:aws:kms:other",
            },
            Encryption.ENVELOPE,
            "ek",
        ),
    ],
)
def test_encryption_is_read_from_head(
    head: dict[str, object], encryption: Encryption, kms_key: str | None
) -> None:
    snapshot = snapshot_from_head("b", "k", {"ContentLength": 1, "ETag": '"e"', **head})
    assert (snapshot.encryption, snapshot.kms_key) == (encryption, kms_key)


def test_null_version_is_no_version() -> None:
    assert snapshot_from_head("b", "k", {"VersionId": "null"}).version_id is None


SSE_C_MESSAGE = (
    "The object was stored using a form of Server Side Encryption. The correct parameters must "
    "be provided to retrieve the object."
)


def head_error(status: int, code: str | None, desc: str | None) -> ClientError:
    """A HEAD error as botocore builds it: no body, so the code is the status; MinIO's headers."""
    headers = {"x-minio-error-code": code, "x-minio-error-desc": f'"{desc}"'} if code else {}
    return ClientError(
        {
            "Error": {"Code": str(status), "Message": "Bad Request"},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers},
        },
        "HeadObject",
    )


@pytest.mark.parametrize(
    ("error", "sse_c"),
    [
        (head_error(400, "InvalidRequest", SSE_C_MESSAGE), True),
        (head_error(400, "InvalidRequest", "Invalid request"), False),
        (head_error(400, "XMinioInvalidObjectName", SSE_C_MESSAGE), False),
        (head_error(400, None, None), False),
    ],
)
def test_only_the_stores_own_sse_c_refusal_counts_as_sse_c(error: ClientError, sse_c: bool) -> None:
    assert is_sse_c_refusal(*error_code(error)) is sse_c


def client_error(code: str, status: int, message: str = "") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "PutObject",
    )


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (client_error("PreconditionFailed", 412), PreconditionFailed),
        (client_error("kms:KeyNotFound", 404), KeyMissing),
        (client_error("kms:KeyGenerationFailed", 500), KmsUnavailable),
        (client_error("kms:DecryptionFailed", 500), KmsUnavailable),
        (client_error("kms:NotAuthorized", 403), KmsNotAuthorized),
        (client_error("InvalidAccessKeyId", 403), CredentialsRejected),
        (client_error("SignatureDoesNotMatch", 403), CredentialsRejected),
        (client_error("AccessDenied", 403), AccessDenied),
        (client_error("SlowDown", 503), StorageUnavailable),
        (client_error("ClientDisconnected", 499), StorageUnavailable),
        (client_error("InternalError", 500), StorageUnavailable),
        (client_error("InvalidRequest", 400), StorageRejected),
        (client_error("NoSuchBucket", 404), StorageRejected),
        (EndpointConnectionError(endpoint_url="http://x"), StorageUnavailable),
        (ParamValidationError(report='Invalid bucket name "../etc"'), BadEvent),
        (NoCredentialsError(), AccessDenied),
        (client_error("XMinioInvalidObjectName", 400), BadEvent),
        (head_error(400, "XMinioInvalidObjectName", "Object name contains unsupported"), BadEvent),
        (head_error(400, "InvalidRequest", SSE_C_MESSAGE), StorageRejected),
        (head_error(503, "XMinioServerNotInitialized", "not ready"), StorageUnavailable),
        (head_error(400, None, None), StorageRejected),
    ],
)
def test_errors_map_into_the_one_tree(error: Exception, kind: type) -> None:
    translated = translate(error, "PUT b/k")
    assert type(translated) is kind
    assert "PUT b/k" in str(translated)


def test_key_errors_blame_the_key_the_request_used() -> None:
    missing = translate(client_error("kms:KeyNotFound", 404), "GET b/k", "old-ek")
    assert isinstance(missing, KeyMissing)
    assert missing.key_name == "old-ek"


@pytest.mark.parametrize(
    ("sse", "encryption"),
    [("aws:kms", Encryption.SSE_KMS), ("aws:kms:dsse", Encryption.SSE_KMS_DSSE),
     ("AES256", Encryption.SSE_S3)],
)  # fmt: skip
def test_dual_layer_sse_kms_is_read_as_its_own_encryption(sse: str, encryption: Encryption) -> None:
    head = {"ETag": '"e"', "ServerSideEncryption": sse, "SSEKMSKeyId": "arn:aws:kms:r:1:key/k"}
    snapshot = snapshot_from_head("b", "k", head)
    assert snapshot.encryption is encryption
    if sse != "AES256":
        assert snapshot.kms_key == "arn:aws:kms:r:1:key/k"
