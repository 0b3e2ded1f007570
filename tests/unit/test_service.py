import json

import pytest

from enforcer.consumer import KafkaMessage
from enforcer.errors import AccessDenied, KmsUnavailable, StorageUnavailable
from enforcer.fakes import MemorySink, MemoryStorage
from enforcer.outage import OutageGate
from enforcer.pipeline import Pipeline
from enforcer.policy import Mode, PolicyFile, Strategy
from enforcer.retrying import RetryPolicy
from enforcer.rules import KeyCanon, RuleResolver
from enforcer.service import RecordHandler
from enforcer.storage import ObjectSnapshot, SseKmsTarget, WriteResult
from enforcer.verdict import Action, Verdict


def message(value: bytes | None, offset: int = 7) -> KafkaMessage:
    return KafkaMessage("minio-events", 2, offset, b"b/k", value)


def minio(key: str = "k", name: str = "s3:ObjectCreated:Put") -> bytes:
    return json.dumps(
        {
            "EventName": name,
            "Key": f"b/{key}",
            "Records": [
                {"eventName": name, "s3": {"bucket": {"name": "b"}, "object": {"key": key}}}
            ],
        }
    ).encode()


class Harness:
    def __init__(self, mode: Mode = Mode.ENFORCE) -> None:
        self.storage = MemoryStorage()
        self.storage.bucket_keys["b"] = "ek"
        self.sink = MemorySink()
        self.gate = OutageGate(threshold=2, probe_interval=0.01)
        self.failures: list[Exception] = []

        async def rewrite(snapshot: ObjectSnapshot, required, tags) -> WriteResult:  # type: ignore[no-untyped-def]
            if self.failures:
                raise self.failures.pop(0)
            return await self.storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

        pipeline = Pipeline(
            self.storage,
            RuleResolver(PolicyFile(), self.storage, 60),
            KeyCanon(),
            mode,
            {Strategy.SSE_KMS: rewrite},
        )
        self.handler = RecordHandler(pipeline, self.sink, self.gate, mode)


async def test_handled_event_yields_one_flat_audit_record() -> None:
    h = Harness()
    h.storage.put("b", "k", b"x")
    await h.handler(message(minio()))
    [record] = h.sink.final
    flat = json.loads(record.model_dump_json())
    assert {k: flat[k] for k in ("bucket", "key", "verdict", "action", "mode")} == {
        "bucket": "b",
        "key": "k",
        "verdict": "plaintext",
        "action": "reencrypted",
        "mode": "enforce",
    }
    assert flat["key_used"] == "ek" and flat["new_etag"]
    assert h.sink.dead_letters == []


@pytest.mark.parametrize("payload", [b"garbage", None, b'{"Records":[{}]}'])
async def test_bad_event_goes_to_dlq_with_reason_and_position(payload: bytes | None) -> None:
    h = Harness()
    await h.handler(message(payload, offset=41))
    [dlq] = h.sink.dead_letters
    assert (dlq.topic, dlq.partition, dlq.offset, dlq.error_class) == (
        "minio-events",
        2,
        41,
        "bad_event",
    )
    assert dlq.reason
    assert dlq.original_payload == (payload.decode() if payload else None)
    assert h.sink.final == []


def test_binary_payload_is_kept_as_base64() -> None:
    from datetime import UTC, datetime

    from enforcer.audit import dead_letter

    now = datetime.now(UTC)
    record = dead_letter(
        b"\xff\x00",
        None,
        topic="t",
        partition=0,
        offset=1,
        error_class="bad_event",
        reason="r",
        attempts=1,
        first_seen=now,
        last_seen=now,
    )
    assert (record.original_payload, record.payload_encoding) == ("/wA=", "base64")


async def test_ignored_record_is_audited_as_skipped() -> None:
    h = Harness()
    await h.handler(message(minio(name="s3:ObjectRemoved:Delete")))
    [record] = h.sink.final
    assert record.action is Action.SKIPPED and "not an object-created" in (record.reason or "")


async def test_permanent_failure_is_audited_and_dead_lettered() -> None:
    h = Harness()
    h.storage.put("b", "k", b"x")
    h.failures.append(AccessDenied("nope"))
    await h.handler(message(minio()))
    [record] = h.sink.final
    [dlq] = h.sink.dead_letters
    assert (record.verdict, record.action) == (Verdict.PLAINTEXT, Action.FAILED)
    assert "access_denied" in (record.reason or "")
    assert dlq.error_class == "access_denied" and dlq.event_id == record.event_id


async def test_kms_outage_never_reaches_the_dlq_and_the_event_is_retried() -> None:
    h = Harness()
    h.storage.put("b", "k", b"x")
    h.failures.extend([KmsUnavailable("down")] * 5)
    await h.handler(message(minio()))
    assert h.sink.dead_letters == []
    [record] = h.sink.final
    assert record.action is Action.REENCRYPTED
    assert not h.gate.is_open


async def test_dry_run_audits_would_reencrypt() -> None:
    h = Harness(Mode.AUDIT)
    h.storage.put("b", "k", b"x")
    await h.handler(message(minio()))
    [record] = h.sink.final
    assert (record.action, record.mode, h.storage.writes) == (Action.WOULD_REENCRYPT, "audit", 0)


async def test_one_object_failing_while_others_succeed_is_dead_lettered_not_retried_forever() -> (
    None
):
    h = Harness()
    for key in ("poison", *(f"ok{i}" for i in range(6))):
        h.storage.put("b", key, b"x")
    poison_rounds = 0

    async def rewrite(snapshot, required, tags):  # type: ignore[no-untyped-def]
        nonlocal poison_rounds
        if snapshot.key == "poison":
            poison_rounds += 1
            # meanwhile, other objects go through fine
            await h.handler(message(minio(f"ok{poison_rounds}")))
            raise StorageUnavailable("500 on this object only")
        return await h.storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

    h.handler._pipeline.rewriters[Strategy.SSE_KMS] = rewrite
    await h.handler(message(minio("poison")))
    [dlq] = h.sink.dead_letters
    assert dlq.error_class == "poison_event" and "other events used storage" in dlq.reason
    assert "after 5 rounds" in dlq.reason
    assert poison_rounds == 5 * RetryPolicy().attempts  # each round is a full retry budget


async def test_a_real_outage_dead_letters_nothing_however_long() -> None:
    h = Harness()
    h.storage.put("b", "k", b"x")
    h.failures.extend([StorageUnavailable("down")] * 30)
    await h.handler(message(minio()))
    assert h.sink.dead_letters == []
    assert h.sink.final[0].action is Action.REENCRYPTED
