"""Listing with metadata (enforcer.storage.listing): a recorded MinIO page → per-entry facts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from enforcer.core.verdict import Encryption
from enforcer.engine.objects import ListedFacts
from enforcer.storage.listing import facts_from_user_metadata, parse_listing_metadata

DATA = Path(__file__).parents[1] / "data"


def test_a_recorded_minio_page_gives_encryption_key_metadata_and_tags_per_entry() -> None:
    # GET /probe-list?list-type=2&metadata=true on the local stack's MinIO: objects "kms"
    # (SSE-KMS under probe-other), "plain a+b" (plaintext, x-amz-meta-foo, tags) and "s3" (SSE-S3)
    facts = parse_listing_metadata((DATA / "minio-list-metadata.xml").read_bytes())
    assert facts == [
        ListedFacts(Encryption.SSE_KMS, "arn:aws:kms:probe-other"),
        ListedFacts(Encryption.NONE, None, {"foo": "bar"}, {"t": "1", "u": "2"}),
        ListedFacts(Encryption.SSE_S3),
    ]


def test_entries_without_user_metadata_are_unknown() -> None:
    body = (
        b'<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">'
        b"<Contents><Key>a</Key></Contents><Contents><Key>b</Key><UserMetadata>"
        b"<content-type>text/plain</content-type></UserMetadata></Contents></ListBucketResult>"
    )
    assert parse_listing_metadata(body) == [None, ListedFacts(Encryption.NONE)]


def test_envelope_and_sse_c_objects_are_recognised_from_their_listed_headers() -> None:
    envelope = facts_from_user_metadata(
        {"X-Amz-Meta-Enforcer-Envelope-Version": "1", "X-Amz-Meta-Enforcer-Envelope-Key": "ek"}
    )
    assert (envelope.encryption, envelope.kms_key) == (Encryption.ENVELOPE, "ek")
    sse_c = facts_from_user_metadata({"X-Amz-Server-Side-Encryption-Customer-Algorithm": "AES256"})
    assert sse_c.encryption is Encryption.SSE_C


def test_a_page_is_parsed_once_by_us_and_botocore_gets_an_empty_one() -> None:
    from enforcer.storage.listing import _parse_page_ourselves

    body = (DATA / "minio-list-metadata.xml").read_bytes()
    response: dict[str, Any] = {"status_code": 200, "body": body}
    parsed: dict[str, object] = {}
    _parse_page_ourselves(response_dict=response, customized_response_dict=parsed)
    contents = parsed["Contents"]
    assert isinstance(contents, list)
    assert [c["Key"] for c in contents] == ["kms", "plain a+b", "s3"]  # URL-decoded
    assert contents[0]["Size"] == 1 and contents[0]["ETag"].startswith('"')
    assert parsed["IsTruncated"] is False
    assert b"<Contents>" not in response["body"]  # botocore parses an empty page
    errors = {"status_code": 403, "body": b"<Error/>"}
    _parse_page_ourselves(response_dict=errors, customized_response_dict={})
    assert errors["body"] == b"<Error/>"
