from datetime import UTC, datetime

import pytest
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from enforcer.config import S3Settings
from enforcer.core.verdict import Encryption
from enforcer.storage.client import parse_timestamp
from enforcer.storage.options import is_aws_endpoint
from enforcer.storage.responses import snapshot_from_head, write_result


@pytest.mark.parametrize(
    "value",
    [
        "2026-12-01T10:00:00.000Z",
        "2026-12-01T10:00:00Z",
        "2026-12-01T10:00:00.123456+02:00",
        "Tue, 01 Dec 2026 10:00:00 GMT",
        "Wed, 17 May 2031 08:30:00 GMT",
        "1764583200",  # epoch seconds: botocore's parser
        "2026-12-01",  # no time zone: botocore's parser
    ],
)
def test_fast_timestamps_agree_with_botocore(value: str) -> None:
    ours, theirs = parse_timestamp(value), botocore_parse_timestamp(value)
    assert ours == theirs
    assert (ours.tzinfo is None) == (theirs.tzinfo is None)


def test_unparseable_timestamps_fail_as_in_botocore() -> None:
    with pytest.raises(ValueError, match="Invalid timestamp"):
        parse_timestamp("not a date")


def test_tag_count_absent_means_none() -> None:
    assert snapshot_from_head("b", "k", {"ETag": '"e"'}).tag_count == 0
    assert snapshot_from_head("b", "k", {"ETag": '"e"', "TagCount": 3}).tag_count == 3


def test_write_response_names_the_encryption() -> None:
    put = {"ETag": '"e"', "VersionId": "v2", "ServerSideEncryption": "aws:kms",
           "SSEKMSKeyId": "arn:aws:kms:ek"}  # fmt: skip
    result = write_result(put)
    assert (result.etag, result.version_id) == ('"e"', "v2")
    assert (result.encryption, result.kms_key) == (Encryption.SSE_KMS, "arn:aws:kms:ek")
    silent = write_result({"ETag": '"e"', "VersionId": "null"})
    assert (silent.encryption, silent.version_id) == (None, None)  # verify by reading back


@pytest.mark.parametrize(
    ("endpoint", "aws"),
    [
        (None, True),
        ("https://s3.eu-west-1.amazonaws.com", True),
        ("https://bucket.s3.cn-north-1.amazonaws.com.cn", True),
        ("http://127.0.0.1:9000", False),
        ("https://minio.example.com", False),
        ("https://amazonaws.com.evil.example", False),
    ],
)
def test_copy_if_match_auto_is_aws_only(endpoint: str | None, aws: bool) -> None:
    assert is_aws_endpoint(endpoint) is aws
    for setting, checks in (("auto", aws), ("false", False), ("true", True)):
        options = S3Settings(endpoint_url=endpoint, copy_if_match=setting).options()
        assert options.copy_if_match is checks


def test_utc_results_compare_with_aware_datetimes() -> None:
    assert parse_timestamp("2026-12-01T10:00:00Z") == datetime(2026, 12, 1, 10, tzinfo=UTC)
