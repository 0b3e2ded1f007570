"""The lean S3 path's header tables, derived from botocore's S3 service model (no server)."""

from __future__ import annotations

from datetime import UTC, datetime

import botocore.session
import pytest

from enforcer.errors import StorageRejected
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


@pytest.mark.parametrize(
    ("header", "value"),
    [("content-length", "many"), ("x-amz-object-lock-retain-until-date", "someday")],
)
def test_an_answer_with_an_unreadable_typed_header_is_refused_not_asked_again(
    header: str, value: str
) -> None:
    """The request was answered: asking again would send it twice. The object's answer cannot
    be trusted (its size, its retention), so it is refused for that object (botocore raises a
    bare ValueError there)."""
    with pytest.raises(StorageRejected, match=f"unreadable header {header}"):
        HeaderTable(MODEL, "HeadObject").parse("HeadObject", {header: value})
