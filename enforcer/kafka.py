"""aiokafka clients opened and closed in one place, with the configured TLS/SASL security;
``KafkaError`` becomes ``KafkaUnavailable`` here and nowhere else.

Before a client starts, :func:`check_credentials` opens one connection to a bootstrap broker with
the same security: a broker the CA does not trust, a refused handshake or rejected SASL
credentials are configuration errors (exit 2, one line naming the setting), not outages to retry.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.abc import AbstractTokenProvider
from aiokafka.admin import AIOKafkaAdminClient
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
from enforcer.errors import ConfigError, KafkaUnavailable

T = TypeVar("T")

#: Renew an MSK IAM token this long before it expires (tokens live 15 minutes).
TOKEN_RENEW_MARGIN = 60.0


async def kafka_call(call: Awaitable[T], what: str) -> T:
    """Await one aiokafka call, translating its errors into the enforcer's tree."""
    try:
        return await call
    except KafkaError as exc:
        raise KafkaUnavailable(f"{what}: {type(exc).__name__}: {exc}") from exc


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


async def _start(
    client: AIOKafkaProducer | AIOKafkaConsumer | AIOKafkaAdminClient,
    settings: KafkaSettings,
    options: dict[str, Any],
) -> None:
    """Check the credentials (unless PLAINTEXT), then start; stop the client if that fails."""
    try:
        if settings.security_protocol != "PLAINTEXT":
            await check_credentials(settings, options)
        await kafka_call(client.start(), f"connecting to Kafka at {settings.bootstrap_servers}")
    except BaseException:
        await client.close() if isinstance(client, AIOKafkaAdminClient) else await client.stop()
        raise


@asynccontextmanager
async def open_producer(settings: KafkaSettings, role: str) -> AsyncIterator[AIOKafkaProducer]:
    """Idempotent, ``acks=all``: a send returns only once the broker has the record."""
    options = client_options(settings)
    producer = AIOKafkaProducer(
        **options,
        client_id=f"{settings.client_id}-{role}",
        acks="all",
        enable_idempotence=True,
        linger_ms=0,
    )
    await _start(producer, settings, options)
    try:
        yield producer
    finally:
        await producer.stop()


@asynccontextmanager
async def open_consumer(
    settings: KafkaSettings,
    group_id: str | None,
    role: str,
    *,
    topics: Sequence[str] = (),
    auto_offset_reset: str | None = None,
) -> AsyncIterator[AIOKafkaConsumer]:
    """A group member that commits by hand (offsets are ours to commit, never automatic); with
    ``group_id`` None a stand-alone reader. Naming ``topics`` subscribes and loads their
    partitions at start."""
    options = client_options(settings)
    consumer = AIOKafkaConsumer(
        *topics,
        **options,
        group_id=group_id,
        client_id=f"{settings.client_id}-{role}",
        enable_auto_commit=False,
        auto_offset_reset=auto_offset_reset or settings.auto_offset_reset,
        max_poll_records=settings.max_poll_records,
    )
    await _start(consumer, settings, options)
    try:
        yield consumer
    finally:
        await consumer.stop()


@asynccontextmanager
async def open_admin(settings: KafkaSettings, role: str) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client (consumer groups, offsets) with the same security as the others."""
    options = client_options(settings)
    admin = AIOKafkaAdminClient(**options, client_id=f"{settings.client_id}-{role}")
    await _start(admin, settings, options)
    try:
        yield admin
    finally:
        await admin.close()
