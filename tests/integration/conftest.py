"""Shared fixtures for integration tests: the real servers of the local stack (docs/local-stack.md).

Every test under ``tests/integration`` is marked ``integration``. The stack must be up (the
``stack`` fixture runs ``deploy/local/stack up`` once if ``status`` fails) and a stack that cannot
come up *fails* the session's tests: CI must not go green without its servers.

Fixtures (names are the API other tests use):

- ``stack`` (session) -> :class:`support.StackEnv`
- ``s3_admin`` (session) -> boto3 S3 client as the MinIO admin (path-style, no retries)
- ``kes_admin`` (session) -> ``httpx.Client`` for KES as the admin identity
- ``make_key(prefix="ek") -> str`` creates a uniquely named KES key
- ``make_bucket(default_key=None, versioned=False, object_lock=False, notify=True) -> str``
- ``notifications(bucket, count, timeout=30.0)`` -> awaitable list of MinIO messages
- ``tls_minio`` (session) -> :class:`support.TlsMinio`, a MinIO over TLS for SSE-C (no KMS)
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import BotoCoreError, ClientError
from harness import EnforcerRun, write_policy
from replicas import Backlog, Spawn
from support import (
    MAIN_TOPIC_LOCK,
    STOPS,
    MakeBucket,
    MakeKey,
    Notifications,
    StackEnv,
    TlsMinio,
    components_locked,
    file_locked,
    kes_client,
    load_stack_env,
    moto_server,
    notification_lane,
    parse_stack_env,
    read_notifications,
    s3_client,
    stack_command,
    stack_logs,
    topic_ends,
)

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test below this folder ``integration`` (``-m 'not integration'`` skips them)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(autouse=True)
def stops_marked(request: pytest.FixtureRequest) -> Iterator[None]:
    """Only a test marked ``stops_stack`` may stop or restart a component (see
    :func:`support.require_stop_mark`): ``make test`` runs the others concurrently."""
    STOPS["allowed"] = request.node.get_closest_marker("stops_stack") is not None
    try:
        yield
    finally:
        STOPS["allowed"] = True


@pytest.fixture(autouse=True)
def main_topic_to_itself(request: pytest.FixtureRequest) -> Iterator[None]:
    """A test marked ``main_topic`` binds buckets to the stack's main notification topic, not to
    its worker's lane: it holds a lock, so no two such tests run at once."""
    if request.node.get_closest_marker("main_topic") is None:
        yield
        return
    with file_locked(MAIN_TOPIC_LOCK, timeout=1200):
        yield


# ---------------------------------------------------------------- the stack


def _ensure_stack_up() -> None:
    """``up`` once if ``status`` fails; under the component lock, so a concurrent run's
    deliberate outage (``component_stopped``) is not mistaken for a stack that is down."""
    with components_locked(timeout=110):
        try:
            stack_command("status", timeout=60)
        except RuntimeError:
            try:
                stack_command("up")
            except (RuntimeError, OSError) as exc:
                pytest.fail(
                    f"the local stack could not come up: {exc}\n{stack_logs()}", pytrace=False
                )


@pytest.fixture(scope="session")
def stack() -> Iterator[StackEnv]:
    """The running local stack; puts its bin dir on PATH and its SSL_CERT_DIR in the env.

    Under pytest-xdist (``make test``) each worker gets a notification lane of its own
    (:func:`support.notification_lane`): its buckets notify, and its enforcers consume, a topic
    no other worker uses.
    """
    _ensure_stack_up()
    try:
        env, bin_dir = parse_stack_env(stack_command("env", timeout=60))
        parsed = load_stack_env(env)
        worker = os.environ.get("PYTEST_XDIST_WORKER")  # gw0, gw1, ...
        if worker is not None:
            lanes = int(env.get("LOCAL_NOTIFY_LANES", "0"))
            parsed = notification_lane(parsed, int(worker.removeprefix("gw")) + 1, lanes)
    except (RuntimeError, KeyError) as exc:
        pytest.fail(f"deploy/local/stack env is unusable: {exc!r}\n{stack_logs()}", pytrace=False)
    with pytest.MonkeyPatch.context() as patch:
        if bin_dir:
            patch.setenv("PATH", bin_dir, prepend=":")
        if "SSL_CERT_DIR" in env:  # Go tools (kes, mc) trust the KES certificate through it
            patch.setenv("SSL_CERT_DIR", env["SSL_CERT_DIR"])
        yield parsed


@pytest.fixture(scope="session")
def s3_admin(stack: StackEnv) -> Any:
    """A sync boto3 S3 client as the MinIO admin: path-style, one attempt per call."""
    return s3_client(
        stack.s3_endpoint, stack.admin_access_key, stack.admin_secret_key, stack.region
    )


@pytest.fixture(scope="session")
def kes_admin(stack: StackEnv) -> Iterator[httpx.Client]:
    """KES's HTTP API as the admin identity (may create and delete keys)."""
    with kes_client(stack) as client:
        yield client


# ---------------------------------------------------------------- keys and buckets


@pytest.fixture
def make_key(kes_admin: httpx.Client) -> MakeKey:
    """Factory: ``make_key(prefix="ek")`` creates the KES key ``<prefix>-<hex>`` and returns its
    name. Keys are not deleted afterwards (objects left in locked buckets may still use them)."""

    def create(prefix: str = "ek") -> str:
        name = f"{prefix}-{uuid.uuid4().hex[:12]}"
        response = kes_admin.put(f"/v1/key/create/{name}")
        assert response.status_code == 200, f"KES create {name}: {response.text}"
        return name

    return create


@pytest.fixture
def make_bucket(stack: StackEnv, s3_admin: Any) -> Iterator[MakeBucket]:
    """Factory for uniquely named buckets ``t-<hex>``, emptied and deleted (best effort) after.

    ``default_key``: PutBucketEncryption with SSE-KMS under that key (= ``mc encrypt set sse-kms``);
    ``versioned``: versioning on; ``object_lock``: created with object lock (implies versioning);
    ``notify``: ``s3:ObjectCreated:*`` notifications go to the stack's Kafka target.
    """
    created: list[str] = []

    def create(
        default_key: str | None = None,
        versioned: bool = False,
        object_lock: bool = False,
        notify: bool = True,
    ) -> str:
        name = f"t-{uuid.uuid4().hex[:20]}"
        s3_admin.create_bucket(Bucket=name, ObjectLockEnabledForBucket=object_lock)
        created.append(name)
        if versioned:
            s3_admin.put_bucket_versioning(
                Bucket=name, VersioningConfiguration={"Status": "Enabled"}
            )
        if default_key is not None:
            rule = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": default_key}
            s3_admin.put_bucket_encryption(
                Bucket=name,
                ServerSideEncryptionConfiguration={
                    "Rules": [{"ApplyServerSideEncryptionByDefault": rule}]
                },
            )
        if notify:
            queue = {"QueueArn": stack.notify_arn, "Events": ["s3:ObjectCreated:*"]}
            s3_admin.put_bucket_notification_configuration(
                Bucket=name, NotificationConfiguration={"QueueConfigurations": [queue]}
            )
        return name

    yield create
    for name in created:
        _delete_bucket(s3_admin, name)


def _delete_bucket(s3: Any, bucket: str) -> None:
    """Delete every version, delete marker and upload, then the bucket; ignore what is locked."""
    with contextlib.suppress(ClientError, BotoCoreError):
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            for entry in page.get("Versions", []) + page.get("DeleteMarkers", []):
                _delete_version(s3, bucket, entry["Key"], entry["VersionId"])
        for upload in s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
            s3.abort_multipart_upload(Bucket=bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        s3.delete_bucket(Bucket=bucket)


def _delete_version(s3: Any, bucket: str, key: str, version_id: str) -> None:
    args = {"Bucket": bucket, "Key": key, "VersionId": version_id}
    try:
        s3.delete_object(**args, BypassGovernanceRetention=True)
    except ClientError:
        with contextlib.suppress(ClientError):  # a legal hold blocks even a governance bypass
            s3.put_object_legal_hold(**args, LegalHold={"Status": "OFF"})
            s3.delete_object(**args, BypassGovernanceRetention=True)


# ---------------------------------------------------------------- notifications, TLS MinIO


@pytest.fixture
async def notifications(stack: StackEnv) -> Notifications:
    """``await notifications(bucket, count, timeout=30.0)``: :func:`support.read_notifications`
    from where the topic ended when the test began (its buckets are younger than that), so the
    topic's history costs nothing."""
    since = await topic_ends(stack.kafka_bootstrap, stack.notify_topic)

    async def read(
        bucket: str,
        count: int,
        timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for polling Kafka, not a cancel scope
    ) -> list[dict[str, Any]]:
        return await read_notifications(stack, bucket, count, timeout, since=since)

    return read


@pytest.fixture
def backlog(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    notifications: Notifications,
    tmp_path: Path,
) -> Backlog:
    """``await backlog(count)``: see :class:`replicas.Backlog`."""

    async def make(count: int, key_prefix: str = "ek") -> tuple[EnforcerRun, str, str, list[str]]:
        ek, bucket = make_key(key_prefix), make_bucket()
        policy = write_policy(tmp_path / "policy.yaml", {"bucket": bucket, "key": ek})
        run = EnforcerRun(stack, policy_file=policy)
        await run.start_at_end()
        keys = [f"obj-{i:04}" for i in range(count)]
        for key in keys:
            s3_admin.put_object(Bucket=bucket, Key=key, Body=key.encode() * 64)
        await notifications(bucket, count, timeout=120)
        return run, ek, bucket, keys

    return make


@pytest.fixture
async def spawn(tmp_path: Path, make_bucket: MakeBucket) -> AsyncIterator[Spawn]:
    """Start ``enforcer run`` replicas (logs in ``tmp_path``); all are killed at teardown, before
    the test's buckets are deleted."""
    replicas = Spawn(tmp_path)
    yield replicas
    await replicas.kill_all()


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """moto_server (S3 and KMS) on a free loopback port, for the AWS-parity tests."""
    with moto_server() as url:
        yield url


@pytest.fixture(scope="session")
def tls_minio(stack: StackEnv, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsMinio]:
    """A second MinIO (stack binary) over TLS and without KMS, started on first use. It publishes
    bucket notifications to the stack's Kafka topic, like the stack's own MinIO."""
    root = tmp_path_factory.mktemp("tls-minio")
    notify = {
        "MINIO_NOTIFY_KAFKA_ENABLE": "on",
        "MINIO_NOTIFY_KAFKA_BROKERS": stack.kafka_bootstrap,
        "MINIO_NOTIFY_KAFKA_TOPIC": stack.notify_topic,
        "MINIO_NOTIFY_KAFKA_QUEUE_DIR": str(root / "queue"),
    }
    server = TlsMinio(root=root, extra_env=notify)
    server.start()
    try:
        yield server
    finally:
        server.stop()
