"""schemas/ is generated from the pydantic models; this fails when the two drift apart."""

import json
import re
from pathlib import Path

import yaml

from enforcer.schemas import render_schemas

SCHEMAS = Path(__file__).parents[2] / "schemas"


def test_checked_in_schemas_match_the_models() -> None:
    rendered = render_schemas()
    on_disk = {p.name: p.read_text(encoding="utf-8") for p in SCHEMAS.glob("*.json")}
    assert sorted(on_disk) == sorted(rendered), "run `enforcer schemas` and commit schemas/"
    for name, text in rendered.items():
        assert on_disk[name] == text, f"schemas/{name} is stale: run `enforcer schemas`"


def test_audit_schema_is_flat_with_the_contract_fields_on_top() -> None:
    schema = json.loads((SCHEMAS / "audit-record.json").read_text())
    for field in (
        "bucket",
        "key",
        "verdict",
        "action",
        "mode",
        "event_id",
        "version_id",
        "required_key",
        "attempts",
        "duration_ms",
        "trace_id",
        "timestamp",
        "enforcer_version",
        "schema_version",
    ):
        assert field in schema["properties"], field
    verdicts = schema["$defs"]["Verdict"]["enum"]
    assert verdicts == [
        "compliant",
        "plaintext",
        "sse_s3",
        "wrong_key",
        "sse_c",
        "gone",
        "out_of_scope",
    ]
    assert schema["$defs"]["Action"]["enum"] == [
        "none",
        "reencrypted",
        "would_reencrypt",
        "failed",
        "skipped",
        "purged",
        "would_purge",
        "rewriting",
    ]


def test_asyncapi_references_existing_schemas() -> None:
    document = yaml.safe_load((SCHEMAS / "asyncapi.yaml").read_text())
    refs = re.findall(r"\./([\w-]+\.json)", (SCHEMAS / "asyncapi.yaml").read_text())
    assert refs and all((SCHEMAS / ref).exists() for ref in refs)
    assert {c["address"] for c in document["channels"].values()} == {
        "minio-events",
        "sse-enforcer.backfill",
        "sse-enforcer.audit",
        "sse-enforcer.dlq",
        "sse-enforcer.backfill-tasks",
        "sse-enforcer.backfill-progress",
    }
