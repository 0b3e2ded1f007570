"""The AWS path end to end: S3 on moto's server → moto's own S3 → SQS notification →
``enforcer forward sqs`` → the local stack's Kafka → ``enforcer run`` against moto's S3 and
KMS, which makes the object compliant. Also: the EventBridge and SNS routes onto the same queue,
an unreadable message dead-lettered by the enforcer, a clean SIGTERM during the long poll, and
the start-time checks (a queue or topic that does not exist is exit 2).

moto delivers bucket notifications to SQS (and to SNS and EventBridge) synchronously during the
PUT, in the message shape AWS documents (tests/data/sqs-s3-event.json pins a real one); it also
sends ``s3:TestEvent`` when the notification configuration is saved, as AWS does.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from harness import read_raw, read_topic
from support import MOTO_CREDENTIALS, MOTO_REGION, StackEnv, moto_client

from enforcer.app import run_service
from enforcer.config import Settings, load_settings
from enforcer.core.events import ObjectEvent, parse_message
from enforcer.core.policy import Mode
from enforcer.forward.service import run_forwarder

ENFORCER = Path(sys.executable).with_name("enforcer")
ACCOUNT = "123456789012"  # moto's account


@dataclass
class AwsPath:
    """One test's queue, bucket, key and topics on moto and the stack's Kafka."""

    moto: str
    stack: StackEnv
    tag: str
    queue_url: str
    queue_arn: str
    bucket: str

    @property
    def topic(self) -> str:
        return f"test-aws-events-{self.tag}"

    def env(self, **extra: str) -> dict[str, str]:
        """The settings of both commands: Kafka of the stack, S3/KMS/SQS of moto."""
        return {
            "AWS_ACCESS_KEY_ID": MOTO_CREDENTIALS["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": MOTO_CREDENTIALS["aws_secret_access_key"],
            "ENFORCER_KAFKA__BOOTSTRAP_SERVERS": self.stack.kafka_bootstrap,
            "ENFORCER_KAFKA__TOPICS": self.topic,
            "ENFORCER_KAFKA__GROUP_ID": f"test-aws-{self.tag}",
            "ENFORCER_KAFKA__AUDIT_TOPIC": f"test-aws-audit-{self.tag}",
            "ENFORCER_KAFKA__DLQ_TOPIC": f"test-aws-dlq-{self.tag}",
            "ENFORCER_S3__ENDPOINT_URL": self.moto,
            "ENFORCER_S3__ACCESS_KEY_ID": MOTO_CREDENTIALS["aws_access_key_id"],
            "ENFORCER_S3__SECRET_ACCESS_KEY": MOTO_CREDENTIALS["aws_secret_access_key"],
            "ENFORCER_KMS__KIND": "aws",
            "ENFORCER_KMS__ENDPOINT": self.moto,
            "ENFORCER_KMS__REGION": MOTO_REGION,
            "ENFORCER_FORWARD__REGION": MOTO_REGION,
            "ENFORCER_FORWARD__WAIT_TIME": "1",
            "ENFORCER_BUCKET_DEFAULT_TTL": "0",
            **extra,
        }

    def settings(self, monkeypatch: pytest.MonkeyPatch, **extra: str) -> Settings:
        for name, value in self.env(**extra).items():
            monkeypatch.setenv(name, value)
        return load_settings()


async def create_topic(bootstrap: str, topic: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 3, 1)])
    finally:
        await admin.close()


@pytest.fixture
async def aws(moto_endpoint: str, stack: StackEnv) -> AwsPath:
    tag = uuid.uuid4().hex[:10]
    sqs, s3 = moto_client("sqs", moto_endpoint), moto_client("s3", moto_endpoint)
    queue_url = sqs.create_queue(QueueName=f"events-{tag}")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    bucket = f"fin-{tag}"
    s3.create_bucket(Bucket=bucket)
    path = AwsPath(moto_endpoint, stack, tag, queue_url, arn["Attributes"]["QueueArn"], bucket)
    await create_topic(stack.kafka_bootstrap, path.topic)
    return path


def queue_is_empty(moto: str, queue_url: str) -> bool:
    attributes = moto_client("sqs", moto).get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return all(value == "0" for value in attributes.values())


async def test_an_s3_put_reaches_the_enforcer_through_sqs_and_kafka(
    aws: AwsPath, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, kms, sqs = (moto_client(n, aws.moto) for n in ("s3", "kms", "sqs"))
    required = kms.create_key()["KeyMetadata"]
    kms.create_alias(AliasName=f"alias/fin-{aws.tag}", TargetKeyId=required["KeyId"])
    queue = {"QueueArn": aws.queue_arn, "Events": ["s3:ObjectCreated:*"]}
    s3.put_bucket_notification_configuration(  # moto, like AWS, sends s3:TestEvent now
        Bucket=aws.bucket, NotificationConfiguration={"QueueConfigurations": [queue]}
    )
    key, body = "reports/Q4 2026/ledger + notes.csv", b"account,amount\n1,100\n"
    s3.put_object(Bucket=aws.bucket, Key=key, Body=body, ContentType="text/csv")
    sqs.send_message(QueueUrl=aws.queue_url, MessageBody="not an S3 event")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - {{bucket: {aws.bucket}, key: alias/fin-{aws.tag}}}\n")

    summary = await run_forwarder(
        aws.settings(monkeypatch), aws.queue_url, drain=True
    )  # in-process: the topic is read right after

    assert summary.as_dict() == {"received": 3, "forwarded": 1, "skipped": 1, "unreadable": 1,
                                 "kept": 0, "records": 2}  # fmt: skip
    assert queue_is_empty(aws.moto, aws.queue_url)
    produced = await read_raw(aws.stack.kafka_bootstrap, aws.topic)
    keyed = {r.key: r.value for r in produced}
    assert set(keyed) == {f"{aws.bucket}/{key}".encode(), None}
    assert keyed[None] == b"not an S3 event"

    settings = aws.settings(monkeypatch, ENFORCER_POLICY_FILE=str(policy))
    await run_service(settings, Mode.ENFORCE, drain_idle=1.5)

    head = s3.head_object(Bucket=aws.bucket, Key=key)
    assert head["ServerSideEncryption"] == "aws:kms"  # moto echoes the alias the PUT named
    assert kms.describe_key(KeyId=head["SSEKMSKeyId"])["KeyMetadata"]["Arn"] == required["Arn"]
    assert s3.get_object(Bucket=aws.bucket, Key=key)["Body"].read() == body
    assert head["ContentType"] == "text/csv"
    audit = [v for _, v in await read_topic(aws.stack.kafka_bootstrap, settings.kafka.audit_topic)]
    final = [r for r in audit if r["action"] != "rewriting"]
    assert [(r["key"], r["verdict"], r["action"]) for r in final] == [
        (key, "plaintext", "reencrypted")
    ]
    dead = [v for _, v in await read_topic(aws.stack.kafka_bootstrap, settings.kafka.dlq_topic)]
    assert [(d["error_class"], d["original_payload"]) for d in dead] == [
        ("bad_event", "not an S3 event")
    ]


async def test_eventbridge_and_sns_deliveries_are_forwarded_keyed_by_object(
    aws: AwsPath, monkeypatch: pytest.MonkeyPatch
) -> None:
    s3, sns, events = (moto_client(n, aws.moto) for n in ("s3", "sns", "events"))
    topic_arn = sns.create_topic(Name=f"s3-{aws.tag}")["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=aws.queue_arn)
    rule = f"created-{aws.tag}"
    pattern = {"source": ["aws.s3"], "detail-type": ["Object Created"],
               "detail": {"bucket": {"name": [aws.bucket]}}}  # fmt: skip
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern))
    events.put_targets(Rule=rule, Targets=[{"Id": "queue", "Arn": aws.queue_arn}])
    s3.put_bucket_notification_configuration(
        Bucket=aws.bucket,
        NotificationConfiguration={
            "TopicConfigurations": [{"TopicArn": topic_arn, "Events": ["s3:ObjectCreated:*"]}],
            "EventBridgeConfiguration": {},
        },
    )
    s3.put_object(Bucket=aws.bucket, Key="via/both.txt", Body=b"x")

    summary = await run_forwarder(aws.settings(monkeypatch), aws.queue_url, drain=True)

    # SNS: the test event (skipped) and the notification; EventBridge: the Object Created event
    assert (summary.received, summary.skipped, summary.forwarded) == (3, 1, 2)
    produced = await read_raw(aws.stack.kafka_bootstrap, aws.topic)
    formats = set()
    for record in produced:
        assert record.key == f"{aws.bucket}/via/both.txt".encode()
        [event] = parse_message(record.value)
        assert isinstance(event, ObjectEvent) and event.key == "via/both.txt"
        formats.add(event.source_format)
    assert formats == {"s3", "eventbridge"}
    assert queue_is_empty(aws.moto, aws.queue_url)


@pytest.fixture
def forwarder_process(aws: AwsPath) -> Iterator[subprocess.Popen[str]]:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")},
           **aws.env(ENFORCER_FORWARD__WAIT_TIME="20", ENFORCER_LOG_FORMAT="text")}  # fmt: skip
    process = subprocess.Popen(  # noqa: S603 - our entry point
        [str(ENFORCER), "forward", "sqs", "--queue-url", aws.queue_url],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def wait_for_line(process: subprocess.Popen[str], text: str, timeout: float = 30) -> list[str]:
    assert process.stderr is not None
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stderr.readline()
        seen.append(line)
        if text in line:
            return seen
        if not line and process.poll() is not None:
            break
    pytest.fail(f"no {text!r} from the forwarder: {''.join(seen)}")


def test_sigterm_during_the_long_poll_exits_cleanly(
    aws: AwsPath, forwarder_process: subprocess.Popen[str]
) -> None:
    """With a 20-second long poll in progress, SIGTERM ends the process at once, exit 0, with
    its summary on stdout."""
    wait_for_line(forwarder_process, "forwarding")
    moto_client("sqs", aws.moto).send_message(QueueUrl=aws.queue_url, MessageBody="{}")
    time.sleep(2)  # received, produced as-is and deleted, then the next long poll starts
    forwarder_process.send_signal(signal.SIGTERM)
    out, err = forwarder_process.communicate(timeout=15)  # well inside the 20 s poll
    assert forwarder_process.returncode == 0, err
    assert json.loads(out)["unreadable"] == 1
    assert queue_is_empty(aws.moto, aws.queue_url)


@pytest.mark.parametrize(
    ("queue", "topic", "says"),
    [("missing", None, "no such queue"), (None, "missing-topic", "ENFORCER_FORWARD__TOPIC")],
)
def test_a_queue_or_topic_that_does_not_exist_is_exit_2(
    aws: AwsPath, queue: str | None, topic: str | None, says: str
) -> None:
    url = aws.queue_url.rsplit("/", 1)[0] + f"/{queue}" if queue else aws.queue_url
    extra: dict[str, Any] = {"ENFORCER_FORWARD__TOPIC": f"{topic}-{aws.tag}"} if topic else {}
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("ENFORCER_")},
           **aws.env(**extra)}  # fmt: skip
    done = subprocess.run(  # noqa: S603 - our entry point
        [str(ENFORCER), "forward", "sqs", "--queue-url", url],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert says in done.stderr and "Traceback" not in done.stderr
