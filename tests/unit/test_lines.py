"""Scan output lines (enforcer.report.lines): CSV shaped like S3 Inventory, JSONL round trip,
audit records read as lines."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime
from pathlib import Path

from enforcer.engine.records import ScanLine
from enforcer.report.lines import CSV_COLUMNS, CsvWriter, JsonlWriter, read_lines

WHEN = datetime(2026, 12, 1, tzinfo=UTC)


def line(**fields: object) -> ScanLine:
    base: dict[str, object] = {"bucket": "b", "key": "k,1", "action": "none", "timestamp": WHEN}
    return ScanLine.model_validate(base | fields)


def test_csv_has_inventory_like_columns_and_encryption_status() -> None:
    stream = io.StringIO()
    writer = CsvWriter(stream)
    writer.write(
        line(observed_sse="aws:kms", observed_kms_key="arn:aws:kms:ek", verdict="compliant")
    )
    writer.write(
        line(observed_sse="none", verdict="plaintext", action="reencrypted", version_id="v")
    )
    rows = list(csv.reader(io.StringIO(stream.getvalue())))
    assert tuple(rows[0]) == CSV_COLUMNS
    assert rows[1][:9] == [
        "b",
        "k,1",
        "",
        "true",
        "SSE-KMS",
        "arn:aws:kms:ek",
        "",
        "compliant",
        "none",
    ]
    assert rows[2][4] == "NOT-SSE" and rows[2][2] == "v"


def test_jsonl_round_trips_and_audit_records_read_as_lines(tmp_path: Path) -> None:
    path = tmp_path / "lines.jsonl"
    with path.open("w") as stream:
        JsonlWriter(stream).write(line(verdict="compliant", source="listing"))
        stream.write(
            '{"schema_version":1,"event_id":"e","bucket":"b","key":"x","verdict":"plaintext",'
            '"action":"reencrypted","duration_ms":1.0,"mode":"enforce",'
            '"timestamp":"2026-12-01T00:00:00Z","enforcer_version":"0"}\n'
        )
    lines = list(read_lines(path))
    assert [(x.key, x.verdict, x.source) for x in lines] == [
        ("k,1", "compliant", "listing"),
        ("x", "plaintext", None),
    ]
