"""KES adapter: MinIO's key encryption service over HTTPS with a client certificate (mTLS).

KES authenticates a client by its certificate's public key (identity = SHA-256 of the DER
SubjectPublicKeyInfo), so an API key ``kes:v1:<base64(0x00 || Ed25519 seed)>`` works by deriving
the Ed25519 key and presenting any self-signed certificate for it.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import os
import re
import ssl
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from enforcer.crypto.chain import encode_context
from enforcer.engine.ports import DataKey, KeyInfo, KeyState
from enforcer.errors import (
    ConfigError,
    IntegrityError,
    KeyMissing,
    KmsNotAuthorized,
    KmsUnavailable,
)
from enforcer.kms.base import PROBE_POLICY, traced

_KEY_NAME = re.compile(r"[0-9A-Za-z_-]{1,80}")
_API_KEY_PREFIX = "kes:v1:"
DEK_SIZE = 32


def validate_key_name(name: str) -> str:
    """KES key names are 1-80 of ``[0-9A-Za-z_-]``; anything else is a policy mistake."""
    if not _KEY_NAME.fullmatch(name):
        raise ConfigError(f"invalid KES key name {name!r}: use 1-80 of [0-9A-Za-z_-]")
    return name


def parse_api_key(api_key: str) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 private key behind a ``kes:v1:`` API key."""
    if not api_key.startswith(_API_KEY_PREFIX):
        raise ConfigError("invalid KES API key: it must start with 'kes:v1:'")
    try:
        raw = base64.b64decode(api_key[len(_API_KEY_PREFIX) :], validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError("invalid KES API key: not base64") from None
    if len(raw) != 33 or raw[0] != 0:
        raise ConfigError("invalid KES API key: expected type 0 and a 32-byte Ed25519 seed")
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw[1:])


def identity_of(public_key: ed25519.Ed25519PublicKey) -> str:
    """The KES identity of a public key: hex SHA-256 of its DER SubjectPublicKeyInfo."""
    der = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    digest = hashes.Hash(hashes.SHA256())
    digest.update(der)
    return digest.finalize().hex()


def _self_signed_pem(key: ed25519.Ed25519PrivateKey) -> tuple[bytes, bytes]:
    """A short-lived self-signed client certificate for ``key`` (certificate PEM, key PEM)."""
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, identity_of(key.public_key()))])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=90))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, None)
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


def _load_api_key(context: ssl.SSLContext, api_key: str) -> None:
    """Load the API key's certificate into ``context``.

    ``ssl`` only reads key pairs from files, so they live for the duration of this call in a
    0700 temp dir as 0600 files and are removed as soon as OpenSSL has read them.
    """
    cert_pem, key_pem = _self_signed_pem(parse_api_key(api_key))
    with tempfile.TemporaryDirectory(prefix="enforcer-kes-") as folder:
        paths = []
        for name, data in (("client.crt", cert_pem), ("client.key", key_pem)):
            path = os.path.join(folder, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            paths.append(path)
        context.load_cert_chain(paths[0], paths[1])


def _ssl_context(
    client_cert: str | Path | None,
    client_key: str | Path | None,
    ca_path: str | Path | None,
    api_key: str | None,
) -> ssl.SSLContext:
    if (api_key is None) == (client_cert is None or client_key is None):
        raise ConfigError("KES needs either an API key or a client certificate and key")
    context = ssl.create_default_context(cafile=str(ca_path) if ca_path else None)
    try:
        if api_key is not None:
            _load_api_key(context, api_key)
        else:
            context.load_cert_chain(str(client_cert), str(client_key))
    except (OSError, ssl.SSLError) as exc:
        reason = exc.strerror or type(exc).__name__
        raise ConfigError(f"cannot load the KES client certificate: {reason}") from None
    return context


def _error_message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    if isinstance(body, dict):
        return str(body.get("message") or body.get("error") or "")
    return ""


def _raise_for_status(response: httpx.Response, key_name: str | None) -> None:
    """Translate a KES error response into the enforcer's error tree."""
    status = response.status_code
    if status < 400:
        return
    message = _error_message(response)
    where = f"KES {response.request.method} {response.request.url.path}"
    if status == 404 and key_name is not None:
        raise KeyMissing(f"KES key {key_name!r} does not exist", key_name=key_name)
    if status == 403:
        raise KmsNotAuthorized(f"{where}: not authorized ({message})")
    if status == 400 and message.startswith("decryption failed"):
        raise IntegrityError(f"KES could not decrypt the data key under {key_name!r}: {message}")
    if status >= 500:
        raise KmsUnavailable(f"{where}: HTTP {status} ({message})")
    raise ConfigError(f"{where}: HTTP {status} ({message})")


def _untrusted_server(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _b64_field(body: Any, name: str) -> bytes:
    try:
        return base64.b64decode(body[name], validate=True)
    except (KeyError, TypeError, binascii.Error, ValueError):
        raise KmsUnavailable(f"KES response lacks a valid {name!r} field") from None


class KesKms:
    """The :class:`~enforcer.kms.base.Kms` port over a KES server."""

    kind = "kes"

    def __init__(
        self,
        endpoint: str,
        *,
        client_cert: str | Path | None = None,
        client_key: str | Path | None = None,
        ca_path: str | Path | None = None,
        api_key: str | None = None,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """``transport`` replaces the network (tests use ``httpx.MockTransport``)."""
        self.endpoint = endpoint.rstrip("/")
        context = _ssl_context(client_cert, client_key, ca_path, api_key)
        self._client = httpx.AsyncClient(
            base_url=self.endpoint,
            verify=context,
            timeout=httpx.Timeout(timeout),
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"KesKms(endpoint={self.endpoint!r})"

    async def __aenter__(self) -> KesKms:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    async def _request(
        self, method: str, path: str, *, key_name: str | None = None, body: Any = None
    ) -> Any:
        try:
            response = await self._client.request(method, path, json=body)
        except httpx.TimeoutException as exc:
            reason = type(exc).__name__
            raise KmsUnavailable(f"KES at {self.endpoint} timed out ({reason})") from exc
        except httpx.TransportError as exc:
            if _untrusted_server(exc):  # a wrong CA never heals by retrying
                raise ConfigError(
                    f"KES at {self.endpoint}: server certificate not trusted (check the CA path)"
                ) from exc
            raise KmsUnavailable(f"KES at {self.endpoint} is unreachable: {exc}") from exc
        _raise_for_status(response, key_name)
        try:
            return response.json() if response.content else None
        except ValueError:
            raise KmsUnavailable(f"KES {path} returned a body that is not JSON") from None

    async def generate_data_key(self, key_name: str, context: Mapping[str, str]) -> DataKey:
        name = validate_key_name(key_name)
        payload = {"context": base64.b64encode(encode_context(context)).decode()}

        async def call() -> DataKey:
            body = await self._request(
                "PUT", f"/v1/key/generate/{name}", key_name=name, body=payload
            )
            plaintext = _b64_field(body, "plaintext")
            if len(plaintext) != DEK_SIZE:
                raise IntegrityError(f"KES returned a {len(plaintext)}-byte data key")
            return DataKey(plaintext, _b64_field(body, "ciphertext"), name)

        return await traced("kms.generate", call, key=name, kms=self.kind)

    async def decrypt(self, key_name: str, ciphertext: bytes, context: Mapping[str, str]) -> bytes:
        name = validate_key_name(key_name)
        payload = {
            "ciphertext": base64.b64encode(ciphertext).decode(),
            "context": base64.b64encode(encode_context(context)).decode(),
        }

        async def call() -> bytes:
            path = f"/v1/key/decrypt/{name}"
            body = await self._request("PUT", path, key_name=name, body=payload)
            return _b64_field(body, "plaintext")

        return await traced("kms.decrypt", call, key=name, kms=self.kind)

    async def describe_key(self, key_name: str) -> KeyInfo:
        name = validate_key_name(key_name)

        async def call() -> KeyInfo:
            body = await self._request("GET", f"/v1/key/describe/{name}", key_name=name)
            found = body.get("name", name) if isinstance(body, dict) else name
            return KeyInfo(name=name, key_id=str(found), arn=None, state=KeyState.ENABLED)

        return await traced("kms.describe", call, key=name, kms=self.kind)

    async def check_ready(self) -> None:
        async def call() -> None:
            body = await self._request("GET", "/v1/status")
            if isinstance(body, dict) and body.get("keystore_unreachable"):
                raise KmsUnavailable("KES is up but its key store is unreachable")

        await traced("kms.ready", call, PROBE_POLICY, kms=self.kind)

    # Not part of the port: the enforcer never creates or deletes keys (its KES policy forbids
    # it). Tests and the demo call these with an admin identity.
    async def create_key(self, key_name: str) -> None:
        name = validate_key_name(key_name)

        async def call() -> None:
            await self._request("PUT", f"/v1/key/create/{name}", key_name=name)

        await traced("kms.create", call, key=name, kms=self.kind)

    async def delete_key(self, key_name: str) -> None:
        name = validate_key_name(key_name)

        async def call() -> None:
            await self._request("DELETE", f"/v1/key/delete/{name}", key_name=name)

        await traced("kms.delete", call, key=name, kms=self.kind)

    async def aclose(self) -> None:
        await self._client.aclose()
