"""A consumer group's position and membership on the real stack: a ``latest`` group stopped and
restarted loses nothing written to its idle partitions meanwhile, and work that holds every slot
for longer than the poll interval does not drop the member from its group."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from cli_runner import Cli
from harness import read_raw, write_policy
from replicas import Spawn, audit_tail, handled_keys
from stall_proxy import StallProxy
from support import MakeBucket, MakeKey, Notifications, StackEnv
from waiting import eventually

POLL_INTERVAL_MS = 3000


def assert_handled_once(finals: list[dict[str, Any]], keys: list[str]) -> None:
    """Each event has one final record, and each object was rewritten once."""
    events = Counter(r["event_id"] for r in finals)
    assert [e for e, n in events.items() if n > 1] == [], finals
    assert sorted(r["key"] for r in finals if r["action"] == "reencrypted") == keys
    assert {r["action"] for r in finals} <= {"reencrypted", "none"}


def committed_offsets(cli: Cli, topic: str) -> dict[int, int | None]:
    """Per partition of ``topic``: the group's committed offset (None: none), from
    ``enforcer status``."""
    result = cli("status", "--json")
    assert result.returncode in (0, 1), result.stderr
    return {p["partition"]: p["committed"] for p in result.json()["partitions"]
            if p["topic"] == topic}  # fmt: skip


async def until_every_partition_committed(cli: Cli, topic: str) -> None:
    await eventually(
        lambda: committed_offsets(cli, topic), "a committed offset on every partition",
        timeout=60, every=0.5, until=lambda offsets: offsets and None not in offsets.values(),
    )  # fmt: skip


@pytest.mark.timeout(300)
async def test_a_latest_group_restarted_loses_nothing_written_to_its_idle_partitions(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    bucket = make_bucket()
    policy = write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": make_key()})
    # A dry run: a new group on the shared notification topic must not rewrite anyone's objects.
    cli = Cli(stack, policy_file=policy, extra_env={"ENFORCER_KAFKA__AUTO_OFFSET_RESET": "latest",
                                                    "ENFORCER_MODE": "audit"})  # fmt: skip
    async with audit_tail(cli) as tail:
        first = await spawn(cli, "first")
        await first.wait_ready()
        # The group committed where it starts on every partition, before any event came.
        await until_every_partition_committed(cli, stack.notify_topic)
        s3_admin.put_object(Bucket=bucket, Key="one", Body=b"one")  # one partition delivers
        await tail.until(lambda r: "one" in handled_keys(r, bucket), 60, "the first object",
                         alive=first.alive)  # fmt: skip
        assert await first.stop() == 0, first.tail()

        keys = [f"while-stopped-{i:02}" for i in range(40)]  # on every partition
        for key in keys:
            s3_admin.put_object(Bucket=bucket, Key=key, Body=key.encode())
        await notifications(bucket, 41, timeout=60)

        second = await spawn(cli, "second")
        await tail.until(lambda r: handled_keys(r, bucket) >= set(keys), 120,
                         "every object written while the group was stopped",
                         alive=second.alive)  # fmt: skip
        assert await second.stop() == 0, second.tail()
    offsets = committed_offsets(cli, stack.notify_topic)
    assert None not in offsets.values() and len(offsets) == 4, offsets
    records = await read_raw(stack.kafka_bootstrap, stack.notify_topic)
    mine = {r.partition for r in records if (r.key or b"").startswith(f"{bucket}/while".encode())}
    assert len(mine) > 1, mine  # more than the one partition that had delivered an event


@pytest.mark.timeout(300)
async def test_work_that_holds_every_slot_longer_than_the_poll_interval_keeps_the_member(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    ek, bucket = make_key(), make_bucket()
    policy = write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek})
    endpoint = urlsplit(stack.s3_endpoint)
    async with StallProxy(endpoint.hostname or "127.0.0.1", endpoint.port or 80) as proxy:
        cli = Cli(stack, policy_file=policy, extra_env={
            "ENFORCER_S3__ENDPOINT_URL": proxy.url,
            "ENFORCER_CONCURRENCY": "1",  # one slot, a window of four records
            "ENFORCER_KAFKA__MAX_POLL_INTERVAL_MS": str(POLL_INTERVAL_MS),
        })  # fmt: skip
        await cli.start_at_end()
        keys = [f"obj-{i:02}" for i in range(12)]
        for key in keys:
            s3_admin.put_object(Bucket=bucket, Key=key, Body=key.encode())
        await notifications(bucket, len(keys))
        async with audit_tail(cli) as tail:
            async with proxy.holding("PUT "):  # the first rewrite hangs, holding the only slot
                replica = await spawn(cli, "enforcer")
                await replica.wait_ready()
                members = cli("status", "--json").json()["members"]
                await eventually(lambda: proxy.held, "the rewrite held at the store", timeout=60,
                                 alive=replica.alive, context=replica.tail)  # fmt: skip
                # Four poll intervals with every slot taken and the window full.
                await asyncio.sleep(4 * POLL_INTERVAL_MS / 1000)
                assert replica.alive(), replica.tail()
                during = cli("status", "--json").json()
            await tail.until(lambda r: handled_keys(r, bucket) >= set(keys), 120,
                             "every object", alive=replica.alive)  # fmt: skip
            after = cli("status", "--json").json()
            assert await replica.stop() == 0, replica.tail()
            finals = [r for r in tail.records
                      if r["bucket"] == bucket and r["action"] != "rewriting"]  # fmt: skip
    assert [m["member_id"] for m in during["members"]] == [m["member_id"] for m in members]
    assert [m["member_id"] for m in after["members"]] == [m["member_id"] for m in members]
    assert during["state"] == "Stable", during
    # No rebalance, so no record handled twice: one final record per event, one rewrite per
    # object (the notifications of the rewrites themselves come back as compliant).
    assert_handled_once(finals, keys)
    assert replica.log_text().count("Joined group") == 1  # generation 1 throughout


@pytest.mark.timeout(300)
async def test_an_outage_that_outlasts_the_poll_interval_with_work_in_flight_keeps_the_member(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    spawn: Spawn,
    tmp_path: Path,
) -> None:
    """The same under the outage gate: the store drops every connection for four poll
    intervals while events wait at the gate."""
    ek, bucket = make_key(), make_bucket()
    policy = write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek})
    endpoint = urlsplit(stack.s3_endpoint)
    async with StallProxy(endpoint.hostname or "127.0.0.1", endpoint.port or 80) as proxy:
        cli = Cli(stack, policy_file=policy, extra_env={
            "ENFORCER_S3__ENDPOINT_URL": proxy.url,
            "ENFORCER_CONCURRENCY": "1",
            "ENFORCER_KAFKA__MAX_POLL_INTERVAL_MS": str(POLL_INTERVAL_MS),
            "ENFORCER_RETRY__TIMEOUT": "2",  # fail over to the gate quickly
        })  # fmt: skip
        await cli.start_at_end()
        replica = await spawn(cli, "enforcer")
        await replica.wait_ready()
        members = cli("status", "--json").json()["members"]
        keys = [f"obj-{i:02}" for i in range(12)]
        async with audit_tail(cli) as tail:
            with proxy.refusing():
                for key in keys:
                    s3_admin.put_object(Bucket=bucket, Key=key, Body=key.encode())
                await notifications(bucket, len(keys))
                await eventually(replica.readiness, "paused: the gate holds the events",
                                 timeout=60, until=lambda code: code == 503, alive=replica.alive,
                                 context=replica.tail)  # fmt: skip
                await asyncio.sleep(4 * POLL_INTERVAL_MS / 1000)
                during = cli("status", "--json").json()
            await tail.until(lambda r: handled_keys(r, bucket) >= set(keys), 120,
                             "every object", alive=replica.alive)  # fmt: skip
            assert await replica.stop() == 0, replica.tail()
            finals = [r for r in tail.records
                      if r["bucket"] == bucket and r["action"] != "rewriting"]  # fmt: skip
    assert [m["member_id"] for m in during["members"]] == [m["member_id"] for m in members]
    assert during["state"] == "Stable", during
    assert_handled_once(finals, keys)
    assert await cli.dead_letters() == []
    assert replica.log_text().count("Joined group") == 1
