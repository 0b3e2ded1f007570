"""The compliance report (enforcer.report.model, .html): latest word per object, groups,
timeline, and a page with no external resource."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from enforcer import telemetry
from enforcer.cli import main
from enforcer.engine.records import NONCURRENT_EVENT, ScanLine
from enforcer.report.html import render_html
from enforcer.report.model import bin_size, identity, state_of
from enforcer.report.store import build_report

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


# ---------------------------------------------------------------- the streaming store


def reference(lines: list[ScanLine]) -> dict[str, object]:
    """The figures computed the plain way: every record in memory, a stable sort by time."""
    ordered = sorted(lines, key=lambda line: line.timestamp)
    latest = {identity(line): line for line in ordered}
    states = {ident: state_of(line) for ident, line in latest.items()}
    span = ordered[-1].timestamp - ordered[0].timestamp
    size = bin_size(span)
    points: list[tuple[datetime, int, int, int]] = []
    replay: dict[tuple[str, str, str], str] = {}
    n, end = 0, ordered[0].timestamp
    while n < len(ordered) or not points:
        end += size
        while n < len(ordered) and ordered[n].timestamp < end:
            replay[identity(ordered[n])] = state_of(ordered[n])
            n += 1
        counted = [s for s in replay.values() if s != "uncounted"]
        points.append((end, n, counted.count("compliant"), len(counted)))
    return {
        "objects": len(latest),
        "compliant": list(states.values()).count("compliant"),
        "noncompliant": sorted(
            (line.bucket, line.key, line.version_id or "")
            for ident, line in latest.items()
            if states[ident] == "noncompliant"
        ),
        "failed": sorted(identity(line) for line in latest.values() if line.action == "failed"),
        "timeline": points,
        "buckets": sorted({line.bucket for line in latest.values()}),
    }


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["b1", "b2"]),
            st.sampled_from(["k1", "k2", "k3"]),
            st.sampled_from([None, "v1"]),
            st.sampled_from(["compliant", "plaintext", "gone", None]),
            st.sampled_from(["none", "reencrypted", "failed", "skipped", "would_reencrypt"]),
            st.integers(min_value=0, max_value=600),  # minutes: ties and any order
        ),
        min_size=1,
        max_size=40,
    )
)
def test_the_store_gives_the_figures_of_the_plain_computation(
    rows: list[tuple[str, str, str | None, str | None, str, int]],
) -> None:
    lines = [
        ScanLine.model_validate(
            {"bucket": b, "key": k, "version_id": v, "is_latest": v is None, "verdict": verdict,
             "action": action, "reason": "key_missing: x" if action == "failed" else None,
             "timestamp": T0 + timedelta(minutes=minute)}
        )
        for b, k, v, verdict, action, minute in rows
    ]  # fmt: skip
    report, expected = build_report(lines), reference(lines)
    assert report.records == len(lines)
    assert (report.total.objects, report.total.compliant) == (
        expected["objects"],
        expected["compliant"],
    )
    listed = sorted((o.bucket, o.key, o.version_id or "") for o in report.noncompliant)
    assert (report.noncompliant_total, listed) == (len(expected["noncompliant"]),  # type: ignore[arg-type]
                                                   expected["noncompliant"])  # fmt: skip
    assert sorted(identity(f) for f in report.failures) == expected["failed"]
    assert [(p.end, p.records, p.compliant, p.counted) for p in report.timeline] == expected[
        "timeline"
    ]
    assert [g.name for g in report.buckets] == expected["buckets"]
    assert sum(g.objects for g in report.buckets) == report.total.objects


def test_report_json_prints_the_figures_and_writes_no_page_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scan = tmp_path / "scan.jsonl"
    scan.write_text(
        "\n".join(
            line(key, verdict, action).model_dump_json()
            for key, verdict, action in [("a", "compliant", "none"), ("b", "plaintext", "failed")]
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(telemetry, "configure", lambda version: None)  # the session's stays
    assert main(["report", "--input", str(scan), "--json"]) == 0
    figures = json.loads(capsys.readouterr().out)
    assert figures["source"] == str(scan)
    assert (figures["records"], figures["total"]["objects"], figures["total"]["compliant"]) == (
        2,
        2,
        1,
    )
    assert figures["buckets"][0]["verdicts"] == {"compliant": 1, "plaintext": 1}
    assert [o["key"] for o in figures["noncompliant"]] == ["b"]
    assert figures["failure_reasons"] == {"unknown": 1}
    assert not (tmp_path / "enforcer-report.html").exists()
    assert main(["report", "--input", str(scan), "--json", "--html", "page.html"]) == 0
    assert (tmp_path / "page.html").read_text().startswith("<!DOCTYPE html>")
