"""``enforcer report``: the compliance report, as a self-contained HTML file and a terminal table.

Input: the audit topic (``ENFORCER_KAFKA__AUDIT_TOPIC``), read from its beginning up to the end it
had when the command started, with no consumer group (nothing is committed), or the JSONL that
``enforcer scan --output jsonl`` wrote (``--input``, repeatable). The figures are described in
:mod:`enforcer.report.model`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from enforcer.cli.args import EXIT_OK, add_command, check_readable_file, check_writable
from enforcer.config import Settings
from enforcer.engine.records import ScanLine
from enforcer.errors import ConfigError
from enforcer.kafka.reader import read_to_end
from enforcer.report.html import render_html
from enforcer.report.lines import parse_line, read_lines
from enforcer.report.model import Group, Report
from enforcer.report.store import ReportStore
from enforcer.report.table import counts_table, format_table

log = logging.getLogger(__name__)

DEFAULT_HTML = Path("enforcer-report.html")


def add_report_command(commands: Any) -> None:
    report = add_command(
        commands,
        "report",
        "compliance report (HTML + table) from the audit topic or scan output",
        description="Read the audit topic (ENFORCER_KAFKA__AUDIT_TOPIC) from its beginning to "
        "the end it had at start, with no consumer group, or scan output files; count the "
        "latest record per object per bucket and per External Key, and write a self-contained "
        "HTML page plus tables on stdout (--json: the figures as JSON instead). Records stream "
        "through a scratch database in TMPDIR: memory stays flat however long the topic.",
        examples=["enforcer report",
                  "enforcer report --bucket finance --html /tmp/finance.html",
                  "enforcer report --input scan.jsonl --json | jq .total",
                  "enforcer scan s3://photos --dry-run --output jsonl --output-file p.jsonl && "
                  "enforcer report --input p.jsonl"],
    )  # fmt: skip
    report.add_argument(
        "--input",
        type=Path,
        action="append",
        default=[],
        metavar="JSONL",
        help="read scan output (or audit records) from this file instead (repeatable)",
    )
    report.add_argument(
        "--html",
        type=Path,
        help="where to write the page (default: enforcer-report.html; with --json: none)",
    )
    report.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    report.add_argument("--bucket", action="append", default=[], help="only these buckets")
    report.add_argument("--title", default="SSE-KMS compliance report")


def run_report(settings: Settings, args: argparse.Namespace) -> int:
    html = args.html or (None if args.json else DEFAULT_HTML)
    for path in args.input:
        check_readable_file(path, "--input")
    if html is not None:
        check_writable(html, "--html")
    buckets = set(args.bucket)
    with ReportStore() as store:
        if args.input:
            source = ", ".join(str(path) for path in args.input)
            for path in args.input:
                store.add_all(line for line in read_lines(path) if _wanted(line, buckets))
        else:
            source = f"audit topic {settings.kafka.audit_topic}"
            asyncio.run(_read_audit(settings, store, buckets))
        report = store.report()
    if html is not None:
        page = render_html(report, title=args.title, generated=datetime.now(UTC), source=source)
        try:
            html.write_text(page, encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{html}: {exc.strerror}") from exc
    if args.json:
        print(json.dumps({"source": source, **report.as_dict()}, indent=2))
    else:
        print(terminal_report(report, source))
    if html is not None:
        print(f"\nHTML report: {html}", file=sys.stderr)
    return EXIT_OK


def _wanted(line: ScanLine, buckets: set[str]) -> bool:
    return not buckets or line.bucket in buckets


async def _read_audit(settings: Settings, store: ReportStore, buckets: set[str]) -> None:
    """Stream the audit topic into ``store`` (records that are not audit records are counted
    and skipped)."""
    topic = settings.kafka.audit_topic
    unreadable = 0
    async for value in read_to_end(settings.kafka.options(), topic):
        try:
            line = parse_line(value or b"", topic)
        except ConfigError:
            unreadable += 1
            continue
        if _wanted(line, buckets):
            store.add(line)
    if unreadable:
        log.warning("skipped %d records of %s that are not audit records", unreadable, topic)


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
