from pathlib import Path

import pytest

from enforcer.core.policy import (
    BucketDefault,
    Mode,
    PolicyFile,
    Rule,
    Strategy,
    VersionsPolicy,
    from_bucket_default,
    load_policy_file,
    match_rule,
)
from enforcer.errors import ConfigError

POLICY = PolicyFile(
    rules=(
        Rule(bucket="fin", key="fin-default"),
        Rule(bucket="fin", prefix="invoices/", key="fin-invoices"),
        Rule(bucket="fin", prefix="invoices/2026/", key="fin-2026", mode=Mode.AUDIT),
        Rule(bucket="hr", prefix="x", key="hr-x", strategy=Strategy.ENVELOPE),
    )
)


@pytest.mark.parametrize(
    ("bucket", "key", "expected"),
    [
        ("fin", "readme.txt", "fin-default"),
        ("fin", "invoices/a.pdf", "fin-invoices"),
        ("fin", "invoices/2026/a.pdf", "fin-2026"),  # longest prefix wins
        ("fin", "invoices", "fin-default"),  # prefix is a string prefix, not a folder
        ("hr", "xyz", "hr-x"),
        ("hr", "y", None),
        ("other", "invoices/a.pdf", None),
        ("FIN", "readme.txt", None),  # bucket names match exactly
    ],
)
def test_longest_prefix_wins(bucket: str, key: str, expected: str | None) -> None:
    required = match_rule(POLICY, bucket, key)
    assert (required.key if required else None) == expected


def test_rule_fields_carry_over() -> None:
    required = match_rule(POLICY, "fin", "invoices/2026/x")
    assert required is not None
    assert required.mode is Mode.AUDIT
    assert required.source == "policy:fin/invoices/2026/"
    envelope = match_rule(POLICY, "hr", "x1")
    assert envelope is not None and envelope.strategy is Strategy.ENVELOPE


def test_bucket_default() -> None:
    assert from_bucket_default(None) is None
    assert from_bucket_default(BucketDefault("")) is None
    required = from_bucket_default(BucketDefault("ek-1"))
    assert required is not None
    assert (required.key, required.source, required.versions, required.strategy) == (
        "ek-1",
        "bucket-default",
        VersionsPolicy.KEEP,
        Strategy.SSE_KMS,
    )


def test_a_dual_layer_default_requires_dual_layer_objects() -> None:
    required = from_bucket_default(BucketDefault("ek-1", dsse=True))
    assert required is not None and required.strategy is Strategy.DSSE_KMS
    assert Strategy.DSSE_KMS.server_side and not Strategy.ENVELOPE.server_side


def test_a_rule_may_ask_for_dual_layer() -> None:
    policy = PolicyFile.model_validate({"rules": [{"bucket": "b", "key": "k",
                                                    "strategy": "dsse-kms"}]})  # fmt: skip
    required = match_rule(policy, "b", "x")
    assert required is not None and required.strategy is Strategy.DSSE_KMS


def test_load_policy_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(
        "rules:\n"
        "  - {bucket: a, key: k1}\n"
        "  - {bucket: a, prefix: p/, key: 'arn:aws:kms:k2', accepted_keys: [k1],\n"
        "     versions: purge-noncompliant}\n"
    )
    policy = load_policy_file(path)
    assert len(policy.rules) == 2
    assert policy.rules[1].accepted_keys == ("k1",)
    assert policy.rules[1].versions is VersionsPolicy.PURGE_NONCOMPLIANT


def test_empty_rules_list_is_valid(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("rules: []\n")
    assert load_policy_file(path).rules == ()
    assert load_policy_file(None).rules == ()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("rules: [", "not valid YAML"),
        ("rules:\n  - {bucket: a}\n", "rules.0.key"),
        ("rules:\n  - {bucket: a, key: k, strategy: rot13}\n", "rules.0.strategy"),
        ("rules:\n  - {bucket: a, key: k, colour: red}\n", "rules.0.colour"),
        ("rules:\n  - {bucket: a, key: 'arn:aws:s3:::x'}\n", "rules.0.key"),
        ("rulez: []\n", "rulez"),
    ],
)
def test_bad_policy_files_name_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_policy_file(path)


def test_missing_policy_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="No such file"):
        load_policy_file(tmp_path / "nope.yaml")
