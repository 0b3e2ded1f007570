"""The lean S3 request path answers exactly as aiobotocore does, on MinIO and on moto.

The same requests go through both paths: HEAD of objects with every preserved attribute, SSE-KMS,
SSE-S3, odd key names and old versions; GET of exact versions; PutObject with the rewrite's
parameters; GetObjectTagging. The responses must be equal field by field (botocore's own
``ResponseMetadata`` aside), an error status must raise the same ``ClientError`` code on both
paths, and whatever the lean path would not send as botocore does must raise ``NotLean`` before
sending, so the transport sends it through aiobotocore instead. Every test runs with both SigV4
signers of the lean path (the AWS Common Runtime's and botocore's pure-Python one): the stores
must accept the same requests signed either way.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.exceptions import ClientError
from support import MakeBucket, MakeKey, StackEnv, enforcer_s3_settings, moto_client

from enforcer.config import S3Settings
from enforcer.storage.lean import LeanS3, NotLean
from enforcer.storage.transport import open_s3_transport

ODD_KEY = "dir/ünï cøde key ?#%+=&;,'()*!~$@[]{}|^`.bin"
ATTRIBUTES: dict[str, Any] = {
    "ContentType": "text/csv; charset=utf-8",
    "ContentEncoding": "gzip",
    "ContentDisposition": 'attachment; filename="q3.csv"',
    "ContentLanguage": "de-CH",
    "CacheControl": "max-age=60, private",
    "WebsiteRedirectLocation": "/elsewhere",
    "Metadata": {"Owner": "alice", "project-id": "42"},
}


def without_metadata(response: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in response.items() if k != "ResponseMetadata"}


async def head_both(
    client: Any, lean: LeanS3, bucket: str, key: str, version: str | None = None
) -> None:
    params = {"Bucket": bucket, "Key": key} | ({"VersionId": version} if version else {})
    expected = without_metadata(await client.head_object(**params))
    assert await lean.head_object(bucket, key, version) == expected


async def read_lean(lean: LeanS3, bucket: str, key: str, version: str | None, etag: str) -> bytes:
    async with lean.get_object(bucket, key, version, etag) as stream:
        return await stream.read()


def assert_same_error(lean: ClientError, client: ClientError, status: int) -> None:
    """The lean path's error is botocore's: same code, message and status."""
    assert lean.response["Error"]["Code"] == client.response["Error"]["Code"]
    assert lean.response["Error"]["Message"] == client.response["Error"]["Message"]
    assert lean.response["ResponseMetadata"]["HTTPStatusCode"] == status
    assert client.response["ResponseMetadata"]["HTTPStatusCode"] == status


SIGNERS = ["crt", "python"]


@pytest.fixture(params=SIGNERS)
def signer(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def paths(stack: StackEnv, signer: str) -> AsyncIterator[tuple[Any, LeanS3]]:
    settings = enforcer_s3_settings(stack).model_copy(update={"crt_signer": signer == "crt"})
    async with open_s3_transport(settings.options()) as transport:
        assert transport.lean is not None, "the lean path is on by default"
        assert transport.lean.signer == signer
        yield transport.client, transport.lean


async def test_head_get_and_tags_match_aiobotocore_on_minio(
    paths: tuple[Any, LeanS3], s3_admin: Any, make_bucket: MakeBucket, make_key: MakeKey
) -> None:
    client, lean = paths
    ek = make_key()
    bucket = make_bucket(versioned=True, notify=False)
    expires = datetime(2031, 1, 2, 3, 4, 5, tzinfo=UTC)
    s3_admin.put_object(Bucket=bucket, Key="attrs", Body=b"v1", Expires=expires,
                        Tagging="a=1&b=x%20y", **ATTRIBUTES)  # fmt: skip
    newer = s3_admin.put_object(Bucket=bucket, Key="attrs", Body=b"version two")
    s3_admin.put_object(Bucket=bucket, Key=ODD_KEY, Body=b"odd", ServerSideEncryption="aws:kms",
                        SSEKMSKeyId=ek)  # fmt: skip
    s3_admin.put_object(Bucket=bucket, Key="sse-s3", Body=b"s3", ServerSideEncryption="AES256")
    versions = s3_admin.list_object_versions(Bucket=bucket, Prefix="attrs")["Versions"]
    older = next(v for v in versions if not v["IsLatest"])

    await head_both(client, lean, bucket, "attrs")
    await head_both(client, lean, bucket, "attrs", older["VersionId"])
    await head_both(client, lean, bucket, ODD_KEY)
    await head_both(client, lean, bucket, "sse-s3")
    assert await lean.head_object(bucket, "no-such-object", None) is None

    old = await lean.head_object(bucket, "attrs", older["VersionId"])
    assert old is not None and old["TagCount"] == 2 and old["Metadata"]["owner"] == "alice"
    assert await read_lean(lean, bucket, "attrs", older["VersionId"], old["ETag"]) == b"v1"
    assert await read_lean(lean, bucket, ODD_KEY, None, "*") == b"odd"
    with pytest.raises(ClientError) as lean_412:  # a newer write: the same error on both paths
        await read_lean(lean, bucket, "attrs", None, old["ETag"])
    with pytest.raises(ClientError) as client_412:
        await client.get_object(Bucket=bucket, Key="attrs", IfMatch=old["ETag"])
    assert_same_error(lean_412.value, client_412.value, 412)
    assert newer["ETag"] != old["ETag"]

    tags = await lean.get_object_tagging(bucket, "attrs", older["VersionId"])
    expected = await client.get_object_tagging(Bucket=bucket, Key="attrs",
                                               VersionId=older["VersionId"])  # fmt: skip
    assert (
        tags["TagSet"]
        == expected["TagSet"]
        == [
            {"Key": "a", "Value": "1"},
            {"Key": "b", "Value": "x y"},
        ]
    )


async def test_put_matches_aiobotocore_on_minio(
    paths: tuple[Any, LeanS3], s3_admin: Any, make_bucket: MakeBucket, make_key: MakeKey
) -> None:
    client, lean = paths
    ek = make_key()
    bucket = make_bucket(versioned=True, notify=False)
    body = b"rewritten body"
    md5 = base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()
    params = ATTRIBUTES | {"Tagging": "team=blue", "ServerSideEncryption": "aws:kms",
                           "SSEKMSKeyId": ek, "ContentMD5": md5}  # fmt: skip
    written = {}
    for key, path in (("by-lean", "lean"), ("by-client", "client")):
        current = s3_admin.put_object(Bucket=bucket, Key=key, Body=b"plaintext")
        if path == "lean":
            response = await lean.put_object(
                bucket, key, body, params | {"IfMatch": current["ETag"]}
            )
        else:
            response = without_metadata(await client.put_object(
                Bucket=bucket, Key=key, Body=body, IfMatch=current["ETag"], **params))  # fmt: skip
        written[path] = response
        head = s3_admin.head_object(Bucket=bucket, Key=key)
        assert (response["ETag"], response["VersionId"]) == (head["ETag"], head["VersionId"])
    assert written["lean"].keys() == written["client"].keys()
    for field in ("ServerSideEncryption", "SSEKMSKeyId"):
        assert written["lean"][field] == written["client"][field]
    assert written["lean"]["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"

    heads = {k: s3_admin.head_object(Bucket=bucket, Key=k) for k in ("by-lean", "by-client")}
    varying = {"ETag", "VersionId", "LastModified", "ResponseMetadata"}
    assert {k: v for k, v in heads["by-lean"].items() if k not in varying} == {
        k: v for k, v in heads["by-client"].items() if k not in varying
    }
    assert s3_admin.get_object(Bucket=bucket, Key="by-lean")["Body"].read() == body

    stale = heads["by-client"]["ETag"]
    s3_admin.put_object(Bucket=bucket, Key="by-client", Body=b"a user's newer write")
    with pytest.raises(ClientError) as lean_412:
        await lean.put_object(bucket, "by-client", body, params | {"IfMatch": stale})
    with pytest.raises(ClientError) as client_412:
        await client.put_object(Bucket=bucket, Key="by-client", Body=body, IfMatch=stale,
                                **params)  # fmt: skip
    assert_same_error(lean_412.value, client_412.value, 412)
    with pytest.raises(NotLean, match="parameter ObjectLockRetainUntilDate"):
        await lean.put_object(
            bucket, "by-lean", body, {"ObjectLockRetainUntilDate": datetime.now(UTC)}
        )
    with pytest.raises(NotLean, match="value of Metadata"):
        await lean.put_object(bucket, "by-lean", body, {"Metadata": {"city": "Zürich"}})


async def test_lean_path_matches_aiobotocore_on_moto(moto_endpoint: str, signer: str) -> None:
    s3, kms = moto_client("s3", moto_endpoint), moto_client("kms", moto_endpoint)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    bucket = f"lean-parity-{signer}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    s3.put_object(Bucket=bucket, Key="attrs", Body=b"v1", Tagging="a=1", **ATTRIBUTES)
    s3.put_object(Bucket=bucket, Key=ODD_KEY, Body=b"odd", ServerSideEncryption="aws:kms",
                  SSEKMSKeyId=key_id)  # fmt: skip
    settings = S3Settings(endpoint_url=moto_endpoint, access_key_id="testing",
                          secret_access_key="testing", crt_signer=signer == "crt")  # fmt: skip
    async with open_s3_transport(settings.options()) as transport:
        client, lean = transport.client, transport.lean
        assert lean is not None and lean.signer == signer
        await head_both(client, lean, bucket, "attrs")
        await head_both(client, lean, bucket, ODD_KEY)
        assert await lean.head_object(bucket, "no-such-object", None) is None
        head = await lean.head_object(bucket, "attrs", None)
        assert head is not None
        assert await read_lean(lean, bucket, "attrs", head["VersionId"], head["ETag"]) == b"v1"
        tags = await lean.get_object_tagging(bucket, "attrs", head["VersionId"])
        assert tags["TagSet"] == [{"Key": "a", "Value": "1"}]
        params = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": key_id, "IfMatch": head["ETag"]}
        response = await lean.put_object(bucket, "attrs", b"v2", params)
        after = without_metadata(await client.head_object(Bucket=bucket, Key="attrs"))
        assert (response["ETag"], response["VersionId"]) == (after["ETag"], after["VersionId"])
        assert after["ServerSideEncryption"] == response["ServerSideEncryption"] == "aws:kms"


async def test_the_lean_path_signs_with_the_default_credential_chain(
    stack: StackEnv,
    s3_admin: Any,
    make_bucket: MakeBucket,
    monkeypatch: pytest.MonkeyPatch,
    signer: str,
) -> None:
    """No keys in the settings: the session's provider chain (here the environment; on
    Kubernetes web identity), the same credentials object the aiobotocore client signs with."""
    env = stack.enforcer_env
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", env["ENFORCER_S3__ACCESS_KEY_ID"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", env["ENFORCER_S3__SECRET_ACCESS_KEY"])
    bucket = make_bucket(notify=False)
    s3_admin.put_object(Bucket=bucket, Key="k", Body=b"x")
    settings = S3Settings(endpoint_url=env["ENFORCER_S3__ENDPOINT_URL"], crt_signer=signer == "crt")
    async with open_s3_transport(settings.options()) as transport:
        lean = transport.lean
        assert lean is not None and lean.signer == signer
        head = await lean.head_object(bucket, "k", None)
        assert head is not None and head["ContentLength"] == 1
