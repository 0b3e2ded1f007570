import pytest

from enforcer.core.policy import Mode, RequiredKey, Strategy
from enforcer.core.verdict import (
    Action,
    Encryption,
    ObjectFacts,
    Plan,
    Verdict,
    classify,
    decide,
    rewrite_dual_layer,
)

REQ = RequiredKey(key="ek", source="bucket-default")
ENVELOPE = RequiredKey(key="ek", strategy=Strategy.ENVELOPE, source="policy:b/")
DSSE = RequiredKey(key="ek", strategy=Strategy.DSSE_KMS, source="bucket-default")
ACCEPTED = frozenset({"ek", "ek-old"})


def facts(encryption: Encryption, kms_key: str | None = None) -> ObjectFacts:
    return ObjectFacts(encryption=encryption, kms_key=kms_key)


@pytest.mark.parametrize(
    ("observed", "required", "verdict"),
    [
        (None, REQ, Verdict.GONE),
        (facts(Encryption.NONE), None, Verdict.OUT_OF_SCOPE),
        (facts(Encryption.SSE_KMS, "ek"), REQ, Verdict.COMPLIANT),
        (facts(Encryption.SSE_KMS, "ek-old"), REQ, Verdict.COMPLIANT),  # rotation window
        (facts(Encryption.SSE_KMS, "other"), REQ, Verdict.WRONG_KEY),
        (facts(Encryption.SSE_KMS, "ek2"), REQ, Verdict.WRONG_KEY),
        (facts(Encryption.SSE_KMS, None), REQ, Verdict.WRONG_KEY),
        (facts(Encryption.NONE), REQ, Verdict.PLAINTEXT),
        (facts(Encryption.SSE_S3), REQ, Verdict.SSE_S3),
        (facts(Encryption.SSE_C), REQ, Verdict.SSE_C),
        (facts(Encryption.ENVELOPE, "ek"), REQ, Verdict.WRONG_KEY),  # other strategy
        (facts(Encryption.ENVELOPE, "ek"), ENVELOPE, Verdict.COMPLIANT),
        (facts(Encryption.ENVELOPE, "x"), ENVELOPE, Verdict.WRONG_KEY),
        (facts(Encryption.SSE_KMS, "ek"), ENVELOPE, Verdict.WRONG_KEY),
        (facts(Encryption.NONE), ENVELOPE, Verdict.PLAINTEXT),
        # dual-layer SSE-KMS: stronger than single-layer, so an sse-kms rule accepts it ...
        (facts(Encryption.SSE_KMS_DSSE, "ek"), REQ, Verdict.COMPLIANT),
        (facts(Encryption.SSE_KMS_DSSE, "other"), REQ, Verdict.WRONG_KEY),
        # ... and a dual-layer requirement accepts nothing less
        (facts(Encryption.SSE_KMS_DSSE, "ek"), DSSE, Verdict.COMPLIANT),
        (facts(Encryption.SSE_KMS_DSSE, "ek-old"), DSSE, Verdict.COMPLIANT),
        (facts(Encryption.SSE_KMS, "ek"), DSSE, Verdict.WRONG_KEY),
        (facts(Encryption.SSE_S3), DSSE, Verdict.SSE_S3),
        (facts(Encryption.NONE), DSSE, Verdict.PLAINTEXT),
        (facts(Encryption.SSE_KMS_DSSE, "ek"), ENVELOPE, Verdict.WRONG_KEY),
    ],
)
def test_classify(
    observed: ObjectFacts | None, required: RequiredKey | None, verdict: Verdict
) -> None:
    assert classify(observed, required, ACCEPTED) is verdict


@pytest.mark.parametrize(
    ("observed", "mode", "plan", "action"),
    [
        (facts(Encryption.NONE), Mode.ENFORCE, Plan.REENCRYPT, Action.REENCRYPTED),
        (facts(Encryption.SSE_S3), Mode.ENFORCE, Plan.REENCRYPT, Action.REENCRYPTED),
        (facts(Encryption.SSE_KMS, "x"), Mode.ENFORCE, Plan.REENCRYPT, Action.REENCRYPTED),
        (facts(Encryption.NONE), Mode.AUDIT, Plan.REPORT, Action.WOULD_REENCRYPT),
        (facts(Encryption.SSE_KMS, "ek"), Mode.ENFORCE, Plan.NOTHING, Action.NONE),
        (facts(Encryption.SSE_C), Mode.ENFORCE, Plan.NOTHING, Action.SKIPPED),
        (None, Mode.ENFORCE, Plan.NOTHING, Action.SKIPPED),
    ],
)
def test_decide(observed: ObjectFacts | None, mode: Mode, plan: Plan, action: Action) -> None:
    decision = decide(observed, REQ, ACCEPTED, mode)
    assert (decision.plan, decision.action) == (plan, action)


def test_audit_wins_between_rule_mode_and_global_mode() -> None:
    audit_rule = RequiredKey(key="ek", mode=Mode.AUDIT, source="policy:b/")
    assert decide(facts(Encryption.NONE), audit_rule, ACCEPTED, Mode.ENFORCE).plan is Plan.REPORT
    enforce_rule = RequiredKey(key="ek", mode=Mode.ENFORCE, source="policy:b/")
    assert (
        decide(facts(Encryption.NONE), enforce_rule, ACCEPTED, Mode.ENFORCE).plan is Plan.REENCRYPT
    )
    # A global dry run (--dry-run, enforcer check) writes nothing, whatever a rule says.
    assert decide(facts(Encryption.NONE), enforce_rule, ACCEPTED, Mode.AUDIT).plan is Plan.REPORT


def test_out_of_scope_does_nothing() -> None:
    decision = decide(facts(Encryption.NONE), None, frozenset(), Mode.ENFORCE)
    assert (decision.verdict, decision.action) == (Verdict.OUT_OF_SCOPE, Action.NONE)


@pytest.mark.parametrize(
    ("observed", "strategy", "dual"),
    [
        (Encryption.NONE, Strategy.SSE_KMS, False),
        (Encryption.SSE_KMS, Strategy.SSE_KMS, False),
        (Encryption.SSE_KMS_DSSE, Strategy.SSE_KMS, True),  # never take a layer away
        (Encryption.NONE, Strategy.DSSE_KMS, True),
        (Encryption.SSE_KMS, Strategy.DSSE_KMS, True),
        (Encryption.SSE_S3, Strategy.DSSE_KMS, True),
    ],
)
def test_a_rewrite_asks_for_dual_layer_when_required_or_already_there(
    observed: Encryption, strategy: Strategy, dual: bool
) -> None:
    assert rewrite_dual_layer(observed, strategy) is dual


def test_a_dual_layer_object_under_the_required_key_needs_nothing() -> None:
    decision = decide(facts(Encryption.SSE_KMS_DSSE, "ek"), REQ, ACCEPTED, Mode.ENFORCE)
    assert (decision.verdict, decision.plan) == (Verdict.COMPLIANT, Plan.NOTHING)
    upgrade = decide(facts(Encryption.SSE_KMS, "ek"), DSSE, ACCEPTED, Mode.ENFORCE)
    assert (upgrade.verdict, upgrade.plan) == (Verdict.WRONG_KEY, Plan.REENCRYPT)
