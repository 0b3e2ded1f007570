"""Which External Key an object must be encrypted under (pure resolution).

A policy file rule wins when one matches (longest prefix); else the bucket's default encryption
(``mc encrypt set sse-kms EK bucket`` = PutBucketEncryption) applies; else the object is out of
scope. Fetching and caching bucket defaults is I/O and lives in :mod:`enforcer.engine.rules`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from enforcer.core.keyref import normalise_key_ref
from enforcer.errors import ConfigError, describe_validation


class Mode(StrEnum):
    ENFORCE = "enforce"
    AUDIT = "audit"


class Strategy(StrEnum):
    """Who builds the fresh chain: the store with SSE-KMS (``sse-kms``), the store with
    dual-layer SSE-KMS (``dsse-kms``, AWS ``aws:kms:dsse``), or the enforcer (``envelope``)."""

    SSE_KMS = "sse-kms"
    DSSE_KMS = "dsse-kms"
    ENVELOPE = "envelope"

    @property
    def server_side(self) -> bool:
        """The store encrypts (and its write response names the key it used)."""
        return self is not Strategy.ENVELOPE


class VersionsPolicy(StrEnum):
    KEEP = "keep"
    PURGE_NONCOMPLIANT = "purge-noncompliant"


class Rule(BaseModel):
    """One policy file rule: objects under ``bucket/prefix`` must be under ``key``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    bucket: str = Field(min_length=1)
    prefix: str = ""
    key: str = Field(min_length=1, description="The required External Key (name, id, ARN or alias)")
    mode: Mode | None = Field(default=None, description="Overrides the global mode for this rule")
    strategy: Strategy = Field(
        default=Strategy.SSE_KMS,
        description="sse-kms: the store re-encrypts with SSE-KMS; dsse-kms: with dual-layer "
        "SSE-KMS (AWS aws:kms:dsse); envelope: the enforcer encrypts the object itself, and "
        "then only `enforcer decrypt` can read it: every other S3 reader gets ciphertext",
    )
    accepted_keys: tuple[str, ...] = Field(
        default=(), description="Other keys accepted as compliant (rotation windows)"
    )
    versions: VersionsPolicy = VersionsPolicy.KEEP

    @field_validator("key")
    @classmethod
    def _valid_key(cls, value: str) -> str:
        try:
            normalise_key_ref(value)
        except ConfigError as exc:  # surfaced as a validation error naming the field
            raise ValueError(str(exc)) from exc
        return value


class PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    rules: tuple[Rule, ...] = ()


class RequiredKey(BaseModel):
    """The resolved requirement for one object."""

    model_config = ConfigDict(frozen=True)

    key: str
    accepted_keys: tuple[str, ...] = ()
    mode: Mode | None = None
    strategy: Strategy = Strategy.SSE_KMS
    versions: VersionsPolicy = VersionsPolicy.KEEP
    source: str  # "policy:<bucket>/<prefix>" or "bucket-default"

    def all_keys(self) -> tuple[str, ...]:
        return (self.key, *self.accepted_keys)


def effective_mode(global_mode: Mode, rule_mode: Mode | None) -> Mode:
    """Audit wins: a rule may make itself a dry run, but nothing overrides a global dry run
    (``--dry-run`` and ``enforcer check`` must write nothing)."""
    return Mode.AUDIT if Mode.AUDIT in (global_mode, rule_mode) else Mode.ENFORCE


def match_rule(policy: PolicyFile, bucket: str, key: str) -> RequiredKey | None:
    """The rule with the longest prefix matching ``bucket/key``, if any."""
    candidates = [r for r in policy.rules if r.bucket == bucket and key.startswith(r.prefix)]
    if not candidates:
        return None
    rule = max(candidates, key=lambda r: len(r.prefix))
    return RequiredKey(
        key=rule.key,
        accepted_keys=rule.accepted_keys,
        mode=rule.mode,
        strategy=rule.strategy,
        versions=rule.versions,
        source=f"policy:{rule.bucket}/{rule.prefix}",
    )


@dataclass(frozen=True)
class BucketDefault:
    """A bucket's default encryption under a KMS key (GetBucketEncryption): ``dsse`` when it is
    dual-layer (``aws:kms:dsse``), whose objects must stay dual-layer."""

    key: str
    dsse: bool = False


def from_bucket_default(default: BucketDefault | None) -> RequiredKey | None:
    """The requirement a bucket's default SSE-KMS encryption implies (None: out of scope). A
    dual-layer default requires dual-layer objects: a rewrite never downgrades them."""
    if default is None or not default.key:
        return None
    strategy = Strategy.DSSE_KMS if default.dsse else Strategy.SSE_KMS
    return RequiredKey(key=default.key, strategy=strategy, source="bucket-default")


def load_policy_file(path: Path | None) -> PolicyFile:
    """Read and validate the YAML policy file; errors name the file and the field."""
    if path is None:
        return PolicyFile()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"policy file {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"policy file {path}: not valid YAML: {exc}") from exc
    if document is None:
        raise ConfigError(f"policy file {path}: empty; write 'rules: []' for no rules")
    try:
        return PolicyFile.model_validate(document)
    except ValidationError as exc:
        where, message = describe_validation(exc)
        raise ConfigError(f"policy file {path}: {where or '(top level)'}: {message}") from exc
