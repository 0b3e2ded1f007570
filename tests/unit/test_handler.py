import asyncio
import json
import logging

import pytest
from doubles.kafka import MemoryKafka
from doubles.sink import MemorySink
from doubles.storage import MemoryStorage
from scrape import value

from enforcer.core.policy import Mode, PolicyFile, Rule, Strategy, VersionsPolicy
from enforcer.core.verdict import Action, Encryption, Verdict
from enforcer.engine.guard import ObjectGuard
from enforcer.engine.handler import RecordHandler
from enforcer.engine.objects import ObjectSnapshot, SseKmsTarget, WriteResult
from enforcer.engine.outage import OutageGate, Probe
from enforcer.engine.outcome import Dependency
from enforcer.engine.pipeline import Pipeline
from enforcer.engine.ports import Message
from enforcer.engine.rules import KeyCanon, RuleResolver
from enforcer.errors import (
    AccessDenied,
    CredentialsRejected,
    KeyMissing,
    KmsNotAuthorized,
    KmsUnavailable,
    StorageUnavailable,
)
from enforcer.kafka.consumer import EventConsumer
from enforcer.retrying import RetryPolicy


def message(value: bytes | None, offset: int = 7) -> Message:
    return Message("minio-events", 2, offset, b"b/k", value)


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
    def __init__(
        self,
        mode: Mode = Mode.ENFORCE,
        probes: dict[Dependency, Probe] | None = None,
        policy: PolicyFile | None = None,
        storage: MemoryStorage | None = None,
        concurrency: int = 4,  # some tests handle a second event inside the first one's rewrite
    ) -> None:
        self.storage = storage or MemoryStorage()
        self.storage.bucket_keys["b"] = "ek"
        self.sink = MemorySink()
        self.gate = OutageGate(threshold=2, probe_interval=0.01, probes=probes)
        self.failures: list[Exception] = []

        async def rewrite(snapshot: ObjectSnapshot, required, tags) -> WriteResult:  # type: ignore[no-untyped-def]
            if self.failures:
                raise self.failures.pop(0)
            return await self.storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

        pipeline = Pipeline(
            self.storage,
            RuleResolver(policy or PolicyFile(), self.storage, 60),
            KeyCanon(),
            mode,
            {Strategy.SSE_KMS: rewrite},
        )
        guard = ObjectGuard(pipeline, self.sink, self.gate, mode, concurrency=concurrency)
        self.handler = RecordHandler(guard)


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

    from enforcer.engine.records import dead_letter

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

    h.handler.guard.pipeline.rewriters[Strategy.SSE_KMS] = rewrite
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


async def test_an_intent_record_is_acknowledged_before_the_write() -> None:
    h = Harness()
    source = h.storage.put("b", "k", b"x")
    writes_when_announced: list[int] = []
    publish = h.sink.publish_audit

    async def spy(record):  # type: ignore[no-untyped-def]
        if record.action is Action.REWRITING:
            writes_when_announced.append(h.storage.writes)
        await publish(record)

    h.sink.publish_audit = spy  # type: ignore[method-assign]
    await h.handler(message(minio()))
    intent, final = h.sink.audit
    assert writes_when_announced == [0]
    assert (intent.action, intent.observed_etag, intent.event_id) == (
        Action.REWRITING, source.etag, final.event_id
    )  # fmt: skip
    assert final.action is Action.REENCRYPTED and final.new_etag != source.etag


async def test_a_final_record_is_awaited_outside_the_work_slot_and_before_returning() -> None:
    h = Harness(concurrency=1)
    h.storage.put("b", "k", b"x")
    h.storage.put("b", "other", b"y")
    h.sink.hold_acks = True
    first = asyncio.create_task(h.handler(message(minio())))
    await h.sink.wait_held(1)
    # One slot: the second object is handled while the first one's record awaits the broker.
    second = asyncio.create_task(h.handler(message(minio("other"), offset=8)))
    await asyncio.wait_for(h.sink.wait_held(2), timeout=5)
    assert not first.done() and not second.done(), "returned before the record was durable"
    h.sink.acknowledge()
    await asyncio.gather(first, second)
    assert sorted(r.key for r in h.sink.final) == ["k", "other"]


async def test_a_final_record_the_broker_lost_is_published_again() -> None:
    h = Harness()
    h.storage.put("b", "k", b"x")
    h.sink.failed_acks = 1
    await h.handler(message(minio()))
    [final] = h.sink.final
    assert final.action is Action.REENCRYPTED and h.sink.dead_letters == []


async def test_a_failed_purge_after_the_rewrite_is_reencrypted_with_the_error_not_dlq() -> None:
    class NoDeletes(MemoryStorage):
        async def delete_version(self, bucket: str, key: str, version_id: str) -> None:
            raise AccessDenied("DeleteObjectVersion: AccessDenied")

    policy = PolicyFile(
        rules=(Rule(bucket="b", key="ek", versions=VersionsPolicy.PURGE_NONCOMPLIANT),)
    )
    h = Harness(policy=policy, storage=NoDeletes())
    h.storage.put("b", "k", b"x", versioned=True)
    await h.handler(message(minio()))
    [record] = h.sink.final
    assert record.action is Action.REENCRYPTED and record.new_version_id
    assert record.post_rewrite_error and record.post_rewrite_error.startswith(
        "purge: access_denied"
    )
    assert record.purged_version_id is None and h.sink.dead_letters == []


async def test_a_purge_failing_in_an_outage_keeps_the_event_until_the_version_is_purged() -> None:
    """The store goes away after the rewrite: no final record yet, the event waits (at the
    gate) and its next round — the object compliant now — purges the version it names."""

    class FlakyDeletes(MemoryStorage):
        down = 3

        async def delete_version(self, bucket: str, key: str, version_id: str) -> None:
            if self.down:
                self.down -= 1
                raise StorageUnavailable("DeleteObject: connection refused")
            await super().delete_version(bucket, key, version_id)

    policy = PolicyFile(
        rules=(Rule(bucket="b", key="ek", versions=VersionsPolicy.PURGE_NONCOMPLIANT),)
    )
    h = Harness(policy=policy, storage=FlakyDeletes())
    h.handler.guard.pipeline.retry = RetryPolicy(attempts=1)
    inspected = h.storage.put("b", "k", b"x", versioned=True)
    body = json.loads(minio())
    body["Records"][0]["s3"]["object"]["versionId"] = inspected.version_id
    await asyncio.wait_for(h.handler(message(json.dumps(body).encode())), timeout=10)
    [final] = h.sink.final
    assert (final.verdict, final.action) == (Verdict.COMPLIANT, Action.NONE)
    assert final.purged_version_id == inspected.version_id and not final.post_rewrite_error
    assert [r.action for r in h.sink.audit].count(Action.REWRITING) == 1  # rewritten once
    [kept] = h.storage.objects[("b", "k")]
    assert kept.snapshot.version_id != inspected.version_id and kept.snapshot.kms_key
    assert h.sink.dead_letters == []


async def test_access_denied_for_one_object_with_a_working_identity_is_dead_lettered() -> None:
    async def identity_ok() -> None:
        return None

    h = Harness(probes={Dependency.STORAGE: identity_ok})
    h.storage.put("b", "k", b"x")
    h.failures.append(AccessDenied("PUT b/k: AccessDenied"))
    await h.handler(message(minio()))
    [dlq] = h.sink.dead_letters
    assert dlq.error_class == "access_denied" and not h.gate.is_open


async def test_access_denied_with_a_refused_identity_pauses_instead_of_dead_lettering() -> None:
    refusals = 3

    async def identity() -> None:
        nonlocal refusals
        if refusals:
            refusals -= 1
            raise CredentialsRejected("ListBuckets: AccessDenied (worked before)")

    h = Harness(probes={Dependency.STORAGE: identity})
    h.storage.put("b", "k", b"x")
    h.failures.append(AccessDenied("PUT b/k: AccessDenied"))
    await h.handler(message(minio()))
    assert h.sink.dead_letters == [] and refusals == 0
    assert h.sink.final[0].action is Action.REENCRYPTED


async def test_kms_refusing_the_only_key_pauses_but_one_refused_key_among_working_is_dlq() -> None:
    h = Harness()
    h.storage.put("b", "k", b"x")
    h.failures.extend([KmsNotAuthorized("kms:NotAuthorized")] * 4)
    await h.handler(message(minio()))  # nothing else used the KMS: our access, not the key
    assert h.sink.dead_letters == [] and h.sink.final[0].action is Action.REENCRYPTED

    h = Harness()
    h.storage.put("b", "k", b"x")
    h.storage.put("b", "other", b"y")

    async def rewrite(snapshot, required, tags):  # type: ignore[no-untyped-def]
        if snapshot.key == "k":
            await h.handler(message(minio("other")))  # meanwhile another key works
            raise KmsNotAuthorized("kms:NotAuthorized")
        return await h.storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

    h.handler.guard.pipeline.rewriters[Strategy.SSE_KMS] = rewrite
    await h.handler(message(minio("k")))
    [dlq] = h.sink.dead_letters
    assert dlq.error_class == "access_denied"


async def test_events_of_a_refused_key_waiting_at_the_gate_leave_the_slot_to_a_working_one() -> (
    None
):
    """One slot; the refused key's events come first and pause consumption (nothing has shown the
    KMS working yet). The working event behind them must still get a turn: it proves the KMS
    serves MinIO, the gate closes and the refused key's events are dead-lettered as such."""
    h = Harness(concurrency=1)
    kafka = MemoryKafka()
    for key in ("refused-1", "refused-2", "refused-3", "working"):
        h.storage.put("b", key, b"x")
        kafka.produce(0, f"b/{key}".encode(), minio(key))

    async def rewrite(snapshot, required, tags):  # type: ignore[no-untyped-def]
        if snapshot.key.startswith("refused"):
            raise KmsNotAuthorized("kms:NotAuthorized")
        return await h.storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key), tags)

    h.handler.guard.pipeline.rewriters[Strategy.SSE_KMS] = rewrite
    consumer = EventConsumer(
        kafka, h.handler, gate=h.gate, concurrency=1, shutdown_timeout=2, drain_idle=0.05
    )
    await asyncio.wait_for(consumer.run(), timeout=10)
    assert sorted(d.error_class for d in h.sink.dead_letters) == ["access_denied"] * 3
    assert [(r.key, r.action) for r in h.sink.final if r.action is Action.REENCRYPTED] == [
        ("working", Action.REENCRYPTED)
    ]
    assert not h.gate.is_open


async def test_passing_probes_of_another_dependency_never_make_an_outage_look_like_poison() -> None:
    async def kms_fine() -> None:
        return None

    storage_down = 40

    async def storage_probe() -> None:
        nonlocal storage_down
        if storage_down:
            storage_down -= 1
            raise StorageUnavailable("connection refused")

    h = Harness(probes={Dependency.KMS: kms_fine, Dependency.STORAGE: storage_probe})
    h.storage.put("b", "k", b"x")
    h.failures.extend([StorageUnavailable("down")] * 60)
    await h.handler(message(minio()))
    assert h.sink.dead_letters == [] and storage_down == 0
    assert h.sink.final[0].action is Action.REENCRYPTED


async def test_dry_run_logs_one_info_line_per_object_with_its_verdict(
    caplog: pytest.LogCaptureFixture,
) -> None:
    h = Harness(Mode.AUDIT)
    h.storage.put("b", "k", b"x")
    caplog.set_level(logging.INFO, logger="enforcer.engine.observe")
    await h.handler(message(minio()))
    [line] = [r for r in caplog.records if r.name == "enforcer.engine.observe"]
    assert line.levelno == logging.INFO
    fields = {k: getattr(line, k) for k in ("bucket", "key", "verdict", "action")}
    wanted = {"bucket": "b", "key": "k", "verdict": "plaintext", "action": "would_reencrypt"}
    assert fields == wanted


async def test_enforce_mode_logs_nothing_per_object(caplog: pytest.LogCaptureFixture) -> None:
    h = Harness()
    h.storage.put("b", "k", b"x")
    caplog.set_level(logging.INFO, logger="enforcer")
    await h.handler(message(minio()))
    assert caplog.records == []


async def test_handled_events_are_counted_by_verdict_action_and_mode() -> None:
    labels = {"verdict": "plaintext", "action": "would_reencrypt", "mode": "audit"}
    before = value("enforcer_events_total", **labels)
    latency = value("enforcer_compliance_latency_seconds_count")
    h = Harness(Mode.AUDIT)
    h.storage.put("b", "k", b"x")
    await h.handler(message(minio()))
    assert value("enforcer_events_total", **labels) == before + 1
    assert value("enforcer_compliance_latency_seconds_count") == latency  # nothing was written


async def test_a_missing_key_marks_it_unavailable_until_it_works_again() -> None:
    h = Harness()
    h.storage.bucket_keys["b"] = "ek-gone"
    h.storage.put("b", "k", b"x")
    dlq = value("enforcer_dlq_records_total", error_type="key_missing")
    h.failures.append(KeyMissing("no such key", key_name="ek-gone"))
    await h.handler(message(minio()))
    assert value("enforcer_key_available", key="ek-gone") == 0
    assert value("enforcer_key_alerts_total", key="ek-gone", error_type="key_missing") >= 1
    assert value("enforcer_dlq_records_total", error_type="key_missing") == dlq + 1
    await h.handler(message(minio()))  # the key is back
    assert value("enforcer_key_available", key="ek-gone") == 1


@pytest.mark.parametrize(
    ("mode", "put", "failure", "result"),
    [
        (Mode.ENFORCE, {"encryption": Encryption.SSE_KMS, "kms_key": "arn:aws:kms:ek"}, None,
         "compliant"),
        (Mode.ENFORCE, {}, None, "fixed"),
        (Mode.ENFORCE, {}, AccessDenied("nope"), "failed"),
        (Mode.AUDIT, {}, None, "noncompliant"),
        (Mode.ENFORCE, {"encryption": Encryption.SSE_C}, None, "noncompliant"),
    ],
    ids=["compliant", "fixed", "failed", "audit", "sse-c"],
)  # fmt: skip
async def test_each_object_in_scope_is_counted_by_bucket_and_result(
    mode: Mode, put: dict[str, object], failure: Exception | None, result: str
) -> None:
    """enforcer_objects_total{bucket, result}: the per-bucket compliance ratio's counter."""
    bucket = f"ratio-{result}-{mode.value}-{len(put)}"
    before = {r: value("enforcer_objects_total", bucket=bucket, result=r) for r in RESULTS}
    h = Harness(mode)
    h.storage.bucket_keys[bucket] = "ek"
    h.storage.put(bucket, "k", b"x", **put)  # type: ignore[arg-type]
    if failure is not None:
        h.failures.append(failure)
    await h.handler(message(minio_in(bucket)))
    after = {r: value("enforcer_objects_total", bucket=bucket, result=r) for r in RESULTS}
    assert {r: after[r] - before[r] for r in RESULTS} == {r: int(r == result) for r in RESULTS}


async def test_the_notification_of_our_own_rewrite_is_not_counted_again() -> None:
    h = Harness()
    h.storage.bucket_keys["ratio-own"] = "ek"
    h.storage.put("ratio-own", "k", b"x")
    await h.handler(message(minio_in("ratio-own")))
    written = h.storage.objects[("ratio-own", "k")][-1].snapshot
    own = {
        "eventName": "s3:ObjectCreated:Put",
        "s3": {
            "bucket": {"name": "ratio-own"},
            "object": {"key": "k", "eTag": written.etag, "versionId": written.version_id},
        },
    }
    value_ = json.dumps({"Records": [own]}).encode()
    await h.handler(message(value_, offset=8))
    assert [r.verdict for r in h.sink.final] == [Verdict.PLAINTEXT, Verdict.COMPLIANT]
    counted = {r: value("enforcer_objects_total", bucket="ratio-own", result=r) for r in RESULTS}
    assert counted == {"compliant": 0, "fixed": 1, "failed": 0, "noncompliant": 0}


async def test_objects_no_rule_covers_are_not_counted() -> None:
    h = Harness()
    h.storage.bucket_keys["ratio-unruled"] = None
    h.storage.put("ratio-unruled", "k", b"x")
    await h.handler(message(minio_in("ratio-unruled")))
    [record] = h.sink.final
    assert record.verdict is Verdict.OUT_OF_SCOPE
    assert value("enforcer_objects_total", bucket="ratio-unruled") == 0


RESULTS = ("compliant", "fixed", "failed", "noncompliant")


def minio_in(bucket: str, key: str = "k") -> bytes:
    name = "s3:ObjectCreated:Put"
    record = {"eventName": name, "s3": {"bucket": {"name": bucket}, "object": {"key": key}}}
    return json.dumps({"EventName": name, "Key": f"{bucket}/{key}", "Records": [record]}).encode()
