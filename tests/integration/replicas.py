"""``enforcer run`` as real subprocesses (replicas of one group), and a live view of their audit
topic, for tests that stop dependencies, kill replicas and restart brokers mid-backlog.

Waiting is always on a condition — an audit record arriving, a readiness answer, a process
exiting — through :func:`waiting.eventually`, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from cli_runner import ENFORCER
from harness import EnforcerRun
from prometheus_client.parser import text_string_to_metric_families
from support import free_port
from waiting import eventually


def metric_sum(text: str, name: str, **labels: str) -> float:
    """The sum of the samples of ``name`` in a Prometheus exposition whose labels include
    ``labels``."""
    wanted = set(labels.items())
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and wanted <= set(sample.labels.items())
    )


@dataclass
class Replica:
    """One ``enforcer run`` subprocess; its stderr (the log) goes to a file."""

    process: asyncio.subprocess.Process
    log_path: Path
    health_port: int

    @classmethod
    async def start(
        cls, env: dict[str, str], log_path: Path, log_level: str = "", *run_args: str
    ) -> Replica:
        """``enforcer [--log-level L] run [RUN_ARGS]`` with exactly ``env`` plus a health port
        of its own."""
        port = free_port()
        env = {**env, "ENFORCER_HEALTH_PORT": str(port), "ENFORCER_HEALTH_HOST": "127.0.0.1"}
        args = ("--log-level", log_level) if log_level else ()
        with log_path.open("wb") as log_file:
            process = await asyncio.create_subprocess_exec(
                str(ENFORCER), *args, "run", *run_args, env=env, stdout=log_file, stderr=log_file
            )
        return cls(process, log_path, port)

    def alive(self) -> bool:
        return self.process.returncode is None

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def log_lines(self) -> list[str]:
        return self.log_text().splitlines()

    async def wait_ready(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109 - polling
        """Until ``/readyz`` answers 200; fails when the process exits or time runs out."""
        await eventually(
            self.readiness_reason, "/readyz to answer 200", timeout=timeout,
            until=lambda answer: answer[0] == 200, alive=self.alive, context=self.tail,
        )  # fmt: skip

    async def readiness(self) -> int:
        """The HTTP status of ``/readyz`` (0 when the server does not answer)."""
        status, _ = await self.readiness_reason()
        return status

    async def readiness_reason(self) -> tuple[int, str]:
        """The HTTP status of ``/readyz`` and the reason it gave (0 when it does not answer)."""
        try:
            async with httpx.AsyncClient(timeout=2) as client:
                response = await client.get(f"http://127.0.0.1:{self.health_port}/readyz")
        except httpx.HTTPError as exc:
            return 0, type(exc).__name__
        return response.status_code, str(response.json().get("reason", ""))

    async def metrics_text(self) -> str:
        """This replica's ``/metrics`` exposition."""
        async with httpx.AsyncClient(timeout=5) as client:
            return (await client.get(f"http://127.0.0.1:{self.health_port}/metrics")).text

    async def metric(self, name: str, **labels: str) -> float:
        """:func:`metric_sum` of this replica's ``/metrics``."""
        return metric_sum(await self.metrics_text(), name, **labels)

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no commit — what a crash or an OOM kill does."""
        if self.alive():
            self.process.send_signal(signal.SIGKILL)
        await self.process.wait()

    async def stop(self, timeout: float = 60.0) -> int:  # noqa: ASYNC109 - a bound on shutdown
        """SIGTERM and wait: the clean shutdown; returns the exit code."""
        if self.alive():
            self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            await self.kill()
            pytest.fail(f"enforcer did not stop within {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_lines()[-lines:])

    async def wait_for_log(self, text: str, timeout: float) -> None:  # noqa: ASYNC109 - polling
        """Until a log line contains ``text``; fails when the process exits or time runs out."""
        await eventually(
            self.log_lines, f"a log line with {text!r}", timeout=timeout,
            until=lambda lines: any(text in line for line in lines),
            alive=self.alive, show=lambda lines: f"{len(lines)} lines", context=self.tail,
        )  # fmt: skip


async def start_replica(
    run: EnforcerRun, log_dir: Path, name: str, *run_args: str, **env: str
) -> Replica:
    """Start ``enforcer run [RUN_ARGS]`` with ``run``'s group, topics and policy plus ``env``."""
    environment = {**os.environ, **run.stack.enforcer_env, **run.overrides(), **env}
    return await Replica.start(environment, log_dir / f"{name}.log", "", *run_args)


class Spawn:
    """Starts replicas for one test and kills whatever is still running when the test ends, so a
    failing test never leaves an enforcer working on buckets the fixtures are deleting."""

    def __init__(self, log_dir: Path) -> None:
        self._log_dir = log_dir
        self.started: list[Replica] = []

    async def __call__(self, run: EnforcerRun, name: str, *run_args: str, **env: str) -> Replica:
        replica = await start_replica(run, self._log_dir, name, *run_args, **env)
        self.started.append(replica)
        return replica

    async def kill_all(self) -> None:
        for replica in self.started:
            await replica.kill()


@dataclass
class AuditTail:
    """Every record of one audit topic, read continuously from the beginning."""

    consumer: AIOKafkaConsumer
    records: list[dict[str, Any]] = field(default_factory=list)

    async def _pump(self) -> None:
        while True:
            batches = await self.consumer.getmany(timeout_ms=500)
            for messages in batches.values():
                self.records += [json.loads(m.value or b"null") for m in messages]

    async def until(
        self,
        predicate: Callable[[list[dict[str, Any]]], bool],
        timeout: float,  # noqa: ASYNC109 - a deadline, reported with what was seen
        what: str,
        alive: Callable[[], bool] = lambda: True,
    ) -> None:
        """Wait until ``predicate(records)``; fail with ``what`` on timeout or when ``alive()``
        turns false (the replica under test died)."""
        await eventually(
            lambda: self.records, what, timeout=timeout, until=predicate, alive=alive,
            show=lambda records: f"{len(records)} audit records",
        )  # fmt: skip

    def final(self, bucket: str) -> dict[str, list[dict[str, Any]]]:
        """Per object key of ``bucket``: its records in arrival order."""
        by_key: dict[str, list[dict[str, Any]]] = {}
        for record in self.records:
            if record.get("bucket") == bucket:
                by_key.setdefault(record["key"], []).append(record)
        return by_key


@contextlib.asynccontextmanager
async def audit_tail(run: EnforcerRun) -> AsyncIterator[AuditTail]:
    consumer = AIOKafkaConsumer(
        run.audit_topic,
        bootstrap_servers=run.stack.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        metadata_max_age_ms=1000,  # the topic appears with the first record
    )
    await consumer.start()
    tail = AuditTail(consumer)
    pump = asyncio.create_task(tail._pump())
    try:
        yield tail
    finally:
        pump.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await pump
        await consumer.stop()


def at_least(bucket: str, count: int) -> Callable[[list[dict[str, Any]]], bool]:
    """A predicate for :meth:`AuditTail.until`: ``count`` objects of ``bucket`` handled."""
    return lambda records: len(handled_keys(records, bucket)) >= count


def with_action(bucket: str, action: str) -> Callable[[list[dict[str, Any]]], bool]:
    """A predicate for :meth:`AuditTail.until`: a record of ``bucket`` with ``action``."""
    return lambda records: any(
        r.get("bucket") == bucket and r.get("action") == action for r in records
    )


def handled_keys(records: list[dict[str, Any]], bucket: str) -> set[str]:
    """Keys of ``bucket`` with a record that closes an event (anything but an intent)."""
    return {
        r["key"] for r in records if r.get("bucket") == bucket and r.get("action") != "rewriting"
    }


class ReadinessLog:
    """Polls ``/readyz`` of a replica in the background and keeps every answer with its time."""

    def __init__(self, replica: Replica, every: float = 0.25) -> None:
        self.answers: list[tuple[float, int, str]] = []  # (when, status, reason)
        self._replica = replica
        self._every = every
        self._task: asyncio.Task[None] | None = None

    async def _poll(self) -> None:
        while True:
            self.answers.append((time.monotonic(), *await self._replica.readiness_reason()))
            await asyncio.sleep(self._every)  # a polling period, not a wait for an outcome

    def between(self, start: float, end: float) -> list[int]:
        return [status for at, status, _ in self.answers if start <= at <= end]

    def reasons(self) -> list[str]:
        return [reason for _, _, reason in self.answers]

    def changes(self, since: float = 0.0) -> list[str]:
        """Each change of answer from ``since`` on, with its time and reason (failure messages)."""
        changes, last = [], None
        for at, status, reason in self.answers:
            if at >= since and (status, reason) != last:
                changes.append(f"{at - since:7.2f}s {status} {reason}")
            last = (status, reason)
        return changes

    async def wait_for(self, status: int, timeout: float) -> float:  # noqa: ASYNC109
        """Wait until ``/readyz`` answers ``status`` (from now on); return when it did."""
        seen = len(self.answers)
        [(at, _, _), *_] = await eventually(
            lambda: [a for a in self.answers[seen:] if a[1] == status],
            f"/readyz to answer {status}", timeout=timeout, every=self._every,
            show=lambda _: self.answers[-5:],
        )  # fmt: skip
        return at

    async def __aenter__(self) -> ReadinessLog:
        self._task = asyncio.create_task(self._poll())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task


async def group_lag(bootstrap: str, group_id: str, topics: list[str]) -> int:
    """Records on ``topics`` not yet committed by ``group_id`` (all of them if none committed)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None)
    await admin.start()
    await consumer.start()
    try:
        committed = await admin.list_consumer_group_offsets(group_id)
        described = await admin.describe_topics(topics)
        partitions = [
            TopicPartition(topic["topic"], p["partition"])
            for topic in described
            for p in topic["partitions"]
        ]
        assert {tp.topic for tp in partitions} == set(topics), described
        ends = await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()
        await admin.close()
    return sum(end - (committed[tp].offset if tp in committed else 0) for tp, end in ends.items())


async def group_member_ids(bootstrap: str, group_id: str) -> set[str]:
    """The member ids the coordinator lists for ``group_id`` now. A member that leaves its group
    (e.g. after not polling for max.poll.interval) rejoins under a new id."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([group_id])
    finally:
        await admin.close()
    return {member["member_id"] for member in described.to_object()["groups"][0]["members"]}


class Backlog(Protocol):
    """``await backlog(count)``: ``count`` plaintext objects in a new bucket whose policy
    requires a new key (named ``<key_prefix>-…``); their notifications are in Kafka and the
    returned run's group starts just before them. Returns ``(run, ek, bucket, keys)``. The
    ``backlog`` fixture makes one."""

    async def __call__(
        self, count: int, key_prefix: str = "ek"
    ) -> tuple[EnforcerRun, str, str, list[str]]: ...


def assert_all_compliant(s3_admin: Any, bucket: str, keys: list[str], ek: str) -> None:
    wrong = {
        key: head.get("SSEKMSKeyId")
        for key in keys
        if (head := s3_admin.head_object(Bucket=bucket, Key=key)).get("SSEKMSKeyId")
        != f"arn:aws:kms:{ek}"
    }
    assert wrong == {}, f"{len(wrong)} objects not compliant: {list(wrong.items())[:5]}"


def assert_plaintext(s3_admin: Any, bucket: str, keys: list[str]) -> None:
    """None of ``keys`` was rewritten (their key could not be used)."""
    changed = [
        key
        for key in keys
        if "ServerSideEncryption" in s3_admin.head_object(Bucket=bucket, Key=key)
    ]
    assert changed == [], f"changed although their key could not be used: {changed[:5]}"
