"""``enforcer policy check``: the policy file against the servers, strictly (for CI).

``enforcer run`` starts with a policy that names a bucket or a key that does not exist — it
reports each and enforces everything else, because a tenant deleting a bucket must not stop the
service for the others. A typo deserves a louder signal before it ships: this command prints
what it found as JSON and exits 2 (one line on stderr naming every missing bucket and key) when
anything is missing, 1 when S3 or the KMS cannot be asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enforcer.app import open_runtime
from enforcer.config import Settings
from enforcer.core.policy import Mode
from enforcer.errors import ConfigError
from enforcer.preflight import (
    check_s3_credentials,
    missing_buckets,
    missing_keys,
    policy_buckets,
    policy_keys,
)


@dataclass(frozen=True)
class PolicyCheck:
    policy_file: Path
    buckets: dict[str, bool]  #: bucket -> exists
    keys: dict[str, bool] | None  #: key -> exists; None without a KMS client to ask

    @property
    def missing(self) -> list[str]:
        buckets = [f"bucket {name!r}" for name, ok in self.buckets.items() if not ok]
        keys = [f"key {name!r}" for name, ok in (self.keys or {}).items() if not ok]
        return buckets + keys

    @property
    def ok(self) -> bool:
        return not self.missing

    def problem(self) -> str:
        """One line for stderr: what the policy names that does not exist."""
        return (
            f"policy file {self.policy_file} (ENFORCER_POLICY_FILE) names what does not exist: "
            + ", ".join(self.missing)
        )

    def as_dict(self) -> dict[str, Any]:
        def state(exists: bool) -> str:
            return "exists" if exists else "missing"

        return {
            "policy_file": str(self.policy_file),
            "buckets": {name: state(ok) for name, ok in self.buckets.items()},
            "keys": None if self.keys is None else {k: state(ok) for k, ok in self.keys.items()},
            "ok": self.ok,
        }


async def run_policy_check(settings: Settings) -> PolicyCheck:
    """Every bucket and key the policy file names, asked of S3 and (when configured) the KMS."""
    if settings.policy_file is None:
        raise ConfigError("policy check needs a policy file: set ENFORCER_POLICY_FILE")
    source = f"ENFORCER_POLICY_FILE {settings.policy_file}"
    async with open_runtime(settings, Mode.AUDIT) as runtime:
        policy = runtime.policy
        listing = runtime.storage.listing
        await check_s3_credentials(listing)
        buckets = policy_buckets(policy)
        gone = set(await missing_buckets(listing, buckets, source))
        keys = None
        if runtime.kms is not None:
            absent = set(await missing_keys(runtime.kms, policy, source))
            keys = {name: name not in absent for name in policy_keys(policy)}
    return PolicyCheck(settings.policy_file, {b: b not in gone for b in buckets}, keys)
