"""``enforcer scan``, ``enforcer dlq replay`` and ``enforcer keys status`` on the real stack,
run as the installed console command so their exit codes are the ones operators see."""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_runner import Cli
from harness import read_raw
from support import (
    MakeBucket,
    MakeKey,
    StackEnv,
    component_stopped,
    enforcer_s3_settings,
    minio_event,
    produce,
)

from enforcer.cli.dlq import REPLAY_HEADER
from enforcer.storage.s3 import open_s3_storage


@pytest.fixture
def cli(stack: StackEnv) -> Cli:
    return Cli(stack)


def set_default_key(s3: Any, bucket: str, ek: str) -> None:
    """``mc encrypt set sse-kms EK bucket`` (after the test has written its plaintext)."""
    rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": ek}
    s3.put_bucket_encryption(
        Bucket=bucket,
        ServerSideEncryptionConfiguration={"Rules": [{"ApplyServerSideEncryptionByDefault": rule}]},
    )


def write_policy(tmp_path: Path, *rules: dict[str, Any]) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(json.dumps({"rules": list(rules)}))  # JSON is YAML
    return path


def digest(s3: Any, bucket: str, key: str) -> str:
    return hashlib.sha256(s3.get_object(Bucket=bucket, Key=key)["Body"].read()).hexdigest()


# ---------------------------------------------------------------- scan


def _backfill_bucket(s3: Any, make_key: MakeKey, make_bucket: MakeBucket) -> tuple[str, str]:
    ek, other = make_key("scan"), make_key("other")
    bucket = make_bucket(notify=False)
    s3.put_object(Bucket=bucket, Key="data/plain", Body=b"p" * 3000)
    s3.put_object(Bucket=bucket, Key="data/deep/er plain", Body=b"d")
    s3.put_object(Bucket=bucket, Key="data/sse-s3", Body=b"s", ServerSideEncryption="AES256")
    for key, body, key_id in (("data/wrong", b"w", other), ("data/good", b"g", ek)):
        s3.put_object(
            Bucket=bucket, Key=key, Body=body, ServerSideEncryption="aws:kms", SSEKMSKeyId=key_id
        )
    s3.put_object(Bucket=bucket, Key="other/plain", Body=b"o")
    set_default_key(s3, bucket, ek)
    return bucket, ek


async def test_scan_fixes_plaintext_under_the_prefix_and_leaves_the_rest(
    cli: Cli, stack: StackEnv, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket
) -> None:
    bucket, ek = _backfill_bucket(s3_admin, make_key, make_bucket)
    before = digest(s3_admin, bucket, "data/plain")

    result = cli("scan", f"s3://{bucket}/data/")

    assert result.returncode == 0, result.stderr
    summary = result.json()
    assert (summary["objects"], summary["failed"], summary["ok"]) == (5, 0, True)
    assert summary["verdicts"] == {"compliant": 1, "plaintext": 2, "sse_s3": 1, "wrong_key": 1}
    assert summary["actions"] == {"none": 1, "reencrypted": 4}
    for key in ("data/plain", "data/deep/er plain", "data/sse-s3", "data/wrong", "data/good"):
        assert s3_admin.head_object(Bucket=bucket, Key=key)["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
    assert digest(s3_admin, bucket, "data/plain") == before
    assert "ServerSideEncryption" not in s3_admin.head_object(Bucket=bucket, Key="other/plain")
    audit = await cli.audit()
    assert sorted(r["key"] for r in audit) == sorted(
        ["data/plain", "data/deep/er plain", "data/sse-s3", "data/wrong", "data/good"]
    )
    assert {(r["event_name"], r["mode"], r["bucket"]) for r in audit} == {
        ("scan", "enforce", bucket)
    }
    assert all(r["trace_id"] for r in audit)


async def test_scan_dry_run_writes_nothing(
    cli: Cli, stack: StackEnv, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket
) -> None:
    bucket, _ = _backfill_bucket(s3_admin, make_key, make_bucket)
    keys = ("data/plain", "data/sse-s3", "data/wrong", "other/plain")
    before = {k: s3_admin.head_object(Bucket=bucket, Key=k) for k in keys}

    result = cli("scan", f"s3://{bucket}/data", "--dry-run")

    assert result.returncode == 0, result.stderr
    summary = result.json()
    assert summary["mode"] == "audit"
    assert summary["actions"] == {"none": 1, "would_reencrypt": 4}
    for key, head in before.items():
        after = s3_admin.head_object(Bucket=bucket, Key=key)
        assert (after["ETag"], after["LastModified"]) == (head["ETag"], head["LastModified"])
        assert after.get("SSEKMSKeyId") == head.get("SSEKMSKeyId")
    audit = await cli.audit()
    assert len(audit) == 5 and {r["mode"] for r in audit} == {"audit"}


def test_scan_exits_1_when_an_object_fails(
    cli: Cli, s3_admin: Any, make_bucket: MakeBucket, tmp_path: Path
) -> None:
    bucket = make_bucket(notify=False)
    s3_admin.put_object(Bucket=bucket, Key="a", Body=b"a")
    never = f"ek-never-{uuid.uuid4().hex[:8]}"
    policy = write_policy(tmp_path, {"bucket": bucket, "key": never})

    result = cli("scan", f"s3://{bucket}", ENFORCER_POLICY_FILE=str(policy))

    assert result.returncode == 1, result.stdout + result.stderr
    summary = result.json()
    assert (summary["failed"], summary["ok"], summary["actions"]) == (1, False, {"failed": 1})
    assert summary["failures"][0]["error_class"] == "key_missing"


def test_scan_usage_errors_exit_2(cli: Cli) -> None:
    assert cli("scan", "bucket-without-scheme").returncode == 2
    assert cli("scan").returncode == 2


async def test_list_keys_paginates(stack: StackEnv, s3_admin: Any, make_bucket: MakeBucket) -> None:
    bucket = make_bucket(notify=False)
    names = [f"p/{i:02d}" for i in range(7)] + ["q/x"]
    for name in names:
        s3_admin.put_object(Bucket=bucket, Key=name, Body=b"")
    async with open_s3_storage((enforcer_s3_settings(stack)).options()) as storage:
        listed = [k async for k in storage.listing.list_keys(bucket, "p/", page_size=2)]
    assert listed == names[:-1]


# ---------------------------------------------------------------- dlq replay


def create_key(kes_admin: httpx.Client, name: str) -> None:
    response = kes_admin.put(f"/v1/key/create/{name}")
    assert response.status_code == 200, response.text


@dataclass
class DeadLetters:
    """An enforcer run on a private topic that dead-lettered three of its four records."""

    cli: Cli
    topic: str
    bucket: str
    key: bytes  # the Kafka key of the dead-lettered records
    values: list[bytes]  # their payloads, in order
    later: str  # the EK the policy requires; created only when the test recovers


@pytest.fixture
async def dead_letters(
    stack: StackEnv, s3_admin: Any, make_bucket: MakeBucket, tmp_path: Path
) -> DeadLetters:
    later = f"ek-later-{uuid.uuid4().hex[:8]}"
    bucket, free = make_bucket(notify=False), make_bucket(notify=False)
    s3_admin.put_object(Bucket=bucket, Key="obj", Body=b"needs a key that does not exist yet")
    s3_admin.put_object(Bucket=free, Key="free", Body=b"out of scope")
    topic = f"test-ops-in-{uuid.uuid4().hex[:8]}"
    policy = write_policy(tmp_path, {"bucket": bucket, "key": later})
    cli = Cli(
        stack,
        extra_env={
            "ENFORCER_KAFKA__TOPICS": json.dumps([topic]),
            "ENFORCER_POLICY_FILE": str(policy),
            # With a KMS client `run` refuses to start on the missing key (preflight); without
            # one only MinIO knows, per object, like a key deleted while the service runs.
            "ENFORCER_KMS__KIND": "none",
            # Parked for its key a second, then dead-lettered (the service's patience).
            "ENFORCER_KEYS__PARK_PATIENCE": "1",
        },
    )
    key = f"{bucket}/obj".encode()
    values = [b"not json at all", b"\xff\xfe", minio_event(bucket, "obj")]
    records = [(key, v) for v in values] + [(b"f", minio_event(free, "free"))]
    await produce(stack.kafka_bootstrap, topic, records)
    assert cli("run", "--drain", "--idle", "1.5").returncode == 0
    dlq = await cli.dead_letters()
    assert [d["error_class"] for d in dlq] == ["bad_event", "bad_event", "key_missing"]
    return DeadLetters(cli, topic, bucket, key, values, later)


async def test_dlq_replay_republishes_dead_letters_to_their_topic(
    dead_letters: DeadLetters, stack: StackEnv
) -> None:
    cli, topic = dead_letters.cli, dead_letters.topic
    await produce(stack.kafka_bootstrap, cli.dlq_topic, [(b"junk", b"not a dead letter")])

    dry = cli("dlq", "replay", "--dry-run")
    assert dry.returncode == 0, dry.stderr
    report = dry.json()
    assert (report["would_replay"], report["skipped"]) == (3, 1)
    assert report["by_error_class"] == {"bad_event": 2, "key_missing": 1}
    assert {r["topic"] for r in report["records"]} == {topic}
    assert len(await read_raw(stack.kafka_bootstrap, topic)) == 4  # nothing published

    first = cli("dlq", "replay", "--limit", "2").json()
    rest = cli("dlq", "replay").json()
    again = cli("dlq", "replay").json()
    assert first["replayed"] + first["skipped"] == 2
    assert (first["replayed"] + rest["replayed"], first["skipped"] + rest["skipped"]) == (3, 1)
    assert (again["replayed"], again["skipped"], again["remaining"]) == (0, 0, 0)
    [skipped] = first["skipped_records"] + rest["skipped_records"]
    assert skipped["reason"].startswith("not a dead-letter record")

    records = [r for r in await read_raw(stack.kafka_bootstrap, topic) if r.key == dead_letters.key]
    assert [r.value for r in records] == dead_letters.values * 2  # same partition, same order
    assert all(REPLAY_HEADER in r.headers for r in records[3:])
    assert len({r.partition for r in records}) == 1  # the key's partition, after the originals
    replayed = [r.offset for r in records[3:]]
    assert replayed == list(range(replayed[0], replayed[0] + 3))


async def test_replayed_events_succeed_once_the_cause_is_fixed(
    dead_letters: DeadLetters, stack: StackEnv, s3_admin: Any, kes_admin: httpx.Client
) -> None:
    cli = dead_letters.cli
    create_key(kes_admin, dead_letters.later)  # the fix: the required key exists now
    assert cli("dlq", "replay").json()["replayed"] == 3
    assert cli("run", "--drain", "--idle", "1.5").returncode == 0

    head = s3_admin.head_object(Bucket=dead_letters.bucket, Key="obj")
    assert head["SSEKMSKeyId"] == f"arn:aws:kms:{dead_letters.later}"
    raw = await read_raw(stack.kafka_bootstrap, cli.dlq_topic)
    classes = [json.loads(r.value or b"{}")["error_class"] for r in raw]
    assert classes == ["bad_event", "bad_event", "key_missing", "bad_event", "bad_event"]


def test_dlq_replay_without_a_dlq_topic_replays_nothing(cli: Cli) -> None:
    result = cli("dlq", "replay")
    assert result.returncode == 0, result.stderr
    assert (result.json()["replayed"], result.json()["skipped"]) == (0, 0)


# ---------------------------------------------------------------- keys status


def test_keys_status_enabled_and_missing(
    cli: Cli,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    kes_admin: httpx.Client,
    tmp_path: Path,
) -> None:
    fresh, gone = make_key("fresh"), make_key("gone")
    assert kes_admin.delete(f"/v1/key/delete/{gone}").status_code == 200
    bucket = make_bucket(default_key=fresh, notify=False)
    ok_policy = write_policy(tmp_path, {"bucket": bucket, "prefix": "a/", "key": fresh})

    ok = cli("keys", "status", "--bucket", bucket, ENFORCER_POLICY_FILE=str(ok_policy))

    assert ok.returncode == 0, ok.stdout + ok.stderr
    report = ok.json()
    assert report["ok"] and report["kms"]["ready"]
    [key] = report["keys"]
    assert (key["key"], key["state"]) == (fresh, "enabled")
    assert key["used_by"] == [f"policy:{bucket}/a/", f"bucket-default:{bucket}"]
    assert report["buckets"] == [{"bucket": bucket, "default_key": fresh, "error": None}]

    rule = {"bucket": bucket, "key": f"arn:aws:kms:{fresh}", "accepted_keys": [gone]}
    bad = cli("keys", "status", ENFORCER_POLICY_FILE=str(write_policy(tmp_path, rule)))

    assert bad.returncode == 1, bad.stdout + bad.stderr
    states = {k["key"]: k["state"] for k in bad.json()["keys"]}
    assert states == {fresh: "enabled", gone: "missing"}
    assert any(gone in problem for problem in bad.json()["problems"])


def test_keys_status_all_buckets_includes_listable_buckets(
    cli: Cli, make_key: MakeKey, make_bucket: MakeBucket
) -> None:
    ek = make_key()
    bucket = make_bucket(default_key=ek, notify=False)
    result = cli("keys", "status", "--all-buckets")
    assert result.returncode in (0, 1), result.stderr  # other buckets may have lost keys
    buckets = {b["bucket"]: b["default_key"] for b in result.json()["buckets"]}
    assert buckets[bucket] == ek
    assert {k["key"]: k["state"] for k in result.json()["keys"]}[ek] == "enabled"


@pytest.mark.stops_stack
def test_keys_status_kms_unreachable_exits_1(cli: Cli) -> None:
    with component_stopped("kes"):
        down = cli("keys", "status")
    assert down.returncode == 1, down.stdout + down.stderr
    assert down.json()["kms"]["ready"] is False
    assert "unreachable" in down.json()["kms"]["error"]
    up = cli("keys", "status")
    assert up.returncode == 0, up.stdout + up.stderr


def test_keys_status_without_a_kms_exits_2(cli: Cli) -> None:
    result = cli("keys", "status", ENFORCER_KMS__KIND="none")
    assert result.returncode == 2
    assert "cannot be checked without a KMS" in result.stderr
    assert result.stdout == ""
