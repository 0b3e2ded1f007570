"""A consumer group's position: per partition its committed offset, log end and lag, and who
holds it — what ``kafka-consumer-groups.sh --describe`` shows, as values.

:func:`read_group_status` asks the brokers (admin client for the group, a group-less reader for
the log offsets); :class:`GroupStatus` and its renderers are pure.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from aiokafka import TopicPartition
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment

from enforcer.kafka.clients import kafka_call, open_admin, open_consumer
from enforcer.kafka.options import KafkaOptions


@dataclass(frozen=True)
class Member:
    member_id: str
    client_id: str
    host: str
    partitions: tuple[tuple[str, int], ...]


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  #: None: the group never committed here
    start: int  #: the oldest retained offset (where an uncommitted group begins)
    end: int
    member: Member | None = None

    @property
    def lag(self) -> int:
        return max(self.end - (self.start if self.committed is None else self.committed), 0)


@dataclass(frozen=True)
class GroupStatus:
    group: str
    state: str
    members: tuple[Member, ...]
    partitions: tuple[PartitionLag, ...]
    #: From the enforcer's readiness endpoint: True paused, False consuming, None unknown.
    paused: bool | None = None
    health: str = field(default="no --health-url")
    #: Configured input topics the cluster does not have (a typo, or not created yet).
    missing_topics: tuple[str, ...] = ()

    @property
    def total_lag(self) -> int:
        return sum(p.lag for p in self.partitions)

    def as_dict(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "state": self.state,
            "paused": self.paused,
            "health": self.health,
            "total_lag": self.total_lag,
            "missing_topics": list(self.missing_topics),
            "members": [
                {
                    "member_id": m.member_id,
                    "client_id": m.client_id,
                    "host": m.host,
                    "partitions": [f"{t}:{p}" for t, p in m.partitions],
                }
                for m in self.members
            ],
            "partitions": [
                {
                    "topic": p.topic,
                    "partition": p.partition,
                    "committed": p.committed,
                    "log_start": p.start,
                    "log_end": p.end,
                    "lag": p.lag,
                    "member_id": p.member.member_id if p.member else None,
                }
                for p in self.partitions
            ],
        }


COLUMNS = ("TOPIC", "PARTITION", "CURRENT-OFFSET", "LOG-END-OFFSET", "LAG", "CONSUMER-ID", "HOST")


def render_table(status: GroupStatus) -> str:
    """A summary line, then one row per partition (``-`` where there is no value)."""
    paused = {True: "yes", False: "no", None: "unknown"}[status.paused]
    head = (
        f"group {status.group}: {status.state}, {len(status.members)} member(s), "
        f"total lag {status.total_lag}, paused {paused} ({status.health})"
    )
    if status.missing_topics:
        head += f"; no such topic: {', '.join(status.missing_topics)}"
    rows = [COLUMNS] + [
        (
            p.topic,
            str(p.partition),
            "-" if p.committed is None else str(p.committed),
            str(p.end),
            str(p.lag),
            p.member.member_id if p.member else "-",
            p.member.host if p.member else "-",
        )
        for p in status.partitions
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    return "\n".join([head, *(line.rstrip() for line in lines)])


def decode_member(raw: dict[str, Any]) -> Member:
    """One member of a DescribeGroups response, its assignment decoded."""
    assigned: list[tuple[str, int]] = []
    if raw.get("member_assignment"):
        assignment = ConsumerProtocolMemberAssignment.decode(raw["member_assignment"])
        assigned = sorted((tp.topic, tp.partition) for tp in assignment.partitions())
    return Member(raw["member_id"], raw["client_id"], raw["client_host"], tuple(assigned))


async def read_group_status(kafka: KafkaOptions, group: str) -> GroupStatus:
    """Ask the brokers where ``group`` stands on its input topics and the backfill topic (and
    any it committed on)."""
    async with open_admin(kafka, "status") as admin:
        [described] = await kafka_call(admin.describe_consumer_groups([group]), "describing")
        committed = await kafka_call(admin.list_consumer_group_offsets(group), "reading offsets")
        # Only topics that exist: naming a missing one in a metadata request can create it.
        existing = set(await kafka_call(admin.list_topics(), "listing topics"))
        wanted = {*kafka.topics, kafka.backfill_topic, *(tp.topic for tp in committed)}
        topics = sorted(wanted & existing)
        metadata = await kafka_call(admin.describe_topics(topics), "describing topics")
    info = described.to_object()["groups"][0]
    members = tuple(decode_member(m) for m in info["members"])
    partitions = sorted(
        TopicPartition(t["topic"], p["partition"])
        for t in metadata
        if t["error_code"] == 0
        for p in t["partitions"]
    )
    starts, ends = await _log_offsets(kafka, partitions) if partitions else ({}, {})
    holder = {tp: m for m in members for tp in m.partitions}
    rows = tuple(
        PartitionLag(
            tp.topic,
            tp.partition,
            committed[tp].offset if tp in committed else None,
            starts[tp],
            ends[tp],
            holder.get((tp.topic, tp.partition)),
        )
        for tp in partitions
    )
    missing = tuple(sorted(set(kafka.topics) - existing))
    return GroupStatus(group, info["state"] or "Dead", members, rows, missing_topics=missing)


async def _log_offsets(
    kafka: KafkaOptions, partitions: list[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """The oldest retained and the next offset of each partition."""
    async with open_consumer(kafka, None, "status") as reader:
        starts = await kafka_call(reader.beginning_offsets(partitions), "reading log starts")
        ends = await kafka_call(reader.end_offsets(partitions), "reading log ends")
    return starts, ends
