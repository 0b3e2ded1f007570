"""Crashes, scale-out and broker restarts mid-backlog: nothing lost, nothing left non-compliant,
and no write without an audit trail.

Every test writes a backlog of plaintext objects (their notifications spread over the stack's
4-partition notification topic), lets real ``enforcer run`` processes work on it, injects the
fault, and waits — on audit records, never on a clock — until every object has a closing record.
"""

from __future__ import annotations

import random
from typing import Any

import pytest
from replicas import (
    AuditTail,
    Backlog,
    Spawn,
    assert_all_compliant,
    at_least,
    audit_tail,
    handled_keys,
)
from support import restart_component


def trail_gaps(tail: AuditTail, bucket: str, keys: list[str]) -> dict[str, list[str]]:
    """Objects without an audit trail of their rewrite: neither a ``reencrypted`` record nor an
    intent (``rewriting``) record followed by a ``compliant`` one."""
    gaps = {}
    for key, records in tail.final(bucket).items():
        actions = [(r["action"], r.get("verdict")) for r in records]
        rewritten = any(a == "reencrypted" for a, _ in actions)
        intent = next((i for i, (a, _) in enumerate(actions) if a == "rewriting"), None)
        confirmed = intent is not None and any(v == "compliant" for _, v in actions[intent:])
        if not (rewritten or confirmed):
            gaps[key] = [f"{a}/{v}" for a, v in actions]
    missing = set(keys) - tail.final(bucket).keys()
    return gaps | {key: [] for key in missing}


@pytest.mark.timeout(600)
async def test_repeated_kill_9_leaves_an_audit_trail_for_every_rewrite(
    backlog: Backlog,
    s3_admin: Any,
    spawn: Spawn,
) -> None:
    run, ek, bucket, keys = await backlog(300)
    kills, chooser = 0, random.Random(7)
    async with audit_tail(run) as tail:
        while kills < 5 and len(handled_keys(tail.records, bucket)) < len(keys) * 0.8:
            replica = await spawn(run, f"run-{kills}", ENFORCER_CONCURRENCY="8")
            target = len(handled_keys(tail.records, bucket)) + chooser.randint(15, 40)
            await tail.until(
                at_least(bucket, target), 120,
                f"{target} objects handled", alive=replica.alive,
            )  # fmt: skip
            await replica.kill()
            kills += 1
        await run.drain()  # the last run finishes the backlog and stops once caught up
        await tail.until(
            lambda r: handled_keys(r, bucket) >= set(keys), 60, "every object's closing record"
        )
        gaps = trail_gaps(tail, bucket, keys)
        by_intent = sum(
            1
            for records in tail.final(bucket).values()
            if not any(r["action"] == "reencrypted" for r in records)
        )
    assert kills >= 3
    assert gaps == {}, f"{len(gaps)} rewrites without an audit trail: {list(gaps.items())[:5]}"
    assert_all_compliant(s3_admin, bucket, keys, ek)
    assert await run.dead_letters() == []
    print(f"\nkill -9: {kills} kills, {len(keys)} objects, {by_intent} covered by intent records")


@pytest.mark.timeout(600)
async def test_three_replicas_one_killed_mid_backlog_lose_nothing(
    backlog: Backlog,
    s3_admin: Any,
    spawn: Spawn,
) -> None:
    run, ek, bucket, keys = await backlog(300)
    async with audit_tail(run) as tail:
        replicas = [await spawn(run, f"replica-{i}", ENFORCER_CONCURRENCY="2") for i in range(3)]
        await tail.until(lambda r: len(handled_keys(r, bucket)) >= 30, 120, "the backlog under way")
        victim = next(r for r in replicas if r.alive())
        await victim.kill()
        survivors = [r for r in replicas if r is not victim]
        await tail.until(
            lambda r: handled_keys(r, bucket) >= set(keys), 300, "every object handled",
            alive=lambda: all(r.alive() for r in survivors),
        )  # fmt: skip
        codes = [await r.stop() for r in survivors]
        gaps = trail_gaps(tail, bucket, keys)
    assert codes == [0, 0], [r.tail() for r in survivors]
    worked = [r for r in replicas if any("Setting newly assigned" in x for x in r.log_lines())]
    assert len(worked) >= 2, "the group never spread over several replicas"
    assert gaps == {}
    assert_all_compliant(s3_admin, bucket, keys, ek)
    assert await run.dead_letters() == []


@pytest.mark.stops_stack
@pytest.mark.timeout(600)
async def test_a_broker_restart_mid_backlog_loses_nothing(
    backlog: Backlog,
    s3_admin: Any,
    spawn: Spawn,
) -> None:
    run, ek, bucket, keys = await backlog(300)
    async with audit_tail(run) as tail:
        replica = await spawn(run, "enforcer", ENFORCER_CONCURRENCY="2")
        await tail.until(
            lambda r: len(handled_keys(r, bucket)) >= 20, 120, "the backlog under way",
            alive=replica.alive,
        )  # fmt: skip
        restart_component("kafka")
        await tail.until(
            lambda r: handled_keys(r, bucket) >= set(keys), 300, "every object handled",
            alive=replica.alive,
        )  # fmt: skip
        assert await replica.stop() == 0, replica.tail()
        gaps = trail_gaps(tail, bucket, keys)
    assert gaps == {}
    assert_all_compliant(s3_admin, bucket, keys, ek)
    assert await run.dead_letters() == []
