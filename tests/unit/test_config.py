import subprocess
import sys
from pathlib import Path

import pytest

from enforcer.config import load_settings
from enforcer.errors import ConfigError


def test_defaults_match_the_contract() -> None:
    settings = load_settings()
    assert settings.kafka.group_id == "sse-enforcer"
    assert settings.kafka.audit_topic == "sse-enforcer.audit"
    assert settings.kafka.dlq_topic == "sse-enforcer.dlq"
    assert settings.kafka.auto_offset_reset == "earliest"  # a first deployment misses nothing
    assert settings.mode.value == "enforce"
    assert settings.kms.kind == "none"


def test_env_beats_file_and_nested_delimiter(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("kafka: {group_id: from-file, topics: [a, b]}\nmode: audit\n")
    monkeypatch.setenv("ENFORCER_KAFKA__GROUP_ID", "from-env")
    settings = load_settings(config)
    assert settings.kafka.group_id == "from-env"
    assert settings.kafka.topics == ["a", "b"]
    assert settings.mode.value == "audit"


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("ENFORCER_CONCURRENCY", "zero", "concurrency"),
        ("ENFORCER_KAFKA__TOPICS", "[]", "ENFORCER_KAFKA__TOPICS"),
        ("ENFORCER_KAFKA__GROUPID", "x", "ENFORCER_KAFKA__GROUPID"),
        ("ENFORCER_MODEE", "audit", "ENFORCER_MODEE"),
        ("ENFORCER_MODE", "yolo", "mode"),
        ("ENFORCER_KMS__KIND", "kes", "kms.endpoint"),
        ("ENFORCER_S3__PART_SIZE", "1024", "part_size"),
    ],
)
def test_bad_configuration_names_the_field(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, message: str
) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError, match=message):
        load_settings()


def test_cli_exits_2_naming_the_field() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "enforcer", "check", "s3://b/k"],
        env={"ENFORCER_CONCURRENCY": "-3", "PATH": "/usr/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "ENFORCER_CONCURRENCY" in result.stderr


@pytest.mark.parametrize("url", ["b/k", "s3://", "s3://bucket", "s3:///key"])
def test_cli_rejects_bad_object_urls(url: str) -> None:
    result = subprocess.run(  # noqa: S603 - our own module
        [sys.executable, "-m", "enforcer", "check", url],
        env={"PATH": "/usr/bin"}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "s3://bucket/key" in result.stderr


def test_version() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "enforcer", "--version"], capture_output=True, text=True, check=True
    )
    assert result.stdout.startswith("sse-enforcer 0.")


def test_envelope_rule_without_a_kms_fails_at_start(tmp_path: Path) -> None:
    policy = tmp_path / "p.yaml"
    policy.write_text("rules:\n  - {bucket: b, key: k, strategy: envelope}\n")
    result = subprocess.run(
        [sys.executable, "-m", "enforcer", "check", "s3://b/k"],
        env={"ENFORCER_POLICY_FILE": str(policy), "PATH": "/usr/bin"},
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert "strategy envelope" in result.stderr and "ENFORCER_KMS__KIND" in result.stderr
