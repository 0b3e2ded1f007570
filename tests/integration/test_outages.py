"""Outages of any length dead-letter nothing: MinIO or KES stopped mid-backlog, consumption
paused for less than the consumer's max.poll.interval and for three of them.

Objects are written (and their notifications are in Kafka) before the stop; a real ``enforcer
run`` consumes them before, during and after it. Afterwards every object is compliant, the DLQ
is empty, ``/readyz`` answered 503 while consumption was paused, the member never left its
consumer group, and the enforcer's log grew by a bounded number of lines (open, close,
rate-limited "still paused").

Kafka's default max.poll.interval is 5 minutes; the enforcer under test is given a short one
(``ENFORCER_KAFKA__MAX_POLL_INTERVAL_MS``) and a short "still paused" interval, so a pause longer
than several of each takes seconds, not minutes. A member that stopped polling for longer than
its interval would leave its group and rejoin under a new member id. (The outage begins at the
stop: MinIO fails at once, but takes about 20 s to give up on a stopped KES.)
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from replicas import (
    Backlog,
    ReadinessLog,
    Spawn,
    assert_all_compliant,
    audit_tail,
    group_member_ids,
    handled_keys,
)
from support import component_stopped

#: Seconds between two "still paused" lines: every pause here lasts several of them.
LOG_INTERVAL = 3.0


@pytest.mark.stops_stack
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("component", "seconds", "poll_interval"),
    [  # consumption paused for (seconds), under the enforcer's max.poll.interval (seconds)
        pytest.param("minio", 10, 60, id="minio-paused-10s-of-a-60s-poll-interval"),
        pytest.param("kes", 10, 60, id="kes-paused-10s-of-a-60s-poll-interval"),
        pytest.param("minio", 24, 8, id="minio-paused-24s-3-poll-intervals"),
        pytest.param("kes", 24, 8, id="kes-paused-24s-3-poll-intervals"),
    ],
)
async def test_an_outage_mid_backlog_dead_letters_nothing(
    backlog: Backlog,
    component: str,
    seconds: int,
    poll_interval: int,
    s3_admin: Any,
    spawn: Spawn,
) -> None:
    run, ek, bucket, keys = await backlog(200)  # before the stop: a stopped MinIO takes no writes

    async with audit_tail(run) as tail:
        replica = await spawn(
            run,
            "enforcer",
            ENFORCER_CONCURRENCY="1",  # a backlog that lasts into the outage
            ENFORCER_OUTAGE__PROBE_INTERVAL="1",
            ENFORCER_OUTAGE__LOG_INTERVAL=str(LOG_INTERVAL),
            ENFORCER_KAFKA__MAX_POLL_INTERVAL_MS=str(poll_interval * 1000),
        )
        async with ReadinessLog(replica) as ready:
            await tail.until(
                lambda r: len(handled_keys(r, bucket)) >= 10, 120, "the backlog under way",
                alive=replica.alive,
            )  # fmt: skip
            # The outage begins when the stop begins: the enforcer may pause while the stop
            # command still waits for the component to exit (seen under load).
            stopped_at, lines_before = time.monotonic(), len(replica.log_lines())
            members = await group_member_ids(run.stack.kafka_bootstrap, run.group_id)
            with component_stopped(component):
                paused_at = await ready.wait_for(503, timeout=90)
                handled_while_down = len(handled_keys(tail.records, bucket))
                # Consumption stays paused for `seconds`; the enforcer must stay up all along.
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(replica.process.wait()),
                        timeout=paused_at + seconds - time.monotonic(),
                    )
                assert await run.dead_letters() == []
                restarting_at = time.monotonic()  # the start below may answer after it is up
            restarted_at = time.monotonic()
            await tail.until(
                lambda r: handled_keys(r, bucket) >= set(keys), 300, "every object handled",
                alive=replica.alive,
            )  # fmt: skip
            await ready.wait_for(200, timeout=60)
            recovered_at = time.monotonic()
            rejoined = await group_member_ids(run.stack.kafka_bootstrap, run.group_id)
        outage_lines = replica.log_lines()[lines_before:]
        assert await replica.stop() == 0, replica.tail()

    assert 503 in ready.between(stopped_at, restarting_at)
    assert 200 not in ready.between(paused_at, restarting_at), "ready while paused:\n" + "\n".join(
        ready.changes(stopped_at) + outage_lines
    )
    assert await run.dead_letters() == []
    assert_all_compliant(s3_admin, bucket, keys, ek)
    assert len(members) == 1 and rejoined == members, "the member left its group and rejoined"
    # Bounded log: one line to pause, one to resume, a "still paused" line per LOG_INTERVAL.
    budget = 6 + int((recovered_at - stopped_at) / LOG_INTERVAL)
    assert len(outage_lines) <= budget, "\n".join(outage_lines[:50])
    assert sum("pausing consumption" in line for line in outage_lines) == 1, outage_lines
    assert sum("resuming consumption" in line for line in outage_lines) == 1, outage_lines
    print(  # the figures for the closing note (pytest -s)
        f"\n{component} down, paused {seconds}s: {len(keys)} objects, {handled_while_down} handled "
        f"before the pause, {len(outage_lines)} log lines from stop to recovery, "
        f"paused {paused_at - stopped_at:.1f}s after the stop, recovered "
        f"{recovered_at - restarted_at:.1f}s after the restart, DLQ 0, same member"
    )
