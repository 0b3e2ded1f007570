"""JSON Schemas of the contract, generated from the pydantic models (``enforcer schemas``).

``schemas/`` is checked in; a test regenerates it and fails when the two differ.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from enforcer.config import Settings
from enforcer.core.events import EventBridgeEvent, S3Notification
from enforcer.core.policy import PolicyFile
from enforcer.crypto.envelope import metadata_json_schema
from enforcer.engine.range_tasks import RangeProgress, RangeTask
from enforcer.engine.records import AuditRecord, DeadLetterRecord, ScanLine


def _models() -> dict[str, type[BaseModel]]:
    return {
        "audit-record": AuditRecord,
        "dlq-record": DeadLetterRecord,
        "input-s3-notification": S3Notification,
        "input-eventbridge": EventBridgeEvent,
        "policy-file": PolicyFile,
        "config": Settings,
        "scan-line": ScanLine,
        "backfill-range-task": RangeTask,
        "backfill-range-progress": RangeProgress,
    }


def render_schemas() -> dict[str, str]:
    """File name → JSON text, deterministic."""
    schemas: dict[str, dict[str, Any]] = {
        name: model.model_json_schema(by_alias=True) for name, model in _models().items()
    }
    schemas["envelope-metadata"] = metadata_json_schema()
    rendered = {}
    for name, body in schemas.items():
        document = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"https://sse-enforcer.dev/schemas/{name}.json",
            **body,
        }
        rendered[f"{name}.json"] = json.dumps(document, indent=2, sort_keys=True) + "\n"
    return rendered


def write_schemas(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written
