"""What the compliance report shows, computed from scan lines and audit records (pure).

Every record says where one object stood at one moment; the report keeps the latest word per
object — ``(bucket, key)`` for current objects, ``(bucket, key, version id)`` for the
non-current versions a ``--versions`` scan reports — and counts those, per bucket and per
External Key. An object counts as compliant when its verdict was ``compliant`` or the enforcer
re-encrypted it (a purged non-current version is gone for good). ``gone`` and ``out_of_scope``
objects are shown but do not count either way. Compliance over time replays the records in time
order and takes the share of compliant objects at the end of each time bin.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

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
        self.objects += 1
        state = state_of(line)
        self.compliant += state == "compliant"
        self.noncompliant += state == "noncompliant"
        self.verdicts[line.verdict or "unknown"] += 1
        self.actions[line.action] += 1

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


def build_report(lines: Iterable[ScanLine]) -> Report:
    ordered = sorted(lines, key=lambda line: line.timestamp)
    latest: dict[tuple[str, str, str], ScanLine] = {}
    for line in ordered:
        latest[identity(line)] = line
    total, buckets, keys = Group("all"), dict[str, Group](), dict[str, Group]()
    for line in latest.values():
        total.add(line)
        buckets.setdefault(line.bucket, Group(line.bucket)).add(line)
        ek = line.required_key or "(no rule)"
        keys.setdefault(ek, Group(ek)).add(line)
    failures = [line for line in latest.values() if line.action == "failed"]
    still = [line for line in latest.values() if state_of(line) == "noncompliant"]
    still.sort(key=lambda line: (line.bucket, line.key, line.version_id or ""))
    return Report(
        records=len(ordered),
        total=total,
        buckets=sorted(buckets.values(), key=lambda g: g.name),
        keys=sorted(keys.values(), key=lambda g: g.name),
        timeline=timeline(ordered),
        failures=failures[:MAX_LISTED],
        failure_reasons=Counter(_reason_class(line.reason) for line in failures),
        noncompliant=still[:MAX_LISTED],
        noncompliant_total=len(still),
        first=ordered[0].timestamp if ordered else None,
        last=ordered[-1].timestamp if ordered else None,
    )


def timeline(ordered: list[ScanLine]) -> list[TimePoint]:
    """Compliance at the end of each time bin, replaying ``ordered`` (sorted by time)."""
    if not ordered:
        return []
    start, end = ordered[0].timestamp, ordered[-1].timestamp
    size = next((s for s in _BIN_SIZES if (end - start) / s < _MAX_BINS), _BIN_SIZES[-1])
    states: dict[tuple[str, str, str], str] = {}
    points: list[TimePoint] = []
    bin_end, records, n = start + size, 0, 0
    while n < len(ordered) or not points:
        while n < len(ordered) and ordered[n].timestamp < bin_end:
            states[identity(ordered[n])] = state_of(ordered[n])
            records, n = records + 1, n + 1
        compliant = sum(1 for s in states.values() if s == "compliant")
        counted = sum(1 for s in states.values() if s != "uncounted")
        points.append(TimePoint(bin_end, records, compliant, counted))
        bin_end += size
    return points


def _reason_class(reason: str | None) -> str:
    """``key_missing: no such key ...`` → ``key_missing``."""
    return (reason or "unknown").split(":", 1)[0].strip() or "unknown"
