"""The report's figures over any number of records in flat memory.

Records stream into a scratch SQLite database in a temporary file (deleted on close): one row
per object holding its latest record (``objects``, upserted), and one small row per record
(``history``: time, object, state) for the compliance timeline. The figures are queries over
those tables; the timeline replays ``history`` in time order through a window function, so
neither the records nor the objects are ever held in Python at once. Memory is SQLite's page
cache and sorters (:data:`CACHE_KIB`) plus one batch of rows; the disk use is roughly 200 bytes
per object and 100 per record.

"Latest" and the replay order are (timestamp, arrival): the same word per object as a stable
sort by time gives.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any

from enforcer.engine.records import ScanLine
from enforcer.report.model import (
    MAX_LISTED,
    Group,
    Report,
    TimePoint,
    bin_size,
    identity,
    reason_class,
    state_of,
)

#: SQLite page cache, KiB: the database's share of memory, whatever its size (each of SQLite's
#: sorters, used by the timeline's replay, takes at most as much again). Measured: 4 MiB keeps a
#: report over 1,000,000 records as small as over 100,000 (benchmarks/report_memory.py).
CACHE_KIB = 4 * 1024
#: Rows written per transaction.
BATCH = 5000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATES = {"uncounted": 0, "noncompliant": 1, "compliant": 2}
#: What the objects table keeps of a line besides its identity (bucket, key = ``object``).
_LINE_FIELDS = (
    "version_id", "is_latest", "observed_sse", "observed_kms_key", "required_key", "verdict",
    "action", "reason", "mode", "event_name", "source",
)  # fmt: skip
_SCHEMA = f"""
CREATE TABLE objects (
    id INTEGER PRIMARY KEY, bucket TEXT NOT NULL, object TEXT NOT NULL, vid TEXT NOT NULL,
    ts INTEGER NOT NULL, seq INTEGER NOT NULL, state INTEGER NOT NULL,
    {", ".join(f"{name} {'INTEGER' if name == 'is_latest' else 'TEXT'}" for name in _LINE_FIELDS)},
    UNIQUE (bucket, object, vid)
);
CREATE TABLE history (seq INTEGER PRIMARY KEY, ts INTEGER NOT NULL, bucket TEXT NOT NULL,
                      object TEXT NOT NULL, vid TEXT NOT NULL, state INTEGER NOT NULL);
"""
_UPSERT = f"""
INSERT INTO objects (bucket, object, vid, ts, seq, state, {", ".join(_LINE_FIELDS)})
VALUES (?, ?, ?, ?, ?, ?, {", ".join("?" for _ in _LINE_FIELDS)})
ON CONFLICT (bucket, object, vid) DO UPDATE SET
    ts = excluded.ts, seq = excluded.seq, state = excluded.state,
    {", ".join(f"{name} = excluded.{name}" for name in _LINE_FIELDS)}
WHERE excluded.ts >= objects.ts
"""  # noqa: S608 - the column names are ours


def _micros(moment: datetime) -> int:
    if moment.tzinfo is None:  # a naive timestamp is read as UTC
        moment = moment.replace(tzinfo=UTC)
    return (moment - _EPOCH) // timedelta(microseconds=1)


def _moment(micros: int) -> datetime:
    return _EPOCH + timedelta(microseconds=micros)


class ReportStore:
    """Add records (any order, any number), then :meth:`report`. A context manager: the
    scratch database is removed on exit."""

    def __init__(self, directory: str | None = None) -> None:
        handle, self._path = tempfile.mkstemp(prefix="enforcer-report-", suffix=".sqlite",
                                              dir=directory)  # fmt: skip
        os.close(handle)
        self._db = sqlite3.connect(self._path)
        for pragma in ("journal_mode = OFF", "synchronous = OFF", f"cache_size = -{CACHE_KIB}",
                       "temp_store = FILE"):  # fmt: skip
            self._db.execute(f"PRAGMA {pragma}")
        self._db.executescript(_SCHEMA)
        self._seq = 0
        self._pending: list[ScanLine] = []

    def __enter__(self) -> ReportStore:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        self._db.close()
        os.unlink(self._path)

    def add(self, line: ScanLine) -> None:
        self._pending.append(line)
        if len(self._pending) >= BATCH:
            self._flush()

    def add_all(self, lines: Iterable[ScanLine]) -> None:
        for line in lines:
            self.add(line)

    def _flush(self) -> None:
        objects, history = [], []
        for line in self._pending:
            self._seq += 1
            ts, state, ident = _micros(line.timestamp), _STATES[state_of(line)], identity(line)
            values = [getattr(line, name) for name in _LINE_FIELDS]
            objects.append((*ident, ts, self._seq, state, *values))
            history.append((self._seq, ts, *ident, state))
        with self._db:  # one transaction
            self._db.executemany(_UPSERT, objects)
            self._db.executemany("INSERT INTO history VALUES (?, ?, ?, ?, ?, ?)", history)
        self._pending.clear()

    # ------------------------------------------------------------ the figures

    def report(self) -> Report:
        self._flush()
        records, first, last = self._db.execute(
            "SELECT COUNT(*), MIN(ts), MAX(ts) FROM history"
        ).fetchone()
        total, buckets = self._groups("bucket")
        _, keys = self._groups("COALESCE(required_key, '(no rule)')")
        failures = list(self._lines("action = 'failed'", "bucket, object, vid", MAX_LISTED))
        (noncompliant_total,) = self._db.execute(
            "SELECT COUNT(*) FROM objects WHERE state = ?", (_STATES["noncompliant"],)
        ).fetchone()
        return Report(
            records=records,
            total=total,
            buckets=buckets,
            keys=keys,
            timeline=self._timeline(first, last) if records else [],
            failures=failures,
            failure_reasons=self._failure_reasons(),
            noncompliant=list(
                self._lines(
                    f"state = {_STATES['noncompliant']}",
                    "bucket, object, COALESCE(version_id, '')",
                    MAX_LISTED,
                )
            ),
            noncompliant_total=noncompliant_total,
            first=_moment(first) if records else None,
            last=_moment(last) if records else None,
        )

    def _groups(self, column: str) -> tuple[Group, list[Group]]:
        """The total and one group per value of ``column`` (sorted by name)."""
        total, groups = Group("all"), dict[str, Group]()
        rows = self._db.execute(
            f"SELECT {column}, verdict, action, state, COUNT(*) FROM objects "  # noqa: S608 - our columns
            "GROUP BY 1, 2, 3, 4"
        )
        for name, verdict, action, state, count in rows:
            state_name = next(k for k, v in _STATES.items() if v == state)
            total.add_counts(verdict, action, state_name, count)
            groups.setdefault(name, Group(name)).add_counts(verdict, action, state_name, count)
        return total, sorted(groups.values(), key=lambda g: g.name)

    def _lines(self, where: str, order: str, limit: int) -> Iterator[ScanLine]:
        rows = self._db.execute(
            f"SELECT ts, bucket, object, {', '.join(_LINE_FIELDS)} FROM objects "  # noqa: S608 - our clauses
            f"WHERE {where} ORDER BY {order} LIMIT ?",
            (limit,),
        )
        for ts, bucket, key, *values in rows:
            fields: dict[str, Any] = dict(zip(_LINE_FIELDS, values, strict=True))
            fields["is_latest"] = bool(fields["is_latest"])
            yield ScanLine.model_construct(bucket=bucket, key=key, timestamp=_moment(ts), **fields)

    def _failure_reasons(self) -> Counter[str]:
        reasons: Counter[str] = Counter()
        for reason, count in self._db.execute(
            "SELECT reason, COUNT(*) FROM objects WHERE action = 'failed' GROUP BY reason"
        ):
            reasons[reason_class(reason)] += count
        return reasons

    def _timeline(self, first: int, last: int) -> list[TimePoint]:
        """Compliance at the end of each time bin: every record replayed in time order, each
        object's previous state taken back as its new one is counted."""
        size = bin_size(_moment(last) - _moment(first)) // timedelta(microseconds=1)
        rows = self._db.execute(
            "SELECT ts, state, LAG(state) OVER (PARTITION BY bucket, object, vid ORDER BY ts, seq) "
            "FROM history ORDER BY ts, seq"
        )
        points: list[TimePoint] = []
        bin_end, records, compliant, counted = first + size, 0, 0, 0
        compliant_state, uncounted = _STATES["compliant"], _STATES["uncounted"]
        for ts, state, previous in rows:
            while ts >= bin_end:
                points.append(TimePoint(_moment(bin_end), records, compliant, counted))
                bin_end += size
            if previous is not None:
                compliant -= previous == compliant_state
                counted -= previous != uncounted
            compliant += state == compliant_state
            counted += state != uncounted
            records += 1
        points.append(TimePoint(_moment(bin_end), records, compliant, counted))
        return points


def build_report(lines: Iterable[ScanLine]) -> Report:
    """The report over ``lines`` (any order, any number: they stream through a scratch
    database)."""
    with ReportStore() as store:
        store.add_all(lines)
        return store.report()
