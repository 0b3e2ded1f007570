"""One object event through resolve → HEAD → verdict → [rewrite → verify → purge].

This is the shell around the pure decisions: it calls the adapters, retries transient failures
through :mod:`enforcer.retrying`, opens one span per step, and returns an :class:`Outcome` for the
audit record. A failed write precondition (a user wrote meanwhile) means: inspect again and
decide again — the user's write always wins.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import ParamSpec, TypeVar

from enforcer.core.events import ObjectEvent
from enforcer.core.policy import Mode, RequiredKey, Strategy, VersionsPolicy
from enforcer.core.verdict import Action, Decision, ObjectFacts, Plan, Verdict, decide, satisfies
from enforcer.engine.objects import ObjectSnapshot, WriteResult
from enforcer.engine.outcome import Dependency, Outcome
from enforcer.engine.own_writes import OwnWrites
from enforcer.engine.ports import Storage
from enforcer.engine.rules import KeyCanon, RuleResolver
from enforcer.errors import (
    CredentialsRejected,
    KeyMissing,
    PermanentError,
    PreconditionFailed,
    StorageRejected,
)
from enforcer.retrying import RetryPolicy, retry_transient
from enforcer.telemetry import step

T = TypeVar("T")
P = ParamSpec("P")

#: Rewrites one object under the required key for one strategy; raises PreconditionFailed.
Rewriter = Callable[[ObjectSnapshot, RequiredKey, dict[str, str]], Awaitable[WriteResult]]

#: Called, and awaited, right before each rewrite: the durable intent record goes out here.
Announce = Callable[[ObjectSnapshot, RequiredKey], Awaitable[None]]


@dataclass
class Pipeline:
    storage: Storage
    rules: RuleResolver
    keys: KeyCanon
    mode: Mode
    rewriters: dict[Strategy, Rewriter]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    max_inspections: int = 4
    now: Callable[[], datetime] = lambda: datetime.now(UTC)
    own_writes: OwnWrites = field(default_factory=OwnWrites)

    async def handle(
        self, event: ObjectEvent, outcome: Outcome | None = None, announce: Announce | None = None
    ) -> Outcome:
        """Run the event; ``outcome`` is filled as steps complete (the caller audits failures).
        ``announce`` runs before every rewrite; a rewrite never starts if it fails."""
        outcome = outcome if outcome is not None else Outcome()
        with step("resolve", bucket=event.bucket):
            outcome.required = await self._call(
                outcome, self.rules.resolve, event.bucket, event.key
            )
        if await self._own_write(event, outcome):
            return outcome
        for _ in range(self.max_inspections):
            with step("head", bucket=event.bucket):
                snapshot = await self._call(outcome, self.storage.head, event.bucket, event.key)
            outcome.observed, outcome.written = snapshot, None
            outcome.used.add(Dependency.STORAGE)
            decision = await self._decide(snapshot, outcome.required)
            outcome.verdict, outcome.action = decision.verdict, decision.action
            if decision.plan is not Plan.REENCRYPT:
                await self._purge_announced(event, snapshot, outcome)
                return outcome
            assert snapshot is not None
            assert outcome.required is not None
            try:
                await self._enforce(snapshot, outcome.required, outcome, announce)
            except PreconditionFailed:
                if outcome.written is not None:
                    outcome.notes.append(
                        f"rewrote as version {outcome.written.version_id or '-'} etag "
                        f"{outcome.written.etag}, then a newer write replaced it; re-inspected"
                    )
                else:
                    outcome.notes.append("object changed during rewrite; re-inspected")
                continue
            return outcome
        outcome.action = Action.SKIPPED
        outcome.reason = "object kept changing; each newer write is checked by its own event"
        return outcome

    async def _own_write(self, event: ObjectEvent, outcome: Outcome) -> bool:
        """The notification of the enforcer's own verified write: compliant, no request made
        (but the purge of the old version, if it failed after the write, is tried again)."""
        own = self.own_writes.claim(event)
        if own is None:
            return False
        decision = await self._decide(own.written, outcome.required)
        if decision.verdict is not Verdict.COMPLIANT:
            return False  # the requirement changed since: inspect as usual
        outcome.observed, outcome.verdict, outcome.action = (
            own.written,
            decision.verdict,
            decision.action,
        )
        outcome.own_write = True
        if own.unpurged is not None:
            await self._purge_or_note(own.unpurged, outcome)
        return True

    async def judge(self, snapshot: ObjectSnapshot, outcome: Outcome) -> Decision:
        """The decision for facts already known (from a listing): resolve and decide, with no
        request to the object. The caller acts on :attr:`Plan.NOTHING` only; anything else goes
        through :meth:`handle`, which inspects the object again before it writes."""
        outcome.required = await self._call(
            outcome, self.rules.resolve, snapshot.bucket, snapshot.key
        )
        outcome.observed = snapshot
        required = outcome.required
        accepted = await self.keys.canonical_set(required.all_keys()) if required else frozenset()
        decision = decide(await self._facts(snapshot), required, accepted, self.mode)
        outcome.verdict, outcome.action = decision.verdict, decision.action
        return decision  # no span per listed object: a listing has millions

    async def handle_noncurrent(self, event: ObjectEvent, outcome: Outcome) -> Outcome:
        """A non-current version (``event.version_id``): it cannot be rewritten in place (a
        rewrite makes a new current version), so it is reported, and purged only where the rule
        says ``versions: purge-noncompliant`` — never while object lock protects it."""
        assert event.version_id is not None
        outcome.required = await self._call(outcome, self.rules.resolve, event.bucket, event.key)
        with step("head", bucket=event.bucket):
            snapshot = await self._call(
                outcome, self.storage.head, event.bucket, event.key, event.version_id
            )
        outcome.observed = snapshot
        decision = await self._decide(snapshot, outcome.required)
        outcome.verdict, outcome.action = decision.verdict, decision.action
        if decision.plan is Plan.NOTHING:
            return outcome
        assert snapshot is not None
        assert outcome.required is not None
        if outcome.required.versions is not VersionsPolicy.PURGE_NONCOMPLIANT:
            outcome.action = Action.SKIPPED
            outcome.reason = "non-current version: reported only (the rule keeps versions)"
        elif decision.plan is Plan.REPORT:
            outcome.action = Action.WOULD_PURGE
        else:
            await self._purge(snapshot, outcome)
            outcome.action = Action.PURGED if outcome.purged_version_id else Action.SKIPPED
        return outcome

    async def _decide(
        self, snapshot: ObjectSnapshot | None, required: RequiredKey | None
    ) -> Decision:
        with step("verdict") as span:
            accepted = (
                await self.keys.canonical_set(required.all_keys()) if required else frozenset()
            )
            facts = await self._facts(snapshot)
            decision = decide(facts, required, accepted, self.mode)
            span.set_attribute("verdict", decision.verdict.value)
            span.set_attribute("plan", decision.plan.value)
            if required is not None:
                span.set_attribute("ek", required.key)
        return decision

    async def _facts(self, snapshot: ObjectSnapshot | None) -> ObjectFacts | None:
        if snapshot is None:
            return None
        kms_key = await self.keys.canonical(snapshot.kms_key) if snapshot.kms_key else None
        return ObjectFacts(snapshot.encryption, kms_key)

    async def _enforce(
        self,
        snapshot: ObjectSnapshot,
        required: RequiredKey,
        outcome: Outcome,
        announce: Announce | None,
    ) -> None:
        rewrite = self.rewriters[required.strategy]
        tags = {}
        if snapshot.tag_count != 0:  # the HEAD counts them (x-amz-tagging-count); None: unknown
            tags = await self._call(outcome, self.storage.read_tags, snapshot)
        if announce is not None:
            await announce(snapshot, required)
        with step(
            "rewrite", bucket=snapshot.bucket, ek=required.key, strategy=required.strategy.value
        ):
            try:
                written = await self._call(outcome, rewrite, snapshot, required, tags)
            except KeyMissing as exc:
                if exc.key_name:
                    raise
                raise KeyMissing(str(exc), key_name=required.key) from exc
        outcome.written = written  # from here on, every record names the new version
        outcome.used.add(Dependency.KMS)  # the store (or we) built a chain under the EK
        with step("verify", bucket=snapshot.bucket):
            after = await self._verify(snapshot, required, written, outcome)
        if required.versions is not VersionsPolicy.PURGE_NONCOMPLIANT or not snapshot.version_id:
            self.own_writes.remember(after)
            return
        self.own_writes.remember(after, unpurged=snapshot)  # until the purge is done
        if await self._purge_or_note(snapshot, outcome):
            self.own_writes.remember(after)

    async def _purge_or_note(self, old: ObjectSnapshot, outcome: Outcome) -> bool:
        """Purge ``old``. A refusal is noted on ``outcome`` (the object itself is compliant:
        only the old version stays, for the next ``enforcer scan --versions``) and returns
        False. An outage propagates: the event is not done, and its next round — at once when
        the storage is back, or its redelivery after a restart — purges the version it names
        (:meth:`_purge_announced`)."""
        try:
            await self._purge(old, outcome)
        except PermanentError as exc:
            if isinstance(exc, CredentialsRejected):
                raise  # our identity, not this version: an outage
            outcome.post_rewrite_error = (
                f"purge: {exc.code}: {exc}; not retried: the next enforcer scan --versions "
                "finds the version"
            )
            return False
        return True

    async def _purge_announced(
        self, event: ObjectEvent, current: ObjectSnapshot | None, outcome: Outcome
    ) -> None:
        """The event names a version that is no longer current, the current one is compliant,
        and the rule purges non-compliant versions: purge the named one if it is still there
        and non-compliant. This is how a purge that failed after our rewrite (the store went
        away) is done when the event is handled again — redelivered after a restart too."""
        required, version_id = outcome.required, event.version_id
        if (
            required is None
            or required.versions is not VersionsPolicy.PURGE_NONCOMPLIANT
            or current is None
            or outcome.verdict is not Verdict.COMPLIANT
            or version_id in (None, "", "null", current.version_id)
        ):
            return
        with step("head", bucket=event.bucket):
            named = await self._call(
                outcome, self.storage.head, event.bucket, event.key, version_id
            )
        if named is None or (await self._decide(named, required)).plan is not Plan.REENCRYPT:
            return  # gone (purged before), or nothing wrong with it
        if await self._purge_or_note(named, outcome) and outcome.purged_version_id:
            outcome.notes.append(
                f"purged version {version_id}, which this event announced: non-compliant and "
                "no longer current"
            )

    async def _verify(
        self, before: ObjectSnapshot, required: RequiredKey, written: WriteResult, outcome: Outcome
    ) -> ObjectSnapshot:
        """The new version must be under an accepted key; return it as verified."""
        after = await self._read_back(before, required, written, outcome)
        facts = await self._facts(after)
        accepted = await self.keys.canonical_set(required.all_keys())
        wanted = facts is not None and satisfies(facts.encryption, required.strategy)
        if facts is None or not wanted or facts.kms_key not in accepted:
            raise StorageRejected(
                f"verification failed: {before.bucket}/{before.key} reads back as "
                f"{after.encryption.value} {after.kms_key or ''}, not {required.key}"
            )
        return after

    async def _read_back(
        self, before: ObjectSnapshot, required: RequiredKey, written: WriteResult, outcome: Outcome
    ) -> ObjectSnapshot:
        """The new version: from the write's response when it names the encryption the store
        applied (SSE-KMS on MinIO and AWS), else with a HEAD of exactly that version."""
        if written.encryption is not None and required.strategy.server_side:
            return replace(before, etag=written.etag, version_id=written.version_id,
                           encryption=written.encryption, kms_key=written.kms_key)  # fmt: skip
        after = await self._call(
            outcome, self.storage.head, before.bucket, before.key, written.version_id
        )
        if after is None or after.etag != written.etag:
            raise PreconditionFailed("object replaced right after our rewrite")
        if after.size != before.size and required.strategy.server_side:
            raise StorageRejected(f"verification failed: size {after.size} != {before.size}")
        return after

    async def _purge(self, old: ObjectSnapshot, outcome: Outcome) -> None:
        assert old.version_id is not None
        if old.attributes.is_locked(self.now()):
            outcome.notes.append(f"kept version {old.version_id}: object lock")
            return
        with step("purge", bucket=old.bucket):
            await self._call(
                outcome, self.storage.delete_version, old.bucket, old.key, old.version_id
            )
        outcome.purged_version_id = old.version_id

    async def _call(
        self, outcome: Outcome, fn: Callable[P, Awaitable[T]], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """``fn(*args, **kwargs)`` under the retry policy; the attempts are kept on ``outcome``."""
        value, attempts = await retry_transient(lambda: fn(*args, **kwargs), self.retry)
        outcome.attempts = max(outcome.attempts, attempts)
        return value
