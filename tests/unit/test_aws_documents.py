"""The AWS documents a user copies: the JSON blocks of docs/production.md (marked
``<!-- aws-document: NAME -->``) and the files of deploy/aws/.

The IAM policies must grant exactly what the code needs: the botocore operations the S3, KMS
and SQS adapters call are found in the source, each maps to the IAM actions it requires
(:data:`ACTIONS`), and the policy's actions for that service must be that set — an operation
added to the code without its permission, or a permission no code uses, fails here.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import botocore.session
import pytest
import yaml
from botocore.validate import ParamValidator

from enforcer.config import load_settings

ROOT = Path(__file__).parents[2]
GUIDE = ROOT / "docs" / "production.md"
AWS = ROOT / "deploy" / "aws"
DOCUMENT = re.compile(
    r"^<!--\s*aws-document:\s*(?P<name>[\w-]+)\s*-->\s*\n```(?P<lang>\w+)\n(?P<body>.*?)^```",
    re.M | re.S,
)

#: botocore operation (as the code calls it) → the IAM actions it needs. S3 writes under SSE-KMS
#: make S3 call KMS as the caller: GenerateDataKey to write, Decrypt to read (and to complete a
#: multipart upload). HEAD shows retention and legal hold only to a caller allowed to read them;
#: a write carrying tags, retention or legal hold needs the matching Put* permission.
ACTIONS: dict[str, set[str]] = {
    # S3 (enforcer/storage)
    "head_object": {"s3:GetObject", "s3:GetObjectVersion", "s3:GetObjectRetention",
                    "s3:GetObjectLegalHold", "kms:Decrypt"},
    "get_object": {"s3:GetObject", "s3:GetObjectVersion", "kms:Decrypt"},
    "put_object": {"s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectRetention",
                   "s3:PutObjectLegalHold", "kms:GenerateDataKey"},
    "copy_object": {"s3:GetObject", "s3:GetObjectVersion", "s3:PutObject", "s3:GetObjectTagging",
                    "s3:GetObjectVersionTagging", "s3:PutObjectTagging", "s3:PutObjectRetention",
                    "s3:PutObjectLegalHold", "kms:Decrypt", "kms:GenerateDataKey"},
    "create_multipart_upload": {"s3:PutObject", "s3:PutObjectTagging", "s3:PutObjectRetention",
                                "s3:PutObjectLegalHold", "kms:GenerateDataKey"},
    "upload_part": {"s3:PutObject", "kms:GenerateDataKey"},
    "upload_part_copy": {"s3:PutObject", "s3:GetObject", "s3:GetObjectVersion", "kms:Decrypt"},
    "complete_multipart_upload": {"s3:PutObject", "kms:Decrypt"},
    "abort_multipart_upload": {"s3:AbortMultipartUpload"},
    "get_object_tagging": {"s3:GetObjectTagging", "s3:GetObjectVersionTagging"},
    "delete_object": {"s3:DeleteObjectVersion"},  # always with a version id
    "get_bucket_encryption": {"s3:GetEncryptionConfiguration"},
    "head_bucket": {"s3:ListBucket"},
    "list_objects_v2": {"s3:ListBucket"},
    "list_object_versions": {"s3:ListBucketVersions"},
    "list_buckets": {"s3:ListAllMyBuckets"},
    # KMS (enforcer/kms/aws.py)
    "generate_data_key": {"kms:GenerateDataKey"},
    "decrypt": {"kms:Decrypt"},
    "describe_key": {"kms:DescribeKey"},
    "list_keys": {"kms:ListKeys"},
    # SQS (enforcer/forward/sqs.py)
    "receive_message": {"sqs:ReceiveMessage"},
    "delete_message_batch": {"sqs:DeleteMessage"},
    "get_queue_attributes": {"sqs:GetQueueAttributes"},
}  # fmt: skip
#: Calls on ``_client`` that are not AWS operations (the KES adapter's httpx client, closing).
NOT_OPERATIONS = {"request", "aclose", "close"}
#: The lean path's operations (PascalCase in enforcer/storage/lean.py).
LEAN = {"HeadObject": "head_object", "GetObject": "get_object", "PutObject": "put_object",
        "GetObjectTagging": "get_object_tagging"}  # fmt: skip


def documents() -> dict[str, tuple[str, str]]:
    return {m["name"]: (m["lang"], m["body"]) for m in DOCUMENT.finditer(GUIDE.read_text())}


def policy(name: str) -> dict[str, Any]:
    lang, body = documents()[name]
    assert lang == "json", name
    document: dict[str, Any] = json.loads(body)
    assert document["Version"] == "2012-10-17", name
    for statement in document["Statement"]:
        assert statement["Effect"] in ("Allow", "Deny"), name
        assert statement.get("Resource"), name
        for action in _list(statement["Action"]):
            assert re.fullmatch(r"[a-z0-9-]+:[A-Za-z*]+", action), action
    return document


def _list(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else value


def actions(document: dict[str, Any], service: str) -> set[str]:
    return {
        action
        for statement in document["Statement"]
        for action in _list(statement["Action"])
        if action.startswith(service + ":")
    }


def operations(*paths: str) -> set[str]:
    """The botocore operations the code under ``paths`` calls."""
    found: set[str] = set()
    for path in paths:
        files = [ROOT / path] if path.endswith(".py") else sorted((ROOT / path).rglob("*.py"))
        for file in files:
            text = file.read_text()
            found |= set(re.findall(r"_client\.([a-z_0-9]+)\(", text)) - NOT_OPERATIONS
            found |= set(re.findall(r'_pages\(\s*"([a-z_0-9]+)"', text))
            lean = re.findall(r'"(\w+)", "(?:GET|HEAD|PUT|POST|DELETE)"', text)
            found |= {LEAN.get(o, o) for o in lean}  # an operation not in LEAN fails below
    return found


def needed(ops: set[str], service: str) -> set[str]:
    unknown = ops - set(ACTIONS)
    assert not unknown, f"no IAM actions for {unknown}: add them to ACTIONS and the policy"
    return {a for op in ops for a in ACTIONS[op] if a.startswith(service + ":")}


def test_the_adapters_call_the_operations_the_table_knows() -> None:
    storage = operations("enforcer/storage")
    wanted = {"head_object", "put_object", "copy_object", "list_buckets", "list_objects_v2",
              "list_object_versions", "get_bucket_encryption", "delete_object"}  # fmt: skip
    assert wanted <= storage
    assert set(ACTIONS) >= storage
    assert operations("enforcer/kms/aws.py") == {"generate_data_key", "decrypt", "describe_key",
                                                 "list_keys"}  # fmt: skip
    assert operations("enforcer/forward/sqs.py") == {"receive_message", "delete_message_batch",
                                                     "get_queue_attributes"}  # fmt: skip


def test_the_enforcer_policy_grants_exactly_what_the_code_calls() -> None:
    document = policy("enforcer-iam")
    ops = operations("enforcer/storage", "enforcer/kms/aws.py")
    assert actions(document, "s3") == needed(ops, "s3")
    assert actions(document, "kms") == needed(ops, "kms")
    by_sid = {s["Sid"]: s for s in document["Statement"]}
    assert by_sid["DetectRevokedCredentials"]["Action"] == ["s3:ListAllMyBuckets"]
    inventory = by_sid["ReadInventoryReports"]
    assert inventory["Action"] == ["s3:GetObject"]
    assert all(r.startswith("arn:aws:s3:::") and r.endswith("/*") for r in inventory["Resource"])


def test_the_forwarder_policy_grants_exactly_what_it_calls() -> None:
    document = policy("forwarder-iam")
    assert actions(document, "sqs") == needed(operations("enforcer/forward/sqs.py"), "sqs")
    assert {a.split(":")[0] for s in document["Statement"] for a in _list(s["Action"])} == {"sqs"}


def test_the_key_policy_lets_the_enforcer_use_and_describe_the_key() -> None:
    document = policy("kms-key-policy")
    role = "arn:aws:iam::111122223333:role/sse-enforcer"
    granted = {
        action
        for statement in document["Statement"]
        if statement["Principal"] == {"AWS": role}
        for action in _list(statement["Action"])
    }
    assert {"kms:GenerateDataKey", "kms:Decrypt", "kms:DescribeKey"} <= granted
    via_s3 = [s for s in document["Statement"] if "Condition" in s]
    assert via_s3 and all(
        s["Condition"]["StringEquals"]["kms:ViaService"].startswith("s3.") for s in via_s3
    )


@pytest.mark.parametrize(
    ("name", "wanted", "refused"),
    [
        ("enforcer-msk-iam",
         {"Connect", "DescribeTopic", "ReadData", "WriteData", "WriteDataIdempotently",
          "DescribeGroup", "AlterGroup", "CreateTopic", "DescribeTransactionalId",
          "AlterTransactionalId"}, set()),
        ("forwarder-msk-iam", {"Connect", "DescribeTopic", "WriteData", "WriteDataIdempotently"},
         {"ReadData", "AlterGroup", "CreateTopic", "AlterTransactionalId"}),
    ],
)  # fmt: skip
def test_the_msk_policies(name: str, wanted: set[str], refused: set[str]) -> None:
    document = policy(name)
    granted = {a.removeprefix("kafka-cluster:") for a in actions(document, "kafka-cluster")}
    assert wanted <= granted and not refused & granted
    for statement in document["Statement"]:
        for resource in _list(statement["Resource"]):
            assert re.fullmatch(
                r"arn:aws:kafka:[a-z0-9-]+:\d{12}:(cluster|topic|group|transactional-id)/.+",
                resource,
            )


def test_the_aws_settings_block_loads(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    lang, body = documents()["settings"]
    assert lang == "shell"
    names = []
    for line in body.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, value = line.partition("=")
        if value.startswith("/"):  # a mounted file: a stand-in must exist
            stand_in = tmp_path / Path(value).name
            stand_in.write_text("rules: []\n")
            value = str(stand_in)
        monkeypatch.setenv(name, value)
        names.append(name)
    assert len(names) == len(set(names))
    settings = load_settings()  # an unknown or invalid variable fails here
    assert (settings.kms.kind, settings.kms.region) == ("aws", settings.s3.region)
    assert settings.s3.endpoint_url is None and settings.s3.access_key_id is None
    assert settings.kafka.sasl_mechanism == "OAUTHBEARER" and settings.kafka.sasl_aws_region
    assert settings.forward.queue_url and settings.forward.queue_url.startswith("https://sqs.")


def test_the_bucket_notification_is_one_s3_accepts() -> None:
    configuration = json.loads((AWS / "bucket-notification.json").read_text())
    model = botocore.session.get_session().get_service_model("s3")
    shape = model.operation_model("PutBucketNotificationConfiguration").input_shape
    report = ParamValidator().validate(
        {"Bucket": "finance-archive", "NotificationConfiguration": configuration}, shape
    )
    assert not report.has_errors(), report.generate_report()
    [queue] = configuration["QueueConfigurations"]
    assert queue["Events"] == ["s3:ObjectCreated:*"]
    assert queue["QueueArn"].startswith("arn:aws:sqs:")


def test_the_queue_lets_s3_send_and_has_a_redrive_policy() -> None:
    document = json.loads((AWS / "sqs-queue-policy.json").read_text())
    notification = json.loads((AWS / "bucket-notification.json").read_text())
    [s3] = [s for s in document["Statement"] if s["Principal"] == {"Service": "s3.amazonaws.com"}]
    assert s3["Action"] == "sqs:SendMessage"
    assert s3["Resource"] == notification["QueueConfigurations"][0]["QueueArn"]
    assert s3["Condition"]["ArnLike"]["aws:SourceArn"].startswith("arn:aws:s3:::")
    assert re.fullmatch(r"\d{12}", s3["Condition"]["StringEquals"]["aws:SourceAccount"])
    attributes = json.loads((AWS / "queue-attributes.json").read_text())
    redrive = json.loads(attributes["RedrivePolicy"])
    assert int(redrive["maxReceiveCount"]) >= 5
    assert int(attributes["VisibilityTimeout"]) >= 60
    assert json.loads((AWS / "eventbridge-rule.json").read_text())["detail-type"] == [
        "Object Created"
    ]


def test_the_forwarder_manifest_validates_and_its_settings_load(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import kubernetes_validate

    documents = list(yaml.safe_load_all((AWS / "forwarder.yaml").read_text()))
    for document in documents:
        kubernetes_validate.validate(document, "1.30.0", strict=True)
    kinds = {d["kind"]: d for d in documents}
    config = kinds["ConfigMap"]["data"]
    for name, value in config.items():
        monkeypatch.setenv(name, value)
    settings = load_settings()
    assert settings.forward.queue_url and settings.health_port == 8080
    pod = kinds["Deployment"]["spec"]["template"]["spec"]
    assert pod["containers"][0]["args"] == ["forward", "sqs"]
    assert pod["terminationGracePeriodSeconds"] > settings.shutdown_timeout
    assert pod["serviceAccountName"] == kinds["ServiceAccount"]["metadata"]["name"]
