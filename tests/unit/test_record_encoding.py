"""The fast record encoder writes the same JSON as the pydantic models, for any record.

Audit and dead-letter records are built (and validated) as pydantic models, the contract; the
sink writes them with :func:`enforcer.engine.records.encode_record` (msgspec). For records
generated from the models' own field types, both must read back as the same JSON document.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enforcer.core.verdict import Action, Verdict
from enforcer.engine.records import AuditRecord, DeadLetterRecord, encode_record, without_payload

_text = st.text() | st.sampled_from(["", "é\u2028\U0001f511", '"quoted"\\', "<script>"])
_maybe_text = st.none() | _text
_zones = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))]
)
_when = st.datetimes(timezones=st.none() | _zones)
_floats = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([0.0, -0.0, 1e-7, 1e21])


audits = st.builds(
    AuditRecord,
    event_id=_text, event_name=_maybe_text, bucket=_text, key=_text, version_id=_maybe_text,
    observed_sse=_maybe_text, observed_kms_key=_maybe_text, observed_etag=_maybe_text,
    required_key=_maybe_text, rule_source=_maybe_text, verdict=st.none() | st.sampled_from(Verdict),
    action=st.sampled_from(Action), reason=_maybe_text, new_version_id=_maybe_text,
    new_etag=_maybe_text, key_used=_maybe_text, purged_version_id=_maybe_text,
    post_rewrite_error=_maybe_text, strategy=_maybe_text, attempts=st.integers(),
    duration_ms=_floats, trace_id=_text, mode=_text, timestamp=_when, enforcer_version=_text,
)  # fmt: skip
dead_letters = st.builds(
    DeadLetterRecord,
    original_payload=_maybe_text, payload_encoding=_text, original_key=_maybe_text,
    truncated=st.booleans(), original_length=st.none() | st.integers(min_value=0),
    original_sha256=_maybe_text, topic=_text, partition=st.integers(), offset=st.integers(),
    error_class=_text, reason=_text, attempts=st.integers(), first_seen=_when, last_seen=_when,
    event_id=_maybe_text, enforcer_version=_text,
)  # fmt: skip


def same_json(record: AuditRecord | DeadLetterRecord) -> None:
    fast, reference = encode_record(record), record.model_dump_json().encode()
    assert json.loads(fast) == json.loads(reference)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(audits)
def test_audit_records_encode_as_pydantic_does(record: AuditRecord) -> None:
    same_json(record)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(dead_letters)
def test_dead_letter_records_encode_as_pydantic_does(record: DeadLetterRecord) -> None:
    same_json(record)
    same_json(without_payload(record))


def test_the_encoding_is_the_contracts_field_order_and_names() -> None:
    record = AuditRecord(event_id="e", bucket="b", key="k", action=Action.NONE,
                         verdict=Verdict.COMPLIANT, duration_ms=1.5, mode="enforce",
                         timestamp=datetime(2026, 12, 4, 20, 0, tzinfo=UTC),
                         enforcer_version="0.1.0")  # fmt: skip
    fast = encode_record(record)
    assert list(json.loads(fast)) == list(AuditRecord.model_fields)
    assert b'"timestamp":"2026-12-04T20:00:00Z"' in fast
    assert b'"verdict":"compliant"' in fast
