"""The start-up checks over in-memory adapters: each bad setting is a ConfigError naming it."""

import logging
from pathlib import Path

import pytest
from doubles.kms import InMemoryKms
from scrape import value

from enforcer.cli.policy import PolicyCheck
from enforcer.config import KafkaSettings, Settings
from enforcer.core.policy import PolicyFile, Rule
from enforcer.engine.ports import KeyState
from enforcer.errors import (
    AccessDenied,
    ConfigError,
    CredentialsRejected,
    KafkaUnavailable,
    KmsUnavailable,
    StorageUnavailable,
)
from enforcer.preflight import check_buckets, check_kms, check_run, check_s3_credentials

SOURCE = "ENFORCER_POLICY_FILE p.yaml"


class Listing:
    """What the checks ask of the storage: credentials accepted? bucket there?"""

    def __init__(self, buckets: set[str], error: Exception | None = None) -> None:
        self.buckets, self.error = buckets, error

    async def authenticate(self) -> None:
        if self.error is not None:
            raise self.error

    async def bucket_exists(self, bucket: str) -> bool:
        if bucket == "forbidden":
            raise AccessDenied("HeadBucket forbidden: 403")
        return bucket in self.buckets


def policy(*rules: tuple[str, str, tuple[str, ...]]) -> PolicyFile:
    return PolicyFile(rules=[Rule(bucket=b, key=k, accepted_keys=a) for b, k, a in rules])


async def test_rejected_credentials_name_both_settings() -> None:
    listing = Listing(set(), CredentialsRejected("ListBuckets: SignatureDoesNotMatch"))
    with pytest.raises(ConfigError, match="ENFORCER_S3__SECRET_ACCESS_KEY"):
        await check_s3_credentials(listing)


@pytest.mark.parametrize(
    ("buckets", "message"),
    [(["a", "gone"], "'gone' .* does not exist"), (["forbidden"], "'forbidden' .* access denied")],
)
async def test_policy_buckets_must_exist_and_be_visible(buckets: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        await check_buckets(Listing({"a"}), buckets, SOURCE)
    await check_buckets(Listing({"a", "b"}), ["a", "b", "a"], SOURCE)


async def test_every_policy_key_must_exist_and_a_disabled_one_is_only_a_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kms = InMemoryKms(("ek", "old-ek", "off"))
    kms.set_state("off", KeyState.DISABLED)
    await check_kms(kms, policy(("a", "ek", ("old-ek",)), ("b", "off", ())), SOURCE)
    assert "policy key 'off' is disabled" in caplog.text
    with pytest.raises(ConfigError, match=r"policy key 'new-ek' .*ENFORCER_POLICY_FILE"):
        await check_kms(kms, policy(("a", "ek", ("new-ek",))), SOURCE)
    assert logging.WARNING in {r.levelno for r in caplog.records}


async def test_a_kms_that_is_down_at_start_is_left_to_the_outage_gate(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class DownKms(InMemoryKms):
        async def check_ready(self) -> None:
            raise KmsUnavailable("KES at https://kes:7373 is unreachable")

    settings = Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    down = Listing(set(), StorageUnavailable("down"))
    with pytest.raises(KafkaUnavailable):  # Kafka must answer; storage and KMS may be down
        await check_run(settings, settings.kafka.options(), down, DownKms(), policy())
    assert "could not check S3 at start" in caplog.text
    assert "could not check the KMS at start" in caplog.text


async def test_run_reports_a_missing_policy_bucket_and_key_and_starts_anyway(
    caplog: pytest.LogCaptureFixture,
) -> None:
    kms = InMemoryKms(("ek",))
    rules = policy(("kept", "ek", ()), ("deleted", "ek", ()), ("kept", "typo-ek", ()))
    settings = Settings(kafka=KafkaSettings(bootstrap_servers="127.0.0.1:1"))
    with pytest.raises(KafkaUnavailable):  # no ConfigError before the Kafka step
        await check_run(settings, settings.kafka.options(), Listing({"kept"}), kms, rules)
    errors = [r.getMessage() for r in caplog.records
              if r.levelno == logging.ERROR and r.name == "enforcer.preflight"]  # fmt: skip
    assert len(errors) == 2  # one line per missing name
    assert "policy bucket 'deleted'" in errors[0] and "audited as gone" in errors[0]
    assert "policy key 'typo-ek'" in errors[1] and "key_missing" in errors[1]
    assert value("enforcer_policy_bucket_missing", bucket="deleted") == 1
    assert value("enforcer_policy_bucket_missing", bucket="kept") == 0
    assert value("enforcer_key_available", key="typo-ek") == 0


async def test_the_strict_checks_still_refuse_what_does_not_exist() -> None:
    with pytest.raises(ConfigError, match=r"'deleted' .* does not exist"):
        await check_buckets(Listing({"kept"}), ["kept", "deleted"], SOURCE)
    with pytest.raises(ConfigError, match="policy key 'typo-ek'"):
        await check_kms(InMemoryKms(("ek",)), policy(("kept", "typo-ek", ())), SOURCE)


def test_policy_check_names_every_missing_bucket_and_key_in_one_line() -> None:
    check = PolicyCheck(Path("p.yaml"), {"kept": True, "gone": False}, {"ek": True, "nope": False})
    assert not check.ok
    assert check.problem() == (
        "policy file p.yaml (ENFORCER_POLICY_FILE) names what does not exist: "
        "bucket 'gone', key 'nope'"
    )
    assert check.as_dict()["buckets"] == {"kept": "exists", "gone": "missing"}
    assert PolicyCheck(Path("p.yaml"), {"kept": True}, None).as_dict()["keys"] is None
