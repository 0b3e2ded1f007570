"""Kafka security settings: validation at start, what every aiokafka client is given, and the
Amazon MSK IAM token provider (signed locally from fake credentials; no network)."""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    SaslAuthenticationFailed,
)
from botocore.exceptions import NoCredentialsError

from enforcer.config import KafkaSettings, load_settings
from enforcer.errors import ConfigError
from enforcer.kafka.security import MskIamTokenProvider, client_options, refusal_error


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    """A file that exists (the settings check existence; the SSL context reads it later)."""
    path = tmp_path / "ca.pem"
    path.write_text("not a certificate\n")
    return path


def settings_from(monkeypatch: pytest.MonkeyPatch, **variables: str) -> object:
    for name, value in variables.items():
        monkeypatch.setenv(f"ENFORCER_KAFKA__{name.upper()}", value)
    return load_settings()


@pytest.mark.parametrize(
    ("variables", "message"),
    [
        ({"security_protocol": "SASL_SSL"}, "ENFORCER_KAFKA__SASL_MECHANISM is required"),
        ({"sasl_mechanism": "PLAIN"}, "ENFORCER_KAFKA__SASL_MECHANISM needs security_protocol"),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-512"},
            "ENFORCER_KAFKA__SASL_USERNAME is required",
        ),
        (
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "PLAIN",
                "sasl_username": "u",
            },
            "ENFORCER_KAFKA__SASL_PASSWORD is required",
        ),
        (
            {"security_protocol": "SASL_SSL", "sasl_mechanism": "OAUTHBEARER"},
            "ENFORCER_KAFKA__SASL_AWS_REGION is required",
        ),
        ({"ssl_cafile": "/etc/hostname"}, "PLAINTEXT does not use TLS"),
        ({"security_protocol": "SSL", "ssl_cafile": "/nonexistent/ca.pem"}, "SSL_CAFILE: no such"),
        ({"security_protocol": "SSL", "ssl_keyfile": "/etc/hostname"}, "SSL_CERTFILE is required"),
        ({"security_protocol": "TLS"}, "security_protocol"),
        ({"security_protocol": "SASL_SSL", "sasl_mechanism": "GSSAPI"}, "sasl_mechanism"),
    ],
)
def test_incomplete_security_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variables: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        settings_from(monkeypatch, **variables)


def test_secrets_stay_out_of_repr_and_dumps(monkeypatch: pytest.MonkeyPatch, pem: Path) -> None:
    settings = KafkaSettings(
        **{
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",
            "sasl_username": "enforcer",
            "sasl_password": "hunter2-sasl",
            "ssl_cafile": pem,
            "ssl_key_password": "hunter2-key",
        }
    )
    shown = repr(settings) + str(settings) + settings.model_dump_json()
    assert "hunter2" not in shown
    assert "enforcer" in shown


def test_plaintext_clients_get_no_tls_and_no_sasl() -> None:
    options = client_options((load_settings().kafka).options())
    assert options == {"bootstrap_servers": "127.0.0.1:9092", "security_protocol": "PLAINTEXT"}


def test_scram_over_tls_gets_a_verifying_context_and_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = KafkaSettings(
        **{
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-256",
            "sasl_username": "enforcer",
            "sasl_password": "s3cret",
        }
    )
    options = client_options(settings.options())
    context = options.pop("ssl_context")
    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert options == {
        "bootstrap_servers": "127.0.0.1:9092",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-256",
        "sasl_plain_username": "enforcer",
        "sasl_plain_password": "s3cret",
    }


def test_an_unreadable_ca_file_is_a_configuration_error(pem: Path) -> None:
    settings = KafkaSettings(security_protocol="SSL", ssl_cafile=pem)
    with pytest.raises(ConfigError, match="ENFORCER_KAFKA__SSL_CAFILE"):
        client_options(settings.options())


@pytest.fixture
def fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> str:
    """Credentials in the environment only: no profile, no instance metadata lookup."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFAKEFAKEFAKE1234")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "fake-secret-never-sent")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return "AKIAFAKEFAKEFAKE1234"


async def test_msk_iam_gives_aiokafka_a_provider_of_signed_tokens(
    fake_aws_credentials: str,
) -> None:
    settings = KafkaSettings(
        **{
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "OAUTHBEARER",
            "sasl_aws_region": "eu-west-1",
        }
    )
    options = client_options(settings.options())
    assert options["sasl_mechanism"] == "OAUTHBEARER"
    provider = options["sasl_oauth_token_provider"]
    token = await provider.token()

    padded = token + "=" * (-len(token) % 4)
    url = urlsplit(base64.urlsafe_b64decode(padded).decode())
    query = parse_qs(url.query)
    assert url.hostname == "kafka.eu-west-1.amazonaws.com"
    assert query["Action"] == ["kafka-cluster:Connect"]
    assert query["X-Amz-Credential"][0].startswith(f"{fake_aws_credentials}/")
    assert "/eu-west-1/kafka-cluster/aws4_request" in query["X-Amz-Credential"][0]
    assert "fake-secret-never-sent" not in token
    assert await provider.token() == token  # reused while fresh


async def test_msk_iam_tokens_are_renewed_before_they_expire() -> None:
    now = [1_000_000.0]
    signed: list[str] = []

    def sign(region: str) -> tuple[str, int]:
        signed.append(region)
        return f"token-{len(signed)}", int((now[0] + 900) * 1000)

    provider = MskIamTokenProvider("us-east-1", sign=sign, clock=lambda: now[0])
    assert await provider.token() == "token-1"
    now[0] += 800
    assert await provider.token() == "token-1"
    now[0] += 50  # within a minute of expiry
    assert await provider.token() == "token-2"
    assert signed == ["us-east-1", "us-east-1"]


async def test_missing_aws_credentials_fail_the_kafka_authentication() -> None:
    def sign(region: str) -> tuple[str, int]:
        raise NoCredentialsError

    provider = MskIamTokenProvider("us-east-1", sign=sign)
    with pytest.raises(AuthenticationFailedError, match="Unable to locate credentials"):
        await provider.token()


SCRAM = KafkaSettings(
    security_protocol="SASL_SSL",
    sasl_mechanism="SCRAM-SHA-512",
    sasl_username="enforcer",
    sasl_password="pw",
)
PLAIN_TEXT = KafkaSettings()


@pytest.mark.parametrize(
    ("settings", "error", "says"),
    [
        (SCRAM, ConnectionRefusedError(111, "refused"), None),  # down: an outage, retried
        (SCRAM, TimeoutError(), None),
        (PLAIN_TEXT, KafkaConnectionError("closed"), None),
        (SCRAM, SaslAuthenticationFailed("invalid credentials"), "refused SASL SCRAM-SHA-512"),
        (SCRAM, ssl.SSLCertVerificationError(1, "certificate verify failed"), "not trusted"),
        (SCRAM, ssl.SSLError(1, "wrong version number"), "is it a TLS listener"),
        (SCRAM, KafkaConnectionError("closed"), "client certificate"),
        (SCRAM, ConnectionResetError(104, "reset"), "client certificate"),
    ],
)
def test_a_refused_first_connection_is_a_configuration_error(
    settings: KafkaSettings, error: BaseException, says: str | None
) -> None:
    refusal = refusal_error(error, settings.options(), "broker:9094")
    if says is None:
        assert refusal is None
    else:
        assert refusal is not None and says in str(refusal) and "broker:9094" in str(refusal)
        assert "pw" not in str(refusal).replace("password", "")
