"""S3 Inventory input (enforcer.storage.inventory): manifest and CSV rows → listed objects."""

from __future__ import annotations

import asyncio
import csv
import gzip
import io
import json
import sys
from pathlib import Path

import pytest
from inventories import MODIFIED, Row, report

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


def test_unknown_formats_and_broken_manifests_are_refused_clearly() -> None:
    manifest = {"sourceBucket": "b", "fileFormat": "Avro", "fileSchema": "x", "files": []}
    with pytest.raises(ConfigError, match="format AVRO is not one of CSV, Parquet, ORC"):
        parse_manifest(json.dumps(manifest).encode(), "m.json")
    with pytest.raises(ConfigError, match="not an S3 Inventory manifest"):
        parse_manifest(b"{}", "m.json")


AWKWARD_ROWS = [
    Row("plain file+1 é", "NOT-SSE"),
    Row("kms/2026/a b", "SSE-KMS", "arn:aws:kms:us-east-1:1:key/k", version_id="v2"),
    Row("kms/2026/a b", "SSE-S3", version_id="v1", is_latest=False),
    Row("gone", "NOT-SSE", version_id="v9", is_delete_marker=True),
    Row("nokey", "SSE-KMS"),
    Row("dual", "DSSE-KMS", "arn:aws:kms:us-east-1:1:key/d"),
    Row("customer", "SSE-C"),
]


@pytest.mark.parametrize("file_format", ["CSV", "PARQUET", "ORC"])
async def test_reports_written_as_aws_writes_them_read_alike(
    tmp_path: Path, file_format: str
) -> None:
    files = report(file_format, "src", [AWKWARD_ROWS[:3], AWKWARD_ROWS[3:], []])
    for key, data in files.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(data)
    [manifest] = [k for k in files if k.endswith("manifest.json")]

    objects = [o async for o in InventoryReader(str(tmp_path / manifest)).objects()]

    assert [(o.bucket, o.key, o.version_id, o.is_latest) for o in objects] == [
        ("src", "plain file+1 é", None, True),
        ("src", "kms/2026/a b", "v2", True),
        ("src", "kms/2026/a b", "v1", False),
        ("src", "nokey", None, True),
        ("src", "dual", None, True),
        ("src", "customer", None, True),
    ]
    facts = [(o.facts.encryption, o.facts.kms_key) if o.facts else None for o in objects]
    assert facts == [
        (Encryption.NONE, None),
        (Encryption.SSE_KMS, "arn:aws:kms:us-east-1:1:key/k"),
        (Encryption.SSE_S3, None),
        None,  # SSE-KMS without the key: HEAD decides
        (Encryption.SSE_KMS_DSSE, "arn:aws:kms:us-east-1:1:key/d"),
        (Encryption.SSE_C, None),
    ]
    assert {o.etag for o in objects} == {'"9dd4e461268c8034f5c8564e155c67a6"'}
    assert {o.last_modified for o in objects} == {MODIFIED} and objects[0].size == 1
    skipped = [o.key async for o in InventoryReader(str(tmp_path / manifest)).objects(skip=4)]
    assert skipped == ["dual", "customer"]


def test_a_columnar_report_without_pyarrow_is_one_clear_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # as if not installed
    schema = "message s3.inventory { required binary key (UTF8); }"
    manifest = {"sourceBucket": "b", "fileFormat": "Parquet", "fileSchema": schema, "files": []}
    with pytest.raises(ConfigError) as error:
        parse_manifest(json.dumps(manifest).encode(), "m.json")
    assert str(error.value) == (
        "reading a Parquet inventory needs pyarrow: pip install 'sse-enforcer[inventory]'"
    )


def test_a_broken_columnar_file_is_a_config_error(tmp_path: Path) -> None:
    files = report("PARQUET", "src", [AWKWARD_ROWS])
    for key, data in files.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(data if key.endswith(".json") else b"PAR1 not really")
    [manifest] = [k for k in files if k.endswith("manifest.json")]

    async def read() -> None:
        [o async for o in InventoryReader(str(tmp_path / manifest)).objects()]

    with pytest.raises(ConfigError, match="unreadable Parquet inventory file"):
        asyncio.run(read())


def test_dual_layer_rows_keep_their_own_encryption_and_key() -> None:
    columns = ["Bucket", "Key", "EncryptionStatus", "KMSKeyArn"]
    rows = [["b", "d", "DSSE-KMS", "arn:aws:kms:eu-west-1:1:key/k"], ["b", "e", "DSSE-KMS", ""]]
    dual, unknown = list(listed_from_rows(columns, rows))
    assert dual.facts is not None and dual.facts.encryption is Encryption.SSE_KMS_DSSE
    assert dual.facts.kms_key == "arn:aws:kms:eu-west-1:1:key/k"
    assert unknown.facts is None  # no key in the row: HEAD decides
