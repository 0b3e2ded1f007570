"""Peak RSS while envelope-encrypting a multi-GiB object, streaming; target < 200 MiB.

Every measurement runs in a fresh child process that reports its own peak resident set (``VmHWM``;
see :func:`peak_rss_kib` for why not ``ru_maxrss``) and throughput, so nothing the parent holds
counts.

``--mode crypto``: a generated plaintext stream (1 MiB chunks, each a fresh ``bytes`` as a
network read would be) → :func:`enforcer.crypto.envelope.encrypt_chunks` → discard, once as one
DARE stream (``single``) and once in parts (``parts``). Baseline: the same child doing only the
generation. The delta is what encryption adds.

``--mode s3``: the real :func:`enforcer.engine.envelope.envelope_rewriter` against the local
stack's MinIO. The parent uploads a generated plaintext object with boto3 multipart, then a
child builds ``S3Storage`` with the stack's admin credentials and the KES adapter (``--kms kes``,
the stack's default key) or ``InMemoryKms`` (``--kms fake``), with ``multipart_threshold``
lowered so the rewrite goes part by part, and rewrites the object in place. Baseline: a child that
streams the same object through ``S3Storage.read_chunks`` and discards it (interpreter, clients
and the read path, without encryption or upload). Afterwards the object's metadata and size are
checked (``--verify`` also decrypts it and compares the SHA-256).

The target applies to the encrypting process's absolute peak RSS. Exit status: 0, or 1 with
``--check`` when a peak is at or above the target.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import resource
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
CHUNK = MiB
HERE = Path(__file__).resolve()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("crypto", "s3"), default="crypto")
    parser.add_argument("--size", type=float, default=3, help="GiB (default 3)")
    parser.add_argument("--part-size", type=int, default=64, help="MiB per part (default 64)")
    parser.add_argument("--target", type=float, default=200, help="MiB of peak RSS (200)")
    parser.add_argument("--kms", choices=("kes", "fake"), default="kes", help="s3 mode (kes)")
    parser.add_argument("--verify", action="store_true", help="s3 mode: decrypt and compare")
    parser.add_argument("--keep", action="store_true", help="s3 mode: keep the bucket")
    parser.add_argument("--check", action="store_true", help="exit 1 if a peak misses target")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# ---------------------------------------------------------------- generated plaintext


def plaintext(size: int) -> Iterator[bytes]:
    """``size`` bytes in fresh 1 MiB ``bytes`` objects; chunk i starts with i (so all differ)."""
    block = bytearray(os.urandom(CHUNK))
    for index, start in enumerate(range(0, size, CHUNK)):
        block[:8] = index.to_bytes(8, "little")
        yield bytes(block[: min(CHUNK, size - start)])


class GeneratedFile:
    """A read-only file of :func:`plaintext` for boto3's ``upload_fileobj``; hashes as it goes."""

    def __init__(self, size: int) -> None:
        self._chunks = plaintext(size)
        self._pending = b""
        self.sha256 = hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        out = [self._pending]
        have = len(self._pending)
        while n < 0 or have < n:
            chunk = next(self._chunks, b"")
            if not chunk:
                break
            out.append(chunk)
            have += len(chunk)
        data = b"".join(out)
        data, self._pending = (data, b"") if n < 0 else (data[:n], data[n:])
        self.sha256.update(data)
        return data


# ---------------------------------------------------------------- children


def peak_rss_kib() -> int:
    """This process's peak resident set, in KiB.

    ``VmHWM`` from /proc, not ``getrusage().ru_maxrss``: on Linux the latter is carried over
    ``fork`` and ``execve`` (a child starts with its parent's high-water mark), so a small child
    of a big parent would report the parent's peak. ``VmHWM`` belongs to the address space the
    child got at ``execve``. Elsewhere, ``ru_maxrss`` is the fallback.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def report_child(nbytes: int, seconds: float, **extra: Any) -> None:
    print(json.dumps({"peak_kib": peak_rss_kib(), "bytes": nbytes, "seconds": seconds, **extra}))


def child_crypto(kind: str, size: int, part_size: int) -> None:
    from enforcer.crypto import envelope  # imported by every kind, so the baseline pays too

    oek = os.urandom(32)
    start = time.perf_counter()
    if kind == "generate":
        for _ in plaintext(size):
            pass
    else:
        parts = part_size if kind == "parts" else None
        for _ in envelope.encrypt_chunks(oek, plaintext(size), part_size=parts):
            pass
    report_child(size, time.perf_counter() - start)


async def child_s3(kind: str, config: dict[str, Any]) -> None:
    from contextlib import AsyncExitStack

    sys.path.insert(0, str(HERE.parents[1] / "tests"))  # tests/doubles
    from doubles.kms import InMemoryKms

    from enforcer.app import open_kms
    from enforcer.config import KmsSettings, S3Settings
    from enforcer.core.policy import RequiredKey, Strategy
    from enforcer.engine.envelope import envelope_rewriter
    from enforcer.storage.s3 import open_s3_storage

    settings = S3Settings(**config["s3"])
    async with AsyncExitStack() as stack:
        storage = await stack.enter_async_context(open_s3_storage(settings.options()))
        snapshot = await storage.head(config["bucket"], config["key"])
        assert snapshot is not None, "the plaintext object is missing"
        start = time.perf_counter()
        if kind == "read":
            async for _ in storage.read_chunks(snapshot):
                pass
            report_child(snapshot.size, time.perf_counter() - start)
            return
        if config["kms"] == "fake":
            kms: Any = InMemoryKms(keys=(config["key_name"],))
        else:
            kms = await stack.enter_async_context(open_kms(KmsSettings(**config["kes"])))
        start = time.perf_counter()
        rewrite = envelope_rewriter(storage, kms, multipart_threshold=settings.multipart_threshold,
                                    part_size=settings.part_size)  # fmt: skip
        required = RequiredKey(
            key=config["key_name"], strategy=Strategy.ENVELOPE, source="benchmark"
        )
        result = await rewrite(snapshot, required, {})
        report_child(snapshot.size, time.perf_counter() - start, etag=result.etag)


def run_as_child(args: argparse.Namespace) -> int:
    config = json.loads(os.environ["BENCH_CHILD_CONFIG"])
    mode, kind = args.child.split(":")
    if mode == "crypto":
        child_crypto(kind, config["size"], config["part_size"])
    else:
        asyncio.run(child_s3(kind, config))
    return 0


def measure(kind: str, config: dict[str, Any]) -> dict[str, Any]:
    sys.path.insert(0, str(HERE.parent))
    from _stack import run_child

    env = {**os.environ, "BENCH_CHILD_CONFIG": json.dumps(config)}
    out = run_child([str(HERE), "--child", kind], env=env)
    return json.loads(out.strip().splitlines()[-1])


# ---------------------------------------------------------------- parent


def print_table(
    args: argparse.Namespace, rows: list[tuple[str, dict[str, Any], bool]], baseline: dict[str, Any]
) -> bool:
    ok = True
    base_mib = baseline["peak_kib"] / 1024
    print(
        f"{'run':<22} {'peak RSS MiB':>12} {'vs baseline':>12} {'MiB/s':>8} {'target':>7}  result"
    )
    for name, result, targeted in rows:
        peak = result["peak_kib"] / 1024
        rate = result["bytes"] / MiB / result["seconds"]
        delta = "" if result is baseline else f"{peak - base_mib:+.1f}"
        verdict, target = "", ""
        if targeted:
            passed = peak < args.target
            ok = ok and passed
            verdict, target = ("PASS" if passed else "FAIL"), f"<{args.target:.0f}"
        print(f"{name:<22} {peak:>12.1f} {delta:>12} {rate:>8.0f} {target:>7}  {verdict}")
    return ok


def main_crypto(args: argparse.Namespace, size: int) -> bool:
    config = {"size": size, "part_size": args.part_size * MiB}
    print(f"envelope memory, crypto: {size / GiB:.2f} GiB generated in 1 MiB chunks")
    baseline = measure("crypto:generate", config)
    rows = [
        ("generate only (base)", baseline, False),
        ("encrypt single stream", measure("crypto:single", config), True),
        (f"encrypt parts {args.part_size} MiB", measure("crypto:parts", config), True),
    ]
    return print_table(args, rows, baseline)


def main_s3(args: argparse.Namespace, size: int) -> bool:
    sys.path.insert(0, str(HERE.parent))
    from _stack import admin_s3, delete_bucket, new_bucket, stack_env
    from boto3.s3.transfer import TransferConfig

    stack = stack_env()
    free = shutil.disk_usage(stack.minio_drive).free
    if free < 3 * size:  # plaintext, the rewrite, and MinIO's own temporary space
        raise SystemExit(f"{free / GiB:.1f} GiB free under {stack.minio_drive}: too little")
    s3 = admin_s3(stack)
    bucket, key = new_bucket(s3), "big-object"
    try:
        source = GeneratedFile(size)
        started = time.perf_counter()
        transfer = TransferConfig(multipart_chunksize=64 * MiB, max_concurrency=2)
        s3.upload_fileobj(source, bucket, key, Config=transfer)
        upload = time.perf_counter() - started
        print(
            f"envelope memory, s3: {size / GiB:.2f} GiB plaintext uploaded to {bucket}/{key} "
            f"in {upload:.0f} s ({size / MiB / upload:.0f} MiB/s, boto3 multipart)"
        )
        config = child_config(args, stack, bucket, key)
        baseline = measure("s3:read", config)
        rewrite = measure("s3:rewrite", config)
        rows = [("stream GET only (base)", baseline, False), ("envelope rewrite", rewrite, True)]
        print(f"kms {args.kms}; parts of {args.part_size} MiB (multipart threshold lowered)")
        ok = print_table(args, rows, baseline)
        check_result(args, stack, s3, bucket, key, size, source.sha256.hexdigest())
        return ok
    finally:
        if not args.keep:
            delete_bucket(s3, bucket)


def child_config(args: argparse.Namespace, stack: Any, bucket: str, key: str) -> dict[str, Any]:
    env = stack.enforcer_env
    part = args.part_size * MiB
    return {
        "bucket": bucket,
        "key": key,
        "kms": args.kms,
        "key_name": stack.default_key if args.kms == "kes" else "bench-key",
        "s3": {
            "endpoint_url": stack.s3_endpoint,
            "region": stack.region,
            "access_key_id": stack.admin_access_key,
            "secret_access_key": stack.admin_secret_key,
            "multipart_threshold": part,
            "part_size": part,
        },
        "kes": {
            "kind": "kes",
            "endpoint": env["ENFORCER_KMS__ENDPOINT"],
            "client_cert": env["ENFORCER_KMS__CLIENT_CERT"],
            "client_key": env["ENFORCER_KMS__CLIENT_KEY"],
            "ca_path": env["ENFORCER_KMS__CA_PATH"],
        },
    }


def check_result(
    args: argparse.Namespace, stack: Any, s3: Any, bucket: str, key: str, size: int, digest: str
) -> None:
    """The object is now an envelope in parts of the right size; ``--verify`` decrypts it."""
    from enforcer.crypto import envelope

    head = s3.head_object(Bucket=bucket, Key=key)
    header = envelope.EnvelopeHeader.from_metadata(head["Metadata"])
    expected = envelope.encrypted_size(size, args.part_size * MiB)
    assert header.part_size == args.part_size * MiB, header.part_size
    assert header.plaintext_size == size, header.plaintext_size
    assert head["ContentLength"] == expected, head["ContentLength"]
    print(f"checked: envelope metadata, part size and body size ({expected} bytes)")
    if args.verify:
        verify_plaintext(args, stack, bucket, key, digest)


def verify_plaintext(
    args: argparse.Namespace, stack: Any, bucket: str, key: str, digest: str
) -> None:
    from enforcer.crypto import envelope
    from enforcer.engine import envelope as sealing

    if args.kms != "kes":
        print("--verify needs --kms kes (the fake KMS lived in the child)")
        return
    # Decrypt in this process with the same adapters (the rewrite ran in the child).
    config = child_config(args, stack, bucket, key)

    async def run() -> str:
        from enforcer.app import open_kms
        from enforcer.config import KmsSettings, S3Settings
        from enforcer.storage.s3 import open_s3_storage

        async with (
            open_s3_storage(S3Settings(**config["s3"]).options()) as storage,
            open_kms(KmsSettings(**config["kes"])) as kms,
        ):
            snapshot = await storage.head(bucket, key)
            assert snapshot is not None
            header = envelope.EnvelopeHeader.from_metadata(snapshot.attributes.metadata)
            oek = await sealing.open_envelope(kms, header, bucket, key)
            body = envelope.BodyDecryptor(oek, header)
            sha = hashlib.sha256()
            async for chunk in storage.read_chunks(snapshot):
                for piece in body.update(chunk):
                    sha.update(piece)
            body.finalize()
            return sha.hexdigest()

    assert asyncio.run(run()) == digest, "decrypted plaintext differs from what was uploaded"
    print("verified: decrypted plaintext has the uploaded SHA-256")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_as_child(args)
    size = int(args.size * GiB)
    sys.path.insert(0, str(HERE.parent))
    from _stack import load_note

    ok = main_crypto(args, size) if args.mode == "crypto" else main_s3(args, size)
    print(f"({load_note()})")
    return 1 if args.check and not ok else 0


if __name__ == "__main__":
    sys.exit(main())
