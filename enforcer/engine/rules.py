"""Resolving requirements and key names with I/O: bucket defaults (cached) and key aliases.

The decisions are pure (:mod:`enforcer.core.policy`, :mod:`enforcer.core.keyref`); this module
only feeds them: GetBucketEncryption results are cached for a TTL so a busy bucket costs one call
a minute, and AWS aliases are resolved through DescribeKey once.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable

from enforcer.core.keyref import is_alias, normalise_key_ref
from enforcer.core.policy import (
    BucketDefault,
    PolicyFile,
    RequiredKey,
    from_bucket_default,
    match_rule,
)
from enforcer.engine.ports import Storage

Clock = Callable[[], float]
AliasResolver = Callable[[str], Awaitable[str]]


class RuleResolver:
    """Policy file first (longest prefix), else the bucket's default EK, else out of scope."""

    def __init__(
        self, policy: PolicyFile, storage: Storage, ttl: float, clock: Clock = time.monotonic
    ) -> None:
        self._policy = policy
        self._storage = storage
        self._ttl = ttl
        self._clock = clock
        self._defaults: dict[str, tuple[float, BucketDefault | None]] = {}

    async def resolve(self, bucket: str, key: str) -> RequiredKey | None:
        rule = match_rule(self._policy, bucket, key)
        if rule is not None:
            return rule
        return from_bucket_default(await self._bucket_default(bucket))

    async def _bucket_default(self, bucket: str) -> BucketDefault | None:
        now = self._clock()
        cached = self._defaults.get(bucket)
        if cached is not None and now - cached[0] < self._ttl:
            return cached[1]
        value = await self._storage.bucket_default_key(bucket)
        self._defaults[bucket] = (now, value)
        return value


class KeyCanon:
    """Canonical key names for exact comparison; aliases resolved once through the KMS."""

    def __init__(self, resolve_alias: AliasResolver | None = None) -> None:
        self._resolve_alias = resolve_alias
        self._aliases: dict[str, str] = {}

    async def canonical(self, ref: str) -> str:
        name = normalise_key_ref(ref)
        if not is_alias(name) or self._resolve_alias is None:
            return name
        if name not in self._aliases:
            self._aliases[name] = normalise_key_ref(await self._resolve_alias(name))
        return self._aliases[name]

    async def canonical_set(self, refs: Iterable[str]) -> frozenset[str]:
        return frozenset([await self.canonical(ref) for ref in refs])
