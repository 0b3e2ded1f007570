"""Settings → the configured KMS adapter, opened and closed as one async context."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from enforcer.config import KmsSettings
from enforcer.errors import ConfigError
from enforcer.kms.base import Kms


@asynccontextmanager
async def open_kms_from_settings(settings: KmsSettings) -> AsyncIterator[Kms]:
    if settings.kind == "kes":
        from enforcer.kms.kes import KesKms

        assert settings.endpoint is not None  # checked by KmsSettings
        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        async with KesKms(
            settings.endpoint,
            client_cert=settings.client_cert,
            client_key=settings.client_key,
            ca_path=settings.ca_path,
            api_key=api_key,
        ) as kes:
            yield kes
    elif settings.kind == "aws":
        from enforcer.kms.aws import open_aws_kms

        async with open_aws_kms(settings.endpoint, settings.region) as aws:
            yield aws
    else:
        raise ConfigError(f"kms.kind {settings.kind!r} has no KMS client")
