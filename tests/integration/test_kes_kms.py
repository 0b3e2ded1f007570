"""KesKms: the API-key identity and error mapping (no server), then the real KES of the stack.

The stack tests use the enforcer's least-privilege identity (generate/decrypt/describe/list/
status, never create/delete) and create their keys with the admin identity.
"""

from __future__ import annotations

import base64
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import StackEnv

from enforcer.crypto import envelope
from enforcer.engine import envelope as sealing
from enforcer.engine.ports import KeyState
from enforcer.errors import AccessDenied, ConfigError, IntegrityError, KeyMissing, KmsUnavailable
from enforcer.kms.kes import KesKms, identity_of, parse_api_key, validate_key_name

pytestmark = pytest.mark.integration

CTX = {"bucket": "bucket/object"}


def random_api_key() -> str:
    seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return "kes:v1:" + base64.b64encode(b"\x00" + seed).decode()


def retries_of(spans: InMemorySpanExporter, name: str) -> int:
    (span,) = [s for s in spans.get_finished_spans() if s.name == name]
    return sum(1 for event in span.events if event.name == "retry")


# --- no server: API keys, names, error mapping ----------------------------------------------

# Public test vectors of minio/kms-go (kes/apikey_test.go): API key -> KES identity. The prefix
# is joined at run time so no API-key-shaped literal sits in the tree (secret scanners flag them).
KES_V1 = "kes:" + "v1:"
API_KEY_IDENTITIES = [
    (
        KES_V1 + "ACQpoGqx3rHHjT938Hfu5hVVQJHZWSqVI2Xp1KlYxFVw",
        "0426fa9a04bc2756b92fbe8a97e1a1e07b53ecf04ed33da22c33e5c9faeb8cbb",
    ),
    (
        KES_V1 + "AMxvd2uV1l5dDSRwuKZxSjuM5BDemlr+685+JAHA1TuJ",
        "ab785e3b95d80d72cc9c27cb9fde886a0bf9068a69d40e3bd08a54e68c3f2bf7",
    ),
    (
        KES_V1 + "AGaV6VXHasF0FnaB60WdCOeTZ8eTIDikL4zlN16c8NAs",
        "ea9826089311fe44d7590408ede9150f7c637b6cab0a91ee6fe1aa5d9fb366f6",
    ),
]


@pytest.mark.parametrize(("api_key", "identity"), API_KEY_IDENTITIES)
def test_api_key_identity(api_key: str, identity: str) -> None:
    assert identity_of(parse_api_key(api_key).public_key()) == identity


@pytest.mark.parametrize(
    "bad",
    [
        "v1:AM0F5TP43FYEShMzA42f2drFYGnBOiNx7UH4DK0nm08E",
        "kes:AM0F5TP43FYEShMzA42f2drFYGnBOiNx7UH4DK0nm08E",
        KES_V1 + "sbDvZFqUPFFwxRS4EkuoEb2nyyInkdKSUEYHXFHeTouW",  # type byte is not 0
        "kes:v1:%%%%",
        "kes:v1:AAAA",
    ],
)
def test_bad_api_keys(bad: str) -> None:
    with pytest.raises(ConfigError, match="invalid KES API key") as info:
        parse_api_key(bad)
    assert bad.rsplit(":", maxsplit=1)[-1] not in str(info.value)


@pytest.mark.parametrize("name", ["", "a" * 81, "has space", "slash/y", "dot.name", "ü"])
def test_bad_key_names(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid KES key name"):
        validate_key_name(name)


def test_good_key_names() -> None:
    assert validate_key_name("a" * 80) == "a" * 80
    assert validate_key_name("My_key-01") == "My_key-01"


def test_needs_exactly_one_credential() -> None:
    with pytest.raises(ConfigError, match="either an API key or a client certificate"):
        KesKms("https://127.0.0.1:1")
    with pytest.raises(ConfigError, match="either an API key or a client certificate"):
        KesKms("https://127.0.0.1:1", api_key=random_api_key(), client_cert="c", client_key="k")
    with pytest.raises(ConfigError, match="cannot load the KES client certificate"):
        KesKms("https://127.0.0.1:1", client_cert="/nonexistent.crt", client_key="/nonexistent")


Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Recorder:
    """A KES stand-in: a plain function behind httpx.MockTransport, recording requests."""

    respond: Handler
    requests: list[httpx.Request]

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)


def mock_kes(respond: Handler) -> tuple[KesKms, Recorder]:
    recorder = Recorder(respond, [])
    kes = KesKms(
        "https://kes.test", api_key=random_api_key(), transport=httpx.MockTransport(recorder)
    )
    return kes, recorder


def reply(status: int, body: Any) -> Handler:
    return lambda request: httpx.Response(status, json=body)


async def test_request_format() -> None:
    body = {"plaintext": base64.b64encode(bytes(32)).decode(), "ciphertext": "d3JhcHBlZA=="}
    kes, recorder = mock_kes(reply(200, body))
    async with kes:
        key = await kes.generate_data_key("ek", {"b": "b/o", "a": "<&>"})
    (request,) = recorder.requests
    assert (request.method, request.url.path) == ("PUT", "/v1/key/generate/ek")
    sent = json.loads(request.content)
    assert base64.b64decode(sent["context"]) == b'{"a":"\\u003c\\u0026\\u003e","b":"b/o"}'
    assert (key.plaintext, key.ciphertext, key.key_name) == (bytes(32), b"wrapped", "ek")
    assert "kes:v1" not in repr(kes)


@pytest.mark.parametrize(
    ("status", "body", "error", "attempts"),
    [
        (404, {"message": "key does not exist"}, KeyMissing, 1),
        (403, {"message": "not authorized: insufficient permissions"}, AccessDenied, 1),
        (400, {"message": "decryption failed: ciphertext is not authentic"}, IntegrityError, 1),
        (400, {"message": "invalid request body"}, ConfigError, 1),
        (502, {"message": "failed to read key"}, KmsUnavailable, 5),
        (500, {"error": "internal"}, KmsUnavailable, 5),
        (200, {"plaintext": "!!"}, KmsUnavailable, 5),
    ],
)
async def test_error_mapping(status: int, body: Any, error: type[Exception], attempts: int) -> None:
    kes, recorder = mock_kes(reply(status, body))
    async with kes:
        with pytest.raises(error):
            await kes.decrypt("ek", b"wrapped", CTX)
    assert len(recorder.requests) == attempts  # only transient errors are retried


async def test_short_data_key_is_refused() -> None:
    kes, _ = mock_kes(reply(200, {"plaintext": "AAAA", "ciphertext": "AAAA"}))
    async with kes:
        with pytest.raises(IntegrityError, match="3-byte data key"):
            await kes.generate_data_key("ek", CTX)


async def test_keystore_unreachable_is_not_ready() -> None:
    kes, recorder = mock_kes(reply(200, {"version": "x", "keystore_unreachable": True}))
    async with kes:
        with pytest.raises(KmsUnavailable, match="key store is unreachable"):
            await kes.check_ready()
    assert len(recorder.requests) == 1  # a probe answers once


# --- the stack's KES ------------------------------------------------------------------------


@dataclass(frozen=True)
class KesIdentity:
    endpoint: str
    cert: str
    key: str
    ca: str


@pytest.fixture(scope="session")
def enforcer_identity(stack: StackEnv) -> KesIdentity:
    env = stack.enforcer_env
    names = ("ENDPOINT", "CLIENT_CERT", "CLIENT_KEY", "CA_PATH")
    missing = [f"ENFORCER_KMS__{n}" for n in names if f"ENFORCER_KMS__{n}" not in env]
    if missing:
        pytest.skip(f"`deploy/local/stack env` does not export {', '.join(missing)}: no KES")
    return KesIdentity(*(env[f"ENFORCER_KMS__{n}"] for n in names))


@pytest.fixture
async def enforcer_kes(enforcer_identity: KesIdentity) -> AsyncIterator[KesKms]:
    i = enforcer_identity
    async with KesKms(i.endpoint, client_cert=i.cert, client_key=i.key, ca_path=i.ca) as kes:
        yield kes


@pytest.fixture
async def admin_kes(stack: StackEnv) -> AsyncIterator[KesKms]:
    async with KesKms(
        stack.kes_server,
        client_cert=stack.kes_admin_cert,
        client_key=stack.kes_admin_key,
        ca_path=stack.kes_ca,
    ) as kes:
        yield kes


@pytest.fixture
async def ek(admin_kes: KesKms) -> str:
    name = f"kms-test-{uuid.uuid4().hex[:12]}"
    await admin_kes.create_key(name)
    return name


@pytest.fixture
def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def enforcer_api_key(enforcer_identity: KesIdentity) -> str:
    """The enforcer's Ed25519 key file written as a ``kes:v1:`` API key."""
    with open(enforcer_identity.key, "rb") as handle:
        private = serialization.load_pem_private_key(handle.read(), None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    seed = private.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    return "kes:v1:" + base64.b64encode(b"\x00" + seed).decode()


async def test_generate_decrypt_describe(enforcer_kes: KesKms, ek: str) -> None:
    await enforcer_kes.check_ready()
    key = await enforcer_kes.generate_data_key(ek, CTX)
    assert len(key.plaintext) == 32
    assert key.key_name == ek
    assert await enforcer_kes.decrypt(ek, key.ciphertext, CTX) == key.plaintext
    info = await enforcer_kes.describe_key(ek)
    assert (info.name, info.key_id, info.arn, info.state) == (ek, ek, None, KeyState.ENABLED)


async def test_context_mismatch(enforcer_kes: KesKms, ek: str) -> None:
    key = await enforcer_kes.generate_data_key(ek, CTX)
    with pytest.raises(IntegrityError, match="decryption failed"):
        await enforcer_kes.decrypt(ek, key.ciphertext, {"bucket": "bucket/other"})
    with pytest.raises(IntegrityError):
        await enforcer_kes.decrypt(ek, key.ciphertext[:-1], CTX)


async def test_missing_key(enforcer_kes: KesKms) -> None:
    name = f"missing-{uuid.uuid4().hex[:12]}"
    with pytest.raises(KeyMissing) as info:
        await enforcer_kes.generate_data_key(name, CTX)
    assert info.value.key_name == name
    with pytest.raises(KeyMissing):
        await enforcer_kes.describe_key(name)


async def test_key_deleted_under_a_wrapped_dek(
    enforcer_kes: KesKms, admin_kes: KesKms, ek: str
) -> None:
    key = await enforcer_kes.generate_data_key(ek, CTX)
    await admin_kes.delete_key(ek)
    with pytest.raises(KeyMissing):
        await enforcer_kes.decrypt(ek, key.ciphertext, CTX)


async def test_enforcer_may_not_create_keys(enforcer_kes: KesKms) -> None:
    with pytest.raises(AccessDenied, match="not authorized"):
        await enforcer_kes.create_key(f"forbidden-{uuid.uuid4().hex[:12]}")


async def test_api_key_of_the_enforcer_identity(
    enforcer_identity: KesIdentity, enforcer_api_key: str, ek: str
) -> None:
    """An API key derived in memory is the same KES identity as the certificate pair."""
    endpoint, ca = enforcer_identity.endpoint, enforcer_identity.ca
    async with KesKms(endpoint, api_key=enforcer_api_key, ca_path=ca) as kes:
        key = await kes.generate_data_key(ek, CTX)
        assert await kes.decrypt(ek, key.ciphertext, CTX) == key.plaintext


async def test_envelope_through_kes(enforcer_kes: KesKms, ek: str) -> None:
    draft, oek = await sealing.seal_new_envelope(enforcer_kes, ek, "bucket", "a/b.txt")
    header = draft.complete(oek, plaintext_size=0)
    parsed = envelope.EnvelopeHeader.from_metadata(header.to_metadata())
    assert await sealing.open_envelope(enforcer_kes, parsed, "bucket", "a/b.txt") == oek


async def test_unreachable_kes(
    enforcer_identity: KesIdentity, closed_port: int, spans: InMemorySpanExporter
) -> None:
    i = enforcer_identity
    endpoint = f"https://127.0.0.1:{closed_port}"
    async with KesKms(endpoint, client_cert=i.cert, client_key=i.key, ca_path=i.ca) as kes:
        with pytest.raises(KmsUnavailable, match="unreachable"):
            await kes.generate_data_key("ek", CTX)
        with pytest.raises(KmsUnavailable):
            await kes.check_ready()
    assert retries_of(spans, "kms.generate") == 4  # 5 attempts, then give up
    assert retries_of(spans, "kms.ready") == 0


async def test_untrusted_server_certificate(enforcer_identity: KesIdentity) -> None:
    i = enforcer_identity
    async with KesKms(i.endpoint, client_cert=i.cert, client_key=i.key, ca_path=i.cert) as kes:
        with pytest.raises(ConfigError, match="not trusted"):
            await kes.check_ready()
