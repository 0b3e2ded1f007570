"""The test helpers that read the shared notification topic survive whatever is left on it.

Other tests, and the service's own hostile-input tests, may leave anything on the stack's
notification topic: JSON nested far beyond a parser's recursion limit, invalid UTF-8, binary,
JSON that is not a MinIO message. A helper that broke on one such record would fail every test
after it on that stack; this test leaves them there first, then reads real notifications.
"""

from __future__ import annotations

from typing import Any

from support import MakeBucket, Notifications, StackEnv, minio_message, produce


def hostile_records(bucket: str) -> list[tuple[bytes | None, bytes]]:
    """(Kafka key, value): unkeyed, and keyed as if for ``bucket`` so the helpers must parse."""
    mine = f"{bucket}/".encode()
    return [
        (None, b"[" * 100_000 + b"]" * 100_000),  # RecursionError in json.loads
        (mine + b"deep", b'{"Key": ' + b"[" * 50_000 + b"]" * 50_000 + b"}"),
        (mine + b"utf8", b'{"Key": "\xff\xfe\xc3"}'),
        (mine + b"binary", bytes(range(256)) * 4),
        (mine + b"list", b"[1, 2, 3]"),
        (mine + b"no-key", b'{"EventName": "s3:ObjectCreated:Put"}'),
        (mine + b"empty", b""),
        (None, b"not json"),
    ]


async def test_a_hostile_record_on_the_notification_topic_breaks_no_reader(
    stack: StackEnv, s3_admin: Any, make_bucket: MakeBucket, notifications: Notifications
) -> None:
    bucket = make_bucket()
    hostile = hostile_records(bucket)
    assert [minio_message(key, value, bucket) for key, value in hostile] == [None] * len(hostile)
    await produce(stack.kafka_bootstrap, stack.notify_topic, hostile)

    s3_admin.put_object(Bucket=bucket, Key="real", Body=b"a real object")

    [message] = await notifications(bucket, 1)  # reads every record above on its way
    assert message["Key"] == f"{bucket}/real"
    assert message["EventName"].startswith("s3:ObjectCreated:")
