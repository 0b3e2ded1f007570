"""Kafka client security: the TLS context, SASL credentials and Amazon MSK IAM tokens every
aiokafka client of the enforcer is given, and a credentials check before a client starts.

:func:`check_credentials` opens one connection to a bootstrap broker with that security: a broker
the CA does not trust, a refused client certificate or rejected SASL credentials are configuration
errors (exit 2, one line naming the settings), not outages to retry.
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

from enforcer.config import KafkaSettings
from enforcer.errors import ConfigError

#: Renew an MSK IAM token this long before it expires (tokens live 15 minutes).
TOKEN_RENEW_MARGIN = 60.0


class MskIamTokenProvider(AbstractTokenProvider):  # type: ignore[misc]
    """SASL/OAUTHBEARER tokens for Amazon MSK IAM, signed by ``aws-msk-iam-sasl-signer-python``
    with the default AWS credential chain (environment, web identity, instance role), reused
    until shortly before they expire."""

    def __init__(self, region: str, clock: Callable[[], float] = time.time) -> None:
        try:
            from aws_msk_iam_sasl_signer import MSKAuthTokenProvider
        except ImportError as exc:
            raise ConfigError(
                "ENFORCER_KAFKA__SASL_MECHANISM OAUTHBEARER (MSK IAM) needs the 'msk' extra: "
                "pip install 'sse-enforcer[msk]'"
            ) from exc
        self._sign: Callable[[str], tuple[str, int]] = MSKAuthTokenProvider.generate_auth_token
        self._region = region
        self._clock = clock
        self._token: str | None = None
        self._expires = 0.0

    async def token(self) -> str:
        if self._token is None or self._clock() >= self._expires - TOKEN_RENEW_MARGIN:
            token, expiry_ms = await asyncio.to_thread(self._sign, self._region)
            self._token, self._expires = token, expiry_ms / 1000
        return self._token


def client_options(settings: KafkaSettings) -> dict[str, Any]:
    """The security keyword arguments every aiokafka client of the enforcer gets."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap_servers,
        "security_protocol": settings.security_protocol,
    }
    if settings.security_protocol in {"SSL", "SASL_SSL"}:
        options["ssl_context"] = _ssl_context(settings)
    mechanism = settings.sasl_mechanism
    if mechanism == "OAUTHBEARER":
        assert settings.sasl_aws_region is not None  # checked by the settings
        options["sasl_mechanism"] = mechanism
        options["sasl_oauth_token_provider"] = MskIamTokenProvider(settings.sasl_aws_region)
    elif mechanism is not None:
        assert settings.sasl_password is not None  # checked by the settings
        options["sasl_mechanism"] = mechanism
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = settings.sasl_password.get_secret_value()
    return options


def _ssl_context(settings: KafkaSettings) -> ssl.SSLContext:
    password = settings.ssl_key_password
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.ssl_cafile,
            certfile=settings.ssl_certfile,
            keyfile=settings.ssl_keyfile,
            password=password.get_secret_value() if password else None,
        )
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            "Kafka TLS files (ENFORCER_KAFKA__SSL_CAFILE, _SSL_CERTFILE, _SSL_KEYFILE, "
            f"_SSL_KEY_PASSWORD) cannot be used: {exc}"
        ) from exc
    return context


async def check_credentials(settings: KafkaSettings, options: dict[str, Any]) -> None:
    """Connect once to the first bootstrap broker that answers; raise ConfigError if it refuses
    our certificate authority or credentials. Unreachable brokers are left to the client."""
    security = {k: v for k, v in options.items() if k != "bootstrap_servers"}
    for server in settings.bootstrap_servers.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            conn = await create_conn(host, int(port), request_timeout_ms=10_000, **security)
        except ssl.SSLCertVerificationError as exc:
            raise ConfigError(
                f"Kafka broker {server} is not trusted: {exc.verify_message} "
                "(check ENFORCER_KAFKA__SSL_CAFILE)"
            ) from exc
        except (
            SaslAuthenticationFailed,
            AuthenticationFailedError,
            UnsupportedSaslMechanismError,
        ) as exc:
            raise ConfigError(
                f"Kafka broker {server} refused SASL {settings.sasl_mechanism} authentication "
                f"as {settings.sasl_username!r}: {exc} (check ENFORCER_KAFKA__SASL_USERNAME, "
                "_SASL_PASSWORD, _SASL_MECHANISM)"
            ) from exc
        except (ssl.SSLError, ConnectionResetError, KafkaConnectionError) as exc:
            if isinstance(exc, KafkaConnectionError) and not settings.security_protocol.endswith(
                "SSL"
            ):
                continue
            # TCP connected, then TLS failed or the broker hung up right after the handshake:
            # with TLS 1.3 that is how a listener refuses a missing or unknown client certificate.
            raise ConfigError(
                f"Kafka broker {server} closed the TLS connection: {exc} (does the listener want "
                "a client certificate it trusts: ENFORCER_KAFKA__SSL_CERTFILE, _SSL_KEYFILE?)"
            ) from exc
        except (OSError, KafkaError, TimeoutError, ValueError):
            continue  # unreachable: the client's own start reports it
        conn.close()
        return
