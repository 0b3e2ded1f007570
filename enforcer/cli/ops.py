"""The operations commands of the CLI: ``scan``, ``report``, ``dlq replay``, ``keys status``,
``policy check``, ``status``.

:mod:`enforcer.cli` adds these parsers and hands the parsed arguments here; each command prints
one JSON document on stdout and returns its exit code (0 ok, 1 failure); configuration errors
raise :class:`~enforcer.errors.ConfigError`, which the CLI turns into 2.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from enforcer.cli.args import (
    EXIT_FAILURE,
    EXIT_OK,
    add_command,
    positive_int,
    positive_seconds,
)
from enforcer.cli.status import add_status_command, run_status
from enforcer.config import Settings


def add_ops_commands(commands: Any) -> None:
    """Add ``scan``, ``report``, ``dlq replay``, ``keys status``, ``policy check`` and ``status``
    to the ``enforcer`` subcommands."""
    add_scan_command(commands)
    from enforcer.cli.report import add_report_command

    add_report_command(commands)

    dlq = add_command(
        commands,
        "dlq",
        "dead-letter topic tools",
        description="Tools for the dead-letter topic (ENFORCER_KAFKA__DLQ_TOPIC).",
        examples=["enforcer dlq replay --dry-run"],
    )
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    replay = add_command(
        dlq_commands,
        "replay",
        "re-publish dead-lettered events to their original topics",
        description="Re-publish the dead-lettered events to the topics they came from, once "
        "the cause is fixed (a key re-enabled, a permission granted), so the service handles "
        "them again. Reads with its own consumer group (<group>.dlq-replay) and commits what it "
        "replayed; truncated records are skipped with the reason.",
        examples=["enforcer dlq replay --dry-run   # list what would be replayed",
                  "enforcer dlq replay --limit 100"],
    )  # fmt: skip
    replay.add_argument(
        "--limit", type=positive_int, help="take at most N DLQ records (replayed or skipped)"
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed; publish nothing"
    )
    _add_keys_command(commands)
    _add_policy_command(commands)
    add_status_command(commands)


def _add_policy_command(commands: Any) -> None:
    policy = add_command(
        commands,
        "policy",
        "policy file tools",
        description="Tools for the policy file (ENFORCER_POLICY_FILE).",
        examples=["enforcer policy check --policy-file policy.yaml"],
    )
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = add_command(
        policy_commands,
        "check",
        "every bucket and key the policy file names exists (exit 2 if not): strict, for CI",
        description="Check that every bucket and every EK the policy file names exists; exit 2 "
        "with one line naming each one that does not (the service itself starts anyway, and "
        "reports them).",
        examples=["enforcer policy check", "enforcer policy check --policy-file policy.yaml"],
    )
    check.add_argument(
        "--policy-file", type=Path, help="the policy file to check (default ENFORCER_POLICY_FILE)"
    )


def _add_keys_command(commands: Any) -> None:
    keys = add_command(
        commands,
        "keys",
        "External Key tools",
        description="Tools for the External Keys (EKs) the policy file and bucket defaults name.",
        examples=["enforcer keys status --bucket finance"],
    )
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    status = add_command(
        keys_commands,
        "status",
        "state of every EK that matters, and KMS readiness (exit 1 if not ok)",
        description="Ask the KMS (ENFORCER_KMS__KIND kes or aws) for the state of every key the "
        "policy file names and of the default keys of the buckets given, as JSON; exit 1 "
        "unless the KMS is ready and every key is enabled.",
        examples=["enforcer keys status",
                  "enforcer keys status --bucket finance --bucket photos",
                  "enforcer keys status --all-buckets | jq '.keys[] | {key, state}'"],
    )  # fmt: skip
    status.add_argument(
        "--bucket",
        action="append",
        default=[],
        metavar="B",
        help="also check bucket B's default EK (repeatable)",
    )
    status.add_argument(
        "--all-buckets", action="store_true", help="check every bucket the S3 user can list"
    )


SCAN_EXAMPLES = [
    "enforcer scan s3://photos --dry-run",
    "enforcer scan s3://photos/2026/ --output csv --output-file photos.csv",
    "enforcer scan s3://photos --output csv --output-file photos.csv --resume",
    "enforcer scan --inventory s3://inv/photos/config/2026-12-01T00-00Z/manifest.json",
    "enforcer scan s3://photos --enqueue   # let the enforcer run replicas do it",
    "enforcer scan s3://photos --split 8   # eight listers at once, one per key range",
]


def add_scan_command(commands: Any) -> None:
    """``enforcer scan`` (run by :mod:`enforcer.cli.scan`)."""
    scan = add_command(
        commands,
        "scan",
        "backfill: enforce every current object under s3://bucket[/prefix]",
        description="Backfill: list a bucket (or read an S3 Inventory report) and handle every "
        "object once, the way the service would, with one audit record each. Keeps a "
        "checkpoint (--resume continues after an interruption), shows progress on stderr, "
        "prints a summary as JSON on stdout; exit 1 when an object failed or it was stopped.",
        examples=SCAN_EXAMPLES,
    )
    scan.add_argument("url", nargs="?", help="s3://bucket or s3://bucket/prefix")
    scan.add_argument("--dry-run", action="store_true", help="audit only: write nothing")
    scan.add_argument(
        "--versions", action="store_true", help="also check non-current versions (report them)"
    )
    scan.add_argument(
        "--enqueue",
        action="store_true",
        help="only list: publish one event per non-compliant object for `enforcer run`",
    )
    scan.add_argument(
        "--split",
        type=split_count,
        metavar="N|auto",
        help=f"cut the keyspace into N key ranges (auto: {AUTO_SPLIT}) listed at once; with "
        "--enqueue each range is a task for the `enforcer run` replicas",
    )
    scan.add_argument(
        "--inventory", metavar="MANIFEST", help="read an S3 Inventory manifest (path or s3://)"
    )
    scan.add_argument("--output", choices=("jsonl", "csv"), help="one line per object")
    scan.add_argument(
        "--output-file", type=Path, help="write the lines here (appended on --resume)"
    )
    scan.add_argument("--checkpoint", type=Path, help="checkpoint file (default: state dir)")
    scan.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    scan.add_argument(
        "--progress-interval",
        type=positive_seconds,
        default=10.0,
        metavar="S",
        help="seconds between progress lines when stderr is not a terminal",
    )
    scan.add_argument("--no-progress", action="store_true", help="no progress display")


#: Ranges ``--split auto`` cuts a bucket into.
AUTO_SPLIT = 16
#: At most this many ranges (one lister each in a local scan, one task each on Kafka).
MAX_SPLIT = 4096


def split_count(text: str) -> int:
    """``--split``: a number of ranges from 1 to MAX_SPLIT, or ``auto``."""
    if text == "auto":
        return AUTO_SPLIT
    try:
        count = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a number of ranges or auto, got {text!r}"
        ) from None
    if not 1 <= count <= MAX_SPLIT:
        raise argparse.ArgumentTypeError(f"expected 1 to {MAX_SPLIT} ranges, got {count}")
    return count


def run_ops_command(settings: Settings, args: argparse.Namespace) -> int:
    commands: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "scan": _scan,
        "dlq": _dlq_replay,
        "keys": _keys_status,
        "report": _report,
        "policy": _policy_check,
        "status": run_status,
    }
    return commands[args.command](settings, args)


def _print(report: dict[str, Any]) -> None:
    print(json.dumps(report, indent=2, default=str))


def _scan(settings: Settings, args: argparse.Namespace) -> int:
    from enforcer.cli.scan import run_scan, scan_request, summary_table

    request = scan_request(settings, args)
    if request.split is not None and request.enqueue:
        from enforcer.cli.scan import enqueue_ranges

        _print(asyncio.run(enqueue_ranges(settings, request)))
        return EXIT_OK
    summary = asyncio.run(run_scan(settings, request))
    print(summary_table(summary), file=sys.stderr)
    if request.output is None or request.output_file is not None:  # stdout is not the lines
        _print(summary.as_dict())
    return EXIT_OK if summary.ok else EXIT_FAILURE


def _dlq_replay(settings: Settings, args: argparse.Namespace) -> int:

    from enforcer.cli.dlq import run_replay

    summary = asyncio.run(
        run_replay(settings.kafka.options(), limit=args.limit, dry_run=args.dry_run)
    )
    _print(summary.as_dict())
    return EXIT_OK


def _keys_status(settings: Settings, args: argparse.Namespace) -> int:
    from enforcer.cli.keys import run_keys_status

    report = asyncio.run(run_keys_status(settings, args.bucket, args.all_buckets))
    _print(report.as_dict())
    return EXIT_OK if report.ok else EXIT_FAILURE


def _policy_check(settings: Settings, args: argparse.Namespace) -> int:
    from enforcer.cli.policy import run_policy_check
    from enforcer.errors import ConfigError

    if args.policy_file is not None:
        settings = settings.model_copy(update={"policy_file": args.policy_file})
    check = asyncio.run(run_policy_check(settings))
    _print(check.as_dict())
    if not check.ok:
        raise ConfigError(check.problem())
    return EXIT_OK


def _report(settings: Settings, args: argparse.Namespace) -> int:
    from enforcer.cli.report import run_report

    return run_report(settings, args)


OPS_COMMANDS = frozenset({"scan", "dlq", "keys", "report", "policy", "status"})
