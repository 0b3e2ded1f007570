"""One line per scanned object: the JSONL and CSV that ``enforcer scan --output`` writes.

A :class:`ScanLine` carries the fields of an audit record that say where an object stands —
so ``enforcer report`` reads scan output and audit records alike (an audit record parses as a
line; its extra fields are ignored). The CSV is shaped like an S3 Inventory report: bucket, key,
version id, encryption status (``NOT-SSE``, ``SSE-S3``, ``SSE-KMS``, ``DSSE-KMS``, ``SSE-C``, plus
``ENVELOPE`` for the enforcer's own chain), KMS key, then the verdict and the action.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Protocol

from pydantic import ValidationError

from enforcer.engine.records import ScanLine
from enforcer.errors import ConfigError

CSV_COLUMNS = (
    "Bucket",
    "Key",
    "VersionId",
    "IsLatest",
    "EncryptionStatus",
    "KMSKeyArn",
    "RequiredKey",
    "Verdict",
    "Action",
    "Reason",
)
_ENCRYPTION_STATUS = {
    "none": "NOT-SSE",
    "AES256": "SSE-S3",
    "aws:kms": "SSE-KMS",
    "aws:kms:dsse": "DSSE-KMS",
    "sse-c": "SSE-C",
    "envelope": "ENVELOPE",
}


def csv_row(line: ScanLine) -> list[str]:
    """One CSV row, in the columns of :data:`CSV_COLUMNS`."""
    return [
        line.bucket,
        line.key,
        line.version_id or "",
        "true" if line.is_latest else "false",
        _ENCRYPTION_STATUS.get(line.observed_sse or "", ""),
        line.observed_kms_key or "",
        line.required_key or "",
        line.verdict or "",
        line.action,
        line.reason or "",
    ]


class LineWriter(Protocol):
    def write(self, line: ScanLine) -> None: ...

    def flush(self) -> None: ...


class JsonlWriter:
    def __init__(self, stream: IO[str]) -> None:
        self._stream = stream

    def write(self, line: ScanLine) -> None:
        self._stream.write(line.model_dump_json(exclude_none=True) + "\n")

    def flush(self) -> None:
        self._stream.flush()


class CsvWriter:
    """CSV with a header row (written only at the start of an empty file: resumed scans
    append)."""

    def __init__(self, stream: IO[str], *, header: bool = True) -> None:
        self._stream = stream
        self._csv = csv.writer(stream, lineterminator="\n")
        if header:
            self._csv.writerow(CSV_COLUMNS)

    def write(self, line: ScanLine) -> None:
        self._csv.writerow(csv_row(line))

    def flush(self) -> None:
        self._stream.flush()


class NoWriter:
    def write(self, line: ScanLine) -> None:
        pass

    def flush(self) -> None:
        pass


def read_lines(path: Path) -> Iterator[ScanLine]:
    """Scan lines or audit records from a JSONL file (blank lines skipped)."""
    try:
        with path.open(encoding="utf-8") as file:
            for number, text in enumerate(file, start=1):
                if text.strip():
                    yield parse_line(text, f"{path}:{number}")
    except OSError as exc:
        raise ConfigError(f"{path}: {exc.strerror}") from exc


def parse_line(text: str | bytes, where: str) -> ScanLine:
    try:
        return ScanLine.model_validate_json(text)
    except (ValueError, ValidationError) as exc:
        raise ConfigError(f"{where}: not a scan line or audit record: {exc}") from exc
