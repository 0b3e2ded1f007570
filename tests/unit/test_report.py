"""The compliance report (enforcer.report.model, .html): latest word per object, groups,
timeline, and a page with no external resource."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

from enforcer.engine.records import NONCURRENT_EVENT, ScanLine
from enforcer.report.html import render_html
from enforcer.report.model import build_report

T0 = datetime(2026, 12, 1, 9, tzinfo=UTC)


def line(key: str, verdict: str | None, action: str, minute: int = 0, **extra: object) -> ScanLine:
    fields = {"bucket": "b", "key": key, "verdict": verdict, "action": action,
              "required_key": "ek", "timestamp": T0 + timedelta(minutes=minute)}  # fmt: skip
    return ScanLine.model_validate(fields | extra)


def test_the_latest_record_per_object_counts() -> None:
    report = build_report(
        [
            line("a", "plaintext", "would_reencrypt", 0),
            line("a", "plaintext", "reencrypted", 5),  # fixed later
            line("b", "compliant", "none", 1),
            line("c", "wrong_key", "failed", 2, reason="key_missing: gone"),
            line("d", "gone", "skipped", 3),
            line("v", "plaintext", "purged", 4, version_id="1", event_name=NONCURRENT_EVENT),
            line("v", "compliant", "none", 4),  # the current version of the same key
        ]
    )
    assert report.records == 7
    total = report.total
    assert (total.objects, total.compliant, total.noncompliant) == (6, 4, 1)
    assert total.compliance == 80.0
    assert [f.key for f in report.failures] == ["c"]
    assert report.failure_reasons == {"key_missing": 1}
    assert [o.key for o in report.noncompliant] == ["c"]


def test_the_timeline_replays_in_time_order() -> None:
    report = build_report(
        [line("a", "plaintext", "would_reencrypt", 0), line("a", "plaintext", "reencrypted", 30)]
    )
    points = report.timeline
    assert points[0].compliant == 0 and points[0].counted == 1
    assert points[-1].compliant == 1 and points[-1].records == 2


def test_the_page_is_self_contained_and_carries_its_numbers() -> None:
    report = build_report([line("a</script>", "plaintext", "failed", reason="<b>x</b>")])
    page = render_html(report, title="t", generated=T0, source="test")
    assert not re.search(r"(src|href)=", page)  # no external script, style, font or image
    data = page.split('id="report-data">')[1].split("</script>")[0]
    assert json.loads(data.replace("<\\/", "</"))["buckets"][0]["noncompliant"] == 1
    assert "<b>x</b>" not in page and "&lt;b&gt;x&lt;/b&gt;" in page


def test_terminal_tables_align_numbers_and_show_shares() -> None:
    from enforcer.report.table import counts_table, format_table

    table = counts_table("verdict", {"compliant": 3, "plaintext": 1})
    lines = table.splitlines()
    assert lines[0].split() == ["verdict", "objects", "%"]
    assert lines[2].split() == ["compliant", "3", "75.0"]
    assert format_table(["a", "n"], [["x", 1234]]).splitlines()[2] == "x  1,234"
