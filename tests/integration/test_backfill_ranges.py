"""A distributed backfill on the real stack: ``enforcer scan --split N --enqueue`` publishes key
ranges as tasks; three ``enforcer run`` replicas share them; one is SIGKILLed midway; every
object still ends with exactly one final audit record (read committed) and compliant.

The bucket holds ``BACKFILL_OBJECTS`` objects, 2 % of them plaintext, spread over every range:
20,000 in the suite; ``SSE_ENFORCER_BACKFILL_OBJECTS=100000`` for the full-size run (about seven
minutes on a 2-core machine).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from cli_runner import ENFORCER, Cli
from harness import set_default_key
from support import MakeBucket, MakeKey, StackEnv, enforcer_s3_settings, free_port

from enforcer.engine.range_tasks import RangeProgress
from enforcer.kafka.backfill import read_progress
from enforcer.storage.s3 import open_s3_storage

BACKFILL_OBJECTS = int(os.environ.get("SSE_ENFORCER_BACKFILL_OBJECTS", "20000"))
PLAINTEXT_EVERY = 50  # 2 %


def key_of(n: int) -> str:
    return f"d{n % 37:02d}/obj {n:06d}"


def fill(s3: Any, bucket: str, ek: str) -> list[str]:
    """Plaintext objects first, then the bucket's default key, then the rest (compliant)."""
    keys = [key_of(n) for n in range(BACKFILL_OBJECTS)]
    plain = keys[::PLAINTEXT_EVERY]

    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x" * 32)

    with ThreadPoolExecutor(48) as pool:
        list(pool.map(put, plain))
        set_default_key(s3, bucket, ek)
        plain_set = set(plain)
        list(pool.map(put, [k for k in keys if k not in plain_set]))
    return plain


def empty(s3: Any, bucket: str) -> None:
    """Delete every object, 1,000 per request, several requests at once."""
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    batches = [[{"Key": e["Key"]} for e in page.get("Contents", [])] for page in pages]

    def delete(batch: list[dict[str, str]]) -> None:
        if batch:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(delete, batches))


async def read_committed(stack: StackEnv, topic: str) -> list[tuple[bytes | None, Any]]:
    """Every record of ``topic`` a read_committed reader sees (aborted transactions never)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=stack.kafka_bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed",
                                max_poll_records=5000)  # fmt: skip
    await consumer.start()
    records = []
    try:
        partitions = list(consumer.assignment())
        ends = await consumer.end_offsets(partitions)
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=2000)
            for messages in batch.values():
                records += [(m.key, json.loads(m.value or b"null")) for m in messages]
    finally:
        await consumer.stop()
    return records


def start_replica(cli: Cli, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603 - our own entry point
            [str(ENFORCER), "--log-level", "INFO", "run", "--drain", "--idle", "15"],
            env=cli.env(**env, ENFORCER_HEALTH_PORT=str(free_port())),
            stdout=out,
            stderr=out,
        )


@pytest.mark.timeout(3000)
async def test_three_replicas_share_a_split_backfill_and_survive_a_sigkill(
    stack: StackEnv, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket, tmp_path: Path
) -> None:
    ek = make_key("ranges")
    bucket = make_bucket(notify=False)  # only the backfill touches it
    plain = await asyncio.to_thread(fill, s3_admin, bucket, ek)
    cli = Cli(stack)
    env = {
        "ENFORCER_BACKFILL_RANGES": "2",
        "ENFORCER_KAFKA__BACKFILL_TASKS_TOPIC": f"test-tasks-{cli.tag}",
        "ENFORCER_KAFKA__BACKFILL_PROGRESS_TOPIC": f"test-progress-{cli.tag}",
    }
    cli.extra_env.update(env)
    await cli.start_at_end()
    replicas = [start_replica(cli, env, tmp_path / f"r{n}.log") for n in range(3)]
    try:
        enqueued = await asyncio.to_thread(cli, "scan", f"s3://{bucket}", "--split", "12",
                                           "--enqueue")  # fmt: skip
        assert enqueued.returncode == 0, enqueued.stderr
        backfill = enqueued.json()
        assert backfill["ranges"] == 12

        await _until_objects(cli, backfill["backfill_id"], BACKFILL_OBJECTS // 3, replicas)
        replicas[0].send_signal(signal.SIGKILL)  # mid-range: no commit, no goodbye
        replicas[0].wait()
        for replica in replicas[1:]:
            assert await asyncio.to_thread(replica.wait, 2400) == 0, _tail(tmp_path)
    finally:
        for replica in replicas:
            if replica.poll() is None:
                replica.kill()

    try:
        await _check_records(stack, cli, bucket, plain)
        await _check_progress(cli, backfill["backfill_id"])
        await _check_compliant(stack, bucket, ek)
        status = cli("status", "--backfill", backfill["backfill_id"], "--json")
        [summary] = json.loads(status.stdout)
        assert summary["ranges_done"] == 12 and summary["objects"] == BACKFILL_OBJECTS
        assert summary["complete"] is True and summary["objects_per_second"] > 0
    finally:
        await asyncio.to_thread(
            empty, s3_admin, bucket
        )  # in batches: the fixture deletes one by one


async def _until_objects(
    cli: Cli, backfill_id: str, count: int, replicas: list[subprocess.Popen[bytes]]
) -> None:
    """Until the group has committed ``count`` objects of the backfill (every range started)."""
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        assert all(r.poll() is None for r in replicas), "a replica exited early"
        progress = await read_progress(cli.settings().kafka.options())
        mine = [p for p in progress.values() if p.backfill_id == backfill_id]
        if sum(p.objects for p in mine) >= count:
            return
        await asyncio.sleep(1)  # polling the committed progress
    pytest.fail(f"the backfill did not reach {count} objects")


async def _check_records(stack: StackEnv, cli: Cli, bucket: str, plain: list[str]) -> None:
    records = [v for _, v in await read_committed(stack, cli.audit_topic) if v["bucket"] == bucket]
    finals = Counter(r["key"] for r in records if r["action"] != "rewriting")
    assert len(finals) == BACKFILL_OBJECTS
    assert set(finals.values()) == {1}, [k for k, n in finals.items() if n > 1][:10]
    by_key: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        by_key[record["key"]].append(record)
    for key in plain:  # re-encrypted: in one go, or by a replica that died before its record
        actions = [r["action"] for r in by_key[key]]
        final = next(r for r in by_key[key] if r["action"] != "rewriting")
        intents = [r for r in by_key[key] if r["action"] == "rewriting"]
        assert final["action"] == "reencrypted" or (
            final["verdict"] == "compliant" and intents
            and all(i["event_id"] == final["event_id"] for i in intents)
        ), (key, actions)  # fmt: skip
    compliant = [k for k in finals if k not in set(plain)]
    assert all(by_key[k][-1]["verdict"] == "compliant" for k in compliant[::97])


async def _check_progress(cli: Cli, backfill_id: str) -> None:
    """Every range complete; and some range committed by two replicas (taken over)."""
    history = await read_committed(cli.stack, cli.settings().kafka.backfill_progress_topic)
    owners: dict[bytes | None, set[str]] = defaultdict(set)
    latest: dict[bytes | None, RangeProgress] = {}
    for key, value in history:
        progress = RangeProgress.model_validate(value)
        if progress.backfill_id == backfill_id:
            owners[key].add(progress.owner)
            latest[key] = progress
    assert len(latest) == 12 and all(p.complete for p in latest.values())
    assert sum(p.objects for p in latest.values()) == BACKFILL_OBJECTS
    assert any(len(names) > 1 for names in owners.values()), owners  # a range changed hands


async def _check_compliant(stack: StackEnv, bucket: str, ek: str) -> None:
    async with open_s3_storage(enforcer_s3_settings(stack).options()) as storage:
        storage.listing.ask_for_metadata()
        keys = {o.facts.kms_key if o.facts else None
                async for o in storage.listing.list_objects(bucket)}  # fmt: skip
    assert keys == {f"arn:aws:kms:{ek}"}


def _tail(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(folder.glob("r*.log")))
