"""AWS KMS adapter (also moto's server) through aiobotocore.

The client is created by the caller (see :func:`open_aws_kms`) with botocore's own retries
off, so that :mod:`enforcer.retrying` stays the one place retries happen.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
)

from enforcer.engine.ports import DataKey, KeyInfo, KeyState
from enforcer.errors import (
    ConfigError,
    EnforcerError,
    IntegrityError,
    KeyDisabled,
    KeyMissing,
    KmsNotAuthorized,
    KmsUnavailable,
)
from enforcer.kms.base import PROBE_POLICY, traced

T = TypeVar("T")

_TRANSIENT_CODES = {
    "KMSInternalException",
    "DependencyTimeoutException",
    "ThrottlingException",
    "LimitExceededException",
    "KeyUnavailableException",
    "ServiceUnavailableException",
    "InternalFailure",
}
_DENIED_CODES = {
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
}
_STATES = {
    "Enabled": KeyState.ENABLED,
    "PendingDeletion": KeyState.PENDING_DELETION,
    "PendingReplicaDeletion": KeyState.PENDING_DELETION,
}
DEK_SIZE = 32


def _translate_client_error(exc: ClientError, key_name: str | None) -> EnforcerError:
    error = exc.response.get("Error", {})
    code = str(error.get("Code", ""))
    message = f"AWS KMS {exc.operation_name}: {code} ({error.get('Message', '')})"
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    name = key_name or ""
    if code == "NotFoundException":
        return KeyMissing(message, key_name=name)
    if code in ("DisabledException", "KMSInvalidStateException"):
        return KeyDisabled(message, key_name=name)
    if code in ("InvalidCiphertextException", "IncorrectKeyException"):
        return IntegrityError(message)
    if code in _DENIED_CODES:
        return KmsNotAuthorized(message)
    if code in _TRANSIENT_CODES or status >= 500:
        return KmsUnavailable(message)
    return ConfigError(message)


async def _call_aws(call: Awaitable[T], key_name: str | None) -> T:
    """Await one botocore call, translating its errors once."""
    try:
        return await call
    except ClientError as exc:
        raise _translate_client_error(exc, key_name) from exc
    except (NoCredentialsError, NoRegionError, ParamValidationError) as exc:
        raise ConfigError(f"AWS KMS client is misconfigured: {exc}") from exc
    except (BotoCoreError, TimeoutError, OSError) as exc:
        raise KmsUnavailable(f"AWS KMS is unreachable: {type(exc).__name__}") from exc


class AwsKms:
    """The :class:`~enforcer.kms.base.Kms` port over AWS KMS.

    Key names may be a key id, a key ARN, ``alias/name`` or an alias ARN; AWS resolves them.
    """

    kind = "aws"

    def __init__(self, client: Any) -> None:
        self._client = client

    def __repr__(self) -> str:
        return "AwsKms()"

    async def _run(self, span: str, key_name: str, call: Callable[[], Awaitable[T]]) -> T:
        return await traced(span, call, key=key_name, kms=self.kind)

    async def generate_data_key(self, key_name: str, context: Mapping[str, str]) -> DataKey:
        async def call() -> DataKey:
            response = await _call_aws(
                self._client.generate_data_key(
                    KeyId=key_name, KeySpec="AES_256", EncryptionContext=dict(context)
                ),
                key_name,
            )
            plaintext = bytes(response["Plaintext"])
            if len(plaintext) != DEK_SIZE:
                raise IntegrityError(f"AWS KMS returned a {len(plaintext)}-byte data key")
            return DataKey(plaintext, bytes(response["CiphertextBlob"]), str(response["KeyId"]))

        return await self._run("kms.generate", key_name, call)

    async def decrypt(self, key_name: str, ciphertext: bytes, context: Mapping[str, str]) -> bytes:
        async def call() -> bytes:
            response = await _call_aws(
                self._client.decrypt(
                    KeyId=key_name, CiphertextBlob=ciphertext, EncryptionContext=dict(context)
                ),
                key_name,
            )
            return bytes(response["Plaintext"])

        return await self._run("kms.decrypt", key_name, call)

    async def describe_key(self, key_name: str) -> KeyInfo:
        async def call() -> KeyInfo:
            response = await _call_aws(self._client.describe_key(KeyId=key_name), key_name)
            meta = response["KeyMetadata"]
            # Unavailable, PendingImport, Creating, Updating: the key cannot be used right now.
            state = _STATES.get(str(meta.get("KeyState", "")), KeyState.DISABLED)
            return KeyInfo(
                name=key_name, key_id=str(meta["KeyId"]), arn=meta.get("Arn"), state=state
            )

        return await self._run("kms.describe", key_name, call)

    async def check_ready(self) -> None:
        async def call() -> None:
            await _call_aws(self._client.list_keys(Limit=1), None)

        await traced("kms.ready", call, PROBE_POLICY, kms=self.kind)

    async def aclose(self) -> None:
        """Nothing to do: the caller owns the client's context manager."""


@asynccontextmanager
async def open_aws_kms(
    endpoint_url: str | None = None,
    region: str | None = None,
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    *,
    request_timeout: float = 10.0,
) -> AsyncIterator[AwsKms]:
    """Create an aiobotocore KMS client (botocore retries off) and wrap it in :class:`AwsKms`.

    Credentials left ``None`` come from botocore's usual chain (env, profile, instance role).
    """
    config = AioConfig(
        retries={"total_max_attempts": 1, "mode": "standard"},
        connect_timeout=request_timeout,
        read_timeout=request_timeout,
    )
    session = get_session()
    try:
        async with session.create_client(
            "kms",
            region_name=region,
            endpoint_url=endpoint_url,
            aws_access_key_id=access_key_id,
            aws_secret_access_key=secret_access_key,
            config=config,
        ) as client:
            yield AwsKms(client)
    except NoRegionError:  # raised while the client is created, before any request
        raise ConfigError(
            "ENFORCER_KMS__KIND is 'aws' but no region is set: set ENFORCER_KMS__REGION "
            "(or AWS_REGION)"
        ) from None
