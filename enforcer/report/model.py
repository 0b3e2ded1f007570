"""What the compliance report shows, computed from scan lines and audit records (pure).

Every record says where one object stood at one moment; the report keeps the latest word per
object — ``(bucket, key)`` for current objects, ``(bucket, key, version id)`` for the
non-current versions a ``--versions`` scan reports — and counts those, per bucket and per
External Key. An object counts as compliant when its verdict was ``compliant`` or the enforcer
re-encrypted it (a purged non-current version is gone for good). ``gone`` and ``out_of_scope``
objects are shown but do not count either way. Compliance over time replays the records in time
order and takes the share of compliant objects at the end of each time bin.

The values and rules are here (pure); :mod:`enforcer.report.store` computes them over any number
of records without holding them in memory.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from enforcer.engine.records import NONCURRENT_EVENT, ScanLine

#: How many objects the report lists one by one (all are counted).
MAX_LISTED = 500
_UNCOUNTED_VERDICTS = {"gone", "out_of_scope"}
_FIXED_ACTIONS = {"reencrypted", "purged"}
_BIN_SIZES = (
    timedelta(minutes=1),
    timedelta(minutes=10),
    timedelta(hours=1),
    timedelta(hours=6),
    timedelta(days=1),
    timedelta(days=7),
)
_MAX_BINS = 60


def state_of(line: ScanLine) -> str:
    """``compliant``, ``noncompliant`` or ``uncounted`` for the object after this record."""
    if line.action in _FIXED_ACTIONS or line.verdict == "compliant":
        return "compliant"
    if line.verdict in _UNCOUNTED_VERDICTS or (line.verdict is None and line.action == "skipped"):
        return "uncounted"
    return "noncompliant"


def identity(line: ScanLine) -> tuple[str, str, str]:
    noncurrent = not line.is_latest or line.event_name == NONCURRENT_EVENT
    return line.bucket, line.key, (line.version_id or "") if noncurrent else ""


@dataclass
class Group:
    """Counts for one bucket or one EK (latest record per object)."""

    name: str
    objects: int = 0
    compliant: int = 0
    noncompliant: int = 0
    verdicts: Counter[str] = field(default_factory=Counter)
    actions: Counter[str] = field(default_factory=Counter)

    def add(self, line: ScanLine) -> None:
        self.add_counts(line.verdict, line.action, state_of(line), 1)

    def add_counts(self, verdict: str | None, action: str, state: str, count: int) -> None:
        """``count`` objects whose latest record says ``verdict``/``action`` (``state``)."""
        self.objects += count
        self.compliant += count if state == "compliant" else 0
        self.noncompliant += count if state == "noncompliant" else 0
        self.verdicts[verdict or "unknown"] += count
        self.actions[action] += count

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "objects": self.objects,
            "compliant": self.compliant,
            "noncompliant": self.noncompliant,
            "compliance": self.compliance,
            "verdicts": dict(sorted(self.verdicts.items())),
            "actions": dict(sorted(self.actions.items())),
        }

    @property
    def compliance(self) -> float | None:
        counted = self.compliant + self.noncompliant
        return 100.0 * self.compliant / counted if counted else None


@dataclass(frozen=True)
class TimePoint:
    end: datetime
    records: int
    compliant: int
    counted: int


@dataclass
class Report:
    records: int
    total: Group
    buckets: list[Group]
    keys: list[Group]
    timeline: list[TimePoint]
    failures: list[ScanLine]
    failure_reasons: Counter[str]
    noncompliant: list[ScanLine]
    noncompliant_total: int
    first: datetime | None
    last: datetime | None

    def as_dict(self) -> dict[str, Any]:
        """The figures as JSON-ready values (``enforcer report --json``)."""
        return {
            "records": self.records,
            "first": self.first.isoformat() if self.first else None,
            "last": self.last.isoformat() if self.last else None,
            "total": self.total.as_dict(),
            "buckets": [g.as_dict() for g in self.buckets],
            "keys": [g.as_dict() for g in self.keys],
            "timeline": [
                {
                    "end": p.end.isoformat(),
                    "records": p.records,
                    "compliant": p.compliant,
                    "counted": p.counted,
                }
                for p in self.timeline
            ],
            "failure_reasons": dict(self.failure_reasons.most_common()),
            "failures": [_listed(line) for line in self.failures],
            "noncompliant_total": self.noncompliant_total,
            "noncompliant": [_listed(line) for line in self.noncompliant],
        }


def _listed(line: ScanLine) -> dict[str, Any]:
    return line.model_dump(mode="json", exclude_none=True, exclude={"source"})


def bin_size(span: timedelta) -> timedelta:
    """The timeline's bin: the smallest of the sizes that cuts ``span`` into fewer than
    ``_MAX_BINS`` bins (else the largest)."""
    return next((s for s in _BIN_SIZES if span / s < _MAX_BINS), _BIN_SIZES[-1])


def reason_class(reason: str | None) -> str:
    """``key_missing: no such key ...`` → ``key_missing``."""
    return (reason or "unknown").split(":", 1)[0].strip() or "unknown"
