"""The test bed is real: MinIO encrypts through KES, publishes to Kafka, and the enforcer's
identities have exactly the rights docs/local-stack.md gives them. Each test can fail."""

from __future__ import annotations

import base64
import urllib.parse
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError
from support import (
    MakeBucket,
    MakeKey,
    Notifications,
    StackEnv,
    component_stopped,
    kes_client,
    restart_component,
    s3_client,
    s3_error,
)


def _put_kms(s3: Any, bucket: str, key: str, ek: str, body: bytes = b"payload") -> Any:
    return s3.put_object(
        Bucket=bucket, Key=key, Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=ek
    )


async def test_default_kms_put_is_encrypted_and_published(
    make_key: MakeKey, make_bucket: MakeBucket, s3_admin: Any, notifications: Notifications
) -> None:
    ek = make_key()
    bucket = make_bucket(default_key=ek)
    name = "dir/a b+c.txt"

    s3_admin.put_object(Bucket=bucket, Key=name, Body=b"hello")

    head = s3_admin.head_object(Bucket=bucket, Key=name)
    assert head["ServerSideEncryption"] == "aws:kms"
    assert head["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
    [message] = await notifications(bucket, 1)
    assert message["EventName"].startswith("s3:ObjectCreated:")
    assert message["Key"] == f"{bucket}/{name}"
    [record] = message["Records"]
    assert record["s3"]["bucket"]["name"] == bucket
    assert record["s3"]["object"]["key"] == "dir%2Fa+b%2Bc.txt"
    assert urllib.parse.unquote_plus(record["s3"]["object"]["key"]) == name


@pytest.mark.stops_stack
def test_kes_outage_fails_kms_reads_and_writes_until_kes_is_back(
    make_key: MakeKey, make_bucket: MakeBucket, s3_admin: Any, kes_admin: httpx.Client
) -> None:
    ek = make_key()
    bucket = make_bucket(notify=False)
    _put_kms(s3_admin, bucket, "old", ek)

    with component_stopped("kes"):
        with pytest.raises(ClientError) as put_error:
            _put_kms(s3_admin, bucket, "new", ek)
        assert s3_error(put_error.value) == (500, "kms:KeyGenerationFailed")
        with pytest.raises(ClientError) as get_error:
            s3_admin.get_object(Bucket=bucket, Key="old")
        assert s3_error(get_error.value) == (500, "kms:DecryptionFailed")
        # Observed: HEAD needs no KMS, so inspection keeps working through an outage.
        assert s3_admin.head_object(Bucket=bucket, Key="old")["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"

    assert _put_kms(s3_admin, bucket, "new", ek)["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
    assert s3_admin.get_object(Bucket=bucket, Key="old")["Body"].read() == b"payload"
    assert kes_admin.get(f"/v1/key/describe/{ek}").json()["name"] == ek


@pytest.mark.stops_stack
def test_kes_restart_keeps_keys(
    make_key: MakeKey, make_bucket: MakeBucket, s3_admin: Any, kes_admin: httpx.Client
) -> None:
    ek = make_key()
    bucket = make_bucket(notify=False)
    _put_kms(s3_admin, bucket, "before", ek, body=b"sealed before the restart")

    restart_component("kes")

    assert kes_admin.get(f"/v1/key/describe/{ek}").status_code == 200
    assert ek in kes_admin.get(f"/v1/key/list/{ek}").json()["names"]
    # Same key material, not just the same name: the old DEK still unwraps.
    body = s3_admin.get_object(Bucket=bucket, Key="before")["Body"].read()
    assert body == b"sealed before the restart"


@pytest.fixture
def enforcer_s3(stack: StackEnv) -> Any:
    """S3 as the enforcer's least-privilege MinIO user."""
    env = stack.enforcer_env
    return s3_client(
        env["ENFORCER_S3__ENDPOINT_URL"],
        env["ENFORCER_S3__ACCESS_KEY_ID"],
        env["ENFORCER_S3__SECRET_ACCESS_KEY"],
        env["ENFORCER_S3__REGION"],
    )


def test_enforcer_s3_user_reads_and_rewrites_objects(
    make_key: MakeKey, make_bucket: MakeBucket, s3_admin: Any, enforcer_s3: Any
) -> None:
    ek = make_key()
    bucket = make_bucket(default_key=ek, notify=False)
    s3_admin.put_object(Bucket=bucket, Key="o", Body=b"data")

    assert enforcer_s3.head_object(Bucket=bucket, Key="o")["ContentLength"] == 4
    assert enforcer_s3.get_object(Bucket=bucket, Key="o")["Body"].read() == b"data"
    put = _put_kms(enforcer_s3, bucket, "o", ek, body=b"data")
    assert put["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
    config = enforcer_s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert config["Rules"][0]["ApplyServerSideEncryptionByDefault"]["KMSMasterKeyID"] == ek


def test_enforcer_s3_user_cannot_create_or_delete_buckets(
    make_bucket: MakeBucket, enforcer_s3: Any, s3_admin: Any
) -> None:
    bucket = make_bucket(notify=False)

    with pytest.raises(ClientError) as create_error:
        enforcer_s3.create_bucket(Bucket=f"{bucket}-x")
    with pytest.raises(ClientError) as delete_error:
        enforcer_s3.delete_bucket(Bucket=bucket)

    assert s3_error(create_error.value) == (403, "AccessDenied")
    assert s3_error(delete_error.value) == (403, "AccessDenied")
    s3_admin.head_bucket(Bucket=bucket)


def test_enforcer_s3_user_can_delete_an_exact_version(
    make_bucket: MakeBucket, enforcer_s3: Any, s3_admin: Any
) -> None:
    bucket = make_bucket(versioned=True, notify=False)
    old = s3_admin.put_object(Bucket=bucket, Key="o", Body=b"old")["VersionId"]
    s3_admin.put_object(Bucket=bucket, Key="o", Body=b"new")

    enforcer_s3.delete_object(Bucket=bucket, Key="o", VersionId=old)

    versions = s3_admin.list_object_versions(Bucket=bucket)["Versions"]
    assert [v["VersionId"] for v in versions if v["VersionId"] == old] == []


def test_enforcer_kes_identity_generates_but_cannot_create_keys(
    stack: StackEnv, make_key: MakeKey
) -> None:
    ek = make_key()
    env = stack.enforcer_env
    context = base64.b64encode(b'{"bucket":"bucket/object"}').decode()

    cert, key = env["ENFORCER_KMS__CLIENT_CERT"], env["ENFORCER_KMS__CLIENT_KEY"]

    with kes_client(stack, cert, key) as kes:
        generated = kes.put(f"/v1/key/generate/{ek}", json={"context": context})
        created = kes.put(f"/v1/key/create/{ek}-x")

    assert generated.status_code == 200
    assert len(base64.b64decode(generated.json()["plaintext"])) == 32
    assert generated.json()["ciphertext"]
    assert created.status_code == 403
