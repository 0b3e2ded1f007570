"""An S3 Inventory report as the input of a scan (AWS, where listings carry no encryption).

An inventory configuration delivers a ``manifest.json`` (``sourceBucket``, ``fileFormat``,
``fileSchema`` — the column names, comma separated — and ``files[].key``) plus gzip-compressed
CSV files without a header row. With the optional field ``EncryptionStatus`` (``NOT-SSE``,
``SSE-S3``, ``SSE-KMS``, ``DSSE-KMS``, ``SSE-C``) and a KMS key column each row says how its
object is encrypted, so compliant objects cost no request. The KMS key column is read under any
of the names in :data:`KMS_KEY_COLUMNS`; an SSE-KMS row without one leaves the key unknown and
the object is inspected with HEAD. Keys in inventory CSV files are URL-encoded.

The manifest may be a local file (the data files are found by their key below the manifest's
folder or any folder above it — the layout ``aws s3 sync`` of the destination produces — or
next to the manifest) or an ``s3://bucket/key`` read through the storage's client.
Only CSV is read; a Parquet or ORC manifest is refused with a message that says so.
"""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote_plus

from enforcer.core.verdict import Encryption
from enforcer.engine.objects import ListedFacts, ListedObject
from enforcer.errors import ConfigError
from enforcer.storage.listing import S3Listing

#: Column names accepted for the object's KMS key (case-insensitive).
KMS_KEY_COLUMNS = ("kmskeyarn", "ssekmskeyid", "kmskeyid", "sse-kms-key-id")
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
    columns: tuple[str, ...]
    files: tuple[str, ...]


def parse_manifest(data: bytes, where: str) -> InventoryManifest:
    """``manifest.json`` → the columns and data files (pure)."""
    try:
        document = json.loads(data)
        file_format = str(document.get("fileFormat", "CSV")).upper()
        columns = tuple(c.strip() for c in str(document["fileSchema"]).split(","))
        files = tuple(str(f["key"]) for f in document["files"])
        bucket = str(document["sourceBucket"])
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ConfigError(f"{where}: not an S3 Inventory manifest ({exc!r})") from exc
    if file_format != "CSV":
        raise ConfigError(f"{where}: inventory format {file_format} is not supported; use CSV")
    return InventoryManifest(bucket, columns, files)


def listed_from_rows(columns: Iterable[str], rows: Iterable[list[str]]) -> Iterator[ListedObject]:
    """Inventory CSV rows → listed objects, delete markers left out (pure)."""
    index = {name.lower(): n for n, name in enumerate(columns)}
    for row in rows:
        field = _field_reader(index, row)
        if field("isdeletemarker").lower() == "true":
            continue
        version_id = field("versionid") or None
        yield ListedObject(
            bucket=field("bucket"),
            key=unquote_plus(field("key")),
            etag=f'"{field("etag")}"' if field("etag") else "",
            size=int(field("size") or 0),
            version_id=version_id,
            is_latest=field("islatest").lower() != "false",
            last_modified=_timestamp(field("lastmodifieddate")),
            facts=_facts(field("encryptionstatus"), _kms_key(index, row)),
        )


def _field_reader(index: dict[str, int], row: list[str]) -> Any:
    def field(name: str) -> str:
        n = index.get(name)
        return row[n] if n is not None and n < len(row) else ""

    return field


def _kms_key(index: dict[str, int], row: list[str]) -> str | None:
    for name in KMS_KEY_COLUMNS:
        n = index.get(name)
        if n is not None and n < len(row) and row[n]:
            return row[n]
    return None


def _facts(status: str, kms_key: str | None) -> ListedFacts | None:
    encryption = _STATUS.get(status.upper())
    under_kms = encryption in (Encryption.SSE_KMS, Encryption.SSE_KMS_DSSE)
    if encryption is None or (under_kms and not kms_key):
        return None  # not reported (or no key column): inspect with HEAD
    return ListedFacts(encryption, kms_key if under_kms else None)


def _timestamp(text: str) -> datetime | None:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


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
            for listed in listed_from_rows(manifest.columns, _csv_rows(data, key)):
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
