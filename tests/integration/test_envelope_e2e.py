"""Strategy ``envelope`` end to end: the enforcer builds the DEK/KEK/OEK chain itself."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from harness import EnforcerRun, enforcer_environment
from support import MakeBucket, MakeKey, Notifications, StackEnv

MiB = 1024 * 1024


def enforcer_cli(stack: StackEnv, *args: str, **env: str) -> subprocess.CompletedProcess[bytes]:
    with enforcer_environment(stack, **env):
        env = dict(os.environ)
    return subprocess.run(  # noqa: S603 - our own console script
        [str(Path(sys.executable).with_name("enforcer")), *args],
        env=env,
        capture_output=True,
        timeout=120,
        check=False,
    )


async def test_plaintext_objects_become_envelopes_that_decrypt_byte_identical(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
) -> None:
    ek = make_key("env")
    bucket = make_bucket()
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - {{bucket: {bucket}, key: {ek}, strategy: envelope}}\n")
    run = EnforcerRun(
        stack,
        policy_file=policy,
        extra_env={
            "ENFORCER_S3__MULTIPART_THRESHOLD": str(6 * MiB),
            "ENFORCER_S3__PART_SIZE": str(5 * MiB),
        },
    )
    await run.start_at_end()
    bodies = {
        "empty": b"",
        "small.txt": b"hello envelope",
        "odd size/ü.bin": os.urandom(64 * 1024 + 1),
        "big.bin": os.urandom(13 * MiB + 7),  # three encrypted parts
    }
    for key, body in bodies.items():
        s3_admin.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"owner": "qa"})
    await notifications(bucket, len(bodies))

    await run.drain()

    first: dict[str, dict[str, Any]] = {}
    for record in await run.audit(bucket):
        first.setdefault(record["key"], record)
    assert {
        k: (r["verdict"], r["action"], r["strategy"]) for k, r in first.items()
    } == dict.fromkeys(bodies, ("plaintext", "reencrypted", "envelope"))
    for key, body in bodies.items():
        head = s3_admin.head_object(Bucket=bucket, Key=key)
        meta = head["Metadata"]
        assert meta["owner"] == "qa"  # user metadata kept beside the envelope's
        assert meta["enforcer-envelope-key"] == ek
        stored = s3_admin.get_object(Bucket=bucket, Key=key)["Body"].read()
        assert body == b"" or body not in stored  # the bytes at rest are ciphertext
        out = tmp_path / "plain.out"
        result = enforcer_cli(stack, "decrypt", f"s3://{bucket}/{key}", "-o", str(out))
        assert result.returncode == 0, result.stderr.decode()[-2000:]
        assert hashlib.sha256(out.read_bytes()).digest() == hashlib.sha256(body).digest(), key
    assert (
        "enforcer-envelope-part-size"
        in s3_admin.head_object(Bucket=bucket, Key="big.bin")["Metadata"]
    )
    # The envelope's own rewrite event resolves compliant: no loop.
    await notifications(bucket, 2 * len(bodies))
    await run.drain()
    records = await run.audit(bucket)
    assert sum(r["action"] == "reencrypted" for r in records) == len(bodies)
    last = {r["key"]: r["verdict"] for r in records}
    assert last == dict.fromkeys(bodies, "compliant")


async def test_tampered_or_moved_envelopes_fail_loudly(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
) -> None:
    ek = make_key("env")
    bucket = make_bucket()
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - {{bucket: {bucket}, key: {ek}, strategy: envelope}}\n")
    run = EnforcerRun(stack, policy_file=policy)
    await run.start_at_end()
    s3_admin.put_object(Bucket=bucket, Key="doc", Body=b"secret ledger " * 5000)
    await notifications(bucket, 1)
    await run.drain()
    head = s3_admin.head_object(Bucket=bucket, Key="doc")
    stored = bytearray(s3_admin.get_object(Bucket=bucket, Key="doc")["Body"].read())

    # Flip one ciphertext bit, keep the metadata.
    stored[100] ^= 1
    s3_admin.put_object(Bucket=bucket, Key="flipped", Body=bytes(stored), Metadata=head["Metadata"])
    # Same bytes and metadata under another name: the KEK binds bucket/object.
    stored[100] ^= 1
    s3_admin.put_object(Bucket=bucket, Key="moved", Body=bytes(stored), Metadata=head["Metadata"])

    for key in ("flipped", "moved"):
        out = tmp_path / f"{key}.out"
        result = enforcer_cli(stack, "decrypt", f"s3://{bucket}/{key}", "-o", str(out))
        assert result.returncode == 1, key
        assert b"integrity" in result.stderr, result.stderr.decode()[-1000:]
        assert not out.exists()  # nothing unverified reaches the named file
        assert not out.with_name(out.name + ".partial").exists()


async def test_an_envelope_under_an_old_key_is_rewritten_from_its_plaintext(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
) -> None:
    old_ek, new_ek = make_key("env-old"), make_key("env-new")
    bucket = make_bucket()
    policy = tmp_path / "policy.yaml"
    policy.write_text(f"rules:\n  - {{bucket: {bucket}, key: {old_ek}, strategy: envelope}}\n")
    body = os.urandom(200 * 1024 + 3)
    run = EnforcerRun(stack, policy_file=policy)
    await run.start_at_end()
    s3_admin.put_object(Bucket=bucket, Key="doc", Body=body)
    await notifications(bucket, 1)
    await run.drain()
    assert s3_admin.head_object(Bucket=bucket, Key="doc")["Metadata"]["enforcer-envelope-key"] == (
        old_ek
    )

    # The rule moves to a new EK: a scan re-encrypts the envelope under it.
    policy.write_text(f"rules:\n  - {{bucket: {bucket}, key: {new_ek}, strategy: envelope}}\n")
    scan = enforcer_cli(
        stack,
        *("scan", f"s3://{bucket}", "--no-progress"),
        ENFORCER_POLICY_FILE=str(policy),
        XDG_STATE_HOME=str(tmp_path),
    )
    assert scan.returncode == 0, scan.stderr.decode()[-2000:]
    assert s3_admin.head_object(Bucket=bucket, Key="doc")["Metadata"]["enforcer-envelope-key"] == (
        new_ek
    )
    out = tmp_path / "doc.out"
    result = enforcer_cli(stack, "decrypt", f"s3://{bucket}/doc", "-o", str(out))
    assert result.returncode == 0, result.stderr.decode()[-2000:]
    assert out.read_bytes() == body  # the plaintext, not the old envelope's ciphertext
