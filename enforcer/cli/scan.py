"""``enforcer scan``: backfill the objects that exist already (the engine is
:mod:`enforcer.engine.scanner`).

Notifications only cover writes made after the enforcer was deployed; a scan lists the bucket's
current objects under a prefix (all versions with ``--versions``) — on MinIO with the listing's
``metadata=true`` extension, so compliant objects cost no request — or reads an S3 Inventory
report (``--inventory``), and handles every object the way the service would, publishing one
audit record each. ``--dry-run`` runs it in audit mode; ``--enqueue`` only lists and publishes
one backfill event per non-compliant object for the ``enforcer run`` replicas.

Trust: a progress line on stderr, a checkpoint file that ``--resume`` continues from after an
interruption (SIGINT/SIGTERM stop the listing and let started objects finish), one line per
object with ``--output jsonl|csv``, a summary table on stderr and the summary JSON on stdout.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import AsyncExitStack, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO

from enforcer.app import Runtime, object_guard, open_runtime
from enforcer.cli.args import check_readable_file, check_writable, parse_s3_url
from enforcer.cli.progress import Progress
from enforcer.config import Settings
from enforcer.core.policy import Mode
from enforcer.engine.checkpoint import (
    Checkpoint,
    DoneTracker,
    RangeState,
    load_checkpoint,
    save_checkpoint,
)
from enforcer.engine.objects import ListedObject
from enforcer.engine.range_tasks import RangeTask
from enforcer.engine.records import ScanLine
from enforcer.engine.scanner import Scanner, ScanOptions, ScanSource, ScanSummary
from enforcer.errors import ConfigError
from enforcer.kafka.backfill import publish_tasks
from enforcer.kafka.sink import open_event_publisher, open_kafka_sink
from enforcer.preflight import check_s3_credentials, check_scan, ensure_output_topics
from enforcer.report.lines import CsvWriter, JsonlWriter, LineWriter, NoWriter
from enforcer.report.table import counts_table
from enforcer.signals import stop_on_signals
from enforcer.storage.inventory import InventoryReader
from enforcer.storage.split import split_keyspace

#: Seconds between checkpoint writes (and at the end, always).
CHECKPOINT_EVERY = 2.0


@dataclass(frozen=True)
class ScanRequest:
    bucket: str
    prefix: str
    mode: Mode
    versions: bool = False
    enqueue: bool = False
    inventory: str | None = None
    output: str | None = None
    output_file: Path | None = None
    checkpoint: Path | None = None
    resume: bool = False
    progress: bool = True
    progress_interval: float = 10.0
    split: int | None = None

    @property
    def source(self) -> str:
        return self.inventory or f"s3://{self.bucket}/{self.prefix}"

    def checkpoint_path(self) -> Path:
        if self.checkpoint is not None:
            return self.checkpoint
        state = Path(os.environ.get("XDG_STATE_HOME", Path.home() / ".local" / "state"))
        material = f"{self.source}|{self.versions}|{self.enqueue}".encode()
        if self.split is not None:
            material += f"|split={self.split}".encode()
        name = f"scan-{self.bucket or 'inventory'}-{hashlib.sha256(material).hexdigest()[:12]}"
        return state / "sse-enforcer" / f"{name}.json"


def scan_request(settings: Settings, args: argparse.Namespace) -> ScanRequest:
    if args.url is None and args.inventory is None:
        raise ConfigError("scan needs s3://bucket[/prefix] or --inventory MANIFEST")
    bucket, prefix = parse_s3_url(args.url, need_key=False) if args.url else ("", "")
    if args.output_file is not None and args.output is None:
        raise ConfigError("--output-file needs --output jsonl|csv")
    request = ScanRequest(
        bucket=bucket,
        prefix=prefix,
        mode=Mode.AUDIT if args.dry_run else settings.mode,
        versions=args.versions,
        enqueue=args.enqueue,
        inventory=args.inventory,
        output=args.output,
        output_file=args.output_file,
        checkpoint=args.checkpoint,
        resume=args.resume,
        progress=not args.no_progress,
        progress_interval=args.progress_interval,
        split=args.split,
    )
    if request.split is not None and (request.inventory or request.versions):
        raise ConfigError("--split lists current objects by key range: not with --inventory "
                          "or --versions")  # fmt: skip
    if request.split is not None and request.enqueue and args.dry_run:
        raise ConfigError("--split --enqueue: the replicas run in their own ENFORCER_MODE; "
                          "drop --dry-run (or scan without --enqueue)")  # fmt: skip
    check_local_paths(request)
    return request


def check_local_paths(request: ScanRequest) -> None:
    """The files the scan reads and writes, checked before any connection is tried."""
    if request.inventory is not None and not request.inventory.startswith("s3://"):
        check_readable_file(Path(request.inventory), "--inventory")
    if request.output_file is not None:
        check_writable(request.output_file, "--output-file")
    check_writable(request.checkpoint_path(), "--checkpoint")


async def run_scan(settings: Settings, request: ScanRequest) -> ScanSummary:
    """List (or read the inventory), classify every object once, checkpoint as it goes."""
    path = request.checkpoint_path()
    checkpoint = _starting_checkpoint(request, path)
    summary = ScanSummary(
        request.bucket, request.prefix, request.mode.value, settings.kafka.audit_topic
    )
    _restore(summary, checkpoint)
    if checkpoint.complete:
        return summary
    async with AsyncExitStack() as stack:
        runtime = await stack.enter_async_context(open_runtime(settings, request.mode))
        await _preflight(settings, runtime, request)
        sink = await stack.enter_async_context(open_kafka_sink(settings.kafka.options()))
        events = None
        if request.enqueue:
            events = await stack.enter_async_context(open_event_publisher(settings.kafka.options()))
        writer = stack.enter_context(_line_writer(request))
        progress = None
        if request.progress:
            progress = Progress(sys.stderr, interval=request.progress_interval)
        options = ScanOptions(
            events=events, facts_source="inventory" if request.inventory else "listing"
        )
        if request.split is not None and not checkpoint.ranges:
            checkpoint = await _with_ranges(runtime, request, checkpoint)
        saver = _CheckpointSaver(path, checkpoint, summary, writer, progress)
        guard = object_guard(runtime, sink, request.mode, waits_out_outages=False)
        scanner = Scanner(guard, summary, options, tracker=saver.tracker, on_line=saver.on_line)
        with stop_on_signals(scanner.interrupt):
            try:
                await scanner.run_sources(_sources(runtime, request, checkpoint, saver))
            finally:
                saver.save(complete=summary.aborted is None and not summary.interrupted)
                if progress is not None:
                    progress.close()
    return summary


async def enqueue_ranges(settings: Settings, request: ScanRequest) -> dict[str, object]:
    """``--split N --enqueue``: cut the bucket into ranges, one task each for the replicas."""
    assert request.split is not None
    kafka = settings.kafka.options()
    async with open_runtime(settings, request.mode) as runtime:
        await _preflight(settings, runtime, request)
        ranges = await split_keyspace(
            runtime.storage.listing, request.bucket, request.prefix, request.split
        )
    backfill_id, now = uuid.uuid4().hex[:16], datetime.now(UTC)
    tasks = [
        RangeTask(backfill_id=backfill_id, index=n, total=len(ranges), bucket=request.bucket,
                  prefix=request.prefix, after=r.after, through=r.through, created=now)
        for n, r in enumerate(ranges)
    ]  # fmt: skip
    await publish_tasks(kafka, tasks)
    return {"backfill_id": backfill_id, "bucket": request.bucket, "prefix": request.prefix,
            "ranges": len(tasks), "tasks_topic": kafka.backfill_tasks_topic,
            "progress": f"enforcer status --backfill {backfill_id}"}  # fmt: skip


async def _preflight(settings: Settings, runtime: Runtime, request: ScanRequest) -> None:
    """Fail at start, with one clear line, on what would fail every object."""
    listing = runtime.storage.listing
    if request.bucket:
        await check_scan(settings.kafka.options(), listing, request.bucket)
    else:  # an inventory names its buckets row by row
        await check_s3_credentials(listing)
        await ensure_output_topics(settings.kafka.options())


def _starting_checkpoint(request: ScanRequest, path: Path) -> Checkpoint:
    fresh = Checkpoint(source=request.source, versions=request.versions, enqueue=request.enqueue,
                       split=request.split)  # fmt: skip
    if not request.resume:
        return fresh
    previous = load_checkpoint(path)
    if previous is None:
        raise ConfigError(f"--resume: no checkpoint at {path}")
    if not previous.matches(request.source, request.versions, request.enqueue, request.split):
        raise ConfigError(
            f"--resume: checkpoint {path} is for {previous.source} "
            f"(versions={previous.versions}, enqueue={previous.enqueue}, "
            f"split={previous.split}), not this scan"
        )
    return previous


async def _with_ranges(
    runtime: Runtime, request: ScanRequest, checkpoint: Checkpoint
) -> Checkpoint:
    """The checkpoint with the split's ranges, cut once at the scan's start (a resumed scan
    keeps them, whatever was written meanwhile)."""
    assert request.split is not None
    ranges = await split_keyspace(
        runtime.storage.listing, request.bucket, request.prefix, request.split
    )
    states = [RangeState(after=r.after, through=r.through) for r in ranges]
    return checkpoint.model_copy(update={"ranges": states})


def _restore(summary: ScanSummary, checkpoint: Checkpoint) -> None:
    summary.objects = checkpoint.objects
    summary.failed = checkpoint.failed
    summary.verdicts.update(checkpoint.verdicts)
    summary.actions.update(checkpoint.actions)


def _sources(
    runtime: Runtime, request: ScanRequest, checkpoint: Checkpoint, saver: _CheckpointSaver
) -> list[ScanSource]:
    """One lister for the whole scan, or one per key range not finished yet."""
    if not checkpoint.ranges:
        return [ScanSource(_source(runtime, request, checkpoint), saver.tracker)]
    listing = runtime.storage.listing
    listing.ask_for_metadata()
    sources = []
    for tracker, state in zip(saver.range_trackers, checkpoint.ranges, strict=True):
        if not state.complete:
            items = listing.list_objects(
                request.bucket, request.prefix, start_after=state.start_after, through=state.through
            )
            sources.append(ScanSource(items, tracker))
    return sources


def _source(
    runtime: Runtime, request: ScanRequest, checkpoint: Checkpoint
) -> AsyncIterator[ListedObject]:
    listing = runtime.storage.listing
    if request.inventory is not None:
        reader = InventoryReader(request.inventory, listing)
        return _matching(reader.objects(skip=checkpoint.consumed), request)
    listing.ask_for_metadata()
    if request.versions:
        return listing.list_versions(
            request.bucket,
            request.prefix,
            key_marker=checkpoint.after_key,
            version_id_marker=checkpoint.after_version_id,
        )
    return listing.list_objects(request.bucket, request.prefix, start_after=checkpoint.after_key)


async def _matching(
    objects: AsyncIterator[ListedObject], request: ScanRequest
) -> AsyncIterator[ListedObject]:
    """Inventory rows under the requested bucket/prefix (all of them without a URL); current
    versions only unless ``--versions``."""
    async for listed in objects:
        wanted = not request.bucket or (
            listed.bucket == request.bucket and listed.key.startswith(request.prefix)
        )
        if wanted and (request.versions or listed.is_latest):
            yield listed


@contextmanager
def _line_writer(request: ScanRequest) -> Iterator[LineWriter]:
    if request.output is None:
        yield NoWriter()
        return
    stream: IO[str]
    if request.output_file is None:
        stream, close = sys.stdout, False
    else:
        appending = request.resume and request.output_file.exists()
        stream = request.output_file.open("a" if appending else "w", encoding="utf-8")
        close = True
    header = not (request.resume and request.output_file is not None and stream.tell() > 0)
    try:
        yield CsvWriter(stream, header=header) if request.output == "csv" else JsonlWriter(stream)
    finally:
        stream.flush()
        if close:
            stream.close()


class _CheckpointSaver:
    """Writes each finished object's line, shows progress, and saves the checkpoint every few
    seconds (output flushed first, so lines on disk cover at least the checkpoint)."""

    def __init__(
        self,
        path: Path,
        base: Checkpoint,
        summary: ScanSummary,
        writer: LineWriter,
        progress: Progress | None,
    ) -> None:
        self._path, self._base, self._summary = path, base, summary
        self._writer, self._progress = writer, progress
        self._last = time.monotonic()
        self.tracker = DoneTracker(base.consumed)
        self.range_trackers = [DoneTracker(state.consumed) for state in base.ranges]

    def on_line(self, line: ScanLine) -> None:
        self._writer.write(line)
        if self._progress is not None:
            self._progress.update(self._summary.objects)
        if time.monotonic() - self._last >= CHECKPOINT_EVERY:
            self.save(complete=False)

    def save(self, *, complete: bool) -> None:
        self._last = time.monotonic()
        self._writer.flush()
        done = self.tracker.done_through
        checkpoint = self._base.model_copy(
            update={
                "consumed": self.tracker.consumed,
                "after_key": done.key if done else self._base.after_key,
                "after_version_id": done.version_id if done else self._base.after_version_id,
                "objects": self._summary.objects,
                "failed": self._summary.failed,
                "verdicts": dict(self._summary.verdicts),
                "actions": dict(self._summary.actions),
                "complete": complete,
                "updated": datetime.now(UTC),
                "ranges": self._range_states(complete),
            }
        )
        save_checkpoint(self._path, checkpoint)

    def _range_states(self, complete: bool) -> list[RangeState]:
        """Each range's done prefix; a range is complete once the whole scan is, or when it was
        before (its lister then did not run)."""
        states = []
        for state, tracker in zip(self._base.ranges, self.range_trackers, strict=True):
            done = tracker.done_through
            states.append(
                state.model_copy(
                    update={
                        "consumed": tracker.consumed,
                        "after_key": done.key if done else state.after_key,
                        "complete": complete or state.complete,
                    }
                )
            )
        return states


def summary_table(summary: ScanSummary) -> str:
    """The closing tables on stderr: verdicts and actions."""
    parts = [counts_table("verdict", summary.verdicts), counts_table("action", summary.actions)]
    state = "interrupted: continue with --resume" if summary.interrupted else (
        summary.aborted or ("ok" if summary.ok else f"{summary.failed} failed"))  # fmt: skip
    header = (
        f"scan of {summary.bucket or 'inventory'}/{summary.prefix}: {summary.objects:,} objects "
        f"({summary.from_listing:,} classified from the listing), mode {summary.mode}: {state}"
    )
    return "\n\n".join([header, *parts])
