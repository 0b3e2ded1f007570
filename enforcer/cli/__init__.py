"""The ``enforcer`` command line (the commands are listed in docs/contract.md).

Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from enforcer import __version__
from enforcer.cli.args import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, parse_s3_url
from enforcer.cli.ops import OPS_COMMANDS, add_ops_commands, run_ops_command
from enforcer.config import Settings, load_settings
from enforcer.core.policy import Mode
from enforcer.errors import ConfigError, EnforcerError
from enforcer.logs import configure_logging

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="enforcer", description=__doc__)
    parser.add_argument("--version", action="version", version=f"sse-enforcer {__version__}")
    parser.add_argument("--config", type=Path, help="YAML config file (env ENFORCER_* wins)")
    parser.add_argument(
        "--log-level",
        help=f"one of {', '.join(LOG_LEVELS)}; overrides ENFORCER_LOG_LEVEL (default info)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="consume bucket notifications and enforce")
    run.add_argument("--dry-run", action="store_true", help="audit only: write nothing")
    run.add_argument("--drain", action="store_true", help="stop once caught up (tests, demos)")
    run.add_argument(
        "--idle", type=float, default=3.0, help="with --drain: idle seconds before stopping"
    )

    check = commands.add_parser("check", help="print one object's verdict as JSON (writes nothing)")
    check.add_argument("url", help="s3://bucket/key")

    add_ops_commands(commands)  # scan, dlq replay, keys status, status

    decrypt = commands.add_parser("decrypt", help="read an envelope object back as plaintext")
    decrypt.add_argument("url", help="s3://bucket/key")
    decrypt.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")

    schemas = commands.add_parser("schemas", help="write the JSON Schemas into schemas/")
    schemas.add_argument("--out", type=Path, default=Path("schemas"))

    completion = commands.add_parser(
        "completion", help="print a shell completion script: source <(enforcer completion bash)"
    )
    completion.add_argument("shell", choices=["bash", "zsh"])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.log_level is not None and args.log_level.lower() not in LOG_LEVELS:
        print(f"enforcer: configuration error: --log-level {args.log_level!r}: expected one of "
              f"{', '.join(LOG_LEVELS)}", file=sys.stderr)  # fmt: skip
        return EXIT_USAGE
    configure_logging(args.log_level or "INFO")  # until the settings are read
    try:
        return _dispatch(args)
    except ConfigError as exc:
        print(f"enforcer: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except EnforcerError as exc:
        print(f"enforcer: {exc.code}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except KeyboardInterrupt:
        return EXIT_OK


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "completion":
        from enforcer.cli.completion import completion_script

        print(completion_script(build_parser(), args.shell), end="")
        return EXIT_OK
    if args.command == "schemas":
        from enforcer.schemas import write_schemas

        for path in write_schemas(args.out):
            print(path)
        return EXIT_OK
    settings = load_settings(args.config)
    configure_logging(args.log_level or settings.log_level, settings.log_format)
    from enforcer import telemetry

    telemetry.configure(__version__)
    if args.command in OPS_COMMANDS:
        return run_ops_command(settings, args)
    if args.command == "run":
        mode = Mode.AUDIT if args.dry_run else settings.mode
        from enforcer.app import run_service

        asyncio.run(run_service(settings, mode, drain_idle=args.idle if args.drain else None))
        return EXIT_OK
    if args.command == "check":
        bucket, key = parse_s3_url(args.url, need_key=True)
        print(json.dumps(asyncio.run(_check(settings, bucket, key)), indent=2))
        return EXIT_OK
    if args.command == "decrypt":
        bucket, key = parse_s3_url(args.url, need_key=True)
        asyncio.run(_decrypt(settings, bucket, key, args.output))
        return EXIT_OK
    raise ConfigError(f"unknown command {args.command}")  # argparse prevents this


async def _check(settings: Settings, bucket: str, key: str) -> dict[str, object]:
    from enforcer.app import open_runtime
    from enforcer.core.events import ObjectEvent
    from enforcer.engine.records import audit_record
    from enforcer.telemetry import current_trace_id

    event = ObjectEvent(
        event_id="cli-check", event_name="check", bucket=bucket, key=key, source_format="s3"
    )
    started = time.monotonic()
    async with open_runtime(settings, Mode.AUDIT) as runtime:
        outcome = await runtime.pipeline.handle(event)
    record = audit_record(event, outcome, default_mode=Mode.AUDIT,
                          duration=time.monotonic() - started, trace_id=current_trace_id(),
                          now=datetime.now(UTC))  # fmt: skip
    return record.model_dump(mode="json", exclude_none=True)


async def _decrypt(settings: Settings, bucket: str, key: str, output: Path | None) -> None:
    from enforcer.app import open_runtime
    from enforcer.engine.envelope import decrypt_object

    async with open_runtime(settings, Mode.AUDIT) as runtime:
        if runtime.kms is None:
            raise ConfigError("decrypt needs a KMS: set ENFORCER_KMS__KIND")
        if output is None:
            await decrypt_object(runtime.storage, runtime.kms, bucket, key, sys.stdout.buffer)
            return
        partial = output.with_name(output.name + ".partial")
        try:
            with partial.open("wb") as sink:
                await decrypt_object(runtime.storage, runtime.kms, bucket, key, sink)
            partial.replace(output)  # only verified plaintext reaches the named file
        finally:
            partial.unlink(missing_ok=True)
