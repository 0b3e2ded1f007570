"""AwsKms against moto's server mode: a real HTTP KMS endpoint on loopback.

moto_server is started once per session from the venv; keys and aliases are made with boto3.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from support import free_port

from enforcer.crypto import envelope
from enforcer.engine import envelope as sealing
from enforcer.engine.ports import KeyState
from enforcer.errors import (
    ConfigError,
    EnforcerError,
    IntegrityError,
    KeyDisabled,
    KeyMissing,
    KmsNotAuthorized,
    KmsUnavailable,
)
from enforcer.kms.aws import AwsKms, _translate_client_error, open_aws_kms

pytestmark = pytest.mark.integration

REGION = "us-east-1"
CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing"}  # moto's convention
CTX = {"bucket": "bucket/object"}


@dataclass(frozen=True)
class MotoKey:
    key_id: str
    arn: str
    alias: str


@pytest.fixture(scope="session")
def kms_admin(moto_endpoint: str) -> Any:
    return boto3.client("kms", endpoint_url=moto_endpoint, region_name=REGION, **CREDS)


@pytest.fixture
def moto_key(kms_admin: Any) -> MotoKey:
    meta = kms_admin.create_key(Description="sse-enforcer test")["KeyMetadata"]
    alias = f"alias/ek-{uuid.uuid4().hex[:8]}"
    kms_admin.create_alias(AliasName=alias, TargetKeyId=meta["KeyId"])
    return MotoKey(meta["KeyId"], meta["Arn"], alias)


@pytest.fixture
async def aws(moto_endpoint: str) -> AsyncIterator[AwsKms]:
    async with open_aws_kms(moto_endpoint, REGION, "testing", "testing") as kms:
        yield kms


async def test_generate_and_decrypt_with_context(aws: AwsKms, moto_key: MotoKey) -> None:
    await aws.check_ready()
    key = await aws.generate_data_key(moto_key.alias, CTX)
    assert len(key.plaintext) == 32
    assert key.key_name == moto_key.arn  # canonical: what the envelope header records
    assert await aws.decrypt(moto_key.key_id, key.ciphertext, CTX) == key.plaintext
    assert await aws.decrypt(key.key_name, key.ciphertext, CTX) == key.plaintext


async def test_context_mismatch(aws: AwsKms, moto_key: MotoKey) -> None:
    key = await aws.generate_data_key(moto_key.key_id, CTX)
    with pytest.raises(IntegrityError, match="InvalidCiphertextException"):
        await aws.decrypt(moto_key.key_id, key.ciphertext, {"bucket": "bucket/other"})


async def test_describe_by_every_name(aws: AwsKms, moto_key: MotoKey) -> None:
    alias_arn = moto_key.arn.rsplit(":", 1)[0] + ":" + moto_key.alias
    for name in (moto_key.key_id, moto_key.arn, moto_key.alias, alias_arn):
        info = await aws.describe_key(name)
        assert (info.name, info.key_id, info.arn) == (name, moto_key.key_id, moto_key.arn)
        assert info.state is KeyState.ENABLED


async def test_disabled_and_pending_deletion_states(
    aws: AwsKms, moto_key: MotoKey, kms_admin: Any
) -> None:
    """moto reports key states but, unlike AWS, still serves a disabled key; the errors AWS
    sends then (DisabledException, KMSInvalidStateException) are mapped in the test below."""
    kms_admin.disable_key(KeyId=moto_key.key_id)
    assert (await aws.describe_key(moto_key.alias)).state is KeyState.DISABLED
    kms_admin.enable_key(KeyId=moto_key.key_id)
    kms_admin.schedule_key_deletion(KeyId=moto_key.key_id, PendingWindowInDays=7)
    assert (await aws.describe_key(moto_key.arn)).state is KeyState.PENDING_DELETION


@pytest.mark.parametrize(
    ("code", "status", "error"),
    [
        ("NotFoundException", 400, KeyMissing),
        ("DisabledException", 400, KeyDisabled),
        ("KMSInvalidStateException", 400, KeyDisabled),
        ("InvalidCiphertextException", 400, IntegrityError),
        ("IncorrectKeyException", 400, IntegrityError),
        ("AccessDeniedException", 400, KmsNotAuthorized),
        ("UnrecognizedClientException", 400, KmsNotAuthorized),
        ("ThrottlingException", 400, KmsUnavailable),
        ("KMSInternalException", 500, KmsUnavailable),
        ("SomethingNew", 503, KmsUnavailable),
        ("ValidationException", 400, ConfigError),
    ],
)
def test_aws_error_codes(code: str, status: int, error: type[EnforcerError]) -> None:
    exc = ClientError(
        {
            "Error": {"Code": code, "Message": "m"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "GenerateDataKey",
    )
    translated = _translate_client_error(exc, "alias/x")
    assert type(translated) is error
    assert code in str(translated)
    if isinstance(translated, KeyMissing | KeyDisabled):
        assert translated.key_name == "alias/x"


@pytest.mark.parametrize(  # stable ids: pytest-xdist workers must collect the same tests
    "name", [str(uuid.uuid4()), "alias/does-not-exist"], ids=["key-id", "alias"]
)
async def test_missing_key(aws: AwsKms, name: str) -> None:
    with pytest.raises(KeyMissing) as info:
        await aws.describe_key(name)
    assert info.value.key_name == name
    with pytest.raises(KeyMissing):
        await aws.generate_data_key(name, CTX)


async def test_envelope_through_aws(aws: AwsKms, moto_key: MotoKey) -> None:
    draft, oek = await sealing.seal_new_envelope(aws, moto_key.alias, "bucket", "k")
    header = envelope.EnvelopeHeader.from_metadata(
        draft.complete(oek, plaintext_size=1).to_metadata()
    )
    assert (header.kms_kind, header.key_name) == ("aws", moto_key.arn)
    assert await sealing.open_envelope(aws, header, "bucket", "k") == oek


async def test_unreachable() -> None:
    async with open_aws_kms(f"http://127.0.0.1:{free_port()}", REGION, "a", "b") as kms:
        with pytest.raises(KmsUnavailable, match="unreachable"):
            await kms.check_ready()
        with pytest.raises(KmsUnavailable):
            await kms.generate_data_key("alias/x", CTX)
