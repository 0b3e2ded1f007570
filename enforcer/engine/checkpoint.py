"""Where an interrupted scan resumes: the contiguous done prefix of the listing, on disk.

A scan hands objects to workers out of order, so "how far did we get" is the last position such
that every object listed up to it is done — the same rule the consumer uses for Kafka offsets.
:class:`DoneTracker` computes it (pure); :class:`Checkpoint` is the file, written atomically
(temporary file + rename), so a crash leaves the previous checkpoint or the new one, never half
of one. A stopped scan (SIGINT/SIGTERM) finishes what it already started before it writes its
last checkpoint, so a resumed scan classifies every object exactly once; after a hard crash the
objects finished beyond the checkpoint are classified once more (harmless: every action is
idempotent).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from enforcer.errors import ConfigError

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class Position:
    """An entry's place in the scan's source: its index and listing continuation point."""

    index: int  # 0-based, in source order
    key: str
    version_id: str | None = None


class DoneTracker:
    """Positions handed out in order, finished in any order; :attr:`done_through` is the last
    position whose predecessors are all finished."""

    def __init__(self, start_index: int = 0) -> None:
        self._next_index = start_index
        self._pending: dict[int, Position] = {}
        self._finished: set[int] = set()
        self._low = start_index  # the lowest index not yet known finished
        self.done_through: Position | None = None

    def dispatch(self, key: str, version_id: str | None = None) -> Position:
        position = Position(self._next_index, key, version_id)
        self._pending[position.index] = position
        self._next_index += 1
        return position

    def finish(self, position: Position) -> None:
        self._finished.add(position.index)
        while self._low in self._finished:
            self._finished.discard(self._low)
            self.done_through = self._pending.pop(self._low)
            self._low += 1

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    @property
    def consumed(self) -> int:
        """How many entries of the source are done, contiguously from its start."""
        return self._low


class RangeState(BaseModel):
    """One key range of a split scan (``(after, through]``) and how far its lister got."""

    model_config = ConfigDict(extra="forbid")

    after: str | None = None
    through: str | None = None
    consumed: int = Field(default=0, description="Entries of this range done, contiguously")
    after_key: str | None = Field(default=None, description="Every key up to it is done")
    complete: bool = False

    @property
    def start_after(self) -> str | None:
        """Where its listing continues: after the done prefix, else after the range's start."""
        return self.after_key if self.after_key is not None else self.after


class Checkpoint(BaseModel):
    """The resume point of one scan, plus its running totals (so the final summary covers the
    whole scan, however many runs it took)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint_version: int = CHECKPOINT_VERSION
    source: str = Field(description="s3://bucket/prefix or the inventory manifest")
    versions: bool = False
    enqueue: bool = False
    consumed: int = Field(default=0, description="Entries done, contiguously from the start")
    after_key: str | None = None
    after_version_id: str | None = None
    verdicts: dict[str, int] = Field(default_factory=dict)
    actions: dict[str, int] = Field(default_factory=dict)
    objects: int = 0
    failed: int = 0
    complete: bool = False
    updated: datetime | None = None
    split: int | None = Field(default=None, description="--split: the ranges asked for")
    ranges: list[RangeState] = Field(
        default_factory=list, description="A split scan's ranges, cut once at its start"
    )

    def matches(self, source: str, versions: bool, enqueue: bool, split: int | None = None) -> bool:
        return (self.source, self.versions, self.enqueue, self.split) == (
            source, versions, enqueue, split,
        )  # fmt: skip


def load_checkpoint(path: Path) -> Checkpoint | None:
    """The checkpoint at ``path``; None if there is none; ConfigError if it is unreadable."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(f"checkpoint {path}: {exc.strerror}") from exc
    try:
        return Checkpoint.model_validate_json(text)
    except ValidationError as exc:
        reason = exc.errors()[0]["msg"]
        raise ConfigError(f"checkpoint {path} is not a scan checkpoint: {reason}") from exc


def save_checkpoint(path: Path, checkpoint: Checkpoint) -> None:
    """Write atomically: the old checkpoint or the new one, never a torn file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with partial.open("w", encoding="utf-8") as file:
        file.write(checkpoint.model_dump_json(indent=2))
        file.flush()
        os.fsync(file.fileno())
    partial.replace(path)
