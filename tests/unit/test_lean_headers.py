"""The lean S3 path's header tables, derived from botocore's S3 service model (no server)."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.session
import pytest

from enforcer.storage.lean import HeaderTable, NotLean

MODEL = botocore.session.get_session().get_service_model("s3")


def test_head_response_headers_become_botocore_fields() -> None:
    table = HeaderTable(MODEL, "HeadObject")
    parsed = table.parse(
        "HeadObject",
        {
            "etag": '"abc"',
            "content-length": "4096",
            "x-amz-tagging-count": "2",
            "x-amz-server-side-encryption": "aws:kms",
            "x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:ek-1",
            "x-amz-object-lock-retain-until-date": "2031-01-02T03:04:05Z",
            "expires": "not a date",
            "x-amz-meta-owner": "alice",
            "x-amz-server-side-encryption-bucket-key-enabled": "true",
            "x-unrelated": "ignored",
        },
    )
    assert parsed == {
        "ETag": '"abc"',
        "ContentLength": 4096,
        "TagCount": 2,
        "ServerSideEncryption": "aws:kms",
        "SSEKMSKeyId": "arn:aws:kms:ek-1",
        "ObjectLockRetainUntilDate": datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC),
        "ExpiresString": "not a date",
        "Metadata": {"owner": "alice"},
        "BucketKeyEnabled": True,
    }


def test_put_parameters_become_headers() -> None:
    table = HeaderTable(MODEL, "PutObject")
    headers = table.headers(
        "PutObject",
        {
            "ContentType": "text/plain",
            "IfMatch": '"e"',
            "SSEKMSKeyId": "ek",
            "Metadata": {"a": "1"},
        },
    )
    assert headers == {
        "Content-Type": "text/plain",
        "If-Match": '"e"',
        "x-amz-server-side-encryption-aws-kms-key-id": "ek",
        "x-amz-meta-a": "1",
    }


@pytest.mark.parametrize(
    ("params", "reason"),
    [
        ({"Expires": datetime(2031, 1, 1, tzinfo=UTC)}, "parameter Expires"),
        ({"ContentLength": 3}, "parameter ContentLength"),
        ({"NoSuchParameter": "x"}, "parameter NoSuchParameter"),
        ({"ContentDisposition": "inline; filename=ü"}, "value of ContentDisposition"),
        ({"Metadata": {"k": "Zürich"}}, "value of Metadata"),
    ],
)
def test_what_the_lean_path_does_not_send_goes_to_aiobotocore(
    params: dict[str, object], reason: str
) -> None:
    with pytest.raises(NotLean, match=reason):
        HeaderTable(MODEL, "PutObject").headers("PutObject", params)


def test_a_header_botocore_would_not_read_goes_to_aiobotocore() -> None:
    with pytest.raises(NotLean, match="header content-length"):
        HeaderTable(MODEL, "HeadObject").parse("HeadObject", {"content-length": "many"})
