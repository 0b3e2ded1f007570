"""Key status reports (enforcer.cli.keys) against the in-memory KMS."""

from __future__ import annotations

import pytest
from doubles.kms import InMemoryKms

from enforcer.cli.keys import StatusReport, check_keys, keys_from_policy, run_keys_status
from enforcer.config import Settings
from enforcer.core.policy import PolicyFile, Rule
from enforcer.engine.ports import KeyState
from enforcer.errors import ConfigError


def report_for(*rules: Rule) -> StatusReport:
    report = StatusReport(kms={"kind": "fake"})
    keys_from_policy(report, PolicyFile(rules=rules))
    return report


def test_every_key_and_accepted_key_is_listed_once_by_canonical_name() -> None:
    report = report_for(
        Rule(bucket="a", key="arn:aws:kms:ek", accepted_keys=("old",)),
        Rule(bucket="b", prefix="p/", key="ek"),
    )
    assert {k: v.used_by for k, v in report.keys.items()} == {
        "ek": ["policy:a/", "policy:b/p/"],
        "old": ["policy:a/ (accepted)"],
    }


@pytest.mark.parametrize(
    ("change", "state"),
    [
        (lambda kms: None, "enabled"),
        (lambda kms: kms.set_state("ek", KeyState.DISABLED), "disabled"),
        (lambda kms: kms.set_state("ek", KeyState.PENDING_DELETION), "pending_deletion"),
        (lambda kms: kms.delete_key("ek"), "missing"),
        (lambda kms: kms.denied.add("ek"), "denied"),
    ],
)
async def test_key_states(change, state: str) -> None:  # type: ignore[no-untyped-def]
    kms = InMemoryKms(keys=("ek",))
    change(kms)
    report = report_for(Rule(bucket="a", key="ek"))
    await check_keys(report, kms)
    assert report.kms["ready"] is True
    assert report.keys["ek"].state == state
    assert report.ok is (state == "enabled")
    assert report.as_dict()["ok"] is report.ok


async def test_an_unreachable_kms_is_not_ok_and_keys_are_unknown() -> None:
    kms = InMemoryKms(keys=("ek",))
    kms.available = False
    report = report_for(Rule(bucket="a", key="ek"))
    await check_keys(report, kms)
    assert report.kms["ready"] is False and "kms_unavailable" in report.kms["error"]
    assert report.keys["ek"].state == "unknown"
    assert not report.ok and kms.calls.get("describe") is None


async def test_no_kms_is_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="cannot be checked without a KMS"):
        await run_keys_status(Settings(), [], all_buckets=False)
