"""MinIO behaviour the pipeline relies on (docs/storage-facts.md), pinned against the real
server. Where the server and the reference disagree, the server wins and the test says so."""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import urllib.parse
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support import MakeBucket, MakeKey, Notifications, TlsMinio, s3_error

BODY = b"the quick brown fox"
MD5_ETAG = f'"{hashlib.md5(BODY).hexdigest()}"'  # noqa: S324 - S3 ETags are MD5


def _put_kms(s3: Any, bucket: str, key: str, ek: str, **extra: Any) -> Any:
    return s3.put_object(
        Bucket=bucket, Key=key, Body=BODY, ServerSideEncryption="aws:kms", SSEKMSKeyId=ek, **extra
    )


def _read(s3: Any, bucket: str, key: str) -> bytes:
    return bytes(s3.get_object(Bucket=bucket, Key=key)["Body"].read())


# ---------------------------------------------------------------- conditional writes


def test_put_if_match_wrong_etag_is_412_and_leaves_the_object(
    make_bucket: MakeBucket, s3_admin: Any
) -> None:
    bucket = make_bucket(notify=False)
    s3_admin.put_object(Bucket=bucket, Key="o", Body=BODY)

    with pytest.raises(ClientError) as error:
        s3_admin.put_object(Bucket=bucket, Key="o", Body=b"other", IfMatch='"0123456789abcdef"')

    assert s3_error(error.value) == (412, "PreconditionFailed")
    assert _read(s3_admin, bucket, "o") == BODY


def test_put_if_match_current_etag_overwrites(make_bucket: MakeBucket, s3_admin: Any) -> None:
    bucket = make_bucket(notify=False)
    etag = s3_admin.put_object(Bucket=bucket, Key="o", Body=BODY)["ETag"]

    s3_admin.put_object(Bucket=bucket, Key="o", Body=b"other", IfMatch=etag)

    assert _read(s3_admin, bucket, "o") == b"other"


def test_complete_multipart_wrong_if_match_is_412_and_leaves_the_object(
    make_bucket: MakeBucket, s3_admin: Any
) -> None:
    bucket = make_bucket(notify=False)
    s3_admin.put_object(Bucket=bucket, Key="o", Body=BODY)
    upload = s3_admin.create_multipart_upload(Bucket=bucket, Key="o")["UploadId"]
    part = s3_admin.upload_part(Bucket=bucket, Key="o", UploadId=upload, PartNumber=1, Body=b"new")
    parts = {"Parts": [{"ETag": part["ETag"], "PartNumber": 1}]}

    with pytest.raises(ClientError) as error:
        s3_admin.complete_multipart_upload(
            Bucket=bucket, Key="o", UploadId=upload, MultipartUpload=parts, IfMatch='"0123"'
        )

    assert s3_error(error.value) == (412, "PreconditionFailed")
    assert _read(s3_admin, bucket, "o") == BODY
    # Observed: the refused upload stays open; the caller must abort it.
    uploads = s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [upload]


# ---------------------------------------------------------------- ETags and key reporting


@pytest.mark.parametrize(
    "encryption",
    [{}, {"ServerSideEncryption": "AES256"}],
    ids=["plaintext", "sse-s3"],
)
def test_plaintext_and_sse_s3_etag_is_the_content_md5(
    make_bucket: MakeBucket, s3_admin: Any, encryption: dict[str, str]
) -> None:
    bucket = make_bucket(notify=False)

    etag = s3_admin.put_object(Bucket=bucket, Key="o", Body=BODY, **encryption)["ETag"]

    assert etag == MD5_ETAG
    assert s3_admin.head_object(Bucket=bucket, Key="o")["ETag"] == MD5_ETAG


def test_sse_kms_etag_is_not_the_content_md5_and_differs_per_write(
    make_key: MakeKey, make_bucket: MakeBucket, s3_admin: Any
) -> None:
    ek = make_key()
    bucket = make_bucket(notify=False)

    first = _put_kms(s3_admin, bucket, "o", ek)["ETag"]
    second = _put_kms(s3_admin, bucket, "o", ek)["ETag"]

    assert first != MD5_ETAG
    assert second not in (MD5_ETAG, first)  # same bytes, same key: still a new ETag
    assert len(first.strip('"')) == 32
    assert s3_admin.head_object(Bucket=bucket, Key="o")["ETag"] == second


def test_head_reports_the_kms_key_as_an_arn(
    make_key: MakeKey, make_bucket: MakeBucket, s3_admin: Any
) -> None:
    ek = make_key()
    bucket = make_bucket(notify=False)

    put = _put_kms(s3_admin, bucket, "o", ek)
    head = s3_admin.head_object(Bucket=bucket, Key="o")

    assert put["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", f"arn:aws:kms:{ek}")


@pytest.mark.parametrize("form", ["{ek}", "arn:aws:kms:{ek}"], ids=["bare", "arn"])
def test_bucket_encryption_returns_the_key_as_it_was_put(
    make_key: MakeKey, make_bucket: MakeBucket, s3_admin: Any, form: str
) -> None:
    ek = make_key()
    bucket = make_bucket(default_key=form.format(ek=ek), notify=False)

    config = s3_admin.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    s3_admin.put_object(Bucket=bucket, Key="o", Body=BODY)

    assert config["Rules"] == [
        {
            "ApplyServerSideEncryptionByDefault": {
                "SSEAlgorithm": "aws:kms",
                "KMSMasterKeyID": form.format(ek=ek),
            }
        }
    ]
    assert s3_admin.head_object(Bucket=bucket, Key="o")["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"


def test_put_under_a_missing_key_is_404_key_not_found(
    make_bucket: MakeBucket, s3_admin: Any
) -> None:
    bucket = make_bucket(notify=False)

    with pytest.raises(ClientError) as error:
        _put_kms(s3_admin, bucket, "o", "no-such-key-anywhere")

    assert s3_error(error.value) == (404, "kms:KeyNotFound")


def test_put_under_a_key_kes_refuses_minio_is_403_not_authorized(
    make_key: MakeKey, make_bucket: MakeBucket, s3_admin: Any
) -> None:
    bucket, refused = make_bucket(notify=False), make_key("refused")  # denied to MinIO by KES

    with pytest.raises(ClientError) as error:
        _put_kms(s3_admin, bucket, "o", refused)

    assert s3_error(error.value) == (403, "kms:NotAuthorized")
    with pytest.raises(ClientError):
        s3_admin.head_object(Bucket=bucket, Key="o")


# ---------------------------------------------------------------- in-place copies


def test_in_place_copy_changes_the_key_keeps_metadata_and_drops_object_lock(
    make_key: MakeKey, make_bucket: MakeBucket, s3_admin: Any
) -> None:
    old_ek, new_ek = make_key(), make_key()
    bucket = make_bucket(object_lock=True, notify=False)
    until = dt.datetime.now(dt.UTC).replace(microsecond=0) + dt.timedelta(days=1)
    first = _put_kms(
        s3_admin, bucket, "o", old_ek, Metadata={"owner": "fin"}, ContentType="text/x-test",
        Tagging="team=fin", ObjectLockMode="GOVERNANCE", ObjectLockRetainUntilDate=until,
        ObjectLockLegalHoldStatus="ON",
    )  # fmt: skip

    copy = s3_admin.copy_object(
        Bucket=bucket, Key="o", CopySource={"Bucket": bucket, "Key": "o"},
        MetadataDirective="COPY", ServerSideEncryption="aws:kms", SSEKMSKeyId=new_ek,
    )  # fmt: skip

    head = s3_admin.head_object(Bucket=bucket, Key="o")
    assert head["VersionId"] == copy["VersionId"] != first["VersionId"]
    assert head["SSEKMSKeyId"] == f"arn:aws:kms:{new_ek}"
    assert (head["Metadata"], head["ContentType"]) == ({"owner": "fin"}, "text/x-test")
    assert s3_admin.get_object_tagging(Bucket=bucket, Key="o")["TagSet"] == [
        {"Key": "team", "Value": "fin"}
    ]
    assert _read(s3_admin, bucket, "o") == BODY
    # Not carried: the new version has no retention and no legal hold...
    assert "ObjectLockMode" not in head
    assert "ObjectLockLegalHoldStatus" not in head
    with pytest.raises(ClientError) as error:
        s3_admin.get_object_retention(Bucket=bucket, Key="o", VersionId=copy["VersionId"])
    assert s3_error(error.value) == (400, "NoSuchObjectLockConfiguration")
    # ...while the inspected version keeps both.
    old = s3_admin.head_object(Bucket=bucket, Key="o", VersionId=first["VersionId"])
    assert (old["ObjectLockMode"], old["ObjectLockLegalHoldStatus"]) == ("GOVERNANCE", "ON")
    assert old["SSEKMSKeyId"] == f"arn:aws:kms:{old_ek}"


def test_copy_ignores_a_wrong_if_match(make_bucket: MakeBucket, s3_admin: Any) -> None:
    """Why ENFORCER_S3__COPY_IF_MATCH=auto keeps GET + PUT(If-Match) on MinIO: a CopyObject
    whose If-Match names another ETag still replaces the object (PutObject would answer 412)."""
    bucket = make_bucket(notify=False)
    s3_admin.put_object(Bucket=bucket, Key="o", Body=BODY)

    s3_admin.copy_object(
        Bucket=bucket, Key="o", CopySource={"Bucket": bucket, "Key": "o"},
        IfMatch='"0123456789abcdef0123456789abcdef"', MetadataDirective="REPLACE",
        Metadata={"copied": "anyway"},
    )  # fmt: skip

    assert s3_admin.head_object(Bucket=bucket, Key="o")["Metadata"] == {"copied": "anyway"}


def test_unchanged_self_copy_without_bucket_encryption_is_refused(
    make_bucket: MakeBucket, s3_admin: Any
) -> None:
    bucket = make_bucket(notify=False)
    s3_admin.put_object(Bucket=bucket, Key="o", Body=BODY)

    with pytest.raises(ClientError) as error:
        s3_admin.copy_object(Bucket=bucket, Key="o", CopySource={"Bucket": bucket, "Key": "o"})

    assert s3_error(error.value) == (400, "InvalidRequest")
    assert "copy an object to itself without changing" in str(error.value)


def test_plain_self_copy_in_a_default_encrypted_bucket_applies_the_default(
    make_key: MakeKey, make_bucket: MakeBucket, s3_admin: Any
) -> None:
    ek = make_key()
    bucket = make_bucket(notify=False)
    s3_admin.put_object(Bucket=bucket, Key="o", Body=BODY)
    s3_admin.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={
            "Rules": [
                {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                        "KMSMasterKeyID": ek}}
            ]
        },
    )  # fmt: skip

    # Observed: not refused, because the bucket default changes the encryption.
    s3_admin.copy_object(Bucket=bucket, Key="o", CopySource={"Bucket": bucket, "Key": "o"})

    head = s3_admin.head_object(Bucket=bucket, Key="o")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", f"arn:aws:kms:{ek}")


# ---------------------------------------------------------------- SSE-C


def test_sse_c_is_refused_over_plain_http(make_bucket: MakeBucket, s3_admin: Any) -> None:
    """The stack's MinIO has no TLS, so no SSE-C object can exist on it."""
    bucket = make_bucket(notify=False)

    with pytest.raises(ClientError) as error:
        s3_admin.put_object(
            Bucket=bucket, Key="c", Body=BODY, SSECustomerAlgorithm="AES256",
            SSECustomerKey=os.urandom(32),
        )  # fmt: skip

    assert s3_error(error.value) == (400, "InvalidRequest")
    assert "secure connection" in str(error.value)


def test_head_of_an_sse_c_object_without_its_key_is_400(tls_minio: TlsMinio) -> None:
    s3 = tls_minio.client()
    bucket = f"sse-c-{os.urandom(6).hex()}"
    customer_key = os.urandom(32)
    s3.create_bucket(Bucket=bucket)
    s3.put_object(
        Bucket=bucket, Key="c", Body=BODY, SSECustomerAlgorithm="AES256",
        SSECustomerKey=customer_key,
    )  # fmt: skip

    with pytest.raises(ClientError) as head_error:
        s3.head_object(Bucket=bucket, Key="c")
    with pytest.raises(ClientError) as get_error:
        s3.get_object(Bucket=bucket, Key="c")

    assert s3_error(head_error.value) == (400, "400")  # HEAD: no body, so no error code
    assert s3_error(get_error.value) == (400, "InvalidRequest")
    head = s3.head_object(
        Bucket=bucket, Key="c", SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key
    )
    assert head["SSECustomerAlgorithm"] == "AES256"
    assert "ServerSideEncryption" not in head


def test_sse_kms_without_a_configured_kms_is_501(tls_minio: TlsMinio) -> None:
    s3 = tls_minio.client()
    bucket = f"no-kms-{os.urandom(6).hex()}"
    s3.create_bucket(Bucket=bucket)

    with pytest.raises(ClientError) as error:
        s3.put_object(Bucket=bucket, Key="k", Body=BODY, ServerSideEncryption="aws:kms")

    assert s3_error(error.value) == (501, "NotImplemented")


# ---------------------------------------------------------------- notifications


async def test_notification_escapes_unicode_and_percent_in_the_record_key_only(
    make_bucket: MakeBucket, s3_admin: Any, notifications: Notifications
) -> None:
    bucket = make_bucket()
    name = "ünï/50% off & x=1#?.txt"
    s3_admin.put_object(Bucket=bucket, Key=name, Body=BODY)

    [message] = await notifications(bucket, 1)

    assert message["Key"] == f"{bucket}/{name}"  # unescaped
    escaped = message["Records"][0]["s3"]["object"]["key"]
    assert escaped == "%C3%BCn%C3%AF%2F50%25+off+%26+x%3D1%23%3F.txt"
    assert escaped == urllib.parse.quote_plus(name)  # = Go's url.QueryEscape
    assert urllib.parse.unquote_plus(escaped) == name
