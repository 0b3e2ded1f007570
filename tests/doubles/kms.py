"""An in-memory KMS for unit tests of the modules that use the port.

It behaves like a real adapter at the port: the same error classes, context binding (AES-GCM
with the canonical context as associated data), key states, and a switch that simulates an
outage. It does not retry or open spans: tests of retry behaviour belong to the caller.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from enforcer.crypto.chain import encode_context
from enforcer.engine.ports import DataKey, KeyInfo, KeyState
from enforcer.errors import AccessDenied, IntegrityError, KeyDisabled, KeyMissing, KmsUnavailable

_NONCE = 12


@dataclass
class _Key:
    key_id: str
    master: bytes = field(repr=False)
    state: KeyState = KeyState.ENABLED


class InMemoryKms:
    """The :class:`~enforcer.kms.base.Kms` port in memory.

    ``available = False`` makes every call raise KmsUnavailable; ``denied`` holds key names the
    caller may not use (AccessDenied); ``calls`` counts calls per operation.
    """

    kind = "fake"

    def __init__(self, keys: tuple[str, ...] = ()) -> None:
        self._keys: dict[str, _Key] = {}
        self._aliases: dict[str, str] = {}
        self.available = True
        self.denied: set[str] = set()
        self.calls: dict[str, int] = {}
        for name in keys:
            self.create_key(name)

    def __repr__(self) -> str:
        return f"InMemoryKms(keys={sorted(self._keys)!r}, available={self.available})"

    # -- test controls -------------------------------------------------------------------
    def create_key(self, name: str, *, alias: str | None = None) -> str:
        """Create a key; return its id. An alias (e.g. ``alias/x``) resolves to the same key."""
        key_id = f"fake-{len(self._keys) + 1:04d}"
        self._keys[name] = _Key(key_id=key_id, master=AESGCM.generate_key(bit_length=256))
        if alias:
            self._aliases[alias] = name
        return key_id

    def set_state(self, name: str, state: KeyState) -> None:
        self._keys[self._resolve(name)].state = state

    def delete_key(self, name: str) -> None:
        del self._keys[self._resolve(name)]

    # -- the port ------------------------------------------------------------------------
    def _resolve(self, name: str) -> str:
        return self._aliases.get(name, name)

    def _usable(self, op: str, key_name: str) -> _Key:
        self.calls[op] = self.calls.get(op, 0) + 1
        if not self.available:
            raise KmsUnavailable("the in-memory KMS is switched off")
        if key_name in self.denied:
            raise AccessDenied(f"not allowed to use key {key_name!r}")
        key = self._keys.get(self._resolve(key_name))
        if key is None:
            raise KeyMissing(f"key {key_name!r} does not exist", key_name=key_name)
        if op != "describe" and key.state is not KeyState.ENABLED:
            raise KeyDisabled(f"key {key_name!r} is {key.state}", key_name=key_name)
        return key

    async def generate_data_key(self, key_name: str, context: Mapping[str, str]) -> DataKey:
        key = self._usable("generate", key_name)
        plaintext = os.urandom(32)
        nonce = os.urandom(_NONCE)
        sealed = AESGCM(key.master).encrypt(nonce, plaintext, encode_context(context))
        wrapped = key.key_id.encode() + b":" + nonce + sealed
        return DataKey(plaintext, wrapped, self._resolve(key_name))

    async def decrypt(self, key_name: str, ciphertext: bytes, context: Mapping[str, str]) -> bytes:
        key = self._usable("decrypt", key_name)
        key_id, _, rest = ciphertext.partition(b":")
        if key_id != key.key_id.encode() or len(rest) <= _NONCE:
            raise IntegrityError(f"ciphertext was not produced by key {key_name!r}")
        try:
            return AESGCM(key.master).decrypt(rest[:_NONCE], rest[_NONCE:], encode_context(context))
        except InvalidTag:
            raise IntegrityError(f"decryption under key {key_name!r} failed") from None

    async def describe_key(self, key_name: str) -> KeyInfo:
        key = self._usable("describe", key_name)
        return KeyInfo(name=key_name, key_id=key.key_id, arn=None, state=key.state)

    async def check_ready(self) -> None:
        self.calls["ready"] = self.calls.get("ready", 0) + 1
        if not self.available:
            raise KmsUnavailable("the in-memory KMS is switched off")

    async def aclose(self) -> None:
        """Nothing to release."""
