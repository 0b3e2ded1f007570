"""``enforcer report`` on the real stack, checked in a real headless browser: the page renders,
its charts draw (SVG bars and points exist after the script ran), and its numbers are the ones
the audit records say. A screenshot is kept (under ``$SSE_ENFORCER_ARTIFACTS`` in CI)."""

from __future__ import annotations

import re
import uuid
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from browser import dump_dom, keep_artifact, screenshot
from cli_runner import Cli
from harness import set_default_key, write_policy
from support import MakeBucket, MakeKey, StackEnv


@pytest.fixture
def cli(stack: StackEnv) -> Cli:
    return Cli(stack)


class Elements(HTMLParser):
    """Every start tag with its attributes, plus the text of table cells by table."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, {k: v or "" for k, v in attrs}))

    def find(self, tag: str, **wanted: str) -> list[dict[str, str]]:
        return [
            attrs
            for name, attrs in self.tags
            if name == tag and all(attrs.get(k.replace("_", "-")) == v for k, v in wanted.items())
        ]


def expected_states(audit: list[dict[str, Any]]) -> dict[str, Counter[str]]:
    """Per bucket: compliant / noncompliant objects, from the audit records (latest per key)."""
    latest = {(r["bucket"], r["key"]): r for r in sorted(audit, key=lambda r: r["timestamp"])}
    states: dict[str, Counter[str]] = {}
    for (bucket, _), r in latest.items():
        fixed = r["verdict"] == "compliant" or r["action"] == "reencrypted"
        states.setdefault(bucket, Counter())["compliant" if fixed else "noncompliant"] += 1
    return states


def _objects(s3: Any, make_key: MakeKey, make_bucket: MakeBucket, tmp_path: Path) -> list[str]:
    """Bucket A: 6 compliant, 3 plaintext, 1 SSE-S3 (dry run: stay non-compliant); bucket B:
    2 objects whose required EK does not exist (fail)."""
    ek = make_key("report")
    a, b = make_bucket(notify=False), make_bucket(notify=False)
    for i in range(6):
        s3.put_object(Bucket=a, Key=f"ok/{i}", Body=b"k", ServerSideEncryption="aws:kms",
                      SSEKMSKeyId=ek)  # fmt: skip
    for i in range(3):
        s3.put_object(Bucket=a, Key=f"plain/{i}", Body=b"p")
    s3.put_object(Bucket=a, Key="sse-s3", Body=b"s", ServerSideEncryption="AES256")
    set_default_key(s3, a, ek)
    for i in range(2):
        s3.put_object(Bucket=b, Key=f"doomed/{i}", Body=b"d")
    return [a, b, f"ek-missing-{uuid.uuid4().hex[:8]}"]


async def test_the_report_renders_draws_and_matches_the_audit_records(
    cli: Cli, s3_admin: Any, make_key: MakeKey, make_bucket: MakeBucket, tmp_path: Path
) -> None:
    a, b, missing = _objects(s3_admin, make_key, make_bucket, tmp_path)
    policy = write_policy(tmp_path / "policy.yaml", {"bucket": b, "key": missing})
    lines = tmp_path / "a.jsonl"
    dry = cli("scan", f"s3://{a}", "--dry-run", "--output", "jsonl", "--output-file", str(lines),
              "--checkpoint", str(tmp_path / "a.json"))  # fmt: skip
    assert dry.returncode == 0, dry.stderr
    failing = cli("scan", f"s3://{b}", "--checkpoint", str(tmp_path / "b.json"),
                  ENFORCER_POLICY_FILE=str(policy))  # fmt: skip
    assert failing.returncode == 1, failing.stderr
    page = tmp_path / "report.html"

    result = cli("report", "--html", str(page))

    assert result.returncode == 0, result.stderr
    assert re.search(r"12 objects, 6 compliant, 6 not compliant", result.stdout), result.stdout
    html = page.read_text()
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")  # self-contained
    assert "https://" not in html
    dom = Elements()
    dom.feed(dump_dom(page, tmp_path / "profile"))
    assert dom.find("body", data_charts="drawn"), "the chart script did not run"
    expected = expected_states(await cli.audit())
    assert expected == {a: Counter(compliant=6, noncompliant=4), b: Counter(noncompliant=2)}
    for bucket, states in expected.items():
        for state, count in states.items():
            bars = dom.find("rect", data_group=bucket, data_state=state)
            assert [int(bar["data-count"]) for bar in bars] == [count], (bucket, state)
    assert dom.find("circle", **{"class": "point"}), "no point on the compliance-over-time chart"
    actions = {bar["data-group"]: int(bar["data-count"]) for bar in dom.find("rect")
               if bar.get("class") == "bar" and "data-state" not in bar}  # fmt: skip
    assert actions == {"none": 6, "would_reencrypt": 4, "failed": 2}
    assert missing in html and "key_missing" in html  # failures with their reason
    picture = screenshot(page, tmp_path / "report.png", tmp_path / "profile")
    assert picture.stat().st_size > 10_000
    keep_artifact(picture)

    from_file = cli("report", "--input", str(lines), "--html", str(tmp_path / "a.html"))
    assert from_file.returncode == 0, from_file.stderr
    assert "10 objects, 6 compliant, 4 not compliant" in from_file.stdout
