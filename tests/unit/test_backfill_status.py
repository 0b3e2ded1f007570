"""A backfill's progress across the group (enforcer.kafka.backfill.summarize, render): ranges
done, objects, rate and ETA from the ranges' committed progress."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

from enforcer.engine.range_tasks import RangeProgress
from enforcer.kafka.backfill import as_json, render, summarize

START = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)


def progress(
    index: int, objects: int, seconds: float, complete: bool, bf: str = "bf"
) -> RangeProgress:
    return RangeProgress(backfill_id=bf, index=index, total=4, bucket="photos", objects=objects,
                         verdicts={"compliant": objects}, complete=complete, started=START,
                         updated=START + timedelta(seconds=seconds))  # fmt: skip


def test_rate_and_eta_come_from_the_committed_progress() -> None:
    [status] = summarize([progress(0, 1000, 10, True), progress(1, 500, 10, False)])
    assert (status.ranges, status.started, status.done, status.objects) == (4, 2, 1, 1500)
    assert status.rate == 150.0
    # 750 objects per started range, 3 ranges left at 150/s
    assert status.eta_seconds == 15.0
    shown = status.as_dict()
    assert shown["complete"] is False and shown["verdicts"] == {"compliant": 1500}
    assert "1/4" in render([status]) and "15s" in render([status])


def test_a_finished_backfill_and_one_without_a_finished_range() -> None:
    done = summarize([progress(n, 10, 2, True) for n in range(4)])[0]
    assert done.eta_seconds == 0.0 and "done" in render([done])
    fresh = summarize([progress(0, 0, 0, False, bf="new")])[0]
    assert fresh.rate is None and fresh.eta_seconds is None and "unknown" in render([fresh])
    assert [s["backfill_id"] for s in json.loads(as_json([done, fresh]))] == ["bf", "new"]
    assert render([]) == "no backfill ranges have reported progress"
