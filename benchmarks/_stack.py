"""Shared helpers for the benchmarks that need the local stack (deploy/local/stack).

The stack's settings come from the environment when ``eval "$(deploy/local/stack env)"`` was run,
else from running ``deploy/local/stack env`` (which honours ``SSE_ENFORCER_STATE`` and the
``LOCAL_*_PORT`` variables, so a benchmark can use its own instance of the stack).
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import subprocess
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
for _dir in ("tests/integration", "tests"):  # support, harness; doubles, waiting
    sys.path.insert(0, str(REPO_ROOT / _dir))

from support import (  # noqa: E402 - needs the path above
    StackEnv,
    load_stack_env,
    parse_stack_env,
    s3_client,
    stack_command,
)

MiB = 1024 * 1024
GiB = 1024 * MiB
#: The venv's own ``enforcer`` command (the interpreter running the benchmark is the venv's).
ENFORCER = Path(sys.executable).with_name("enforcer")
NATIVE_BUILD = REPO_ROOT / "benchmarks" / "native" / "build"


def stack_env() -> StackEnv:
    """The running stack, from the environment if it was eval'd there, else from ``env``."""
    if "LOCAL_S3_ENDPOINT" in os.environ and "LOCAL_MINIO_DEFAULT_KEY" in os.environ:
        env = dict(os.environ)
    else:
        try:
            env, _ = parse_stack_env(stack_command("env", timeout=60))
        except (RuntimeError, OSError) as exc:
            raise SystemExit(
                f"the local stack is not usable ({exc}); run deploy/local/stack up"
            ) from None
    try:
        return load_stack_env(env)
    except KeyError as exc:
        raise SystemExit(f"deploy/local/stack env lacks {exc}") from None


def admin_s3(stack: StackEnv, read_timeout: int = 300) -> Any:
    """boto3 as the MinIO admin (path-style), with timeouts that suit multi-GiB transfers."""
    client = s3_client(
        stack.s3_endpoint, stack.admin_access_key, stack.admin_secret_key, stack.region
    )
    client.meta.config.read_timeout = read_timeout
    return client


def new_bucket(s3: Any, prefix: str = "bench") -> str:
    name = f"{prefix}-{uuid.uuid4().hex[:16]}"
    s3.create_bucket(Bucket=name)
    return name


def delete_bucket(s3: Any, bucket: str) -> None:
    """Empty (objects, versions, uploads) and delete ``bucket``; best effort."""
    with contextlib.suppress(Exception):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            entries = page.get("Versions", []) + page.get("DeleteMarkers", [])
            for start in range(0, len(entries), 1000):
                batch = [
                    {"Key": e["Key"], "VersionId": e["VersionId"]}
                    for e in entries[start : start + 1000]
                ]
                s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
        for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        s3.delete_bucket(Bucket=bucket)


def spread(values: Sequence[float]) -> str:
    """``median (min-max)`` of repeated measurements."""
    if len(values) == 1:
        return f"{values[0]:.1f}"
    return f"{statistics.median(values):.1f} ({min(values):.1f}-{max(values):.1f})"


def load_note() -> str:
    """The 1-minute load average against the CPU count: other work on a shared machine."""
    try:
        one, five, _ = os.getloadavg()
    except OSError:
        return "load unknown"
    return f"load average {one:.2f}/{five:.2f} (1/5 min) on {os.cpu_count()} CPUs"


def run_child(argv: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> str:
    """Run a child Python process, return its stdout; its stderr is shown on failure."""
    proc = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"child {argv} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return proc.stdout


def native_binary() -> str:
    """The native minio-go client (``native/``), built into the cache on first use."""
    return subprocess.run(  # noqa: S603 - our build script
        [str(NATIVE_BUILD)], check=True, capture_output=True, text=True
    ).stdout.strip()


def run_native(stack: StackEnv, *args: str) -> dict[str, Any]:
    """Run the native client against the stack's MinIO as its admin; its JSON result."""
    env = dict(os.environ) | {
        "AWS_ACCESS_KEY_ID": stack.admin_access_key,
        "AWS_SECRET_ACCESS_KEY": stack.admin_secret_key,
    }
    endpoint = stack.s3_endpoint.split("://")[1]
    argv = [native_binary(), "-endpoint", endpoint, *args]
    done = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)  # noqa: S603
    return dict(json.loads(done.stdout))


def process_tree(pid: int) -> list[int]:
    """``pid`` and its descendants (``enforcer run --workers N``: the supervisor and workers)."""
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        try:
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except OSError:
            continue
        todo += [int(c) for c in children]
    return found
