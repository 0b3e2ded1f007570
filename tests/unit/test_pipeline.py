import functools
from datetime import UTC, datetime, timedelta

import pytest
from doubles.storage import MemoryStorage

from enforcer.core.events import ObjectEvent
from enforcer.core.policy import Mode, PolicyFile, Rule, Strategy, VersionsPolicy
from enforcer.core.verdict import Action, Encryption, Verdict, rewrite_dual_layer
from enforcer.engine.objects import ObjectSnapshot, PreservedAttributes, SseKmsTarget, WriteResult
from enforcer.engine.pipeline import Pipeline
from enforcer.engine.rules import KeyCanon, RuleResolver
from enforcer.errors import AccessDenied, KeyMissing, StorageRejected, StorageUnavailable
from enforcer.retrying import RetryPolicy


def event(bucket: str = "b", key: str = "k") -> ObjectEvent:
    return ObjectEvent(
        event_id="e1",
        event_name="s3:ObjectCreated:Put",
        bucket=bucket,
        key=key,
        source_format="minio",
    )


def make_pipeline(
    storage: MemoryStorage, policy: PolicyFile | None = None, mode: Mode = Mode.ENFORCE
) -> Pipeline:
    async def sse_kms(snapshot: ObjectSnapshot, required, tags) -> WriteResult:  # type: ignore[no-untyped-def]
        dsse = rewrite_dual_layer(snapshot.encryption, required.strategy)  # as enforcer.app
        return await storage.rewrite_sse_kms(snapshot, SseKmsTarget(required.key, dsse), tags)

    return Pipeline(
        storage=storage,
        rules=RuleResolver(policy or PolicyFile(), storage, ttl=60),
        keys=KeyCanon(),
        mode=mode,
        rewriters={Strategy.SSE_KMS: sse_kms, Strategy.DSSE_KMS: sse_kms},
    )


@pytest.fixture
def storage() -> MemoryStorage:
    s = MemoryStorage()
    s.bucket_keys["b"] = "ek"
    return s


@pytest.mark.parametrize(
    ("encryption", "kms_key", "verdict", "action", "writes"),
    [
        (Encryption.NONE, None, Verdict.PLAINTEXT, Action.REENCRYPTED, 1),
        (Encryption.SSE_S3, None, Verdict.SSE_S3, Action.REENCRYPTED, 1),
        (Encryption.SSE_KMS, "arn:aws:kms:other", Verdict.WRONG_KEY, Action.REENCRYPTED, 1),
        (Encryption.SSE_KMS, "arn:aws:kms:ek", Verdict.COMPLIANT, Action.NONE, 0),
        (Encryption.SSE_C, None, Verdict.SSE_C, Action.SKIPPED, 0),
    ],
)
async def test_verdicts_and_actions(
    storage: MemoryStorage,
    encryption: Encryption,
    kms_key: str | None,
    verdict: Verdict,
    action: Action,
    writes: int,
) -> None:
    storage.put("b", "k", b"data", encryption, kms_key)
    outcome = await make_pipeline(storage).handle(event())
    assert (outcome.verdict, outcome.action, storage.writes) == (verdict, action, writes)
    latest = storage.latest("b", "k")
    assert latest is not None and latest.data == b"data"
    if writes:
        assert latest.snapshot.kms_key == "arn:aws:kms:ek"
        assert outcome.written is not None and outcome.written.etag == latest.snapshot.etag


async def test_gone_and_out_of_scope(storage: MemoryStorage) -> None:
    gone = await make_pipeline(storage).handle(event())
    assert (gone.verdict, gone.action) == (Verdict.GONE, Action.SKIPPED)
    storage.put("other", "k", b"x")
    oos = await make_pipeline(storage).handle(event(bucket="other"))
    assert (oos.verdict, oos.action, storage.writes) == (Verdict.OUT_OF_SCOPE, Action.NONE, 0)


async def test_dry_run_writes_nothing(storage: MemoryStorage) -> None:
    before = storage.put("b", "k", b"data")
    outcome = await make_pipeline(storage, mode=Mode.AUDIT).handle(event())
    assert (outcome.verdict, outcome.action) == (Verdict.PLAINTEXT, Action.WOULD_REENCRYPT)
    assert storage.writes == 0
    assert await storage.head("b", "k") == before


async def test_own_rewrite_event_resolves_compliant_without_writing(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"data")
    pipeline = make_pipeline(storage)
    await pipeline.handle(event())
    again = await pipeline.handle(event())
    assert (again.verdict, again.action, storage.writes) == (Verdict.COMPLIANT, Action.NONE, 1)
    assert storage.bucket_lookups == 1  # bucket default cached


async def test_concurrent_user_write_wins_and_is_reinspected(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"old")
    # Between our HEAD and our write the user writes new plaintext: our write must not land on it.
    storage.before_write.append(lambda: storage.put("b", "k", b"users-new"))
    outcome = await make_pipeline(storage).handle(event())
    latest = storage.latest("b", "k")
    assert latest is not None
    assert latest.data == b"users-new"  # the user's write won
    assert latest.snapshot.kms_key == "arn:aws:kms:ek"  # and was then enforced itself
    assert outcome.action is Action.REENCRYPTED
    assert "re-inspected" in (outcome.notes[0] if outcome.notes else "")


async def test_concurrent_compliant_user_write_is_left_alone(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"old")
    storage.before_write.append(
        lambda: storage.put("b", "k", b"users", Encryption.SSE_KMS, "arn:aws:kms:ek")
    )
    outcome = await make_pipeline(storage).handle(event())
    assert (outcome.verdict, outcome.action, storage.writes) == (Verdict.COMPLIANT, Action.NONE, 0)


async def test_gives_up_when_the_object_keeps_changing(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"v0")
    storage.before_write.extend(
        [functools.partial(storage.put, "b", "k", f"v{i}".encode()) for i in range(1, 20)]
    )
    pipeline = make_pipeline(storage)
    pipeline.max_inspections = 3
    outcome = await pipeline.handle(event())
    assert outcome.action is Action.SKIPPED
    assert "kept changing" in (outcome.reason or "")


async def test_tags_are_carried_over(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"data")
    stored = storage.latest("b", "k")
    assert stored is not None
    stored.tags.update({"team": "fin", "pii": "yes"})
    await make_pipeline(storage).handle(event())
    latest = storage.latest("b", "k")
    assert latest is not None and latest.tags == {"team": "fin", "pii": "yes"}


async def test_purge_deletes_only_the_inspected_version(storage: MemoryStorage) -> None:
    older = storage.put("b", "k", b"first", versioned=True)
    inspected = storage.put("b", "k", b"second", versioned=True)
    policy = PolicyFile(
        rules=(Rule(bucket="b", key="ek", versions=VersionsPolicy.PURGE_NONCOMPLIANT),)
    )
    outcome = await make_pipeline(storage, policy).handle(event())
    ids = [v.snapshot.version_id for v in storage.objects[("b", "k")]]
    assert outcome.purged_version_id == inspected.version_id
    assert older.version_id in ids and inspected.version_id not in ids
    assert outcome.written is not None and outcome.written.version_id in ids


PURGE = PolicyFile(rules=(Rule(bucket="b", key="ek", versions=VersionsPolicy.PURGE_NONCOMPLIANT),))


def versions(storage: MemoryStorage) -> list[str | None]:
    return [v.snapshot.version_id for v in storage.objects[("b", "k")]]


async def test_a_purge_that_failed_is_retried_by_the_notification_of_the_write(
    storage: MemoryStorage,
) -> None:
    """The store goes away between the rewrite and the purge: the event is not done (the
    outage propagates, the guard waits it out), and the rewrite's own notification, taken from
    memory, purges the old version."""
    inspected = storage.put("b", "k", b"x", versioned=True)
    pipeline = make_pipeline(storage, PURGE)
    pipeline.retry = RetryPolicy(attempts=1)
    delete = storage.delete_version
    storage.delete_version = down  # type: ignore[method-assign]
    with pytest.raises(StorageUnavailable):
        await pipeline.handle(announced(inspected))

    storage.delete_version = delete  # type: ignore[method-assign]
    written = storage.latest("b", "k")
    assert written is not None
    again = await pipeline.handle(announced(written.snapshot))
    assert (again.verdict, again.action) == (Verdict.COMPLIANT, Action.NONE)
    assert again.purged_version_id == inspected.version_id and not again.post_rewrite_error
    assert versions(storage) == [written.snapshot.version_id]


async def test_a_purge_that_failed_is_done_when_its_event_is_handled_again_after_a_restart(
    storage: MemoryStorage,
) -> None:
    """The process that rewrote the object is gone (no memory of its writes): the redelivered
    event finds the object compliant and purges the non-compliant version it names."""
    inspected = storage.put("b", "k", b"x", versioned=True)
    first = make_pipeline(storage, PURGE)
    first.retry = RetryPolicy(attempts=1)
    delete = storage.delete_version
    storage.delete_version = down  # type: ignore[method-assign]
    with pytest.raises(StorageUnavailable):
        await first.handle(announced(inspected))
    written = storage.latest("b", "k")
    assert written is not None and len(versions(storage)) == 2

    storage.delete_version = delete  # type: ignore[method-assign]
    restarted = make_pipeline(storage, PURGE)
    again = await restarted.handle(announced(inspected))
    assert (again.verdict, again.action) == (Verdict.COMPLIANT, Action.NONE)
    assert again.purged_version_id == inspected.version_id
    assert again.notes and "which this event announced" in again.notes[0]
    assert versions(storage) == [written.snapshot.version_id]
    # Handled once more (at-least-once): the version is gone, nothing else is deleted.
    assert (await restarted.handle(announced(inspected))).purged_version_id is None
    assert versions(storage) == [written.snapshot.version_id]


async def test_a_refused_purge_is_not_retried_and_the_record_says_scan_versions_finds_it(
    storage: MemoryStorage,
) -> None:
    inspected = storage.put("b", "k", b"x", versioned=True)

    async def refused(bucket: str, key: str, version_id: str) -> None:
        raise AccessDenied("DeleteObjectVersion: AccessDenied")

    storage.delete_version = refused  # type: ignore[method-assign]
    outcome = await make_pipeline(storage, PURGE).handle(announced(inspected))
    assert outcome.action is Action.REENCRYPTED and outcome.purged_version_id is None
    assert outcome.post_rewrite_error is not None
    assert outcome.post_rewrite_error.startswith("purge: access_denied")
    assert "the next enforcer scan --versions finds the version" in outcome.post_rewrite_error


async def test_an_event_naming_a_version_the_rule_keeps_or_that_is_compliant_purges_nothing(
    storage: MemoryStorage,
) -> None:
    kept = storage.put("b", "k", b"x", versioned=True)
    compliant = storage.put(
        "b", "k", b"y", Encryption.SSE_KMS, kms_key="arn:aws:kms:ek", versioned=True
    )
    # The rule keeps versions: the older plaintext version stays.
    outcome = await make_pipeline(storage).handle(announced(kept))
    assert (outcome.verdict, outcome.purged_version_id) == (Verdict.COMPLIANT, None)
    assert storage.heads == 1
    # Purge rule, but the event names the current (compliant) version: nothing else is touched.
    outcome = await make_pipeline(storage, PURGE).handle(announced(compliant))
    assert outcome.purged_version_id is None and len(versions(storage)) == 2


async def down(bucket: str, key: str, version_id: str) -> None:
    raise StorageUnavailable("DeleteObject: connection refused")


async def test_keep_versions_by_default(storage: MemoryStorage) -> None:
    inspected = storage.put("b", "k", b"x", versioned=True)
    outcome = await make_pipeline(storage).handle(event())
    ids = [v.snapshot.version_id for v in storage.objects[("b", "k")]]
    assert inspected.version_id in ids and len(ids) == 2
    assert outcome.purged_version_id is None


@pytest.mark.parametrize(
    "attributes",
    [
        PreservedAttributes(legal_hold="ON"),
        PreservedAttributes(
            lock_mode="GOVERNANCE", lock_retain_until=datetime.now(UTC) + timedelta(days=1)
        ),
    ],
)
async def test_locked_versions_are_never_purged(
    storage: MemoryStorage, attributes: PreservedAttributes
) -> None:
    inspected = storage.put("b", "k", b"x", versioned=True, attributes=attributes)
    policy = PolicyFile(
        rules=(Rule(bucket="b", key="ek", versions=VersionsPolicy.PURGE_NONCOMPLIANT),)
    )
    outcome = await make_pipeline(storage, policy).handle(event())
    assert outcome.action is Action.REENCRYPTED
    assert outcome.purged_version_id is None
    assert inspected.version_id in [v.snapshot.version_id for v in storage.objects[("b", "k")]]
    assert any("object lock" in n for n in outcome.notes)


async def test_verification_catches_a_store_that_ignored_the_key(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"x")

    async def lying(snapshot: ObjectSnapshot, required, tags) -> WriteResult:  # type: ignore[no-untyped-def]
        return await storage.rewrite_sse_kms(snapshot, SseKmsTarget("not-" + required.key), tags)

    pipeline = make_pipeline(storage)
    pipeline.rewriters[Strategy.SSE_KMS] = lying
    with pytest.raises(StorageRejected, match="verification failed"):
        await pipeline.handle(event())


async def test_missing_key_names_the_required_key(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"x")

    async def missing(snapshot: ObjectSnapshot, required, tags) -> WriteResult:  # type: ignore[no-untyped-def]
        raise KeyMissing("kms:KeyNotFound", key_name="")

    pipeline = make_pipeline(storage)
    pipeline.rewriters[Strategy.SSE_KMS] = missing
    with pytest.raises(KeyMissing) as info:
        await pipeline.handle(event())
    assert info.value.key_name == "ek"


async def test_policy_rule_beats_bucket_default_and_accepts_rotation_keys(
    storage: MemoryStorage,
) -> None:
    storage.put("b", "k", b"x", Encryption.SSE_KMS, "arn:aws:kms:old")
    policy = PolicyFile(rules=(Rule(bucket="b", key="new", accepted_keys=("old",)),))
    outcome = await make_pipeline(storage, policy).handle(event())
    assert (outcome.verdict, storage.writes, storage.bucket_lookups) == (Verdict.COMPLIANT, 0, 0)


async def test_missing_source_key_keeps_its_own_name(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"x", Encryption.SSE_KMS, "arn:aws:kms:deleted-ek")

    async def unreadable(snapshot: ObjectSnapshot, required, tags) -> WriteResult:  # type: ignore[no-untyped-def]
        raise KeyMissing("GET: kms:KeyNotFound", key_name="deleted-ek")

    pipeline = make_pipeline(storage)
    pipeline.rewriters[Strategy.SSE_KMS] = unreadable
    with pytest.raises(KeyMissing) as info:
        await pipeline.handle(event())
    assert info.value.key_name == "deleted-ek"


# ---------------------------------------------------------------- requests per object


def announced(written: ObjectSnapshot, **changes: str | None) -> ObjectEvent:
    """The store's notification of ``written`` (etags come unquoted in events)."""
    fields = {"etag": written.etag.strip('"'), "version_id": written.version_id} | changes
    return event().model_copy(update=fields)


async def test_rewrite_is_head_then_write_with_no_verify_head(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"data")
    outcome = await make_pipeline(storage).handle(event())
    assert outcome.action is Action.REENCRYPTED
    # Verified from the write's response; no tags counted, so none read.
    assert (storage.heads, storage.tag_reads, storage.writes) == (1, 0, 1)


async def test_tags_are_read_only_when_the_head_counts_some(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"data")
    stored = storage.latest("b", "k")
    assert stored is not None
    stored.tags["team"] = "fin"
    await make_pipeline(storage).handle(event())
    assert storage.tag_reads == 1


async def test_notification_of_own_write_is_audited_without_a_request(
    storage: MemoryStorage,
) -> None:
    storage.put("b", "k", b"data")
    pipeline = make_pipeline(storage)
    first = await pipeline.handle(event())
    assert first.written is not None
    heads = storage.heads
    written = storage.latest("b", "k")
    assert written is not None
    again = await pipeline.handle(announced(written.snapshot))
    assert (again.verdict, again.action) == (Verdict.COMPLIANT, Action.NONE)
    assert again.observed is not None and again.observed.etag == first.written.etag
    assert storage.heads == heads  # no request
    assert len(pipeline.own_writes) == 0  # used once: a redelivery is inspected as usual
    await pipeline.handle(announced(written.snapshot))
    assert storage.heads == heads + 1


async def test_a_user_write_after_ours_is_inspected(storage: MemoryStorage) -> None:
    storage.put("b", "k", b"data")
    pipeline = make_pipeline(storage)
    await pipeline.handle(event())
    user = storage.put("b", "k", b"users")  # plaintext again, a different ETag
    outcome = await pipeline.handle(announced(user))
    assert (outcome.verdict, outcome.action) == (Verdict.PLAINTEXT, Action.REENCRYPTED)


async def test_own_write_under_a_key_no_longer_required_is_inspected(
    storage: MemoryStorage,
) -> None:
    storage.put("b", "k", b"data")
    pipeline = make_pipeline(storage)
    await pipeline.handle(event())
    written = storage.latest("b", "k")
    assert written is not None
    storage.bucket_keys["b"] = "ek-2"
    pipeline.rules = RuleResolver(PolicyFile(), storage, ttl=60)  # the new default, uncached
    outcome = await pipeline.handle(announced(written.snapshot))
    assert (outcome.verdict, outcome.action) == (Verdict.WRONG_KEY, Action.REENCRYPTED)


@pytest.mark.parametrize(
    ("encryption", "kms_key", "dsse_default", "verdict", "written_as"),
    [
        # a dual-layer default: every rewrite asks for dual-layer, never aws:kms
        (Encryption.NONE, None, True, Verdict.PLAINTEXT, Encryption.SSE_KMS_DSSE),
        (Encryption.SSE_KMS, "arn:aws:kms:ek", True, Verdict.WRONG_KEY, Encryption.SSE_KMS_DSSE),
        (Encryption.SSE_KMS_DSSE, "arn:aws:kms:ek", True, Verdict.COMPLIANT, None),
        # a single-layer default: a dual-layer object under the key is compliant as it is, and
        # one under another key is rewritten dual-layer (the layer is kept)
        (Encryption.SSE_KMS_DSSE, "arn:aws:kms:ek", False, Verdict.COMPLIANT, None),
        (Encryption.SSE_KMS_DSSE, "arn:aws:kms:x", False, Verdict.WRONG_KEY,
         Encryption.SSE_KMS_DSSE),
        (Encryption.NONE, None, False, Verdict.PLAINTEXT, Encryption.SSE_KMS),
    ],
)  # fmt: skip
async def test_dual_layer_sse_kms_is_never_downgraded(
    storage: MemoryStorage,
    encryption: Encryption,
    kms_key: str | None,
    dsse_default: bool,
    verdict: Verdict,
    written_as: Encryption | None,
) -> None:
    if dsse_default:
        storage.dsse_buckets.add("b")
    storage.put("b", "k", b"data", encryption, kms_key)
    outcome = await make_pipeline(storage).handle(event())
    assert outcome.verdict is verdict
    latest = storage.latest("b", "k")
    assert latest is not None
    if written_as is None:
        assert (storage.writes, outcome.action) == (0, Action.NONE)
    else:
        assert outcome.action is Action.REENCRYPTED
        assert [t.dsse for t in storage.write_targets] == [written_as is Encryption.SSE_KMS_DSSE]
        assert latest.snapshot.encryption is written_as
