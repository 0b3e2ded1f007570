"""``enforcer report``: the compliance report, as a self-contained HTML file and a terminal table.

Input: the audit topic (``ENFORCER_KAFKA__AUDIT_TOPIC``), read from its beginning up to the end it
had when the command started, with no consumer group (nothing is committed), or the JSONL that
``enforcer scan --output jsonl`` wrote (``--input``, repeatable). The figures are described in
:mod:`enforcer.report.model`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from enforcer.app import kafka_options
from enforcer.cli.args import EXIT_OK
from enforcer.config import Settings
from enforcer.engine.records import ScanLine
from enforcer.errors import ConfigError
from enforcer.kafka.reader import read_to_end
from enforcer.report.html import render_html
from enforcer.report.lines import parse_line, read_lines
from enforcer.report.model import Group, Report, build_report
from enforcer.report.table import counts_table, format_table

log = logging.getLogger(__name__)


def add_report_command(commands: Any) -> None:
    report = commands.add_parser(
        "report", help="compliance report (HTML + table) from the audit topic or scan output"
    )
    report.add_argument(
        "--input",
        type=Path,
        action="append",
        default=[],
        metavar="JSONL",
        help="read scan output (or audit records) from this file instead (repeatable)",
    )
    report.add_argument(
        "--html", type=Path, default=Path("enforcer-report.html"), help="where to write the page"
    )
    report.add_argument("--bucket", action="append", default=[], help="only these buckets")
    report.add_argument("--title", default="SSE-KMS compliance report")


def run_report(settings: Settings, args: argparse.Namespace) -> int:
    if args.input:
        source = ", ".join(str(path) for path in args.input)
        lines = [line for path in args.input for line in read_lines(path)]
    else:
        source = f"audit topic {settings.kafka.audit_topic}"
        lines = asyncio.run(_audit_lines(settings))
    if args.bucket:
        lines = [line for line in lines if line.bucket in set(args.bucket)]
    report = build_report(lines)
    page = render_html(report, title=args.title, generated=datetime.now(UTC), source=source)
    try:
        args.html.write_text(page, encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{args.html}: {exc.strerror}") from exc
    print(terminal_report(report, source))
    print(f"\nHTML report: {args.html}", file=sys.stderr)
    return EXIT_OK


async def _audit_lines(settings: Settings) -> list[ScanLine]:
    topic = settings.kafka.audit_topic
    lines, unreadable = [], 0
    async for value in read_to_end(kafka_options(settings.kafka), topic):
        try:
            lines.append(parse_line(value or b"", topic))
        except ConfigError:
            unreadable += 1
    if unreadable:
        log.warning("skipped %d records of %s that are not audit records", unreadable, topic)
    return lines


def terminal_report(report: Report, source: str) -> str:
    """The report's figures as plain tables."""
    total = report.total
    share = "-" if total.compliance is None else f"{total.compliance:.1f}%"
    parts = [
        f"{report.records:,} records from {source}: {total.objects:,} objects, "
        f"{total.compliant:,} compliant, {total.noncompliant:,} not compliant ({share})",
        _groups("bucket", report.buckets),
        _groups("EK", report.keys),
        counts_table("action", total.actions),
    ]
    if report.failure_reasons:
        parts.append(counts_table("failure", report.failure_reasons))
    if report.noncompliant:
        rows = [[o.bucket, o.key, o.verdict or "", o.action] for o in report.noncompliant[:20]]
        more = report.noncompliant_total - len(rows)
        parts.append(
            format_table(["bucket", "still not compliant", "verdict", "action"], rows)
            + (f"\n... and {more:,} more (see the HTML report)" if more > 0 else "")
        )
    return "\n\n".join(parts)


def _groups(label: str, groups: Iterable[Group]) -> str:
    rows = [
        [g.name, g.objects, g.compliant, g.noncompliant,
         "-" if g.compliance is None else f"{g.compliance:.1f}%"]
        for g in groups
    ]  # fmt: skip
    return format_table([label, "objects", "compliant", "not compliant", "compliance"], rows)
