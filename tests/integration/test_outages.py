"""Outages of any length dead-letter nothing: MinIO or KES stopped mid-backlog, for 60 s and 5 min.

Objects are written (and their notifications are in Kafka) before the stop; a real ``enforcer
run`` consumes them before, during and after it. Afterwards every object is compliant, the DLQ
is empty, ``/readyz`` answered 503 while consumption was paused, and the enforcer's log grew by a
bounded number of lines (open, close, rate-limited "still paused").
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
    handled_keys,
)
from support import component_stopped

LOG_INTERVAL = 20.0


@pytest.mark.parametrize(
    ("component", "seconds"),
    [
        pytest.param("minio", 60, id="minio-60s", marks=pytest.mark.timeout(420)),
        pytest.param("kes", 60, id="kes-60s", marks=pytest.mark.timeout(420)),
        pytest.param("minio", 300, id="minio-5min", marks=pytest.mark.timeout(660)),
        pytest.param("kes", 300, id="kes-5min", marks=pytest.mark.timeout(660)),
    ],
)
async def test_an_outage_mid_backlog_dead_letters_nothing(
    backlog: Backlog,
    component: str,
    seconds: int,
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
        )
        async with ReadinessLog(replica) as ready:
            await tail.until(
                lambda r: len(handled_keys(r, bucket)) >= 10, 120, "the backlog under way",
                alive=replica.alive,
            )  # fmt: skip
            # The outage begins when the stop begins: the enforcer may pause while the stop
            # command still waits for the component to exit (seen under load).
            stopped_at, lines_before = time.monotonic(), len(replica.log_lines())
            with component_stopped(component):
                paused_at = await ready.wait_for(503, timeout=90)
                handled_while_down = len(handled_keys(tail.records, bucket))
                # The outage lasts `seconds`; the enforcer must stay up all along.
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(
                        asyncio.shield(replica.process.wait()),
                        timeout=stopped_at + seconds - time.monotonic(),
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
        outage_lines = replica.log_lines()[lines_before:]
        assert await replica.stop() == 0, replica.tail()

    assert 503 in ready.between(stopped_at, restarting_at)
    assert 200 not in ready.between(paused_at, restarting_at), "ready while paused:\n" + "\n".join(
        ready.changes(stopped_at) + outage_lines
    )
    assert await run.dead_letters() == []
    assert_all_compliant(s3_admin, bucket, keys, ek)
    # Bounded log: one line to pause, one to resume, a "still paused" line per LOG_INTERVAL.
    budget = 6 + int((recovered_at - stopped_at) / LOG_INTERVAL)
    assert len(outage_lines) <= budget, "\n".join(outage_lines[:50])
    assert sum("pausing consumption" in line for line in outage_lines) == 1, outage_lines
    assert sum("resuming consumption" in line for line in outage_lines) == 1, outage_lines
    print(  # the figures for the closing note (pytest -s)
        f"\n{component} down {seconds}s: {len(keys)} objects, {handled_while_down} handled "
        f"before the pause, {len(outage_lines)} log lines from stop to recovery, "
        f"paused {paused_at - stopped_at:.1f}s after the stop, recovered "
        f"{recovered_at - restarted_at:.1f}s after the restart, DLQ 0"
    )
