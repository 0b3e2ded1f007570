"""S3 responses and requests ↔ the storage port's values (pure; unit-tested with recorded
responses): HEAD → :class:`ObjectSnapshot`, a write's response → :class:`WriteResult`, and the
write parameters that recreate an object's preserved attributes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from enforcer.core.verdict import Encryption
from enforcer.crypto.envelope import PREFIX as ENVELOPE_PREFIX
from enforcer.crypto.envelope import is_envelope
from enforcer.engine.objects import ObjectSnapshot, PreservedAttributes, WriteResult


def snapshot_from_head(bucket: str, key: str, head: dict[str, Any]) -> ObjectSnapshot:
    """HEAD response → snapshot (pure; unit-tested with recorded responses)."""
    metadata = {k.lower(): v for k, v in head.get("Metadata", {}).items()}
    encryption, kms_key = encryption_of(head, metadata)
    attributes = PreservedAttributes(
        metadata=metadata,
        content_type=head.get("ContentType"),
        content_encoding=head.get("ContentEncoding"),
        content_disposition=head.get("ContentDisposition"),
        content_language=head.get("ContentLanguage"),
        cache_control=head.get("CacheControl"),
        expires=head.get("ExpiresString") or _http_date(head.get("Expires")),
        website_redirect=head.get("WebsiteRedirectLocation"),
        storage_class=head.get("StorageClass"),
        lock_mode=head.get("ObjectLockMode"),
        lock_retain_until=head.get("ObjectLockRetainUntilDate"),
        legal_hold=head.get("ObjectLockLegalHoldStatus"),
    )
    return ObjectSnapshot(
        bucket=bucket,
        key=key,
        etag=head.get("ETag", ""),
        size=int(head.get("ContentLength", 0)),
        encryption=encryption,
        kms_key=kms_key,
        version_id=head.get("VersionId") if head.get("VersionId") not in (None, "null") else None,
        attributes=attributes,
        tag_count=int(head.get("TagCount") or 0),  # MinIO and AWS send it when there are tags
    )


def write_result(response: dict[str, Any]) -> WriteResult:
    """A write's response → the new version, with the encryption the store says it applied."""
    version_id = response.get("VersionId") if response.get("VersionId") != "null" else None
    if not response.get("ServerSideEncryption"):
        return WriteResult(etag=response["ETag"], version_id=version_id)
    encryption, kms_key = encryption_of(response, {})
    return WriteResult(response["ETag"], version_id, encryption, kms_key)


def encryption_of(head: dict[str, Any], metadata: dict[str, str]) -> tuple[Encryption, str | None]:
    if head.get("SSECustomerAlgorithm"):
        return Encryption.SSE_C, None
    if is_envelope(metadata):  # our own chain, whatever the store adds
        return Encryption.ENVELOPE, metadata.get(f"{ENVELOPE_PREFIX}key")
    sse = head.get("ServerSideEncryption")
    if sse == "aws:kms":
        return Encryption.SSE_KMS, head.get("SSEKMSKeyId")
    if sse == "aws:kms:dsse":
        return Encryption.SSE_KMS_DSSE, head.get("SSEKMSKeyId")
    if sse == "AES256":
        return Encryption.SSE_S3, None
    return Encryption.NONE, None


def _http_date(value: Any) -> str | None:
    if value is None:
        return None
    from email.utils import format_datetime

    return format_datetime(value, usegmt=True)


def write_headers(attributes: PreservedAttributes, tags: dict[str, str]) -> dict[str, Any]:
    """PutObject/CreateMultipartUpload parameters that recreate ``attributes`` (pure)."""
    optional = {
        "ContentType": attributes.content_type,
        "ContentEncoding": attributes.content_encoding,
        "ContentDisposition": attributes.content_disposition,
        "ContentLanguage": attributes.content_language,
        "CacheControl": attributes.cache_control,
        "WebsiteRedirectLocation": attributes.website_redirect,
        "StorageClass": attributes.storage_class,
        "ObjectLockMode": attributes.lock_mode,
        "ObjectLockRetainUntilDate": attributes.lock_retain_until,
        "ObjectLockLegalHoldStatus": attributes.legal_hold,
        "Tagging": urlencode(tags) if tags else None,
    }
    headers: dict[str, Any] = {k: v for k, v in optional.items() if v is not None}
    headers["Metadata"] = attributes.user_metadata()
    if attributes.expires:
        from email.utils import parsedate_to_datetime

        headers["Expires"] = parsedate_to_datetime(attributes.expires)
    return headers
