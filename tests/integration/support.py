"""Helpers for integration tests against the local stack (deploy/local/stack, docs/local-stack.md).

The fixtures in ``conftest.py`` are thin wrappers over these functions, so a test that needs
something the fixtures do not offer can call them directly:

- :class:`StackEnv` and :func:`load_stack_env` — the stack's ``env`` output as typed fields;
  :func:`notification_lane` — the same stack with a notification topic of a worker's own;
- :func:`stack_command`, :func:`component_stopped`, :func:`restart_component` — drive
  ``deploy/local/stack`` (stop/start/restart hold a machine-wide lock);
- :func:`s3_client`, :func:`kes_client` — clients for MinIO and KES with explicit credentials;
- :func:`s3_error` — ``(HTTP status, error code)`` of a botocore ``ClientError``;
- :func:`read_notifications` — the MinIO bucket notifications Kafka holds for one bucket;
- :class:`TlsMinio` — a throw-away MinIO served over TLS (SSE-C needs TLS; the stack has none).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import boto3
import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from botocore.config import Config
from botocore.exceptions import ClientError
from waiting import eventually

from enforcer.config import S3Settings

REPO_ROOT = Path(__file__).resolve().parents[2]
STACK_SCRIPT = REPO_ROOT / "deploy" / "local" / "stack"


@dataclass(frozen=True)
class StackEnv:
    """Where the local stack's servers are and who may talk to them (``deploy/local/stack env``)."""

    s3_endpoint: str
    admin_access_key: str
    admin_secret_key: str
    region: str
    kafka_bootstrap: str
    notify_topic: str
    notify_arn: str
    minio_drive: Path
    default_key: str
    kes_server: str
    kes_admin_cert: str
    kes_admin_key: str
    kes_ca: str
    #: Every ``ENFORCER_*`` setting (least-privilege S3 user, KES identity, Kafka, ...).
    enforcer_env: dict[str, str] = field(default_factory=dict)
    #: The secured Kafka listeners: SASL_SSL (SCRAM-SHA-512) and SSL with client certificates.
    kafka_sasl_bootstrap: str = ""
    kafka_ssl_bootstrap: str = ""
    kafka_ca: str = ""
    kafka_scram_user: str = ""
    kafka_scram_password: str = ""
    kafka_client_cert: str = ""
    kafka_client_key: str = ""


class MakeKey(Protocol):
    """The ``make_key`` fixture: create a KES key ``<prefix>-<hex>``, return its name."""

    def __call__(self, prefix: str = "ek") -> str: ...


class MakeBucket(Protocol):
    """The ``make_bucket`` fixture: create a bucket ``t-<hex>``, return its name."""

    def __call__(
        self,
        default_key: str | None = None,
        versioned: bool = False,
        object_lock: bool = False,
        notify: bool = True,
    ) -> str: ...


class Notifications(Protocol):
    """The ``notifications`` fixture: :func:`read_notifications` bound to the stack."""

    def __call__(
        self, bucket: str, count: int, timeout: float = 30.0
    ) -> Awaitable[list[dict[str, Any]]]: ...


# ---------------------------------------------------------------- the stack script


def stack_command(*args: str, check: bool = True, timeout: float = 600.0) -> str:
    """Run ``deploy/local/stack ARGS...`` and return its stdout (stderr is folded in on failure)."""
    proc = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [str(STACK_SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if check and proc.returncode != 0:
        raise RuntimeError(
            f"deploy/local/stack {' '.join(args)} exited {proc.returncode}\n"
            f"{proc.stdout}\n{proc.stderr}"
        )
    return proc.stdout


def stack_logs() -> str:
    """The tail of every component's log, for failure messages."""
    try:
        return stack_command("logs", check=False, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"(deploy/local/stack logs failed: {exc})"


#: Serialises stop/start/restart of stack components between concurrent pytest runs on one
#: machine, so one run's ``start`` cannot end another run's outage half-way.
COMPONENT_LOCK = Path(tempfile.gettempdir()) / "sse-enforcer-stack-components.lock"


#: Held by the tests that bind buckets to the stack's main notification topic (marked
#: ``main_topic``), so that concurrent workers run them one at a time.
MAIN_TOPIC_LOCK = Path(tempfile.gettempdir()) / "sse-enforcer-main-topic.lock"


@contextlib.contextmanager
def file_locked(path: Path, timeout: float) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``path`` (shared by every process on the machine)."""
    with path.open("a") as handle:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    pytest.fail(f"another test has held {path} for {timeout}s")
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def components_locked(timeout: float = 60.0) -> Iterator[None]:
    """Hold the machine-wide lock on stopping and starting stack components."""
    with file_locked(COMPONENT_LOCK, timeout):
        yield


#: Whether the running test is marked ``stops_stack`` (set per test by the integration
#: conftest). ``make test`` runs the other tests concurrently, so a test that stops a component
#: without the mark would pull the servers from under its neighbours.
STOPS: dict[str, bool] = {"allowed": True}


def require_stop_mark(action: str) -> None:
    """Fail the test unless it is marked ``stops_stack``."""
    if not STOPS["allowed"]:
        pytest.fail(f"{action}: a test that stops stack components must be marked stops_stack")


@contextlib.contextmanager
def component_stopped(component: str) -> Iterator[None]:
    """Stop one stack component (``kafka``, ``minio``, ``kes``) for the block; always restart it.

    Holds :func:`components_locked` throughout. Other tests of the same or another run that
    merely *use* the component still see the outage: keep the block short, and mark the test
    ``stops_stack``.
    """
    require_stop_mark(f"stopping {component}")
    with components_locked():
        stack_command("stop", component)
        try:
            yield
        finally:
            stack_command("start", component)


def restart_component(component: str) -> None:
    """``deploy/local/stack restart C`` under :func:`components_locked`; always started after.
    The test must be marked ``stops_stack``."""
    require_stop_mark(f"restarting {component}")
    with components_locked():
        try:
            stack_command("restart", component)
        finally:
            stack_command("start", component)  # a no-op when the restart worked


def parse_stack_env(text: str) -> tuple[dict[str, str], str | None]:
    """Parse ``export NAME=value`` lines; return the variables and the stack's bin dir.

    The ``PATH`` line (``export PATH=<bin>:$PATH``) is not a variable to copy: only its first
    entry, the folder with ``kes``, ``mc`` and ``minio``, is returned.
    """
    env: dict[str, str] = {}
    bin_dir: str | None = None
    for line in text.splitlines():
        if not line.startswith("export ") or "=" not in line:
            continue
        name, _, raw = line.removeprefix("export ").partition("=")
        if name == "PATH":
            bin_dir = raw.split(":", 1)[0]
            continue
        words = shlex.split(raw)
        env[name] = words[0] if words else ""
    return env, bin_dir


def notification_lane(stack: StackEnv, lane: int, lanes: int) -> StackEnv:
    """``stack`` with its notifications on lane ``lane`` (1-based) of the stack's ``lanes``: a
    MinIO target of its own (ARN ``arn:minio:sqs::LANE<n>:kafka``) publishing to a topic of its
    own (``<topic>-lane<n>``), which the enforcer's settings consume. Concurrent test workers each
    take one, so no worker's enforcer sees another worker's events."""
    if not 1 <= lane <= lanes:
        pytest.fail(f"notification lane {lane}: the stack has {lanes} (run fewer test workers)")
    topic = f"{stack.notify_topic}-lane{lane}"
    return replace(
        stack,
        notify_topic=topic,
        notify_arn=f"arn:minio:sqs::LANE{lane}:kafka",
        enforcer_env={**stack.enforcer_env, "ENFORCER_KAFKA__TOPICS": json.dumps([topic])},
    )


def load_stack_env(env: dict[str, str]) -> StackEnv:
    """Build :class:`StackEnv` from parsed ``env`` output (KeyError names a missing variable)."""
    return StackEnv(
        s3_endpoint=env["LOCAL_S3_ENDPOINT"],
        admin_access_key=env["AWS_ACCESS_KEY_ID"],
        admin_secret_key=env["AWS_SECRET_ACCESS_KEY"],
        region=env["AWS_DEFAULT_REGION"],
        kafka_bootstrap=env["LOCAL_KAFKA_BOOTSTRAP"],
        notify_topic=env["LOCAL_NOTIFY_TOPIC"],
        notify_arn=env["LOCAL_NOTIFY_ARN"],
        minio_drive=Path(env["LOCAL_MINIO_DRIVE"]),
        default_key=env["LOCAL_MINIO_DEFAULT_KEY"],
        kes_server=env["KES_SERVER"],
        kes_admin_cert=env["KES_CLIENT_CERT"],
        kes_admin_key=env["KES_CLIENT_KEY"],
        kes_ca=env["LOCAL_KES_CA"],
        enforcer_env={k: v for k, v in env.items() if k.startswith("ENFORCER_")},
        kafka_sasl_bootstrap=env["LOCAL_KAFKA_SASL_BOOTSTRAP"],
        kafka_ssl_bootstrap=env["LOCAL_KAFKA_SSL_BOOTSTRAP"],
        kafka_ca=env["LOCAL_KAFKA_CA"],
        kafka_scram_user=env["LOCAL_KAFKA_SCRAM_USER"],
        kafka_scram_password=env["LOCAL_KAFKA_SCRAM_PASSWORD"],
        kafka_client_cert=env["LOCAL_KAFKA_CLIENT_CERT"],
        kafka_client_key=env["LOCAL_KAFKA_CLIENT_KEY"],
    )


# ---------------------------------------------------------------- clients


def s3_client(
    endpoint: str,
    access_key: str,
    secret_key: str,
    region: str = "us-east-1",
    verify: str | bool = True,
) -> Any:
    """A sync boto3 S3 client: path-style, short timeouts, and no retries (tests pin what the
    server answers first)."""
    config = Config(
        s3={"addressing_style": "path"},
        retries={"max_attempts": 1, "mode": "standard"},
        connect_timeout=5,
        read_timeout=30,
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        verify=verify,
        config=config,
    )


def s3_error(exc: ClientError) -> tuple[int, str]:
    """``(HTTP status, error code)`` of a botocore error; HEAD errors carry the status as code."""
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    return status, str(exc.response.get("Error", {}).get("Code", ""))


def kes_client(stack: StackEnv, cert: str | None = None, key: str | None = None) -> httpx.Client:
    """An httpx client for KES with a client certificate (the admin identity unless given)."""
    context = ssl.create_default_context(cafile=stack.kes_ca)
    context.load_cert_chain(cert or stack.kes_admin_cert, key or stack.kes_admin_key)
    return httpx.Client(base_url=stack.kes_server, verify=context, timeout=10.0)


# ---------------------------------------------------------------- notifications


def minio_message(key: bytes | None, value: bytes | None, bucket: str) -> dict[str, Any] | None:
    """The MinIO message a record holds if it is one for ``bucket``, else None.

    The notification topic is shared: other tests (and the service's own hostile-input tests)
    leave anything there — binary, invalid UTF-8, JSON nested a hundred thousand levels deep —
    and no record may break a reader. MinIO keys each message ``bucket/object``, so a record
    keyed for another bucket is skipped unread; the rest is parsed defensively.
    """
    if key is not None and not key.startswith(f"{bucket}/".encode()):
        return None
    try:
        message = json.loads(value or b"")
    except (ValueError, RecursionError):  # not JSON, not UTF-8, or nested beyond the parser
        return None
    if isinstance(message, dict) and str(message.get("Key", "")).startswith(bucket + "/"):
        return message
    return None


async def topic_ends(bootstrap: str, topic: str) -> dict[int, int]:
    """The next offset of each partition of ``topic`` (where a reader of what comes next starts)."""
    probe = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None)
    await probe.start()  # naming the topic loads its metadata
    try:
        partitions = [TopicPartition(topic, n) for n in probe.partitions_for_topic(topic) or ()]
        ends = await probe.end_offsets(partitions)
    finally:
        await probe.stop()
    return {tp.partition: offset for tp, offset in ends.items()}


async def read_notifications(
    stack: StackEnv,
    bucket: str,
    count: int,
    timeout: float = 30.0,  # noqa: ASYNC109 - a deadline for polling Kafka, not a cancel scope
    since: Mapping[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Read the notify topic from ``since`` (offsets per partition, e.g. :func:`topic_ends`
    before the bucket existed; else from the start) and return the first ``count`` MinIO
    messages for ``bucket`` (``Key`` starts with ``bucket/``); fail the test with what was seen
    on timeout. Any other record, whatever it holds, is skipped (:func:`minio_message`).

    Messages of one object share a partition, so their relative order is the publish order.
    """
    consumer = AIOKafkaConsumer(
        stack.notify_topic,
        bootstrap_servers=stack.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    found: list[dict[str, Any]] = []
    scanned = 0

    async def read_more() -> int:
        nonlocal scanned
        for records in (await consumer.getmany(timeout_ms=500)).values():
            scanned += len(records)
            found.extend(m for r in records if (m := minio_message(r.key, r.value, bucket)))
        return len(found)

    def seen(_: int) -> str:
        events = [(m.get("EventName"), m.get("Key")) for m in found]
        return f"{len(found)}/{count} ({scanned} records scanned on {stack.notify_topic}): {events}"

    await consumer.start()
    try:
        if since is not None:  # else from the earliest retained record
            for tp in consumer.assignment():
                consumer.seek(tp, since[tp.partition])
        await eventually(
            read_more, f"{count} notifications for bucket {bucket!r}", timeout=timeout,
            until=lambda got: got >= count, every=0, show=seen,
        )  # fmt: skip
    finally:
        await consumer.stop()
    return found[:count]


# ---------------------------------------------------------------- moto (AWS S3 + KMS on loopback)


@contextlib.contextmanager
def moto_server() -> Iterator[str]:
    """moto's server mode from the venv: real HTTP S3 and KMS endpoints for AWS-parity tests."""
    binary = Path(sys.executable).with_name("moto_server")
    port = free_port()
    process = subprocess.Popen(  # noqa: S603 - our venv's moto_server on loopback
        [str(binary), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"moto_server exited with {process.returncode}")
            try:
                httpx.get(url, timeout=1.0)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start within 30 s") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


# ---------------------------------------------------------------- MinIO over TLS


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class TlsMinio:
    """A throw-away single-drive MinIO on 127.0.0.1 over TLS, without KMS.

    The stack's MinIO speaks plain HTTP, and MinIO refuses every SSE-C request that does not
    arrive over TLS; this server exists so SSE-C behaviour can be observed at all.
    """

    root: Path
    #: Extra server environment, e.g. MINIO_NOTIFY_KAFKA_* to publish to the stack's Kafka.
    extra_env: dict[str, str] = field(default_factory=dict)
    access_key: str = "tls-admin"
    secret_key: str = "tls-admin-secret-0123"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def notify_arn(self) -> str:
        """Its one Kafka target (``extra_env``'s MINIO_NOTIFY_KAFKA_*), not the stack's lanes."""
        return "arn:minio:sqs::_:kafka"

    @property
    def ca_file(self) -> str:
        return str(self.root / "certs" / "public.crt")

    def client(self) -> Any:
        return s3_client(self.endpoint, self.access_key, self.secret_key, verify=self.ca_file)

    def start(self, timeout: float = 30.0) -> None:
        """Make a certificate with openssl, launch ``minio`` from PATH and wait until ready."""
        certs = self.root / "certs"
        certs.mkdir(parents=True, exist_ok=True)
        subprocess.run(  # noqa: S603 - fixed arguments
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",  # noqa: S607
             "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(certs / "private.key"),
             "-out", str(certs / "public.crt")],
            check=True, capture_output=True,
        )  # fmt: skip
        minio = shutil.which("minio") or "minio"
        env = {
            **os.environ,
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            **self.extra_env,
        }
        args = [minio, "server", "--quiet", "--address", f"127.0.0.1:{self.port}",
                "--console-address", f"127.0.0.1:{free_port()}", "--certs-dir", str(certs),
                str(self.root / "drive")]  # fmt: skip
        with (self.root / "minio.log").open("wb") as log:
            self.process = subprocess.Popen(args, env=env, stdout=log, stderr=log)  # noqa: S603
        self._wait_ready(timeout)

    def _wait_ready(self, timeout: float) -> None:
        context = ssl.create_default_context(cafile=self.ca_file)
        url = f"{self.endpoint}/minio/health/ready"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                break
            with (
                contextlib.suppress(OSError),
                urllib.request.urlopen(url, context=context, timeout=2) as response,  # noqa: S310
            ):
                if response.status == 200:
                    return
            time.sleep(0.2)
        self.stop()
        log = (self.root / "minio.log").read_text(errors="replace")
        raise RuntimeError(f"TLS MinIO did not become ready on {self.endpoint}:\n{log[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def enforcer_s3_settings(stack: StackEnv) -> S3Settings:
    """The S3 settings of the enforcer's least-privilege identity on the local stack."""
    env = stack.enforcer_env
    return S3Settings(
        endpoint_url=env["ENFORCER_S3__ENDPOINT_URL"],
        access_key_id=env["ENFORCER_S3__ACCESS_KEY_ID"],
        secret_access_key=env["ENFORCER_S3__SECRET_ACCESS_KEY"],
    )


#: moto's server accepts any credentials; these are the conventional ones.
MOTO_REGION = "us-east-1"
MOTO_CREDENTIALS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}


def moto_client(service: str, endpoint: str) -> Any:
    """A boto3 client of ``service`` on moto's server (path-style S3)."""
    path_style = Config(s3={"addressing_style": "path"})
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name=MOTO_REGION,
        config=path_style,
        **MOTO_CREDENTIALS,
    )


def minio_event(bucket: str, key: str) -> bytes:
    """A minimal MinIO ``s3:ObjectCreated:Put`` notification for ``bucket/key``."""
    entity = {"bucket": {"name": bucket}, "object": {"key": key}}
    record = {"eventName": "s3:ObjectCreated:Put", "s3": entity}
    return json.dumps(
        {"EventName": "s3:ObjectCreated:Put", "Key": f"{bucket}/{key}", "Records": [record]}
    ).encode()


async def produce(
    bootstrap: str,
    topic: str,
    records: Sequence[tuple[bytes | None, bytes]],
    partition: int | None = None,
) -> None:
    """Send ``(key, value)`` records to ``topic`` in order (to one ``partition`` if given)."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    try:
        for key, value in records:
            await producer.send_and_wait(topic, value=value, key=key, partition=partition)
    finally:
        await producer.stop()


__all__ = [
    "MAIN_TOPIC_LOCK",
    "MOTO_CREDENTIALS",
    "MOTO_REGION",
    "STOPS",
    "MakeBucket",
    "MakeKey",
    "Notifications",
    "StackEnv",
    "TlsMinio",
    "component_stopped",
    "components_locked",
    "enforcer_s3_settings",
    "file_locked",
    "free_port",
    "kes_client",
    "load_stack_env",
    "minio_event",
    "minio_message",
    "moto_client",
    "moto_server",
    "notification_lane",
    "parse_stack_env",
    "produce",
    "read_notifications",
    "require_stop_mark",
    "restart_component",
    "s3_client",
    "s3_error",
    "stack_command",
    "stack_logs",
    "topic_ends",
]
