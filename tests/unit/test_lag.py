"""The pure half of ``enforcer status``: lag arithmetic, member decoding and the table."""

from __future__ import annotations

from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from enforcer.kafka.lag import GroupStatus, Member, PartitionLag, decode_member, render_table

MEMBER = Member("enforcer-1-abc", "sse-enforcer-events", "/127.0.0.1", (("events", 0),))


def test_lag_counts_from_the_commit_or_else_from_the_oldest_retained_record() -> None:
    assert PartitionLag("t", 0, committed=7, start=0, end=10).lag == 3
    assert PartitionLag("t", 0, committed=None, start=4, end=10).lag == 6
    assert PartitionLag("t", 0, committed=12, start=0, end=10).lag == 0  # never negative


def test_a_members_assignment_is_decoded() -> None:
    raw = ConsumerProtocolMemberAssignment(0, [("events", [1, 0]), ("other", [3])], b"").encode()
    member = decode_member(
        {"member_id": "m", "client_id": "c", "client_host": "/h", "member_assignment": raw}
    )
    assert member == Member("m", "c", "/h", (("events", 0), ("events", 1), ("other", 3)))
    empty = {"member_id": "m", "client_id": "c", "client_host": "/h", "member_assignment": b""}
    assert decode_member(empty).partitions == ()


def test_table_and_json_say_the_same() -> None:
    status = GroupStatus(
        "g",
        "Stable",
        (MEMBER,),
        (
            PartitionLag("events", 0, 5, 0, 9, MEMBER),
            PartitionLag("events", 1, None, 2, 3),
        ),
        paused=True,
        health="paused: KMS or storage outage",
    )
    head, columns, first, second = render_table(status).splitlines()
    assert head == (
        "group g: Stable, 1 member(s), total lag 5, paused yes (paused: KMS or storage outage)"
    )
    assert columns.split()[:5] == ["TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG"]
    assert first.split() == ["events", "0", "5", "9", "4", "enforcer-1-abc", "/127.0.0.1"]
    assert second.split() == ["events", "1", "-", "3", "1", "-", "-"]
    data = status.as_dict()
    assert data["total_lag"] == 5 and data["paused"] is True
    assert data["members"][0]["partitions"] == ["events:0"]
    assert [p["member_id"] for p in data["partitions"]] == ["enforcer-1-abc", None]


def test_missing_input_topics_are_named() -> None:
    status = GroupStatus("g", "Dead", (), (), missing_topics=("typo-events",))
    assert render_table(status).splitlines()[0].endswith("; no such topic: typo-events")
    assert status.as_dict()["missing_topics"] == ["typo-events"]
