"""What happened to one event: the value the pipeline fills and the guard turns into records."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from enforcer.core.policy import RequiredKey
from enforcer.core.verdict import Action, Verdict
from enforcer.engine.objects import ObjectSnapshot, WriteResult


class Dependency(StrEnum):
    """A service the enforcer depends on, as the outage gate tells them apart."""

    STORAGE = "storage"
    KMS = "kms"


@dataclass
class Outcome:
    """What happened to one event; becomes its audit record."""

    verdict: Verdict | None = None
    action: Action = Action.NONE
    required: RequiredKey | None = None
    observed: ObjectSnapshot | None = None
    written: WriteResult | None = None
    purged_version_id: str | None = None
    reason: str | None = None
    #: The rewrite succeeded but a step after it failed (e.g. the purge): what, and why.
    post_rewrite_error: str | None = None
    attempts: int = 1
    notes: list[str] = field(default_factory=list)
    #: Dependencies this handling used successfully (the outage gate's evidence).
    used: set[Dependency] = field(default_factory=set)
    #: The event is the notification of the enforcer's own verified rewrite (no request made).
    own_write: bool = False
