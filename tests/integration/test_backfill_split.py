"""A split backfill on the real stack: ``enforcer scan --split N`` cuts the bucket into key
ranges and lists them at once; every key — awkward names included — is classified exactly once,
also across an interruption and ``--resume``."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cli_runner import ENFORCER, Cli
from harness import set_default_key
from support import MakeBucket, MakeKey, StackEnv, enforcer_s3_settings

from enforcer.core.keyspace import MAX_CHAR
from enforcer.storage.s3 import open_s3_storage
from enforcer.storage.split import split_keyspace

#: Names around every boundary the splitter may choose: prefixes and the keys that sort right
#: before and after them, Unicode in several planes, spaces, plus signs, control characters,
#: a prefix that is also a key, a deep path and the highest code point. (MinIO lists no key
#: below one that is an object itself — ``a/b`` beside ``a`` — so there are none such.)
AWKWARD = [
    "a", "a/", "a b+c", "a!", "a\U0010ffff", "b", "b!", "b/", "b0", "c/", "c/x", "c!",
    "é/ü", "日本/語", "emoji/😀", "c\x01d", "tab\tkey", "x%2Fy", "d/d/d/d/deep",
    "z" * 200 + "/" + "z" * 200, "~", "ZZ", "0", "00", f"m{MAX_CHAR}n",
]  # fmt: skip


def put_all(s3: Any, bucket: str, keys: list[str]) -> None:
    for key in keys:
        s3.put_object(Bucket=bucket, Key=key, Body=b"x")


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def awkward_bucket(s3_admin: Any, make_bucket: MakeBucket) -> tuple[str, list[str]]:
    bucket = make_bucket(notify=False)
    keys = AWKWARD + [f"huge/{n:05d}" for n in range(400)] + [f"flat{n:04x}" for n in range(200)]
    put_all(s3_admin, bucket, keys)
    pages = s3_admin.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    listed = [entry["Key"] for page in pages for entry in page.get("Contents", [])]
    assert listed == sorted(keys)  # the store lists them all, in code-point order
    return bucket, listed


async def test_the_split_covers_every_key_of_an_awkward_bucket_exactly_once(
    stack: StackEnv, awkward_bucket: tuple[str, list[str]]
) -> None:
    bucket, keys = awkward_bucket
    async with open_s3_storage(enforcer_s3_settings(stack).options()) as storage:
        listing = storage.listing
        listing.ask_for_metadata()  # as the scan lists: the splitter must not mind it
        for count in (1, 2, 5, 16, 64):
            ranges = await split_keyspace(listing, bucket, "", count)
            assert 1 <= len(ranges) <= count
            listed = []
            for key_range in ranges:
                part = [o.key async for o in listing.list_objects(
                    bucket, start_after=key_range.after, through=key_range.through)]  # fmt: skip
                assert all(key in key_range for key in part)
                listed += part
            assert listed == keys, count  # in order, each once
            if count >= 5:
                assert sum(1 for r in ranges if r.through is not None) >= 4  # real cuts
        huge = await split_keyspace(listing, bucket, "huge/", 8)  # one prefix, no structure
        assert len(huge) >= 5


def test_a_split_scan_classifies_each_key_once_and_resumes_every_range(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    awkward_bucket: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    bucket, keys = awkward_bucket
    ek = make_key("split")
    set_default_key(s3_admin, bucket, ek)  # every object plaintext: each one a rewrite
    cli = Cli(stack)
    out, checkpoint = tmp_path / "lines.jsonl", tmp_path / "split.json"
    args = ["scan", f"s3://{bucket}", "--split", "6", "--output", "jsonl", "--output-file",
            str(out), "--checkpoint", str(checkpoint), "--progress-interval", "0.05"]  # fmt: skip
    first = subprocess.Popen(  # noqa: S603 - our own entry point
        [str(ENFORCER), "--log-level", "WARNING", *args],
        env=cli.env(ENFORCER_CONCURRENCY="2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert first.stderr is not None
    for progress in first.stderr:  # interrupt once some objects are done
        if progress.startswith("scan ") and int(progress.split()[1].replace(",", "")) >= 60:
            break
    first.send_signal(signal.SIGINT)
    stdout, stderr = first.communicate(timeout=60)
    assert first.returncode == 1, stderr
    assert json.loads(stdout)["interrupted"] is True
    saved = json.loads(checkpoint.read_text())
    assert saved["split"] == 6 and 2 <= len(saved["ranges"]) <= 6
    assert any(r["after_key"] for r in saved["ranges"])  # listers got going

    second = cli(*args, "--resume", timeout=240)

    assert second.returncode == 0, second.stderr
    assert second.json()["objects"] == len(keys)
    lines = read_jsonl(out)
    assert sorted(line["key"] for line in lines) == keys  # each exactly once, none missed
    assert {line["action"] for line in lines} == {"reencrypted"}
    ranges = json.loads(checkpoint.read_text())["ranges"]
    assert all(r["complete"] for r in ranges)
    for key in keys[::37]:
        assert s3_admin.head_object(Bucket=bucket, Key=key)["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"


def test_split_usage_errors(stack: StackEnv) -> None:
    cli = Cli(stack)
    for args, message in [
        (["--split", "0"], "expected 1 to 4096 ranges"),
        (["--split", "many"], "expected a number of ranges or auto"),
        (["--split", "4", "--versions"], "--split lists current objects by key range"),
    ]:
        result = cli("scan", "s3://anything", *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert "Traceback" not in result.stderr
