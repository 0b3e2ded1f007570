"""``enforcer keys status``: are the External Keys that matter usable, and is the KMS up?

The keys that matter are every ``key`` and ``accepted_keys`` of the policy file (objects under an
accepted key must stay readable too) and the bucket-default EKs of the buckets named with
``--bucket`` — or, with ``--all-buckets``, of every bucket the S3 user may list. Each key's state
comes from the KMS adapter (``describe_key``), after a readiness check (``check_ready``).

States follow the seed's lock/erase semantics: ``enabled``; ``disabled`` and ``pending_deletion``
lock the objects under the key (reversible); ``missing`` means deleted — the objects under it are
unreadable for good unless the KMS's key store is restored from a backup. ``unknown`` means the KMS
could not be asked. The report is JSON; it is ``ok`` (exit 0) only if the KMS is ready, every key
is enabled and every bucket could be read — so a runbook or a probe can use the exit code.
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any

from enforcer.app import open_kms
from enforcer.config import Settings
from enforcer.core.keyref import normalise_key_ref
from enforcer.core.policy import BucketDefault, PolicyFile, load_policy_file
from enforcer.engine.ports import Kms
from enforcer.errors import AccessDenied, ConfigError, EnforcerError, KeyMissing
from enforcer.retrying import retry_transient
from enforcer.storage.s3 import S3Storage, open_s3_storage

NO_KMS_MESSAGE = (
    "keys status needs a KMS client, but ENFORCER_KMS__KIND is 'none' (MinIO talks to its KMS "
    "itself): key state cannot be checked without a KMS. Set ENFORCER_KMS__KIND=kes or aws."
)


@dataclass
class KeyStatus:
    key: str
    used_by: list[str] = field(default_factory=list)
    state: str = "unknown"
    error: str | None = None


@dataclass
class StatusReport:
    kms: dict[str, Any]
    keys: dict[str, KeyStatus] = field(default_factory=dict)
    buckets: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def use(self, ref: str, source: str) -> None:
        """Record that ``source`` needs the key ``ref`` (one entry per canonical key)."""
        try:
            name = normalise_key_ref(ref)
        except ConfigError as exc:
            self.problems.append(f"{source}: {exc}")
            return
        self.keys.setdefault(name, KeyStatus(name)).used_by.append(source)

    @property
    def ok(self) -> bool:
        return not self.problems

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "kms": self.kms,
            "keys": [vars(status) for status in self.keys.values()],
            "buckets": self.buckets,
            "problems": self.problems,
        }


def keys_from_policy(report: StatusReport, policy: PolicyFile) -> None:
    for rule in policy.rules:
        source = f"policy:{rule.bucket}/{rule.prefix}"
        report.use(rule.key, source)
        for accepted in rule.accepted_keys:
            report.use(accepted, f"{source} (accepted)")


async def keys_from_buckets(
    report: StatusReport, storage: S3Storage, buckets: list[str], all_buckets: bool
) -> None:
    """Add the bucket-default EKs of ``buckets`` (plus every listable bucket if asked)."""
    names = list(dict.fromkeys(buckets))
    if all_buckets:
        try:
            names += [b for b in await storage.listing.list_buckets() if b not in names]
        except AccessDenied as exc:
            report.problems.append(f"cannot list buckets (ListBuckets denied): {exc}")
        except EnforcerError as exc:
            report.problems.append(f"cannot list buckets: {exc.code}: {exc}")
    for bucket in names:
        await _bucket_default(report, storage, bucket)


async def _bucket_default(report: StatusReport, storage: S3Storage, bucket: str) -> None:
    entry: dict[str, Any] = {"bucket": bucket, "default_key": None, "error": None}
    report.buckets.append(entry)

    async def read() -> BucketDefault | None:
        return await storage.bucket_default_key(bucket)

    try:
        default, _ = await retry_transient(read)
    except EnforcerError as exc:
        entry["error"] = f"{exc.code}: {exc}"
        report.problems.append(f"bucket {bucket}: cannot read its default encryption: {exc}")
        return
    if default is not None:
        entry["default_key"] = default.key
        report.use(default.key, f"bucket-default:{bucket}")


async def check_keys(report: StatusReport, kms: Kms) -> None:
    """Readiness first; each key's state only if the KMS answers."""
    try:
        await kms.check_ready()
    except EnforcerError as exc:
        report.kms |= {"ready": False, "error": f"{exc.code}: {exc}"}
        report.problems.append(f"KMS unreachable or not ready: {exc}")
        return
    report.kms["ready"] = True
    for status in report.keys.values():
        await _describe(status, kms)
        if status.state != "enabled":
            detail = f" ({status.error})" if status.error else ""
            report.problems.append(
                f"key {status.key} is {status.state}{detail}; used by {', '.join(status.used_by)}"
            )


async def _describe(status: KeyStatus, kms: Kms) -> None:
    try:
        info = await kms.describe_key(status.key)
    except KeyMissing:
        status.state, status.error = "missing", "the KMS has no such key (deleted?)"
    except AccessDenied as exc:
        status.state, status.error = "denied", str(exc)
    except ConfigError as exc:
        status.state, status.error = "invalid", str(exc)
    except EnforcerError as exc:
        status.state, status.error = "unknown", f"{exc.code}: {exc}"
    else:
        status.state = info.state.value


async def run_keys_status(
    settings: Settings, buckets: list[str], all_buckets: bool
) -> StatusReport:
    """``enforcer keys status``; raises ConfigError (exit 2) when no KMS is configured."""
    if settings.kms.kind == "none":
        raise ConfigError(NO_KMS_MESSAGE)
    report = StatusReport(kms={"kind": settings.kms.kind, "endpoint": settings.kms.endpoint})
    keys_from_policy(report, load_policy_file(settings.policy_file))
    async with AsyncExitStack() as stack:
        # The KMS client first: a setting it cannot work with fails before any request.
        kms = await stack.enter_async_context(open_kms(settings.kms))
        if buckets or all_buckets:
            storage = await stack.enter_async_context(open_s3_storage(settings.s3.options()))
            await keys_from_buckets(report, storage, buckets, all_buckets)
        await check_keys(report, kms)
    return report
