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

from enforcer.cli.args import EXIT_FAILURE, EXIT_OK, positive_int
from enforcer.cli.status import add_status_command, run_status
from enforcer.config import Settings


def add_ops_commands(commands: Any) -> None:
    """Add ``scan``, ``report``, ``dlq replay``, ``keys status``, ``policy check`` and ``status``
    to the ``enforcer`` subcommands."""
    add_scan_command(commands)
    from enforcer.cli.report import add_report_command

    add_report_command(commands)

    dlq = commands.add_parser("dlq", help="dead-letter topic tools")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    replay = dlq_commands.add_parser(
        "replay", help="re-publish dead-lettered events to their original topics"
    )
    replay.add_argument(
        "--limit", type=positive_int, help="take at most N DLQ records (replayed or skipped)"
    )
    replay.add_argument(
        "--dry-run", action="store_true", help="list what would be replayed; publish nothing"
    )

    keys = commands.add_parser("keys", help="External Key tools")
    keys_commands = keys.add_subparsers(dest="keys_command", required=True)
    status = keys_commands.add_parser(
        "status", help="state of every EK that matters, and KMS readiness (exit 1 if not ok)"
    )
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
    policy = commands.add_parser("policy", help="policy file tools")
    policy_commands = policy.add_subparsers(dest="policy_command", required=True)
    check = policy_commands.add_parser(
        "check",
        help="every bucket and key the policy file names exists (exit 2 if not): strict, for CI",
    )
    check.add_argument(
        "--policy-file", type=Path, help="the policy file to check (default ENFORCER_POLICY_FILE)"
    )
    add_status_command(commands)


def add_scan_command(commands: Any) -> None:
    """``enforcer scan`` (run by :mod:`enforcer.cli.scan`)."""
    scan = commands.add_parser(
        "scan", help="backfill: enforce every current object under s3://bucket[/prefix]"
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
        type=float,
        default=10.0,
        metavar="S",
        help="seconds between progress lines when stderr is not a terminal",
    )
    scan.add_argument("--no-progress", action="store_true", help="no progress display")


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
    summary = asyncio.run(run_scan(settings, request))
    print(summary_table(summary), file=sys.stderr)
    if request.output is None or request.output_file is not None:  # stdout is not the lines
        _print(summary.as_dict())
    return EXIT_OK if summary.ok else EXIT_FAILURE


def _dlq_replay(settings: Settings, args: argparse.Namespace) -> int:
    from enforcer.cli.dlq import run_replay

    summary = asyncio.run(run_replay(settings.kafka, limit=args.limit, dry_run=args.dry_run))
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
