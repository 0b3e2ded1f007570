"""S3 Inventory reports in Parquet and ORC, written by pyarrow in AWS's layout and stored in a
bucket of the real stack, drive ``enforcer scan --inventory``: compliant rows are classified from
the report, the rest inspected with HEAD and re-encrypted."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cli_runner import Cli
from harness import set_default_key
from inventories import Row, report
from support import MakeBucket, MakeKey, StackEnv


@pytest.mark.parametrize("file_format", ["PARQUET", "ORC"])
def test_a_columnar_inventory_drives_a_scan(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    tmp_path: Path,
    file_format: str,
) -> None:
    ek = make_key("inventory")
    bucket, reports = make_bucket(notify=False), make_bucket(notify=False)
    rows = []
    for n in range(12):  # compliant: classified from the report, no request
        key = f"ok/{n:02d} ü+"
        put = s3_admin.put_object(Bucket=bucket, Key=key, Body=b"k", ServerSideEncryption="aws:kms",
                                  SSEKMSKeyId=ek)  # fmt: skip
        rows.append(Row(key, "SSE-KMS", f"arn:aws:kms:{ek}", e_tag=put["ETag"].strip('"')))
    for key, status in (("plain a+b", "NOT-SSE"), ("s3 only", "SSE-S3")):
        extra = {"ServerSideEncryption": "AES256"} if status == "SSE-S3" else {}
        put = s3_admin.put_object(Bucket=bucket, Key=key, Body=b"p", **extra)
        rows.append(Row(key, status, e_tag=put["ETag"].strip('"')))
    rows.append(Row("deleted", "NOT-SSE", is_delete_marker=True))
    set_default_key(s3_admin, bucket, ek)
    files = report(file_format, bucket, [rows[:7], rows[7:]])
    for key, data in files.items():
        s3_admin.put_object(Bucket=reports, Key=key, Body=data)
    [manifest] = [k for k in files if k.endswith("manifest.json")]
    out = tmp_path / "lines.jsonl"

    args = ["--output", "jsonl", "--output-file", str(out), "--checkpoint", str(tmp_path / "c")]
    result = Cli(stack)("scan", "--inventory", f"s3://{reports}/{manifest}", *args)

    assert result.returncode == 0, result.stderr
    summary = result.json()
    assert (summary["objects"], summary["classified_from_listing"]) == (14, 12)
    assert summary["actions"] == {"none": 12, "reencrypted": 2}
    lines = {line["key"]: line for line in map(json.loads, out.read_text().splitlines())}
    assert lines["ok/00 ü+"]["source"] == "inventory" and lines["plain a+b"]["source"] == "head"
    for key in lines:
        head = s3_admin.head_object(Bucket=bucket, Key=key)
        assert head["SSEKMSKeyId"] == f"arn:aws:kms:{ek}", key
