"""``enforcer run --workers N``: N consumer processes in one group, under one supervisor.

One Python process uses one core; a pod with more runs one worker per core it may use
(:func:`usable_cpus`: the CPU affinity, bounded by the cgroup's CPU quota, i.e. the pod's CPU
limit). Each worker is an ordinary ``enforcer run`` in the same consumer group, so Kafka shares
the partitions among them and every guarantee of one process holds per worker.

The supervisor is what the pod sees:

* **one endpoint**: ``/healthz`` answers while the supervisor runs; ``/readyz`` is 200 when every
  worker's is (else 503 with each worker's reason); ``/metrics`` is every worker's metrics, each
  sample labelled ``worker="<i>"`` (``sum without (worker)`` gives the pod's figures). The
  workers serve their own probes on private loopback ports, which the supervisor asks.
* **one exit code**: 0 when every worker exited 0 (SIGTERM, or ``--drain`` caught up), 2 when one
  refused its configuration, else 1.
* **clean SIGTERM**: forwarded to every worker, which stops fetching, finishes or abandons its
  in-flight work and commits within ``ENFORCER_SHUTDOWN_TIMEOUT``; a worker still running
  ``_KILL_GRACE`` seconds after that is killed (and the exit code is 1).
* **a crashed worker fails the pod, loudly**: a worker that exits while the others run (other
  than the normal end of ``--drain``) stops the others cleanly and the supervisor exits 1 with a
  log line naming the worker and its exit code; Kubernetes restarts the container, and a worker
  that keeps crashing shows as a crash loop instead of hiding behind restarts inside the pod.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import math
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest
from prometheus_client.metrics_core import GaugeMetricFamily, Metric
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from enforcer.health import serve_health

log = logging.getLogger(__name__)

#: Seconds a worker has, after the shutdown timeout, to exit before it is killed.
_KILL_GRACE = 10.0
_EXIT_OK, _EXIT_FAILURE, _EXIT_USAGE = 0, 1, 2
_PR_SET_PDEATHSIG = 1


def usable_cpus(cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, bounded by the cgroup's CPU quota
    (rounded up: a limit of 1500m gives 2 workers, which together use 1.5 cores)."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup)
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def cgroup_cpu_quota(cgroup: Path = Path("/sys/fs/cgroup")) -> float | None:
    """Cores allowed by the CPU quota (cgroup v2 ``cpu.max``, or v1 ``cpu.cfs_quota_us``),
    None when there is none."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        quota_us = int((cgroup / "cpu" / "cpu.cfs_quota_us").read_text())
        period_us = int((cgroup / "cpu" / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None
    return None if quota_us <= 0 or period_us <= 0 else quota_us / period_us


@dataclass
class Worker:
    index: int
    process: asyncio.subprocess.Process
    port: int  # its private health port on 127.0.0.1

    def alive(self) -> bool:
        return self.process.returncode is None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _end_with_parent() -> None:
    """In the worker, before it runs: SIGTERM when the supervisor dies (even by SIGKILL), so
    no worker outlives it (Linux ``PR_SET_PDEATHSIG``)."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


async def _spawn(index: int, argv: Sequence[str]) -> Worker:
    port = _free_port()
    env = os.environ | {
        "ENFORCER_HEALTH_PORT": str(port),
        "ENFORCER_HEALTH_HOST": "127.0.0.1",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "enforcer", *argv, env=env, preexec_fn=_end_with_parent
    )
    log.info("worker %d started (pid %d)", index, process.pid)
    return Worker(index, process, port)


class Supervisor:
    def __init__(
        self,
        worker_argv: Sequence[str],
        count: int,
        *,
        shutdown_timeout: float,
        drain: bool = False,
    ) -> None:
        self._argv = list(worker_argv)
        self._count = count
        self._shutdown_timeout = shutdown_timeout
        self._drain = drain
        self._stopping = asyncio.Event()
        self.workers: list[Worker] = []

    def stop(self) -> None:
        self._stopping.set()

    async def run(self, health_port: int | None = None, health_host: str = "0.0.0.0") -> int:  # noqa: S104
        """Start the workers, serve the pod's probes, return the one exit code."""
        async with AsyncExitStack() as stack:
            self.workers = [await _spawn(i, self._argv) for i in range(self._count)]
            stack.push_async_callback(self._stop_all)
            if health_port is not None:
                await stack.enter_async_context(self._probes(health_port, health_host))
            await self._watch()
        return self._exit_code()

    async def _watch(self) -> None:
        """Until SIGTERM, the end of a drain, or a worker that exits while the others run."""
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            while any(w.alive() for w in self.workers):
                waits = {asyncio.ensure_future(w.process.wait()): w for w in self.workers
                         if w.alive()}  # fmt: skip
                await asyncio.wait([stopping, *waits], return_when=asyncio.FIRST_COMPLETED)
                for wait in waits:
                    wait.cancel()
                if self._stopping.is_set():
                    return
                ended = [w for w in self.workers if not w.alive()]
                if self._drain and all(w.process.returncode == 0 for w in ended):
                    continue  # a worker that caught up; the others go on
                for worker in ended:
                    log.error("worker %d (pid %d) exited with code %s while the others ran: "
                              "stopping them; the pod fails and is restarted", worker.index,
                              worker.process.pid, worker.process.returncode)  # fmt: skip
                return
        finally:
            stopping.cancel()

    async def _stop_all(self) -> None:
        """SIGTERM every live worker; kill those still running after the bound."""
        for worker in self.workers:
            if worker.alive():
                with contextlib.suppress(ProcessLookupError):
                    worker.process.send_signal(signal.SIGTERM)
        live = [w.process.wait() for w in self.workers if w.alive()]
        if not live:
            return
        _, pending = await asyncio.wait(
            [asyncio.ensure_future(c) for c in live], timeout=self._shutdown_timeout + _KILL_GRACE
        )
        for worker in self.workers:
            if worker.alive():
                log.error("worker %d (pid %d) did not stop in time: killed", worker.index,
                          worker.process.pid)  # fmt: skip
                with contextlib.suppress(ProcessLookupError):
                    worker.process.kill()
        if pending:
            await asyncio.wait(pending)

    def _exit_code(self) -> int:
        codes = [w.process.returncode for w in self.workers]
        if all(code == 0 for code in codes):
            return _EXIT_OK
        return _EXIT_USAGE if _EXIT_USAGE in codes else _EXIT_FAILURE

    @asynccontextmanager
    async def _probes(self, port: int, host: str) -> AsyncIterator[None]:
        async with (
            httpx.AsyncClient(timeout=3) as client,
            serve_health(
                port, lambda: self._ready(client), host, metrics=lambda: self._metrics(client)
            ),  # fmt: skip
        ):
            yield

    async def _ask(self, client: httpx.AsyncClient, worker: Worker, path: str) -> httpx.Response:
        return await client.get(f"http://127.0.0.1:{worker.port}{path}")

    async def _ready(self, client: httpx.AsyncClient) -> tuple[bool, str]:
        """Ready when every worker is; the reason names each worker's."""
        answers = await asyncio.gather(*(self._readiness(client, w) for w in self.workers))
        ready = all(ok for ok, _ in answers)
        return ready, "; ".join(f"worker {i}: {reason}" for i, (_, reason) in enumerate(answers))

    async def _readiness(self, client: httpx.AsyncClient, worker: Worker) -> tuple[bool, str]:
        if not worker.alive():
            return False, f"exited with code {worker.process.returncode}"
        try:
            response = await self._ask(client, worker, "/readyz")
            return response.status_code == 200, str(response.json().get("reason", ""))
        except (httpx.HTTPError, ValueError) as exc:
            return False, f"not answering yet ({type(exc).__name__})"

    async def _metrics(self, client: httpx.AsyncClient) -> tuple[str, bytes]:
        """Every running worker's metrics, asked at once (one slow worker delays the scrape by
        its own timeout only), labelled by worker."""
        running = [worker for worker in self.workers if worker.alive()]
        answers = await asyncio.gather(*(self._metrics_of(client, w) for w in running))
        texts = {w.index: text for w, text in zip(running, answers, strict=True) if text}
        return CONTENT_TYPE_LATEST, merge_metrics(texts, workers=len(running))

    async def _metrics_of(self, client: httpx.AsyncClient, worker: Worker) -> str | None:
        with contextlib.suppress(httpx.HTTPError):
            return (await self._ask(client, worker, "/metrics")).text
        return None


class _Merged(Collector):
    def __init__(self, texts: dict[int, str], workers: int | None) -> None:
        self._texts = texts
        self._workers = workers

    def collect(self) -> list[Metric]:
        families: dict[str, Metric] = {}
        if self._workers is not None:  # the supervisor's own: there from its first answer
            families["enforcer_workers"] = GaugeMetricFamily(
                "enforcer_workers", "Worker processes running under the supervisor",
                value=self._workers,
            )  # fmt: skip
        for index, text in sorted(self._texts.items()):
            for family in text_string_to_metric_families(text):
                worker = {"worker": str(index)}
                labelled = [s._replace(labels=s.labels | worker) for s in family.samples]
                merged = families.setdefault(family.name, family)
                if merged is family:
                    family.samples = labelled
                else:
                    merged.samples.extend(labelled)
        return list(families.values())


def merge_metrics(texts: dict[int, str], workers: int | None = None) -> bytes:
    """The workers' Prometheus expositions (by worker index) as one, each sample labelled
    ``worker``, plus ``enforcer_workers`` (how many are running) when given (pure)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Merged(texts, workers))
    return generate_latest(registry)
