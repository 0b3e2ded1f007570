"""Exact matching of KMS key references (pure).

The same key is named in several ways: MinIO reports ``arn:aws:kms:<name>`` for a key stored as
``<name>``; AWS reports full key ARNs, and policies may name a key id, a key ARN, an alias or an
alias ARN. :func:`normalise_key_ref` turns each into one canonical form so verdicts compare with
``==``, never with a substring test. Aliases are resolved to key ids by the KMS adapter (AWS
DescribeKey) before comparison; that step is I/O and lives in the shell.
"""

from __future__ import annotations

from enforcer.errors import ConfigError


def normalise_key_ref(ref: str) -> str:
    """Canonical form: a key name/id, or ``alias/<name>``.

    >>> normalise_key_ref("arn:aws:kms:my-key")
    'my-key'
    >>> normalise_key_ref("arn:aws:kms:eu-west-1:111122223333:key/1234abcd-12ab")
    '1234abcd-12ab'
    >>> normalise_key_ref("arn:aws:kms:eu-west-1:111122223333:alias/app")
    'alias/app'
    """
    ref = ref.strip()
    if not ref:
        raise ConfigError("empty KMS key reference")
    if not ref.startswith("arn:"):
        return ref
    parts = ref.split(":", 5)
    if len(parts) == 4 and parts[2] == "kms":  # MinIO: arn:aws:kms:<name>
        return _non_empty(parts[3], ref)
    if len(parts) == 6 and parts[2] == "kms":  # AWS: arn:<partition>:kms:<region>:<acct>:<resource>
        resource = parts[5]
        if resource.startswith("key/"):
            return _non_empty(resource.removeprefix("key/"), ref)
        if resource.startswith("alias/"):
            return resource
    raise ConfigError(f"not a KMS key ARN: {ref!r}")


def is_alias(ref: str) -> bool:
    return normalise_key_ref(ref).startswith("alias/")


def _non_empty(name: str, ref: str) -> str:
    if not name:
        raise ConfigError(f"KMS key ARN without a key name: {ref!r}")
    return name
