"""A backfill range as the records the group shares: the task on the backfill-tasks topic and
the progress committed with the range's final audit records (both contracts, with JSON Schemas).
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from enforcer.core.keyspace import KeyRange

TASK_SCHEMA_VERSION = 1


class RangeTask(BaseModel):
    """One key range of a backfill, as a task on the backfill-tasks topic (a contract)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = TASK_SCHEMA_VERSION
    backfill_id: str
    index: int = Field(ge=0)
    total: int = Field(ge=1, description="Ranges in this backfill")
    bucket: str
    prefix: str = ""
    after: str | None = Field(default=None, description="Keys after this one (None: the start)")
    through: str | None = Field(default=None, description="... up to this one (None: the end)")
    created: datetime

    @property
    def key_range(self) -> KeyRange:
        return KeyRange(self.after, self.through)

    @property
    def task_key(self) -> str:
        """The Kafka key of the task and of its progress record."""
        return f"{self.backfill_id}/{self.index:05d}"


class RangeProgress(BaseModel):
    """How far one range got, committed with its final audit records (a contract; the
    backfill-progress topic is compacted, keyed like the task)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: int = TASK_SCHEMA_VERSION
    backfill_id: str
    index: int
    total: int
    bucket: str
    after_key: str | None = Field(default=None, description="Every key up to it is done")
    done_beyond: list[str] = Field(default_factory=list, description="Done keys past after_key")
    objects: int = 0
    verdicts: dict[str, int] = Field(default_factory=dict)
    actions: dict[str, int] = Field(default_factory=dict)
    failed: int = 0
    complete: bool = False
    owner: str = Field(default="", description="The replica that committed it")
    started: datetime
    updated: datetime

    @classmethod
    def first(cls, task: RangeTask, now: datetime) -> RangeProgress:
        return cls(backfill_id=task.backfill_id, index=task.index, total=task.total,
                   bucket=task.bucket, after_key=task.after, started=now,
                   updated=now)  # fmt: skip
