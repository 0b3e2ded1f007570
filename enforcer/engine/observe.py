"""The metrics of one handled object event (and, in audit mode, its one log line).

Every audit record the per-object guard publishes for an object event passes through
:func:`observe_handled`, so ``enforcer run`` and ``enforcer scan`` count the same things.
"""

from __future__ import annotations

import logging

from enforcer.core.events import ObjectEvent
from enforcer.core.policy import Mode
from enforcer.core.verdict import Action, Verdict
from enforcer.engine.records import AuditRecord
from enforcer.telemetry import COMPLIANCE_LATENCY, EVENT_DURATION, EVENTS, KEY_AVAILABLE, OBJECTS

log = logging.getLogger(__name__)


def observe_handled(event: ObjectEvent, record: AuditRecord, *, own_write: bool) -> None:
    """The metrics of one handled object event, and in audit mode its one INFO log line. The
    notification of the enforcer's own rewrite is not counted again per bucket: it was
    counted as ``fixed``."""
    action = record.action
    EVENTS.add(1, {"verdict": str(record.verdict), "action": action.value, "mode": record.mode})
    if not own_write and (result := _compliance(record)) is not None:
        OBJECTS.add(1, {"bucket": record.bucket, "result": result})
    EVENT_DURATION.record(record.duration_ms / 1000, {"action": action.value, "mode": record.mode})
    if action is Action.REENCRYPTED and record.required_key:
        KEY_AVAILABLE.set(1, {"key": record.required_key})
        if event.event_time is not None:  # the object's write → its new version verified
            latency = (record.timestamp - event.event_time).total_seconds()
            COMPLIANCE_LATENCY.record(max(latency, 0.0))
    if record.mode == Mode.AUDIT.value:
        log.info(
            "dry run: %s/%s is %s, action %s",
            record.bucket,
            record.key,
            record.verdict,
            action.value,
            extra={
                "bucket": record.bucket,
                "key": record.key,
                "verdict": str(record.verdict),
                "action": action.value,
            },
        )


_NONCOMPLIANT = frozenset({Verdict.PLAINTEXT, Verdict.SSE_S3, Verdict.WRONG_KEY, Verdict.SSE_C})


def _compliance(record: AuditRecord) -> str | None:
    """``enforcer_objects_total``'s result for one audited event; None (not counted) for an
    object that is gone or that no rule covers."""
    if record.action is Action.FAILED:
        return "failed"
    if record.action in (Action.REENCRYPTED, Action.PURGED):
        return "fixed"
    if record.verdict is Verdict.COMPLIANT:
        return "compliant"
    return "noncompliant" if record.verdict in _NONCOMPLIANT else None
