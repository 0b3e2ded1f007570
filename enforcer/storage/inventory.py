"""An S3 Inventory report as the input of a scan (AWS, where listings carry no encryption).

An inventory configuration delivers a ``manifest.json`` (``sourceBucket``, ``fileFormat``,
``fileSchema``, ``files[].key``) plus data files in one of three formats:

* ``CSV``: gzip-compressed, no header row; ``fileSchema`` names the columns, comma separated
  (``Bucket, Key, VersionId, …``); keys are URL-encoded.
* ``Parquet`` and ``ORC``: the columns are named in the files themselves, in snake case
  (``bucket``, ``key``, ``version_id``, ``is_latest``, ``encryption_status``, …; ``fileSchema``
  is the Parquet ``message s3.inventory { … }`` or the ORC ``struct<…>`` type), typed (sizes as
  integers, dates as timestamps), keys as they are. Read with pyarrow, an optional extra
  (``pip install 'sse-enforcer[inventory]'``), one row group or stripe at a time.

Column names are matched without case, ``_`` or ``-``, so ``EncryptionStatus`` and
``encryption_status`` are one field. With the optional field ``EncryptionStatus`` (``NOT-SSE``,
``SSE-S3``, ``SSE-KMS``, ``DSSE-KMS``, ``SSE-C``) and a KMS key column each row says how its
object is encrypted, so compliant objects cost no request. The KMS key column is read under any
of the names in :data:`KMS_KEY_COLUMNS`; an SSE-KMS row without one leaves the key unknown and
the object is inspected with HEAD.

The manifest may be a local file (the data files are found by their key below the manifest's
folder or any folder above it — the layout ``aws s3 sync`` of the destination produces — or
next to the manifest) or an ``s3://bucket/key`` read through the storage's client.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from enforcer.core.verdict import Encryption
from enforcer.engine.objects import ListedFacts, ListedObject
from enforcer.errors import ConfigError
from enforcer.storage.listing import S3Listing

#: Column names accepted for the object's KMS key (without case, ``_`` or ``-``).
KMS_KEY_COLUMNS = ("kmskeyarn", "ssekmskeyid", "kmskeyid")
FORMATS = ("CSV", "PARQUET", "ORC")
PYARROW_MISSING = (
    "reading a {format} inventory needs pyarrow: pip install 'sse-enforcer[inventory]'"
)
_STATUS = {
    "NOT-SSE": Encryption.NONE,
    "SSE-S3": Encryption.SSE_S3,
    "SSE-KMS": Encryption.SSE_KMS,
    "DSSE-KMS": Encryption.SSE_KMS_DSSE,
    "SSE-C": Encryption.SSE_C,
}


@dataclass(frozen=True)
class InventoryManifest:
    source_bucket: str
    columns: tuple[str, ...]  # CSV only: the columnar formats name theirs in each file
    files: tuple[str, ...]
    file_format: str = "CSV"


def parse_manifest(data: bytes, where: str) -> InventoryManifest:
    """``manifest.json`` → the columns and data files (pure)."""
    try:
        document = json.loads(data)
        file_format = str(document.get("fileFormat", "CSV")).upper()
        files = tuple(str(f["key"]) for f in document["files"])
        bucket = str(document["sourceBucket"])
        schema = str(document["fileSchema"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: not an S3 Inventory manifest ({exc!r})") from exc
    if file_format not in FORMATS:
        raise ConfigError(f"{where}: inventory format {file_format} is not one of CSV, "
                          "Parquet, ORC")  # fmt: skip
    if file_format == "CSV":
        return InventoryManifest(bucket, tuple(c.strip() for c in schema.split(",")), files)
    _require_pyarrow(file_format)
    return InventoryManifest(bucket, (), files, file_format)


def _require_pyarrow(file_format: str) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ConfigError(PYARROW_MISSING.format(format=file_format.title())) from None


def column(name: str) -> str:
    """A column name as matched: no case, no ``_`` or ``-`` (``encryption_status``)."""
    return name.lower().replace("_", "").replace("-", "")


def listed_from_rows(columns: Iterable[str], rows: Iterable[list[str]]) -> Iterator[ListedObject]:
    """Inventory CSV rows → listed objects, delete markers left out (pure)."""
    names = [column(c) for c in columns]
    for row in rows:
        listed = listed_from_record(dict(zip(names, row, strict=False)), url_encoded=True)
        if listed is not None:
            yield listed


def listed_from_record(record: dict[str, Any], *, url_encoded: bool = False) -> ListedObject | None:
    """One inventory row (column names as :func:`column` gives them, values as text or typed)
    → a listed object; None for a delete marker (pure)."""
    if _flag(record.get("isdeletemarker"), default=False):
        return None
    key, etag = str(record.get("key") or ""), str(record.get("etag") or "")
    return ListedObject(
        bucket=str(record.get("bucket") or ""),
        key=unquote_plus(key) if url_encoded else key,
        etag=f'"{etag.strip(chr(34))}"' if etag else "",
        size=int(record.get("size") or 0),
        version_id=str(record["versionid"]) if record.get("versionid") else None,
        is_latest=_flag(record.get("islatest"), default=True),
        last_modified=_timestamp(record.get("lastmodifieddate")),
        facts=_facts(str(record.get("encryptionstatus") or ""), _kms_key(record)),
    )


def _flag(value: object, *, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value if isinstance(value, bool) else str(value).lower() == "true"


def _kms_key(record: dict[str, Any]) -> str | None:
    for name in KMS_KEY_COLUMNS:
        if record.get(name):
            return str(record[name])
    return None


def _facts(status: str, kms_key: str | None) -> ListedFacts | None:
    encryption = _STATUS.get(status.upper())
    under_kms = encryption in (Encryption.SSE_KMS, Encryption.SSE_KMS_DSSE)
    if encryption is None or (under_kms and not kms_key):
        return None  # not reported (or no key column): inspect with HEAD
    return ListedFacts(encryption, kms_key if under_kms else None)


def _timestamp(value: object) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    try:
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
    except ValueError:
        return None


def _columnar_records(data: bytes, file_format: str, where: str) -> Iterator[dict[str, Any]]:
    """The rows of a Parquet or ORC inventory file, one row group (stripe) at a time, with
    column names as :func:`column` gives them."""
    import pyarrow as pa

    try:
        if file_format == "PARQUET":
            import pyarrow.parquet as pq

            batches = pq.ParquetFile(pa.BufferReader(data)).iter_batches(batch_size=10_000)
        else:
            from pyarrow import orc

            reader = orc.ORCFile(pa.BufferReader(data))
            batches = (reader.read_stripe(n) for n in range(reader.nstripes))
        for batch in batches:
            names = [column(name) for name in batch.schema.names]
            for row in batch.to_pylist():
                yield dict(zip(names, row.values(), strict=True))
    except (pa.ArrowException, OSError) as exc:
        raise ConfigError(
            f"{where}: unreadable {file_format.title()} inventory file: {exc}"
        ) from exc


def _file_objects(manifest: InventoryManifest, data: bytes, key: str) -> Iterator[ListedObject]:
    if manifest.file_format == "CSV":
        yield from listed_from_rows(manifest.columns, _csv_rows(data, key))
        return
    for record in _columnar_records(data, manifest.file_format, key):
        if (listed := listed_from_record(record)) is not None:
            yield listed


def _csv_rows(data: bytes, where: str) -> Iterator[list[str]]:
    try:
        text = gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data
        yield from csv.reader(io.StringIO(text.decode("utf-8")))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{where}: unreadable inventory file: {exc}") from exc


class InventoryReader:
    """Reads a manifest and its files, locally or from S3 (through ``listing``)."""

    def __init__(self, location: str, listing: S3Listing | None = None) -> None:
        self.location = location
        self._listing = listing

    async def objects(self, skip: int = 0) -> AsyncIterator[ListedObject]:
        """Every object (version) in the report, in file and row order, after ``skip``."""
        manifest = parse_manifest(await self._read(self.location), self.location)
        seen = 0
        for key in manifest.files:
            data = await self._read(self._data_location(key))
            for listed in _file_objects(manifest, data, key):
                seen += 1
                if seen > skip:
                    yield listed

    def _data_location(self, key: str) -> str:
        if self.location.startswith("s3://"):
            bucket = self.location.removeprefix("s3://").partition("/")[0]
            return f"s3://{bucket}/{key}"
        manifest = Path(self.location).resolve()
        for folder in manifest.parents:
            if (folder / key).is_file():
                return str(folder / key)
        return str(manifest.parent / Path(key).name)

    async def _read(self, location: str) -> bytes:
        if not location.startswith("s3://"):
            try:
                return await asyncio.to_thread(Path(location).read_bytes)
            except OSError as exc:
                raise ConfigError(f"inventory {location}: {exc.strerror}") from exc
        if self._listing is None:
            raise ConfigError(f"{location}: reading an inventory from S3 needs the S3 client")
        bucket, _, key = location.removeprefix("s3://").partition("/")
        return await self._listing.read_object(bucket, key)
