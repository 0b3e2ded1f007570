"""``enforcer run`` as a long-running subprocess (not drain mode), for tests that inject faults
while it runs: it logs to a file, serves its health port, and is stopped with SIGTERM."""

from __future__ import annotations

import asyncio
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from support import free_port

ENFORCER = Path(sys.executable).with_name("enforcer")


@dataclass
class ServiceProcess:
    process: asyncio.subprocess.Process
    log_path: Path
    health_port: int
    _log: IO[bytes]

    @classmethod
    async def start(cls, env: dict[str, str], log_path: Path) -> ServiceProcess:
        port = free_port()
        env = {**env, "ENFORCER_HEALTH_PORT": str(port), "ENFORCER_HEALTH_HOST": "127.0.0.1"}
        log = log_path.open("wb")
        process = await asyncio.create_subprocess_exec(
            str(ENFORCER), "--log-level", "WARNING", "run",
            env=env, stdout=log, stderr=asyncio.subprocess.STDOUT,
        )  # fmt: skip
        return cls(process, log_path, port, log)

    @property
    def running(self) -> bool:
        return self.process.returncode is None

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def readyz(self) -> int:
        async with httpx.AsyncClient() as client:
            try:
                response = await client.get(f"http://127.0.0.1:{self.health_port}/readyz")
            except httpx.TransportError:
                return 0
        return response.status_code

    async def wait_ready(self, timeout: float = 60.0) -> None:  # noqa: ASYNC109 - polling
        deadline = asyncio.get_running_loop().time() + timeout
        while await self.readyz() != 200:
            assert self.running, f"enforcer exited {self.process.returncode}:\n{self.log_text()}"
            assert asyncio.get_running_loop().time() < deadline, self.log_text()[-3000:]
            await asyncio.sleep(0.2)

    async def stop(self, timeout: float = 30.0) -> int:  # noqa: ASYNC109 - a bound on the exit
        if self.running:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = await asyncio.wait_for(self.process.wait(), timeout)
        finally:
            if self.running:
                self.process.kill()
                await self.process.wait()
            self._log.close()
        return code


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
