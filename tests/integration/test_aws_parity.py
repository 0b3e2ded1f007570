"""AWS parity on moto's server mode: key ARNs, ids and aliases compare exactly.

moto echoes the SSE-KMS key id in whatever form the writer sent (alias, id or ARN), so the
verdict depends on normalisation through DescribeKey — the same path real AWS takes with aliases.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from support import MOTO_REGION, moto_client

from enforcer.app import open_runtime
from enforcer.config import load_settings
from enforcer.core.events import ObjectEvent
from enforcer.core.policy import BucketDefault, Mode
from enforcer.core.verdict import Action, Verdict
from enforcer.errors import StorageRejected


async def test_alias_policy_against_every_key_form(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kms, s3 = moto_client("kms", moto_endpoint), moto_client("s3", moto_endpoint)
    required = kms.create_key()["KeyMetadata"]
    other = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName="alias/finance", TargetKeyId=required["KeyId"])
    s3.create_bucket(Bucket="fin")
    body = b"quarterly numbers"
    writes = {
        "by-alias": {"SSEKMSKeyId": "alias/finance"},
        "by-arn": {"SSEKMSKeyId": required["Arn"]},
        "by-id": {"SSEKMSKeyId": required["KeyId"]},
        "other-key": {"SSEKMSKeyId": other["Arn"]},
    }
    for key, extra in writes.items():
        s3.put_object(Bucket="fin", Key=key, Body=body, ServerSideEncryption="aws:kms", **extra)
    s3.put_object(Bucket="fin", Key="plain", Body=body, Metadata={"k": "v"})
    policy = tmp_path / "policy.yaml"
    policy.write_text("rules:\n  - {bucket: fin, key: alias/finance}\n")
    for name, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                        "ENFORCER_S3__ENDPOINT_URL": moto_endpoint,
                        "ENFORCER_S3__ACCESS_KEY_ID": "testing",
                        "ENFORCER_S3__SECRET_ACCESS_KEY": "testing",
                        "ENFORCER_KMS__KIND": "aws", "ENFORCER_KMS__ENDPOINT": moto_endpoint,
                        "ENFORCER_KMS__REGION": MOTO_REGION,
                        "ENFORCER_POLICY_FILE": str(policy)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)

    outcomes = {}
    async with open_runtime(load_settings(), Mode.ENFORCE) as runtime:
        for key in [*writes, "plain"]:
            event = ObjectEvent(event_id=key, event_name="ObjectCreated:Put", bucket="fin",
                                key=key, source_format="s3")  # fmt: skip
            outcomes[key] = await runtime.pipeline.handle(event)

    assert {k: (o.verdict, o.action) for k, o in outcomes.items()} == {
        "by-alias": (Verdict.COMPLIANT, Action.NONE),
        "by-arn": (Verdict.COMPLIANT, Action.NONE),
        "by-id": (Verdict.COMPLIANT, Action.NONE),
        "other-key": (Verdict.WRONG_KEY, Action.REENCRYPTED),
        "plain": (Verdict.PLAINTEXT, Action.REENCRYPTED),
    }
    for key in ("other-key", "plain"):
        head = s3.head_object(Bucket="fin", Key=key)
        assert head["ServerSideEncryption"] == "aws:kms"
        assert s3.get_object(Bucket="fin", Key=key)["Body"].read() == body
    assert s3.head_object(Bucket="fin", Key="plain")["Metadata"] == {"k": "v"}


async def test_copy_if_match_rewrites_server_side_and_keeps_attributes(
    moto_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENFORCER_S3__COPY_IF_MATCH=true: one in-place CopyObject (IfMatch + CopySourceIfMatch)
    instead of GET + PUT. moto does not check either condition on a copy (pinned below), so the
    lost-update guarantee of this path is AWS's; here it is the attributes and the key."""
    kms, s3 = moto_client("kms", moto_endpoint), moto_client("s3", moto_endpoint)
    required = kms.create_key()["KeyMetadata"]
    s3.create_bucket(Bucket="copies")
    body = b"copied server-side"
    s3.put_object(Bucket="copies", Key="plain", Body=body, Metadata={"k": "v"},
                  ContentType="text/x-test", Tagging="team=fin")  # fmt: skip
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - {{bucket: copies, key: {required['Arn']}}}\n")
    for name, value in {"ENFORCER_S3__ENDPOINT_URL": moto_endpoint,
                        "ENFORCER_S3__ACCESS_KEY_ID": "testing",
                        "ENFORCER_S3__SECRET_ACCESS_KEY": "testing",
                        "ENFORCER_S3__COPY_IF_MATCH": "true",
                        "ENFORCER_POLICY_FILE": str(policy)}.items():  # fmt: skip
        monkeypatch.setenv(name, value)

    async with open_runtime(load_settings(), Mode.ENFORCE) as runtime:
        assert runtime.storage.copy_if_match
        event = ObjectEvent(event_id="p", event_name="ObjectCreated:Put", bucket="copies",
                            key="plain", source_format="s3")  # fmt: skip
        outcome = await runtime.pipeline.handle(event)

    assert (outcome.verdict, outcome.action) == (Verdict.PLAINTEXT, Action.REENCRYPTED)
    head = s3.head_object(Bucket="copies", Key="plain")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == ("aws:kms", required["Arn"])
    assert (head["Metadata"], head["ContentType"]) == ({"k": "v"}, "text/x-test")
    assert s3.get_object_tagging(Bucket="copies", Key="plain")["TagSet"] == [
        {"Key": "team", "Value": "fin"}
    ]
    assert s3.get_object(Bucket="copies", Key="plain")["Body"].read() == body
    # moto's CopyObject ignores a wrong destination If-Match (AWS answers 412).
    s3.copy_object(Bucket="copies", Key="plain", CopySource={"Bucket": "copies", "Key": "plain"},
                   IfMatch='"0000"', MetadataDirective="REPLACE")  # fmt: skip


async def test_dual_layer_sse_kms_is_asked_for_never_downgraded(
    moto_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DSSE-KMS (``aws:kms:dsse``) on moto, pinned: moto takes it as a bucket default and on a
    PUT, applies the default, and reports the algorithm — but, unlike AWS, no key id with it.
    What moto can show: the default is read as dual-layer, and the enforcer's rewrite asks for
    ``aws:kms:dsse`` (the object reads back dual-layer, not ``aws:kms``). Without the key id the
    verification then fails, as it must when a store does not say which key it used; the
    verdicts on dual-layer objects are unit-tested (test_verdict, test_pipeline)."""
    kms, s3 = moto_client("kms", moto_endpoint), moto_client("s3", moto_endpoint)
    key = kms.create_key()["KeyMetadata"]
    bucket = f"dsse-{uuid.uuid4().hex[:8]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="plain", Body=b"before the default")
    rule = {"SSEAlgorithm": "aws:kms:dsse", "KMSMasterKeyID": key["Arn"]}
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
    )
    s3.put_object(Bucket=bucket, Key="new", Body=b"after")
    new = s3.head_object(Bucket=bucket, Key="new")
    assert new["ServerSideEncryption"] == "aws:kms:dsse"
    assert "SSEKMSKeyId" not in new  # moto; AWS names the key
    for name, value in {"ENFORCER_S3__ENDPOINT_URL": moto_endpoint,
                        "ENFORCER_S3__ACCESS_KEY_ID": "testing",
                        "ENFORCER_S3__SECRET_ACCESS_KEY": "testing"}.items():  # fmt: skip
        monkeypatch.setenv(name, value)

    async with open_runtime(load_settings(), Mode.ENFORCE) as runtime:
        assert await runtime.storage.bucket_default_key(bucket) == BucketDefault(key["Arn"], True)
        event = ObjectEvent(event_id="p", event_name="ObjectCreated:Put", bucket=bucket,
                            key="plain", source_format="s3")  # fmt: skip
        with pytest.raises(StorageRejected, match=r"verification failed.*aws:kms:dsse"):
            await runtime.pipeline.handle(event)

    head = s3.head_object(Bucket=bucket, Key="plain")
    assert head["ServerSideEncryption"] == "aws:kms:dsse"  # asked for dual-layer, not aws:kms
    assert s3.get_object(Bucket=bucket, Key="plain")["Body"].read() == b"before the default"
