"""Kafka client security: the TLS context, SASL credentials and Amazon MSK IAM tokens every
aiokafka client of the enforcer is given, and a credentials check before a client starts.

:func:`check_credentials` opens one connection to a bootstrap broker with that security: a broker
the CA does not trust, a refused client certificate or rejected SASL credentials are configuration
errors (exit 2, one line naming the setting), not outages to retry.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiokafka.abc import AbstractTokenProvider
from aiokafka.conn import create_conn
from aiokafka.errors import (
    AuthenticationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    UnsupportedSaslMechanismError,
)
from aiokafka.helpers import create_ssl_context

from enforcer.errors import ConfigError
from enforcer.kafka.options import KafkaOptions

#: Renew an MSK IAM token this long before it expires (tokens live 15 minutes).
TOKEN_RENEW_MARGIN = 60.0

#: region → (token, expiry in epoch milliseconds), as ``aws-msk-iam-sasl-signer-python`` signs.
Signer = Callable[[str], tuple[str, int]]


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """SASL/OAUTHBEARER tokens for Amazon MSK IAM, signed by ``aws-msk-iam-sasl-signer-python``
    with the default AWS credential chain (environment, web identity, instance role), reused
    until shortly before they expire."""

    def __init__(
        self,
        region: str,
        *,
        sign: Signer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._sign = sign or _msk_signer()
        self._region = region
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0

    async def token(self) -> str:
        """A signed token; AWS credential or signing errors surface as an aiokafka
        authentication failure, which the client treats like any failed connection."""
        if self._token is None or self._clock() >= self._expires - TOKEN_RENEW_MARGIN:
            from botocore.exceptions import BotoCoreError

            try:
                token, expiry_ms = await asyncio.to_thread(self._sign, self._region)
            except BotoCoreError as exc:
                raise AuthenticationFailedError(f"signing an MSK IAM token: {exc}") from exc
            self._token, self._expires = token, expiry_ms / 1000
        return self._token


def _msk_signer() -> Signer:
    try:
        from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
    except ImportError as exc:
        raise ConfigError(
            "ENFORCER_KAFKA__SASL_MECHANISM OAUTHBEARER (MSK IAM) needs the 'msk' extra: "
            "pip install 'sse-enforcer[msk]'"
        ) from exc
    sign: Signer = MSKAuthTokenProvider.generate_auth_token
    return sign


def client_options(kafka: KafkaOptions) -> dict[str, Any]:
    """The security keyword arguments every aiokafka client of the enforcer gets."""
    options: dict[str, Any] = {
        "bootstrap_servers": kafka.bootstrap_servers,
        "security_protocol": kafka.security_protocol,
    }
    if kafka.security_protocol in {"SSL", "SASL_SSL"}:
        options["ssl_context"] = _ssl_context(kafka)
    mechanism = kafka.sasl_mechanism
    if mechanism == "OAUTHBEARER":
        assert kafka.sasl_aws_region is not None  # checked by the settings
        options["sasl_mechanism"] = mechanism
        options["sasl_oauth_token_provider"] = MskIamTokenProvider(kafka.sasl_aws_region)
    elif mechanism is not None:
        assert kafka.sasl_password is not None  # checked by the settings
        options["sasl_mechanism"] = mechanism
        options["sasl_plain_username"] = kafka.sasl_username
        options["sasl_plain_password"] = kafka.sasl_password
    return options


def _ssl_context(kafka: KafkaOptions) -> ssl.SSLContext:
    password = kafka.ssl_key_password
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=kafka.ssl_cafile,
            certfile=kafka.ssl_certfile,
            keyfile=kafka.ssl_keyfile,
            password=password,
        )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            "Kafka TLS files (ENFORCER_KAFKA__SSL_CAFILE, _SSL_CERTFILE, _SSL_KEYFILE, "
            f"_SSL_KEY_PASSWORD) cannot be used: {exc}"
        ) from exc
    return context


async def check_credentials(kafka: KafkaOptions, options: dict[str, Any]) -> None:
    """Connect once to the first bootstrap broker that answers; raise ConfigError if it refuses
    our certificate authority, client certificate or credentials. Unreachable brokers are left
    to the client's own start, which reports them."""
    security = {k: v for k, v in options.items() if k != "bootstrap_servers"}
    for server in kafka.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await create_conn(host, int(port), request_timeout_ms=10_000, **security)
        except (OSError, KafkaError, TimeoutError, ValueError) as exc:
            refusal = refusal_error(exc, kafka, server.strip())
            if refusal is not None:
                raise refusal from exc
            continue
        conn.close()
        return


def refusal_error(exc: BaseException, kafka: KafkaOptions, server: str) -> ConfigError | None:
    """The configuration error a failed first connection means, or None if it is an outage."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return ConfigError(
            f"Kafka broker {server} is not trusted: {getattr(exc, 'verify_message', None) or exc} "
            "(check ENFORCER_KAFKA__SSL_CAFILE)"
        )
    if isinstance(
        exc, SaslAuthenticationFailed | AuthenticationFailedError | UnsupportedSaslMechanismError
    ):
        who = "" if kafka.sasl_mechanism == "OAUTHBEARER" else f" as {kafka.sasl_username!r}"
        return ConfigError(
            f"Kafka broker {server} refused SASL {kafka.sasl_mechanism} authentication{who}: "
            f"{exc} (check ENFORCER_KAFKA__SASL_*)"
        )
    if not kafka.security_protocol.endswith("SSL"):
        return None
    if isinstance(exc, ssl.SSLError):
        return ConfigError(f"TLS with Kafka broker {server} failed: {exc} (is it a TLS listener?)")
    if isinstance(exc, ConnectionResetError | KafkaConnectionError):
        # TCP and TLS went through, then the broker hung up: with TLS 1.3 that is how a listener
        # refuses a missing or untrusted client certificate.
        return ConfigError(
            f"Kafka broker {server} closed the TLS connection: {exc} (does the listener want a "
            "client certificate it trusts: ENFORCER_KAFKA__SSL_CERTFILE, _SSL_KEYFILE?)"
        )
    return None
