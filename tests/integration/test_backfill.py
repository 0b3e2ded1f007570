"""Backfill on the real stack: MinIO's metadata listing, ``enforcer scan`` classifying from it,
resuming after SIGINT/SIGTERM, ``--versions`` and ``--output``; all through the installed
console command."""

from __future__ import annotations

import csv
import gzip
import io
import json
import signal
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pytest
from cli_runner import ENFORCER, Cli
from harness import set_default_key, write_policy
from support import MakeBucket, MakeKey, StackEnv, enforcer_s3_settings

from enforcer.core.verdict import Encryption
from enforcer.engine.objects import ListedFacts
from enforcer.storage.s3 import open_s3_storage


@pytest.fixture
def cli(stack: StackEnv) -> Cli:
    return Cli(stack)


def kms_put(s3: Any, bucket: str, key: str, ek: str, body: bytes = b"k") -> dict[str, Any]:
    return dict(
        s3.put_object(
            Bucket=bucket, Key=key, Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=ek
        )
    )


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def is_under(s3: Any, bucket: str, key: str, ek: str, version_id: str | None = None) -> bool:
    extra = {"VersionId": version_id} if version_id else {}
    head = s3.head_object(Bucket=bucket, Key=key, **extra)
    return bool(head.get("SSEKMSKeyId") == f"arn:aws:kms:{ek}")


# ---------------------------------------------------------------- the listing, pinned


async def test_minio_lists_encryption_key_metadata_and_tags_to_the_enforcer_user(
    stack: StackEnv, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket
) -> None:
    ek, other = make_key("list"), make_key("other")
    bucket = make_bucket(notify=False, versioned=True)
    s3_admin.put_object(Bucket=bucket, Key="plain a+b", Body=b"p", Metadata={"foo": "bar"},
                        Tagging="t=1&u=2")  # fmt: skip
    s3_admin.put_object(Bucket=bucket, Key="s3", Body=b"s", ServerSideEncryption="AES256")
    kms_put(s3_admin, bucket, "kms", other)
    kms_put(s3_admin, bucket, "kms", ek)

    async with open_s3_storage((enforcer_s3_settings(stack)).options()) as storage:
        listing = storage.listing
        plain = [o async for o in listing.list_objects(bucket)]
        listing.ask_for_metadata()
        current = [o async for o in listing.list_objects(bucket)]
        versions = [o async for o in listing.list_versions(bucket)]

    assert [o.facts for o in plain] == [None, None, None]  # not asked: HEAD would be needed
    assert [(o.key, o.facts) for o in current] == [
        ("kms", ListedFacts(Encryption.SSE_KMS, f"arn:aws:kms:{ek}")),
        ("plain a+b", ListedFacts(Encryption.NONE, None, {"foo": "bar"}, {"t": "1", "u": "2"})),
        ("s3", ListedFacts(Encryption.SSE_S3)),
    ]
    kms_versions = [(o.is_latest, o.facts.kms_key if o.facts else None) for o in versions
                    if o.key == "kms"]  # fmt: skip
    assert kms_versions == [(True, f"arn:aws:kms:{ek}"), (False, f"arn:aws:kms:{other}")]


# ---------------------------------------------------------------- scan from the listing


def test_scan_classifies_compliant_objects_from_the_listing_and_rechecks_the_rest(
    cli: Cli, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket, tmp_path: Path
) -> None:
    ek, other = make_key("scan"), make_key("other")
    bucket = make_bucket(notify=False)
    for i in range(20):
        kms_put(s3_admin, bucket, f"good/{i:02d}", ek)
    s3_admin.put_object(Bucket=bucket, Key="bad/plain", Body=b"p" * 100)
    s3_admin.put_object(Bucket=bucket, Key="bad/sse-s3", Body=b"s", ServerSideEncryption="AES256")
    kms_put(s3_admin, bucket, "bad/wrong", other)
    set_default_key(s3_admin, bucket, ek)
    lines = tmp_path / "lines.csv"

    result = cli("scan", f"s3://{bucket}", "--output", "csv", "--output-file", str(lines),
                 "--checkpoint", str(tmp_path / "cp.json"))  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = result.json()
    assert (summary["objects"], summary["classified_from_listing"]) == (23, 20)
    assert summary["actions"] == {"none": 20, "reencrypted": 3}
    assert "verdict" in result.stderr and "reencrypted" in result.stderr  # the summary table
    rows = list(csv.DictReader(lines.read_text().splitlines()))
    by_key = {row["Key"]: row for row in rows}
    assert len(rows) == 23 and by_key["good/00"]["EncryptionStatus"] == "SSE-KMS"
    assert by_key["good/00"]["KMSKeyArn"] == f"arn:aws:kms:{ek}"
    assert (by_key["bad/plain"]["EncryptionStatus"], by_key["bad/plain"]["Verdict"],
            by_key["bad/plain"]["Action"]) == ("NOT-SSE", "plaintext", "reencrypted")  # fmt: skip
    assert all(is_under(s3_admin, bucket, key, ek) for key in by_key)


# ---------------------------------------------------------------- resume


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_scan_resumes_and_classifies_every_object_exactly_once(
    cli: Cli,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    tmp_path: Path,
    stop: signal.Signals,
) -> None:
    ek = make_key("resume")
    bucket = make_bucket(notify=False)
    keys = [f"obj/{i:03d}" for i in range(240)]
    for n, key in enumerate(keys):  # a third compliant, the rest plaintext (rewrites take time)
        if n % 3 == 0:
            kms_put(s3_admin, bucket, key, ek)
        else:
            s3_admin.put_object(Bucket=bucket, Key=key, Body=b"x" * 512)
    set_default_key(s3_admin, bucket, ek)
    out, checkpoint = tmp_path / "lines.jsonl", tmp_path / "scan.checkpoint.json"
    args = ["scan", f"s3://{bucket}", "--output", "jsonl", "--output-file", str(out),
            "--checkpoint", str(checkpoint), "--progress-interval", "0.05"]  # fmt: skip

    first = subprocess.Popen(  # noqa: S603 - our own entry point
        [str(ENFORCER), "--log-level", "WARNING", *args],
        env=cli.env(ENFORCER_CONCURRENCY="2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert first.stderr is not None
    for progress in first.stderr:  # interrupt once some objects are done (progress lines)
        if progress.startswith("scan ") and int(progress.split()[1].replace(",", "")) >= 30:
            break
    first.send_signal(stop)
    stdout, stderr = first.communicate(timeout=60)
    assert first.returncode == 1, stderr
    interrupted = json.loads(stdout)
    assert interrupted["interrupted"] is True and 30 <= interrupted["objects"] < len(keys)
    assert json.loads(checkpoint.read_text())["complete"] is False

    second = cli(*args, "--resume")

    assert second.returncode == 0, second.stderr
    summary = second.json()
    assert summary["objects"] == len(keys) and summary["interrupted"] is False
    assert summary["actions"] == {"none": 80, "reencrypted": 160}
    lines = read_jsonl(out)
    assert sorted(line["key"] for line in lines) == keys  # each exactly once, none missed
    assert all(is_under(s3_admin, bucket, key, ek) for key in keys)
    assert json.loads(checkpoint.read_text())["complete"] is True


def test_resume_without_a_checkpoint_is_a_usage_error(cli: Cli, tmp_path: Path) -> None:
    result = cli("scan", "s3://nowhere", "--resume", "--checkpoint", str(tmp_path / "none.json"))
    assert result.returncode == 2 and "no checkpoint" in result.stderr


# ---------------------------------------------------------------- versions


def test_versions_are_reported_and_purged_only_where_the_rule_says_so(
    cli: Cli, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket, tmp_path: Path
) -> None:
    ek = make_key("versions")
    bucket = make_bucket(notify=False, object_lock=True)
    old: dict[str, str] = {}
    for key in ("keep/a", "purge/b", "purge/locked"):
        old[key] = s3_admin.put_object(Bucket=bucket, Key=key, Body=b"old plaintext")["VersionId"]
        kms_put(s3_admin, bucket, key, ek, body=b"new")
    until = datetime.now(UTC) + timedelta(days=1)
    retention = {"Mode": "GOVERNANCE", "RetainUntilDate": until}
    s3_admin.put_object_retention(
        Bucket=bucket, Key="purge/locked", VersionId=old["purge/locked"], Retention=retention
    )
    policy = write_policy(
        tmp_path / "policy.yaml",
        {"bucket": bucket, "key": ek},
        {"bucket": bucket, "prefix": "purge/", "key": ek, "versions": "purge-noncompliant"},
    )
    out = tmp_path / "lines.jsonl"

    result = cli("scan", f"s3://{bucket}", "--versions", "--output", "jsonl", "--output-file",
                 str(out), "--checkpoint", str(tmp_path / "cp.json"),
                 ENFORCER_POLICY_FILE=str(policy))  # fmt: skip

    assert result.returncode == 0, result.stderr
    lines = {(line["key"], line["is_latest"]): line for line in read_jsonl(out)}
    assert len(lines) == 6
    assert {lines[(k, True)]["verdict"] for k in old} == {"compliant"}
    assert lines[("keep/a", False)]["action"] == "skipped"
    assert lines[("purge/b", False)]["action"] == "purged"
    assert lines[("purge/locked", False)]["action"] == "skipped"
    remaining = {
        (v["Key"], v["VersionId"]) for v in s3_admin.list_object_versions(Bucket=bucket)["Versions"]
    }
    assert ("purge/b", old["purge/b"]) not in remaining
    assert {("keep/a", old["keep/a"]), ("purge/locked", old["purge/locked"])} <= remaining
    assert all(is_under(s3_admin, bucket, key, ek) for key in old)


# ---------------------------------------------------------------- S3 Inventory input


def test_scan_reads_an_s3_inventory_report_from_the_store(
    cli: Cli, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket, tmp_path: Path
) -> None:
    ek = make_key("inventory")
    bucket, reports = make_bucket(notify=False), make_bucket(notify=False)
    for i in range(5):
        kms_put(s3_admin, bucket, f"ok/{i}", ek)
    s3_admin.put_object(Bucket=bucket, Key="plain 1", Body=b"p")
    s3_admin.put_object(Bucket=bucket, Key="sse-s3", Body=b"s", ServerSideEncryption="AES256")
    set_default_key(s3_admin, bucket, ek)
    rows = []
    for entry in s3_admin.list_objects_v2(Bucket=bucket)["Contents"]:
        head = s3_admin.head_object(Bucket=bucket, Key=entry["Key"])
        status = {"aws:kms": "SSE-KMS", "AES256": "SSE-S3"}.get(
            head.get("ServerSideEncryption", ""), "NOT-SSE"
        )
        rows.append([bucket, quote_plus(entry["Key"]), str(entry["Size"]),
                     entry["ETag"].strip('"'), status, head.get("SSEKMSKeyId", "")])  # fmt: skip
    data_key = f"{bucket}/config/data/part-0.csv.gz"
    buffer = io.StringIO()
    csv.writer(buffer).writerows(rows)
    s3_admin.put_object(
        Bucket=reports, Key=data_key, Body=gzip.compress(buffer.getvalue().encode())
    )
    manifest = {
        "sourceBucket": bucket,
        "destinationBucket": f"arn:aws:s3:::{reports}",
        "fileFormat": "CSV",
        "fileSchema": "Bucket, Key, Size, ETag, EncryptionStatus, KMSKeyArn",
        "files": [{"key": data_key, "size": 1, "MD5checksum": "-"}],
    }
    manifest_key = f"{bucket}/config/2026-12-01T00-00Z/manifest.json"
    s3_admin.put_object(Bucket=reports, Key=manifest_key, Body=json.dumps(manifest).encode())
    out = tmp_path / "lines.jsonl"

    result = cli("scan", "--inventory", f"s3://{reports}/{manifest_key}", "--output", "jsonl",
                 "--output-file", str(out), "--checkpoint", str(tmp_path / "cp.json"))  # fmt: skip

    assert result.returncode == 0, result.stderr
    summary = result.json()
    assert (summary["objects"], summary["classified_from_listing"]) == (7, 5)
    assert summary["actions"] == {"none": 5, "reencrypted": 2}
    sources = {line["key"]: line["source"] for line in read_jsonl(out)}
    assert sources["ok/0"] == "inventory" and sources["plain 1"] == "head"
    assert all(is_under(s3_admin, bucket, key, ek) for key in sources)
