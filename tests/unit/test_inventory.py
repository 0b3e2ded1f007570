"""S3 Inventory input (enforcer.storage.inventory): manifest and CSV rows → listed objects."""

from __future__ import annotations

import csv
import gzip
import io
import json
from pathlib import Path

import pytest

from enforcer.core.verdict import Encryption
from enforcer.errors import ConfigError
from enforcer.storage.inventory import InventoryReader, listed_from_rows, parse_manifest

SCHEMA = "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, ETag, EncryptionStatus, KMSKeyArn"


def write_inventory(root: Path, rows: list[list[str]]) -> Path:
    """The layout an ``aws s3 sync`` of an inventory destination produces."""
    data_key = "src/config/data/part-0.csv.gz"
    (root / "src/config/data").mkdir(parents=True)
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    (root / data_key).write_bytes(gzip.compress(buffer.getvalue().encode()))
    manifest = root / "src/config/2026-12-01T00-00Z/manifest.json"
    manifest.parent.mkdir(parents=True)
    manifest.write_text(
        json.dumps(
            {"sourceBucket": "src", "fileFormat": "CSV", "fileSchema": SCHEMA,
             "files": [{"key": data_key, "size": 1, "MD5checksum": "x"}]}
        )
    )  # fmt: skip
    return manifest


ROWS = [
    ["src", "plain+file%2B1", "", "true", "false", "3", "e1", "NOT-SSE", ""],
    ["src", "kms", "v2", "true", "false", "4", "e2", "SSE-KMS", "arn:aws:kms:us-east-1:1:key/k"],
    ["src", "kms", "v1", "false", "false", "4", "e3", "SSE-S3", ""],
    ["src", "gone", "v9", "true", "true", "0", "", "", ""],
    ["src", "nokey", "", "true", "false", "1", "e4", "SSE-KMS", ""],
]


async def test_a_generated_inventory_reads_as_listed_objects(tmp_path: Path) -> None:
    manifest = write_inventory(tmp_path, ROWS)
    objects = [o async for o in InventoryReader(str(manifest)).objects()]
    assert [(o.key, o.version_id, o.is_latest) for o in objects] == [
        ("plain file+1", None, True),
        ("kms", "v2", True),
        ("kms", "v1", False),
        ("nokey", None, True),
    ]
    facts = [o.facts for o in objects]
    assert facts[0] is not None and facts[0].encryption is Encryption.NONE
    assert facts[1] is not None and facts[1].kms_key == "arn:aws:kms:us-east-1:1:key/k"
    assert facts[2] is not None and facts[2].encryption is Encryption.SSE_S3
    assert facts[3] is None  # SSE-KMS without a key column value: HEAD decides
    assert [o.key async for o in InventoryReader(str(manifest)).objects(skip=2)] == ["kms", "nokey"]


def test_rows_without_an_encryption_column_are_unknown() -> None:
    objects = list(listed_from_rows(["Bucket", "Key"], [["b", "k"]]))
    assert objects[0].facts is None and objects[0].key == "k"


def test_parquet_and_broken_manifests_are_refused_clearly() -> None:
    manifest = {"sourceBucket": "b", "fileFormat": "Parquet", "fileSchema": "x", "files": []}
    parquet = json.dumps(manifest).encode()
    with pytest.raises(ConfigError, match="PARQUET is not supported"):
        parse_manifest(parquet, "m.json")
    with pytest.raises(ConfigError, match="not an S3 Inventory manifest"):
        parse_manifest(b"{}", "m.json")


def test_dual_layer_rows_keep_their_own_encryption_and_key() -> None:
    columns = ["Bucket", "Key", "EncryptionStatus", "KMSKeyArn"]
    rows = [["b", "d", "DSSE-KMS", "arn:aws:kms:eu-west-1:1:key/k"], ["b", "e", "DSSE-KMS", ""]]
    dual, unknown = list(listed_from_rows(columns, rows))
    assert dual.facts is not None and dual.facts.encryption is Encryption.SSE_KMS_DSSE
    assert dual.facts.kms_key == "arn:aws:kms:eu-west-1:1:key/k"
    assert unknown.facts is None  # no key in the row: HEAD decides
