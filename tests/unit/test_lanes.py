"""The per-turn plan of the two lanes (pure): what is paused, how many backfill records to take."""

from __future__ import annotations

import pytest
from aiokafka import TopicPartition

from enforcer.kafka.lanes import BackfillLane, Turn, live_lag, plan_turn, range_may_start, split

LIVE = frozenset({TopicPartition("events", 0), TopicPartition("events", 1)})
BACKFILL = frozenset({TopicPartition("backfill", 0)})
LANE = BackfillLane("backfill", max_live_lag=10)
SLOTS = 8


def turn(**fields: object) -> Turn:
    return Turn(**{"gate_paused": False, "window_full": False, "live": LIVE,
                   "backfill": BACKFILL, **fields})  # type: ignore[arg-type]  # fmt: skip


def test_split_names_the_backfill_topic_s_partitions_and_nothing_else() -> None:
    parts = split(LIVE | BACKFILL, LANE)
    assert (parts.live, parts.backfill) == (LIVE, BACKFILL)
    assert split(LIVE | BACKFILL, None).backfill == frozenset()


@pytest.mark.parametrize(
    ("fields", "paused", "room", "held"),
    [
        pytest.param({}, frozenset(), SLOTS, False, id="idle: every slot"),
        pytest.param(
            {"live_in_flight": 3, "backfill_in_flight": 1},
            frozenset(),
            4,
            False,
            id="only the slots live work leaves idle",
        ),
        pytest.param({"live_in_flight": 7}, frozenset(), 0, False, id="less than a batch left"),
        pytest.param({"live_in_flight": 20}, frozenset(), 0, False, id="live takes every slot"),
        pytest.param({"live_lag": 11}, BACKFILL, 0, True, id="live lag above the threshold"),
        pytest.param({"live_lag": 10}, frozenset(), SLOTS, False, id="live lag at the threshold"),
        pytest.param({"live_lag": None}, BACKFILL, 0, True, id="live lag not known yet"),
        pytest.param({"gate_paused": True}, LIVE | BACKFILL, 0, True, id="outage: all paused"),
        pytest.param({"window_full": True}, LIVE | BACKFILL, 0, True, id="full window: all"),
        pytest.param(
            {"live": frozenset(), "backfill_in_flight": SLOTS},
            BACKFILL,
            0,
            False,
            id="no live partition and no room: paused, so the poll returns nothing",
        ),
    ],
)
def test_plan(fields: dict[str, object], paused: frozenset[TopicPartition], room: int,
              held: bool) -> None:  # fmt: skip
    plan = plan_turn(turn(**fields), LANE, SLOTS)
    assert (plan.paused, plan.backfill_room, plan.held) == (paused, room, held)


def test_without_a_lane_only_the_gate_and_the_window_pause() -> None:
    live_only = turn(backfill=frozenset())
    assert plan_turn(live_only, None, SLOTS).paused == frozenset()
    assert plan_turn(turn(backfill=frozenset(), gate_paused=True), None, SLOTS).paused == LIVE


def test_live_lag_sums_what_is_not_fetched_and_is_unknown_until_every_partition_reported() -> None:
    a, b = sorted(LIVE)
    assert live_lag(LIVE, {a: 10, b: 5}, {a: 4, b: 5}) == 6
    assert live_lag(LIVE, {a: 10, b: 5}, {a: 12, b: 5}) == 0  # never below zero
    assert live_lag(LIVE, {a: 10, b: None}, {a: 4, b: 5}) is None
    assert live_lag(LIVE, {a: 10, b: 5}, {a: 4, b: None}) is None
    assert live_lag(frozenset(), {}, {}) == 0


@pytest.mark.parametrize(
    ("fields", "lane", "may"),
    [
        pytest.param({}, LANE, True, id="idle"),
        pytest.param({"live_in_flight": 6}, LANE, True, id="a quarter of the slots idle"),
        pytest.param({"live_in_flight": 7}, LANE, False, id="less than a quarter idle"),
        pytest.param(
            {"live_in_flight": 3, "backfill_in_flight": 4},
            LANE,
            False,
            id="the backfill topic's records count too",
        ),
        pytest.param({"live_lag": 11}, LANE, False, id="live lag above the threshold"),
        pytest.param({"live_lag": None}, LANE, False, id="live lag not known yet"),
        pytest.param({"live_lag": None}, None, True, id="no lane: no lag threshold"),
        pytest.param({"gate_paused": True}, LANE, False, id="outage"),
        pytest.param({"window_full": True}, LANE, False, id="full window"),
    ],
)
def test_range_may_start(fields: dict[str, object], lane: BackfillLane | None, may: bool) -> None:
    assert range_may_start(turn(**fields), lane, SLOTS) is may
