"""``enforcer run`` refuses to start on a setting that cannot work: exit 2, one line, no traceback.

Each case is a real ``enforcer run --drain`` subprocess against the local stack with one thing
wrong; the line must name the setting to fix.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest
from cli_runner import Cli, CliResult
from harness import read_raw, write_policy
from support import MakeBucket, MakeKey, StackEnv


def assert_one_line_exit_2(result: CliResult, *names: str) -> None:
    assert result.returncode == 2, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    [line] = [x for x in result.stderr.splitlines() if x.startswith("enforcer:")]
    for name in names:
        assert name in line, line


def test_a_wrong_s3_secret_fails_at_start(stack: StackEnv) -> None:
    result = Cli(stack)("run", "--drain", ENFORCER_S3__SECRET_ACCESS_KEY="not-the-secret")
    assert_one_line_exit_2(result, "ENFORCER_S3__SECRET_ACCESS_KEY")


def test_an_unknown_s3_access_key_fails_at_start(stack: StackEnv) -> None:
    result = Cli(stack)("run", "--drain", ENFORCER_S3__ACCESS_KEY_ID="nobody")
    assert_one_line_exit_2(result, "ENFORCER_S3__ACCESS_KEY_ID")


def test_policy_check_refuses_a_missing_policy_bucket(
    stack: StackEnv, make_bucket: MakeBucket, make_key: MakeKey, tmp_path: Path
) -> None:
    """The strict form, for CI (``enforcer run`` itself reports the bucket and goes on:
    test_missing_policy_names.py)."""
    gone, kept, ek = f"t-never-made-{uuid.uuid4().hex[:8]}", make_bucket(notify=False), make_key()
    policy = write_policy(
        tmp_path / "policy.yaml", {"bucket": gone, "key": ek}, {"bucket": kept, "key": ek}
    )
    result = Cli(stack, policy_file=policy)("policy", "check")
    assert_one_line_exit_2(result, "ENFORCER_POLICY_FILE", f"bucket {gone!r}")
    assert json.loads(result.stdout)["buckets"] == {gone: "missing", kept: "exists"}
    fixed = write_policy(tmp_path / "fixed.yaml", {"bucket": kept, "key": ek})
    ok = Cli(stack)("policy", "check", "--policy-file", str(fixed))
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout) == {
        "policy_file": str(fixed),
        "buckets": {kept: "exists"},
        "keys": {ek: "exists"},
        "ok": True,
    }


def test_a_scan_of_a_missing_bucket_fails_at_start(stack: StackEnv) -> None:
    gone = f"t-never-made-{uuid.uuid4().hex[:8]}"
    assert_one_line_exit_2(Cli(stack)("scan", f"s3://{gone}/"), gone, "does not exist")


def test_policy_check_refuses_a_missing_policy_key(
    stack: StackEnv, make_bucket: MakeBucket, make_key: MakeKey, tmp_path: Path
) -> None:
    missing = f"ek-never-made-{uuid.uuid4().hex[:8]}"
    policy = write_policy(
        tmp_path / "policy.yaml",
        {"bucket": make_bucket(notify=False), "key": make_key()},
        {"bucket": make_bucket(notify=False), "key": missing},
    )
    result = Cli(stack, policy_file=policy)("policy", "check")
    assert_one_line_exit_2(result, "ENFORCER_POLICY_FILE", f"key {missing!r}")


def test_policy_check_needs_a_policy_file(stack: StackEnv) -> None:
    assert_one_line_exit_2(Cli(stack)("policy", "check"), "ENFORCER_POLICY_FILE")


def test_a_missing_input_topic_fails_at_start(stack: StackEnv) -> None:
    topic = f"t-no-such-topic-{uuid.uuid4().hex[:8]}"
    result = Cli(stack)("run", "--drain", ENFORCER_KAFKA__TOPICS=topic)
    assert_one_line_exit_2(result, "ENFORCER_KAFKA__TOPICS", topic)


async def test_audit_dlq_and_backfill_topics_are_created_at_start(
    stack: StackEnv, make_bucket: MakeBucket, make_key: MakeKey, tmp_path: Path
) -> None:
    """No "topic not found" on first use: the run creates all three before it consumes."""
    policy = write_policy(tmp_path / "policy.yaml", {"bucket": make_bucket(), "key": make_key()})
    cli = Cli(stack, policy_file=policy)
    result = cli("run", "--drain", "--idle", "0.5", ENFORCER_KAFKA__AUTO_OFFSET_RESET="latest")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "not found" not in result.stderr.lower()
    for topic in (cli.audit_topic, cli.dlq_topic, cli.backfill_topic):
        assert await read_raw(stack.kafka_bootstrap, topic, idle_ms=300) == []  # exists, empty


@pytest.mark.parametrize(
    ("env", "name"),
    [
        ({"ENFORCER_HEALTH_PORT": "99999"}, "ENFORCER_HEALTH_PORT"),
        ({"ENFORCER_KMS__CA_PATH": "/no/such/ca.pem"}, "ENFORCER_KMS__CA_PATH"),
        ({"ENFORCER_S3__ENDPOINT_URL": "notaurl"}, "ENFORCER_S3__ENDPOINT_URL"),
        ({"ENFORCER_KAFKA__TOPICS": "[not json"}, "ENFORCER_KAFKA__TOPICS"),
        ({"ENFORCER_CONCURRENCY": "lots"}, "ENFORCER_CONCURRENCY"),
    ],
)
def test_bad_settings_exit_2_in_one_line(stack: StackEnv, env: dict[str, str], name: str) -> None:
    assert_one_line_exit_2(Cli(stack, extra_env=env)("run", "--drain"), name)


def test_topics_may_be_a_plain_comma_separated_string(stack: StackEnv) -> None:
    cli = Cli(stack)
    plain = cli("run", "--drain", "--idle", "0.5", ENFORCER_KAFKA__TOPICS=stack.notify_topic,
                ENFORCER_KAFKA__AUTO_OFFSET_RESET="latest")  # fmt: skip
    assert plain.returncode == 0, plain.stderr[-2000:]
    listed = cli("run", "--drain", "--idle", "0.5",
                 ENFORCER_KAFKA__TOPICS=json.dumps([stack.notify_topic]),
                 ENFORCER_KAFKA__AUTO_OFFSET_RESET="latest")  # fmt: skip
    assert listed.returncode == 0, listed.stderr[-2000:]


def test_an_unknown_log_level_exits_2(stack: StackEnv) -> None:
    result = Cli(stack)("--log-level", "verbose", "run")
    assert_one_line_exit_2(result, "--log-level")
