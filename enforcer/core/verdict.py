"""Object facts + requirement → verdict and planned action (pure).

The storage adapter turns a HEAD into :class:`ObjectFacts`; the shell resolves key references to
canonical form (:mod:`enforcer.core.keyref`, AWS aliases through DescribeKey) before calling
:func:`decide`, so comparison here is exact string equality.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from enforcer.core.policy import Mode, RequiredKey, Strategy, effective_mode


class Encryption(StrEnum):
    NONE = "none"
    SSE_S3 = "AES256"
    SSE_KMS = "aws:kms"
    SSE_KMS_DSSE = "aws:kms:dsse"  # dual-layer SSE-KMS (AWS)
    SSE_C = "sse-c"
    ENVELOPE = "envelope"


#: What each strategy's objects may be encrypted with to count as done. Dual-layer SSE-KMS is
#: SSE-KMS with a second layer of encryption: an ``sse-kms`` rule accepts it under the right key
#: (rewriting it as single-layer would be a silent downgrade); a ``dsse-kms`` rule accepts only
#: dual-layer objects, so a single-layer one is rewritten as dual-layer.
SATISFIES = {
    Strategy.SSE_KMS: frozenset({Encryption.SSE_KMS, Encryption.SSE_KMS_DSSE}),
    Strategy.DSSE_KMS: frozenset({Encryption.SSE_KMS_DSSE}),
    Strategy.ENVELOPE: frozenset({Encryption.ENVELOPE}),
}


def satisfies(encryption: Encryption, strategy: Strategy) -> bool:
    """``encryption`` is what ``strategy`` produces (or stronger), whatever the key."""
    return encryption in SATISFIES[strategy]


def rewrite_dual_layer(observed: Encryption, strategy: Strategy) -> bool:
    """Whether an SSE-KMS rewrite must ask for dual-layer (``aws:kms:dsse``): when the rule (or
    the bucket default) is dual-layer, and when the object is dual-layer already (under another
    key) — a rewrite never takes a layer away."""
    return strategy is Strategy.DSSE_KMS or observed is Encryption.SSE_KMS_DSSE


class Verdict(StrEnum):
    COMPLIANT = "compliant"
    PLAINTEXT = "plaintext"
    SSE_S3 = "sse_s3"
    WRONG_KEY = "wrong_key"
    SSE_C = "sse_c"
    GONE = "gone"
    OUT_OF_SCOPE = "out_of_scope"


class Action(StrEnum):
    NONE = "none"
    REENCRYPTED = "reencrypted"
    WOULD_REENCRYPT = "would_reencrypt"
    FAILED = "failed"
    SKIPPED = "skipped"
    PURGED = "purged"  # a non-compliant non-current version deleted (versions: purge-noncompliant)
    WOULD_PURGE = "would_purge"
    REWRITING = "rewriting"  # intent: published (and acknowledged) before a write starts


class Plan(StrEnum):
    NOTHING = "nothing"
    REENCRYPT = "reencrypt"
    REPORT = "report"  # dry run: say what would be done


@dataclass(frozen=True)
class ObjectFacts:
    """What a HEAD told us. ``kms_key`` is canonical (see keyref)."""

    encryption: Encryption
    kms_key: str | None = None


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    plan: Plan

    @property
    def action(self) -> Action:
        """The action recorded when the plan is carried out (or not needed)."""
        return {
            Plan.NOTHING: Action.SKIPPED
            if self.verdict in (Verdict.SSE_C, Verdict.GONE)
            else Action.NONE,
            Plan.REENCRYPT: Action.REENCRYPTED,
            Plan.REPORT: Action.WOULD_REENCRYPT,
        }[self.plan]


def classify(  # noqa: PLR0911 - one return per verdict reads as the table it is
    facts: ObjectFacts | None, required: RequiredKey | None, accepted: frozenset[str]
) -> Verdict:
    """The verdict alone. ``accepted`` holds the canonical forms of the required/accepted keys."""
    if facts is None:
        return Verdict.GONE
    if required is None:
        return Verdict.OUT_OF_SCOPE
    if facts.encryption is Encryption.SSE_C:
        return Verdict.SSE_C
    if satisfies(facts.encryption, required.strategy):
        return Verdict.COMPLIANT if facts.kms_key in accepted else Verdict.WRONG_KEY
    if facts.encryption is Encryption.SSE_S3:
        return Verdict.SSE_S3
    if facts.encryption is Encryption.NONE:
        return Verdict.PLAINTEXT
    return Verdict.WRONG_KEY  # under a KMS key, but not as the strategy requires


def decide(
    facts: ObjectFacts | None,
    required: RequiredKey | None,
    accepted: frozenset[str],
    mode: Mode,
) -> Decision:
    """Verdict plus what to do about it under ``mode`` and the rule's own mode (audit wins)."""
    verdict = classify(facts, required, accepted)
    if verdict not in (Verdict.PLAINTEXT, Verdict.SSE_S3, Verdict.WRONG_KEY):
        return Decision(verdict, Plan.NOTHING)
    assert required is not None  # non-compliant verdicts only arise with a requirement
    effective = effective_mode(mode, required.mode)
    plan = Plan.REENCRYPT if effective is Mode.ENFORCE else Plan.REPORT
    return Decision(verdict, plan)
