"""S3 Inventory reports as AWS writes them, produced by a real writer library (pyarrow) for
Parquet and ORC, gzip'd CSV otherwise: data files under ``<prefix>/<source bucket>/<config>/
data/``, the manifest under ``…/<config>/<YYYY-MM-DDTHH-MMZ>/manifest.json`` naming the files by
their full key, ``fileFormat`` and ``fileSchema`` in AWS's own forms."""

from __future__ import annotations

import csv
import gzip
import io
import json
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import orc


@dataclass(frozen=True)
class Row:
    """One inventory row (one object version)."""

    key: str
    encryption_status: str  # NOT-SSE, SSE-S3, SSE-KMS, DSSE-KMS, SSE-C
    kms_key_arn: str | None = None
    version_id: str | None = None
    is_latest: bool = True
    is_delete_marker: bool = False
    size: int = 1
    e_tag: str = "9dd4e461268c8034f5c8564e155c67a6"


#: AWS's column order for the fields used here, snake case (Parquet, ORC); the KMS key column
#: last, under one of the names the enforcer reads.
COLUMNS: list[tuple[str, pa.DataType]] = [
    ("bucket", pa.string()),
    ("key", pa.string()),
    ("version_id", pa.string()),
    ("is_latest", pa.bool_()),
    ("is_delete_marker", pa.bool_()),
    ("size", pa.int64()),
    ("last_modified_date", pa.timestamp("ms")),
    ("e_tag", pa.string()),
    ("storage_class", pa.string()),
    ("encryption_status", pa.string()),
    ("kms_key_arn", pa.string()),
]
CSV_NAMES = {"bucket": "Bucket", "key": "Key", "version_id": "VersionId", "is_latest": "IsLatest",
             "is_delete_marker": "IsDeleteMarker", "size": "Size",
             "last_modified_date": "LastModifiedDate", "e_tag": "ETag",
             "storage_class": "StorageClass", "encryption_status": "EncryptionStatus",
             "kms_key_arn": "KMSKeyArn"}  # fmt: skip
MODIFIED = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


def table(bucket: str, rows: list[Row]) -> pa.Table:
    values = {
        "bucket": [bucket] * len(rows),
        "key": [r.key for r in rows],
        "version_id": [r.version_id for r in rows],
        "is_latest": [r.is_latest for r in rows],
        "is_delete_marker": [r.is_delete_marker for r in rows],
        "size": [r.size for r in rows],
        "last_modified_date": [MODIFIED] * len(rows),
        "e_tag": [r.e_tag for r in rows],
        "storage_class": ["STANDARD"] * len(rows),
        "encryption_status": [r.encryption_status for r in rows],
        "kms_key_arn": [r.kms_key_arn for r in rows],
    }
    schema = pa.schema([pa.field(n, t, nullable=n not in ("bucket", "key")) for n, t in COLUMNS])
    return pa.table(values, schema=schema)


def file_schema(file_format: str) -> str:
    """The manifest's ``fileSchema`` as AWS writes it for each format."""
    if file_format == "CSV":
        return ", ".join(CSV_NAMES[name] for name, _ in COLUMNS)
    if file_format == "ORC":
        orc_types = {pa.string(): "string", pa.bool_(): "boolean", pa.int64(): "bigint",
                     pa.timestamp("ms"): "timestamp"}  # fmt: skip
        return "struct<" + ",".join(f"{n}:{orc_types[t]}" for n, t in COLUMNS) + ">"
    parquet_types = {
        pa.string(): "binary {} (UTF8)",
        pa.bool_(): "boolean {}",
        pa.int64(): "int64 {}",
        pa.timestamp("ms"): "int64 {} (TIMESTAMP_MILLIS)",
    }
    fields = [("required " if n in ("bucket", "key") else "optional ") +
              parquet_types[t].format(n) + ";" for n, t in COLUMNS]  # fmt: skip
    return "message s3.inventory { " + " ".join(fields) + " }"


def data_file(file_format: str, bucket: str, rows: list[Row]) -> bytes:
    buffer = io.BytesIO()
    if file_format == "PARQUET":
        pq.write_table(table(bucket, rows), buffer, row_group_size=max(1, len(rows) // 3))
    elif file_format == "ORC":
        orc.write_table(table(bucket, rows), buffer, stripe_size=64 * 1024)
    else:
        text = io.StringIO()
        writer = csv.writer(text, quoting=csv.QUOTE_ALL)
        for r in rows:
            flags = [str(r.is_latest).lower(), str(r.is_delete_marker).lower()]
            writer.writerow([bucket, _url_encode(r.key), r.version_id or "", *flags, r.size,
                             MODIFIED.isoformat(), r.e_tag, "STANDARD", r.encryption_status,
                             r.kms_key_arn or ""])  # fmt: skip
        return gzip.compress(text.getvalue().encode())
    return buffer.getvalue()


def _url_encode(key: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(key, safe="/")


def report(
    file_format: str, source_bucket: str, parts: list[list[Row]], prefix: str = "inventory"
) -> dict[str, bytes]:
    """Destination key → bytes of a whole report: data files (one per part) and manifest.json."""
    config = f"{prefix}/{source_bucket}/enforcer-test"
    suffix = {"CSV": "csv.gz", "PARQUET": "parquet", "ORC": "orc"}[file_format]
    files = {f"{config}/data/{uuid.uuid4()}.{suffix}": data_file(file_format, source_bucket, rows)
             for rows in parts}  # fmt: skip
    manifest = {
        "sourceBucket": source_bucket,
        "destinationBucket": "arn:aws:s3:::inventory-destination",
        "version": "2016-11-30",
        "creationTimestamp": "1764504000000",
        "fileFormat": {"CSV": "CSV", "PARQUET": "Parquet", "ORC": "ORC"}[file_format],
        "fileSchema": file_schema(file_format),
        "files": [{"key": k, "size": len(v), "MD5checksum": "0" * 32} for k, v in files.items()],
    }
    return {**files, f"{config}/2026-12-01T00-00Z/manifest.json": json.dumps(manifest).encode()}
