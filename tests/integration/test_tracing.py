"""Every step of an event is a span; W3C context from Kafka headers is honoured; no secrets."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaProducer
from harness import EnforcerRun
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import MakeBucket, MakeKey, StackEnv

STEPS = {"parse", "resolve", "head", "verdict", "rewrite", "verify", "publish"}


async def test_event_span_tree_attributes_and_incoming_trace_context(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    tmp_path: Path,
    spans: InMemorySpanExporter,
) -> None:
    ek = make_key()
    bucket = make_bucket(notify=False)
    s3_admin.put_object(Bucket=bucket, Key="traced", Body=b"t")
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - {{bucket: {bucket}, key: {ek}}}\n")
    topic = f"test-in-{uuid.uuid4().hex[:8]}"
    run = EnforcerRun(
        stack, policy_file=policy, extra_env={"ENFORCER_KAFKA__TOPICS": json.dumps([topic])}
    )
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    value = json.dumps({"Records": [{"eventName": "ObjectCreated:Put", "s3": {
        "bucket": {"name": bucket}, "object": {"key": "traced"}}}]}).encode()  # fmt: skip
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka_bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(
            topic, value=value, key=b"k", headers=[("traceparent", traceparent.encode())]
        )
    finally:
        await producer.stop()
    spans.clear()  # only this run's spans

    await run.drain()

    ours = [s for s in spans.get_finished_spans() if format(s.context.trace_id, "032x") == trace_id]
    [event] = [s for s in ours if s.name == "event"]
    assert event.parent is not None and event.attributes is not None
    assert format(event.parent.span_id, "016x") == traceparent.split("-")[2]  # continued, not new
    children = {s.name for s in ours if s.parent and s.parent.span_id == event.context.span_id}
    assert children >= STEPS
    assert event.attributes["bucket"] == bucket
    assert (event.attributes["verdict"], event.attributes["action"]) == ("plaintext", "reencrypted")
    [verdict] = [s for s in ours if s.name == "verdict"]
    assert verdict.attributes is not None
    assert verdict.attributes["ek"] == ek
    [record] = await run.audit(bucket)
    assert record["trace_id"] == trace_id

    secrets = [v for k, v in stack.enforcer_env.items() if "SECRET" in k]
    secrets += [stack.admin_secret_key]
    private_key = Path(stack.enforcer_env["ENFORCER_KMS__CLIENT_KEY"])
    secrets += [(await asyncio.to_thread(private_key.read_text)).split("\n")[1]]
    for span in spans.get_finished_spans():
        for value_ in (span.attributes or {}).values():
            assert not any(secret in str(value_) for secret in secrets), span.name
