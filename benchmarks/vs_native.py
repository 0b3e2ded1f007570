"""The enforcer against a native S3 client on the same MinIO, in one run.

The native client is ``benchmarks/native`` (Go, minio-go, 32 requests in flight), built into the
install cache by ``benchmarks/native/build``. The enforcer is the real ``enforcer run --drain``
as a child process configured like production (the stack's least-privilege identities, strategy
sse-kms, no span exporter), so its CPU time and RSS are read from ``/proc/<pid>``.

Phases (each on fresh buckets whose notifications go to Kafka, objects of ``--object-size``):

1. **compliant backlog**: N objects written under the required EK; once their N notifications are
   in Kafka the enforcer drains them. Native: HEAD over the same objects.
2. **non-compliant backlog**: N plaintext objects, a policy rule requiring the EK; the enforcer
   rewrites each and handles the notification of its own write as well. Native: GET +
   PutObject(If-Match, SSE-KMS) over N other plaintext objects (the least a lost-update-free
   rewrite needs on MinIO), then in-place CopyObject over them (reference only: MinIO does not
   check If-Match on a copy).
3. **latency**: the enforcer runs and is ready; plaintext objects are written at ``--rate`` per
   second for ``--seconds``; latency is from each PUT's response to the enforcer's audit record
   of the rewritten object (``reencrypted``, i.e. verified compliant).

Enforcer rates are ``active`` rates: objects / (last audit record - first event's start), from
the audit records. CPU per object is the enforcer process's user+system time over that window
(sampled from ``/proc/<pid>/stat`` every 50 ms) ÷ objects; the follow-up notification of each
rewrite is included. RSS is ``VmRSS`` at the first event, at its peak and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))  # _stack; it adds tests/integration

from _stack import (
    ENFORCER,
    REPO_ROOT,
    admin_s3,
    delete_bucket,
    load_note,
    native_binary,
    new_bucket,
    process_tree,
    run_native,
    stack_env,
)
from aiokafka import AIOKafkaConsumer, TopicPartition
from harness import EnforcerRun, write_policy
from pipeline_throughput import create_key, notify
from support import StackEnv

TICK = os.sysconf("SC_CLK_TCK")
TMP = Path(tempfile.gettempdir())
GIT, TAR = shutil.which("git") or "/usr/bin/git", shutil.which("tar") or "/usr/bin/tar"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--objects", type=int, default=2000, help="backlog size (2000)")
    parser.add_argument("--object-size", type=int, default=4096, help="bytes (4096)")
    parser.add_argument("--rate", type=float, default=100.0, help="latency: PUTs/s (100)")
    parser.add_argument("--seconds", type=float, default=20.0, help="latency: duration (20)")
    parser.add_argument(
        "--phases", default="compliant,rewrite,latency", help="comma-separated subset"
    )
    parser.add_argument("--profile", type=Path, help="py-spy raw profiles of the enforcer here")
    parser.add_argument("--json", type=Path, help="also write the results as JSON")
    parser.add_argument(
        "--enforcer-src",
        type=Path,
        help="run the enforcer package from this checkout (e.g. a worktree of an older commit)",
    )
    parser.add_argument(
        "--before",
        metavar="REV",
        help="also drain both backlogs with the enforcer of this git revision (its package "
        "extracted with git archive), for a before/after table",
    )
    parser.add_argument(
        "--workers",
        default="1,2",
        help="worker counts for the scaling rows (enforcer run --workers; default 1,2)",
    )
    return parser.parse_args(argv)


def source_of(rev: str) -> Path:
    """The ``enforcer`` package of git revision ``rev``, extracted once into the temp folder."""
    commit = subprocess.run(  # noqa: S603 - git, fixed arguments
        [GIT, "rev-parse", "--short", rev], cwd=REPO_ROOT, capture_output=True, text=True,
        check=True,
    ).stdout.strip()  # fmt: skip
    folder = TMP / f"enforcer-src-{commit}"
    if not (folder / "enforcer" / "__init__.py").exists():
        folder.mkdir(parents=True, exist_ok=True)
        archive = subprocess.run(  # noqa: S603
            [GIT, "archive", commit, "enforcer"], cwd=REPO_ROOT, capture_output=True,
            check=True,
        ).stdout  # fmt: skip
        subprocess.run([TAR, "-x", "-C", str(folder)], input=archive, check=True)  # noqa: S603
    return folder


def settings_known_to(src: Path) -> set[str]:
    """The ``ENFORCER_*`` variables the enforcer in ``src`` reads (it refuses any other), from
    the configuration schema it writes itself."""
    out = Path(tempfile.mkdtemp(dir=TMP))
    env = dict(os.environ) | {"PYTHONPATH": str(src.resolve())}
    binary = ENFORCER
    subprocess.run([str(binary), "schemas", "--out", str(out)], env=env, check=True,  # noqa: S603
                   capture_output=True)  # fmt: skip
    schema = json.loads((out / "config.json").read_text())
    shutil.rmtree(out, ignore_errors=True)
    known = set()
    for name, prop in schema["properties"].items():
        known.add(f"ENFORCER_{name.upper()}")
        nested = prop.get("$ref", "").rsplit("/", 1)[-1]
        for sub in schema.get("$defs", {}).get(nested, {}).get("properties", {}):
            known.add(f"ENFORCER_{name.upper()}__{sub.upper()}")
    return known


# ---------------------------------------------------------------- the enforcer process


@dataclass
class Sample:
    at: float  # time.time()
    cpu: float  # seconds, user + system
    rss: int  # bytes


@dataclass
class Watched:
    """A child process and its CPU/RSS samples."""

    proc: subprocess.Popen[bytes]
    samples: list[Sample] = field(default_factory=list)

    def cpu_at(self, when: float) -> float:
        """CPU seconds at ``when``, interpolated between samples."""
        before = [s for s in self.samples if s.at <= when]
        after = [s for s in self.samples if s.at >= when]
        if not before:
            return self.samples[0].cpu
        if not after:
            return self.samples[-1].cpu
        a, b = before[-1], after[0]
        if b.at == a.at:
            return a.cpu
        return a.cpu + (b.cpu - a.cpu) * (when - a.at) / (b.at - a.at)

    def rss_between(self, start: float, end: float) -> list[int]:
        return [s.rss for s in self.samples if start <= s.at <= end] or [self.samples[-1].rss]


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of one process, None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(stat[11]) + int(stat[12])) / TICK


def _sample(pid: int) -> Sample | None:
    """CPU and RSS of ``pid`` and its descendants."""
    cpu, rss = 0.0, 0
    for each in process_tree(pid):
        seconds = cpu_seconds(each)
        try:
            status = Path(f"/proc/{each}/status").read_text()
        except OSError:
            status = ""
        kib = [int(line.split()[1]) for line in status.splitlines() if line[:6] == "VmRSS:"]
        if seconds is None or not kib:
            if each == pid:
                return None  # exiting
            continue
        cpu, rss = cpu + seconds, rss + kib[0] * 1024
    return Sample(time.time(), cpu, rss)


def start_enforcer(
    run: EnforcerRun, stack: StackEnv, args: argparse.Namespace, idle: float, workers: int = 1
) -> Watched:
    env = dict(os.environ) | stack.enforcer_env | run.overrides()
    if args.enforcer_src is not None:  # an older enforcer: one process, and no newer setting
        env["PYTHONPATH"] = str(args.enforcer_src.resolve())
        known = settings_known_to(args.enforcer_src)
        env = {name: value for name, value in env.items()
               if not name.startswith("ENFORCER_") or name in known}  # fmt: skip
    else:
        env["ENFORCER_WORKERS"] = str(workers)
    binary = ENFORCER
    log = open(TMP / f"enforcer-{run.tag}.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(  # noqa: S603 - our venv's own command
        [str(binary), "run", "--drain", "--idle", str(idle)], env=env, stdout=log, stderr=log
    )
    watched = Watched(proc)

    def watch() -> None:
        while proc.poll() is None:
            if (sample := _sample(proc.pid)) is not None:
                watched.samples.append(sample)
            time.sleep(0.05)
        log.close()

    threading.Thread(target=watch, daemon=True).start()
    return watched


def profile(watched: Watched, out: Path | None, name: str) -> subprocess.Popen[bytes] | None:
    """Attach py-spy (a dev tool: ``pip install py-spy``) to the enforcer, if asked to."""
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen(  # noqa: S603 - a dev tool from our venv
        [
            str(spy),
            "record",
            "--pid",
            str(watched.proc.pid),
            "--rate",
            "200",
            "--format",
            "raw",
            "--output",
            str(out / f"{name}.txt"),
            "--nonblocking",
            "--subprocesses",  # the workers of enforcer run --workers N
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def wait_exit(watched: Watched, limit: float = 3600) -> None:
    code = await asyncio.to_thread(watched.proc.wait, limit)
    if code != 0:
        raise SystemExit(f"enforcer exited with {code}")


# ---------------------------------------------------------------- Kafka and the native client


async def end_offsets(stack: StackEnv) -> dict[TopicPartition, int]:
    """The notification topic's end offset per partition."""
    consumer = AIOKafkaConsumer(stack.notify_topic, bootstrap_servers=stack.kafka_bootstrap)
    await consumer.start()
    try:
        partitions = consumer.partitions_for_topic(stack.notify_topic) or set()
        topic = [TopicPartition(stack.notify_topic, p) for p in partitions]
        return dict(await consumer.end_offsets(topic)) if topic else {}
    finally:
        await consumer.stop()


async def topic_size(stack: StackEnv) -> int:
    """Records ever published to the notification topic (sum of its partitions' end offsets)."""
    return sum((await end_offsets(stack)).values())


async def notified_at(
    stack: StackEnv, bucket: str, since: dict[TopicPartition, int]
) -> dict[str, float]:
    """Object key → when MinIO published its notification (the Kafka record's CreateTime), for
    ``bucket``'s records after the offsets ``since``."""
    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka_bootstrap, enable_auto_commit=False)
    await consumer.start()
    times: dict[str, float] = {}
    prefix = f"{bucket}/".encode()
    try:
        consumer.assign(list(since))
        for tp, offset in since.items():
            consumer.seek(tp, offset)
        while batch := await consumer.getmany(timeout_ms=1500):
            for records in batch.values():
                for r in records:
                    if r.key and r.key.startswith(prefix):
                        times.setdefault(r.key[len(prefix) :].decode(), r.timestamp / 1000)
    finally:
        await consumer.stop()
    return times


async def wait_topic(stack: StackEnv, at_least: int, limit: float = 600) -> None:
    deadline = time.monotonic() + limit
    while (size := await topic_size(stack)) < at_least:
        if time.monotonic() > deadline:
            raise SystemExit(f"notifications: {size} < {at_least} after {limit}s")
        await asyncio.sleep(0.5)


def native(
    stack: StackEnv, mode: str, bucket: str, n: int, key: str = "", size: int = 0
) -> dict[str, Any]:
    return run_native(stack, "-mode", mode, "-bucket", bucket, "-n", str(n), "-key", key,
                      "-size", str(size))  # fmt: skip


# ---------------------------------------------------------------- phases


def stack_pids() -> dict[str, int]:
    """The local stack's server processes (``deploy/local/stack status``), by component."""
    done = subprocess.run(  # noqa: S603 - our own stack script
        [str(REPO_ROOT / "deploy" / "local" / "stack"), "status"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return {
        line.split()[0]: int(line.rsplit("pid ", 1)[1].rstrip(")"))
        for line in done.stdout.splitlines()
        if "(pid " in line
    }


class StackCpu:
    """CPU seconds the stack's servers (MinIO, Kafka, KES) use between two readings."""

    def __init__(self) -> None:
        self._pids = stack_pids()
        self._at = self._read()

    def _read(self) -> dict[str, float]:
        return {
            name: sum(cpu_seconds(each) or 0.0 for each in process_tree(pid))
            for name, pid in self._pids.items()
        }

    def since(self) -> dict[str, float]:
        now = self._read()
        return {name: now[name] - self._at.get(name, 0.0) for name in now}


@dataclass
class Backlog:
    objects: int
    follow_ups: int
    seconds: float
    cpu_ms_per_object: float
    rss_mib: tuple[float, float, float]  # first event, peak, end
    outcomes: dict[str, int]
    workers: int = 1
    #: CPU share of the machine's cores the stack's servers took while the enforcer drained.
    stack_cores: dict[str, float] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.objects / self.seconds


def _window(records: list[dict[str, Any]]) -> tuple[float, float]:
    ends = [datetime.fromisoformat(r["timestamp"]).timestamp() for r in records]
    starts = [e - r["duration_ms"] / 1000 for e, r in zip(ends, records, strict=True)]
    return min(starts), max(ends)


async def backlog(
    stack: StackEnv,
    s3: Any,
    args: argparse.Namespace,
    ek: str,
    *,
    compliant: bool,
    workers: int = 1,
) -> tuple[Backlog, str]:
    """Queue N notifications, drain them with the enforcer; return its figures and the bucket."""
    bucket = new_bucket(s3, "bench-ok" if compliant else "bench-fix")
    notify(stack, s3, bucket)
    policy = write_policy(TMP / f"{bucket}.yaml", {"bucket": bucket, "key": ek})
    run = EnforcerRun(stack, policy_file=policy)
    await run.start_at_end()
    before = await topic_size(stack)
    native(stack, "put", bucket, args.objects, key=ek if compliant else "", size=args.object_size)
    await wait_topic(stack, before + args.objects)
    servers = StackCpu()
    started = time.time()
    watched = start_enforcer(run, stack, args, idle=2.0, workers=workers)
    name = ("compliant" if compliant else "rewrite") + (f"-{workers}w" if workers > 1 else "")
    spy = profile(watched, args.profile, name)
    await wait_exit(watched)
    servers_cpu, elapsed = servers.since(), time.time() - started
    if spy is not None:
        spy.wait(60)
    records = await run.audit(bucket)
    first: dict[str, dict[str, Any]] = {}
    for record in records:
        first.setdefault(record["key"], record)
    outcomes: dict[str, int] = {}
    for record in first.values():
        name = f"{record['verdict']}/{record['action']}"
        outcomes[name] = outcomes.get(name, 0) + 1
    start, end = _window(records)
    rss = watched.rss_between(start, end)
    mib = 1024 * 1024
    result = Backlog(
        objects=len(first),
        follow_ups=len(records) - len(first),
        seconds=end - start,
        cpu_ms_per_object=(watched.cpu_at(end) - watched.cpu_at(start)) * 1000 / len(first),
        rss_mib=(rss[0] / mib, max(rss) / mib, rss[-1] / mib),
        outcomes=outcomes,
        workers=workers,
        stack_cores={k: round(v / elapsed, 2) for k, v in servers_cpu.items()},
    )
    return result, bucket


@dataclass
class Latency:
    offered: float
    written: int
    rewritten: int
    p50_ms: float
    p99_ms: float
    max_ms: float
    cpu_ms_per_object: float
    #: PUT → notification in Kafka (the store's own delivery) and notification → compliant
    #: (the enforcer's share): p50 and p99 of each.
    notify_ms: tuple[float, float] = (0.0, 0.0)
    enforcer_ms: tuple[float, float] = (0.0, 0.0)


def percentile(ordered: list[float], fraction: float) -> float:
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] if ordered else float("nan")


async def wait_ready(run: EnforcerRun, s3: Any, bucket: str, limit: float = 120) -> None:
    """Write one object and wait for its audit record: the enforcer has joined and is warm."""
    s3.put_object(Bucket=bucket, Key="warm-up", Body=b"warm-up")
    deadline = time.monotonic() + limit
    while not await run.audit(bucket):
        if time.monotonic() > deadline:
            raise SystemExit("the enforcer did not handle the warm-up object")


def paced_puts(s3: Any, bucket: str, rate: float, seconds: float, size: int) -> dict[str, float]:
    """PUT plaintext objects at ``rate``/s; return each key's PUT response time."""
    done: dict[str, float] = {}
    body = os.urandom(size)

    def put(key: str) -> None:
        s3.put_object(Bucket=bucket, Key=key, Body=body)
        done[key] = time.time()

    count = int(rate * seconds)
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        for i in range(count):
            delay = started + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(put, f"lat-{i:06d}")
    return done


async def latency(stack: StackEnv, s3: Any, args: argparse.Namespace, ek: str) -> Latency:
    bucket = new_bucket(s3, "bench-lat")
    try:
        notify(stack, s3, bucket)
        policy = write_policy(TMP / f"{bucket}.yaml", {"bucket": bucket, "key": ek})
        run = EnforcerRun(stack, policy_file=policy)
        await run.start_at_end()
        watched = start_enforcer(run, stack, args, idle=15.0)  # outlasts the warm-up check
        await wait_ready(run, s3, bucket)
        since = await end_offsets(stack)
        puts = await asyncio.to_thread(
            paced_puts, s3, bucket, args.rate, args.seconds, args.object_size
        )
        await wait_exit(watched)
        records = [r for r in await run.audit(bucket) if r["action"] == "reencrypted"]
        compliant_at = {
            r["key"]: datetime.fromisoformat(r["timestamp"]).timestamp() for r in records
        }
        if not compliant_at:
            raise SystemExit("latency: no rewrite was audited (did the enforcer stop early?)")
        waits = sorted((compliant_at[k] - t) * 1000 for k, t in puts.items() if k in compliant_at)
        published = await notified_at(stack, bucket, since)
        notify_waits = sorted((published[k] - t) * 1000 for k, t in puts.items() if k in published)
        enforcer_waits = sorted(
            (compliant_at[k] - published[k]) * 1000 for k in compliant_at if k in published
        )
        start, end = min(puts.values()), max(compliant_at.values())
        cpu = (watched.cpu_at(end) - watched.cpu_at(start)) * 1000
        return Latency(
            offered=args.rate,
            written=len(puts),
            rewritten=len(waits),
            p50_ms=percentile(waits, 0.5),
            p99_ms=percentile(waits, 0.99),
            max_ms=waits[-1],
            cpu_ms_per_object=cpu / max(1, len(waits)),
            notify_ms=(percentile(notify_waits, 0.5), percentile(notify_waits, 0.99)),
            enforcer_ms=(percentile(enforcer_waits, 0.5), percentile(enforcer_waits, 0.99)),
        )
    finally:
        delete_bucket(s3, bucket)


# ---------------------------------------------------------------- report


def report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    print(
        f"\n{args.objects} objects of {args.object_size} B per backlog; native: minio-go, "
        f"32 in flight; {results['load_before']} before, {results['load_after']} after"
    )
    print(
        "| path | enforcer objects/s | enforcer CPU ms/object | native | native objects/s | "
        "native CPU ms/object | ratio |"
    )
    print("|---|---|---|---|---|---|---|")
    pairs = [
        ("non-compliant (rewrite)", "rewrite", "native_rewrite", "GET + PUT(If-Match, SSE-KMS)"),
        ("compliant", "compliant", "native_head", "HEAD"),
    ]
    for label, ours, theirs, what in pairs:
        if ours in results and theirs in results:
            e, n = results[ours], results[theirs]
            print(
                f"| {label} | {e['rate']:.0f} | {e['cpu_ms_per_object']:.2f} | {what} | "
                f"{n['per_second']:.0f} | {n['cpu_ms_per_object']:.2f} | "
                f"{e['rate'] / n['per_second']:.2f} |"
            )
    if "native_copy" in results:
        n = results["native_copy"]
        print(
            f"| (reference) | | | in-place CopyObject | {n['per_second']:.0f} | "
            f"{n['cpu_ms_per_object']:.2f} | |"
        )
    scaling_report(results)
    before_report(args, results)
    for name in ("rewrite", "compliant"):
        if name in results:
            r = results[name]
            first, peak, end = r["rss_mib"]
            print(
                f"{name}: outcomes {r['outcomes']}, follow-ups {r['follow_ups']}, RSS MiB "
                f"first event {first:.0f} / peak {peak:.0f} / end {end:.0f}"
            )
    if "latency" in results:
        lat = results["latency"]
        print(
            f"latency at {lat['offered']:.0f} PUT/s: {lat['rewritten']}/{lat['written']} "
            f"rewritten, PUT→compliant p50 {lat['p50_ms']:.0f} ms, p99 {lat['p99_ms']:.0f} ms, "
            f"max {lat['max_ms']:.0f} ms; enforcer CPU {lat['cpu_ms_per_object']:.2f} ms/object"
        )
        (n50, n99), (e50, e99) = lat["notify_ms"], lat["enforcer_ms"]
        print(
            f"  of which PUT→notification in Kafka (MinIO's delivery) p50 {n50:.0f} ms, p99 "
            f"{n99:.0f} ms; notification→compliant (the enforcer) p50 {e50:.0f} ms, "
            f"p99 {e99:.0f} ms"
        )


def scaling_report(results: dict[str, Any]) -> None:
    """Rates and CPU per object by worker count, and what the store and Kafka took meanwhile."""
    rows = sorted((r["workers"], name, r) for name, r in results.items()
                  if name.startswith(("compliant", "rewrite")) and "workers" in r
                  and not name.startswith("before"))  # fmt: skip
    if not any(workers > 1 for workers, _, _ in rows):
        return
    print("\n| backlog | workers | objects/s | speed-up | enforcer CPU ms/object | "
          "stack's servers, cores busy over the drain incl. start-up: "
          "kafka, kes, minio |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for workers, name, r in rows:
        kind = name.split("_")[0]
        one = results.get(kind, r)
        cores = ", ".join(f"{v:.2f}" for v in r.get("stack_cores", {}).values())
        print(f"| {kind} | {workers} | {r['rate']:.0f} | {r['rate'] / one['rate']:.2f} | "
              f"{r['cpu_ms_per_object']:.2f} | {cores} |")  # fmt: skip


def before_report(args: argparse.Namespace, results: dict[str, Any]) -> None:
    if not args.before:
        return
    print(
        f"\n| backlog (one worker) | before ({args.before}) objects/s, CPU ms/object | "
        "now objects/s, CPU ms/object | rate ratio now/before | CPU ratio now/before |"
    )
    print("|---|---|---|---|---|")
    for name in ("rewrite", "compliant"):
        before, now = results.get(f"before_{name}"), results.get(name)
        if before and now:
            print(f"| {name} | {before['rate']:.0f}, {before['cpu_ms_per_object']:.2f} | "
                  f"{now['rate']:.0f}, {now['cpu_ms_per_object']:.2f} | "
                  f"{now['rate'] / before['rate']:.2f} | "
                  f"{now['cpu_ms_per_object'] / before['cpu_ms_per_object']:.2f} |")  # fmt: skip


async def drain_phase(
    stack: StackEnv, s3: Any, args: argparse.Namespace, ek: str, results: dict[str, Any],
    buckets: list[str], *, compliant: bool,
) -> str:  # fmt: skip
    """One backlog kind: with one worker (and the ``--before`` enforcer), then more workers."""
    kind = "compliant" if compliant else "rewrite"
    counts = sorted({int(n) for n in args.workers.split(",")} | {1})
    result, bucket = await backlog(stack, s3, args, ek, compliant=compliant)
    buckets.append(bucket)
    results[kind] = result.__dict__ | {"rate": result.rate}
    for workers in counts[1:]:
        more, other = await backlog(stack, s3, args, ek, compliant=compliant, workers=workers)
        buckets.append(other)
        results[f"{kind}_{workers}w"] = more.__dict__ | {"rate": more.rate}
    if args.before:
        now_src, args.enforcer_src = args.enforcer_src, source_of(args.before)
        try:
            old, other = await backlog(stack, s3, args, ek, compliant=compliant)
        finally:
            args.enforcer_src = now_src
        buckets.append(other)
        results[f"before_{kind}"] = old.__dict__ | {"rate": old.rate}
    return bucket


async def main_async(args: argparse.Namespace) -> int:
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    phases = set(args.phases.split(","))
    stack = stack_env()
    s3 = admin_s3(stack, read_timeout=60)
    ek = create_key(stack)
    native_binary()  # build before measuring
    results: dict[str, Any] = {"load_before": load_note()}
    buckets: list[str] = []
    try:
        if "compliant" in phases:
            bucket = await drain_phase(stack, s3, args, ek, results, buckets, compliant=True)
            # A HEAD pass over N objects takes well under a second: the median of three.
            passes = sorted(
                (native(stack, "head", bucket, args.objects) for _ in range(3)),
                key=lambda r: float(r["per_second"]),
            )
            results["native_head"] = passes[1]
        if "rewrite" in phases:
            await drain_phase(stack, s3, args, ek, results, buckets, compliant=False)
            theirs = new_bucket(s3, "bench-native")
            buckets.append(theirs)
            notify(stack, s3, theirs)  # MinIO publishes for these writes too
            native(stack, "put", theirs, args.objects, size=args.object_size)
            results["native_rewrite"] = native(stack, "rewrite", theirs, args.objects, key=ek)
            results["native_copy"] = native(stack, "copy", theirs, args.objects, key=ek)
        if "latency" in phases:
            results["latency"] = (await latency(stack, s3, args, ek)).__dict__
    finally:
        for bucket in buckets:
            delete_bucket(s3, bucket)
    results["load_after"] = load_note()
    report(args, results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=str))
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(main_async(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
