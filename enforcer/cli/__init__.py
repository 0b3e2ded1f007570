"""The ``enforcer`` command line (the commands are listed in docs/contract.md).

Exit codes: 0 ok, 1 failure, 2 usage or configuration error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from enforcer import __version__
from enforcer.cli.args import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    Parser,
    add_command,
    check_writable,
    non_negative_seconds,
    parse_s3_url,
    positive_int,
)
from enforcer.cli.forward import add_forward_command, run_forward
from enforcer.cli.ops import OPS_COMMANDS, add_ops_commands, run_ops_command
from enforcer.config import Settings, load_settings
from enforcer.core.policy import Mode
from enforcer.errors import ConfigError, EnforcerError
from enforcer.logs import configure_logging
from enforcer.signals import stop_on_signals

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="enforcer",
        description=__doc__,
        epilog="examples:\n  enforcer run --dry-run\n  enforcer check s3://finance/report.pdf\n"
        "  enforcer scan --help",
    )
    parser.add_argument("--version", action="version", version=f"sse-enforcer {__version__}")
    parser.add_argument("--config", type=Path, help="YAML config file (env ENFORCER_* wins)")
    parser.add_argument(
        "--log-level",
        help=f"one of {', '.join(LOG_LEVELS)}; overrides ENFORCER_LOG_LEVEL (default info)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    _add_run(commands)
    _add_check(commands)
    add_ops_commands(commands)  # scan, report, dlq replay, keys status, status
    _add_decrypt(commands)
    add_forward_command(commands)
    _add_tools(commands)
    return parser


def _add_check(commands: Any) -> None:
    check = add_command(
        commands,
        "check",
        "print one object's verdict as JSON (writes nothing)",
        description="Inspect one object the way the service would and print its audit record "
        "as JSON: the verdict, the encryption and key observed, the key required. Writes "
        "nothing.",
        examples=["enforcer check s3://finance/invoices/2026/01.pdf",
                  "enforcer check 's3://photos/summer 2026.jpg' | jq -r .verdict"],
    )  # fmt: skip
    check.add_argument("url", help="s3://bucket/key")


def _add_tools(commands: Any) -> None:
    """``schemas`` and ``completion``: they need no settings."""
    schemas = add_command(
        commands,
        "schemas",
        "write the JSON Schemas into schemas/",
        description="Write the JSON Schemas of the configuration, the policy file, the input "
        "shapes and the audit, dead-letter and scan records, generated from the models, into "
        "a folder (created if missing).",
        examples=["enforcer schemas", "enforcer schemas --out /tmp/sse-enforcer-schemas"],
    )
    schemas.add_argument("--out", type=Path, default=Path("schemas"), help="default: schemas/")
    completion = add_command(
        commands,
        "completion",
        "print a shell completion script: source <(enforcer completion bash)",
        description="Print a bash or zsh completion script generated from this command line.",
        examples=["source <(enforcer completion bash)   # in ~/.bashrc",
                  "source <(enforcer completion zsh)    # in ~/.zshrc"],
    )  # fmt: skip
    completion.add_argument("shell", choices=["bash", "zsh"])


def _add_run(commands: Any) -> None:
    run = add_command(
        commands,
        "run",
        "consume bucket notifications and enforce",
        description="The service: consume the notification topics (ENFORCER_KAFKA__TOPICS) as "
        "consumer group ENFORCER_KAFKA__GROUP_ID, inspect every new object, re-encrypt the "
        "non-compliant ones in place under the External Key they require, and publish one "
        "audit record per event. Settings are checked against the servers first (exit 2 on "
        "one that cannot work). SIGTERM stops it cleanly.",
        examples=["enforcer run", "enforcer run --dry-run         # audit only: write nothing",
                  "enforcer run --drain --idle 5   # stop once caught up and idle for 5 s",
                  "enforcer run --workers 4        # 4 consumer processes in the group"],
    )  # fmt: skip
    run.add_argument("--dry-run", action="store_true", help="audit only: write nothing")
    run.add_argument("--drain", action="store_true", help="stop once caught up (tests, demos)")
    run.add_argument(
        "--idle",
        type=non_negative_seconds,
        default=3.0,
        help="with --drain: idle seconds before stopping",
    )
    run.add_argument(
        "--workers",
        type=positive_int,
        help="consumer processes in the group, under one supervisor with one health port "
        "(env ENFORCER_WORKERS; default: the cores this process may use)",
    )


def _add_decrypt(commands: Any) -> None:
    decrypt = add_command(
        commands,
        "decrypt",
        "read an envelope object back as plaintext",
        description="Read an object the enforcer wrote under strategy envelope back as "
        "plaintext, verified chunk by chunk (ordinary S3 readers get only ciphertext for such "
        "objects). With -o the file appears only once the whole object verified.",
        examples=["enforcer decrypt s3://legacy-store/ledger.csv -o ledger.csv",
                  "enforcer decrypt s3://legacy-store/ledger.csv | head"],
    )  # fmt: skip
    decrypt.add_argument("url", help="s3://bucket/key")
    decrypt.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")


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
        return _schemas(args.out)
    settings = load_settings(args.config)
    configure_logging(args.log_level or settings.log_level, settings.log_format)
    from enforcer import telemetry

    telemetry.configure(__version__)
    if args.command in OPS_COMMANDS:
        return run_ops_command(settings, args)
    commands: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
        "run": _run,
        "check": _check_command,
        "decrypt": _decrypt_command,
        "forward": run_forward,
    }
    return commands[args.command](settings, args)


def _run(settings: Settings, args: argparse.Namespace) -> int:
    from enforcer.supervisor import usable_cpus

    workers = args.workers or settings.workers or usable_cpus()
    if workers > 1:
        return _supervise(settings, args, workers)
    from enforcer.app import run_service

    mode = Mode.AUDIT if args.dry_run else settings.mode
    asyncio.run(run_service(settings, mode, drain_idle=args.idle if args.drain else None))
    return EXIT_OK


def _supervise(settings: Settings, args: argparse.Namespace, workers: int) -> int:
    """``workers`` ``enforcer run`` processes of the same command under one supervisor."""
    from enforcer.supervisor import Supervisor

    argv = [*(["--config", str(args.config)] if args.config else []),
            *(["--log-level", args.log_level] if args.log_level else []),
            "run", "--workers", "1", *(["--dry-run"] if args.dry_run else []),
            *(["--drain", "--idle", str(args.idle)] if args.drain else [])]  # fmt: skip
    supervisor = Supervisor(argv, workers, shutdown_timeout=settings.shutdown_timeout,
                            drain=args.drain)  # fmt: skip

    async def supervise() -> int:
        with stop_on_signals(supervisor.stop):
            return await supervisor.run(settings.health_port, settings.health_host)

    return asyncio.run(supervise())


def _check_command(settings: Settings, args: argparse.Namespace) -> int:
    bucket, key = parse_s3_url(args.url, need_key=True)
    print(json.dumps(asyncio.run(_check(settings, bucket, key)), indent=2))
    return EXIT_OK


def _decrypt_command(settings: Settings, args: argparse.Namespace) -> int:
    bucket, key = parse_s3_url(args.url, need_key=True)
    if args.output is not None:
        check_writable(args.output, "--output")
    asyncio.run(_decrypt(settings, bucket, key, args.output))
    return EXIT_OK


def _schemas(out: Path) -> int:
    from enforcer.schemas import write_schemas

    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out}: exists and is not a folder")
    try:
        written = write_schemas(out)
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot write: {exc.strerror}") from None
    for path in written:
        print(path)
    return EXIT_OK


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
