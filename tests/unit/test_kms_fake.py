"""The KMS port's value types, MinIO's context encoding, and the in-memory fake."""

from __future__ import annotations

import pytest
from doubles.kms import InMemoryKms

from enforcer.crypto.chain import encode_context
from enforcer.engine.ports import DataKey, KeyState, Kms
from enforcer.errors import AccessDenied, IntegrityError, KeyDisabled, KeyMissing, KmsUnavailable

CTX = {"bucket": "bucket/object"}


@pytest.fixture
def kms() -> InMemoryKms:
    return InMemoryKms(keys=("ek-1", "ek-2"))


def test_fake_satisfies_the_port(kms: InMemoryKms) -> None:
    port: Kms = kms  # checked by mypy
    assert port.kind == "fake"


def test_data_key_repr_hides_plaintext() -> None:
    key = DataKey(plaintext=b"\x01" * 32, ciphertext=b"wrapped", key_name="ek")
    assert "plaintext" not in repr(key)
    assert "\\x01" not in repr(key)
    assert "ek" in repr(key)


# MinIO's kms.Context.MarshalText: sorted keys, no spaces, Go's HTML-safe escaping.
@pytest.mark.parametrize(
    ("context", "encoded"),
    [
        ({}, b"{}"),
        ({"bucket": "bucket/object"}, b'{"bucket":"bucket/object"}'),
        ({"b": "2", "a": "1", "C": "0"}, b'{"C":"0","a":"1","b":"2"}'),
        ({"k": 'q"uote\\back'}, b'{"k":"q\\"uote\\\\back"}'),
        ({"k": "<a>&b"}, b'{"k":"\\u003ca\\u003e\\u0026b"}'),
        ({"k": "\n\r\t\x01\x08\x0c"}, b'{"k":"\\n\\r\\t\\u0001\\u0008\\u000c"}'),
        ({"k": "\u2028\u2029"}, b'{"k":"\\u2028\\u2029"}'),
        ({"k": "é ü/+%"}, '{"k":"é ü/+%"}'.encode()),
        ({"k": "\x7f"}, b'{"k":"\x7f"}'),
    ],
)
def test_encode_context(context: dict[str, str], encoded: bytes) -> None:
    assert encode_context(context) == encoded


async def test_generate_and_decrypt(kms: InMemoryKms) -> None:
    key = await kms.generate_data_key("ek-1", CTX)
    assert len(key.plaintext) == 32
    assert key.key_name == "ek-1"
    assert await kms.decrypt("ek-1", key.ciphertext, CTX) == key.plaintext
    assert kms.calls == {"generate": 1, "decrypt": 1}


async def test_context_is_bound(kms: InMemoryKms) -> None:
    key = await kms.generate_data_key("ek-1", CTX)
    with pytest.raises(IntegrityError):
        await kms.decrypt("ek-1", key.ciphertext, {"bucket": "bucket/other"})


async def test_ciphertext_of_another_key(kms: InMemoryKms) -> None:
    key = await kms.generate_data_key("ek-1", CTX)
    with pytest.raises(IntegrityError):
        await kms.decrypt("ek-2", key.ciphertext, CTX)
    tampered = key.ciphertext[:-1] + bytes([key.ciphertext[-1] ^ 1])  # always differs
    with pytest.raises(IntegrityError):
        await kms.decrypt("ek-1", tampered, CTX)


async def test_missing_key(kms: InMemoryKms) -> None:
    with pytest.raises(KeyMissing) as info:
        await kms.generate_data_key("nope", CTX)
    assert info.value.key_name == "nope"
    with pytest.raises(KeyMissing):
        await kms.describe_key("nope")


@pytest.mark.parametrize("state", [KeyState.DISABLED, KeyState.PENDING_DELETION])
async def test_unusable_states(kms: InMemoryKms, state: KeyState) -> None:
    key = await kms.generate_data_key("ek-1", CTX)
    kms.set_state("ek-1", state)
    with pytest.raises(KeyDisabled) as info:
        await kms.generate_data_key("ek-1", CTX)
    assert info.value.key_name == "ek-1"
    with pytest.raises(KeyDisabled):
        await kms.decrypt("ek-1", key.ciphertext, CTX)
    assert (await kms.describe_key("ek-1")).state is state


async def test_outage_switch(kms: InMemoryKms) -> None:
    kms.available = False
    with pytest.raises(KmsUnavailable):
        await kms.check_ready()
    with pytest.raises(KmsUnavailable):
        await kms.generate_data_key("ek-1", CTX)
    kms.available = True
    await kms.check_ready()


async def test_access_denied(kms: InMemoryKms) -> None:
    kms.denied.add("ek-2")
    with pytest.raises(AccessDenied):
        await kms.generate_data_key("ek-2", CTX)


async def test_alias_and_describe(kms: InMemoryKms) -> None:
    key_id = kms.create_key("ek-3", alias="alias/three")
    info = await kms.describe_key("alias/three")
    assert (info.name, info.key_id, info.state) == ("alias/three", key_id, KeyState.ENABLED)
    data_key = await kms.generate_data_key("alias/three", CTX)
    assert data_key.key_name == "ek-3"
    assert await kms.decrypt("ek-3", data_key.ciphertext, CTX) == data_key.plaintext


async def test_deleted_key(kms: InMemoryKms) -> None:
    key = await kms.generate_data_key("ek-1", CTX)
    kms.delete_key("ek-1")
    with pytest.raises(KeyMissing):
        await kms.decrypt("ek-1", key.ciphertext, CTX)
    await kms.aclose()
