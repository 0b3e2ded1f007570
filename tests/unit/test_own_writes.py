from enforcer.core.events import ObjectEvent
from enforcer.core.verdict import Encryption
from enforcer.engine.objects import ObjectSnapshot, PreservedAttributes
from enforcer.engine.own_writes import OwnWrites


def written(key: str = "k", etag: str = '"e1"', version_id: str | None = None) -> ObjectSnapshot:
    return ObjectSnapshot(
        "b",
        key,
        etag,
        4,
        Encryption.SSE_KMS,
        "arn:aws:kms:ek",
        version_id,
        attributes=PreservedAttributes(metadata={"a": "b"}),
    )


def announced(
    key: str = "k", etag: str | None = "e1", version_id: str | None = None
) -> ObjectEvent:
    return ObjectEvent(event_id="x", event_name="s3:ObjectCreated:Put", bucket="b", key=key,
                       etag=etag, version_id=version_id, source_format="minio")  # fmt: skip


def test_claims_exactly_the_written_version_once() -> None:
    own = OwnWrites()
    own.remember(written())
    claimed = own.claim(announced())
    assert claimed is not None and claimed.written.kms_key == "arn:aws:kms:ek"
    assert claimed.written.attributes == PreservedAttributes()  # entries are kept small
    assert claimed.unpurged is None
    assert own.claim(announced()) is None


def test_other_etags_versions_and_etagless_events_are_not_ours() -> None:
    own = OwnWrites()
    own.remember(written(version_id="v2"))
    assert own.claim(announced(etag="e2", version_id="v2")) is None
    assert own.claim(announced(version_id="v3")) is None
    assert own.claim(announced(etag=None, version_id="v2")) is None
    assert own.claim(announced(version_id="v2")) is not None


def test_unversioned_null_version_matches() -> None:
    own = OwnWrites()
    own.remember(written())
    assert own.claim(announced(version_id="null")) is not None


def test_bounded_oldest_first() -> None:
    own = OwnWrites(capacity=2)
    for key in ("a", "b", "c"):
        own.remember(written(key))
    assert len(own) == 2
    assert own.claim(announced("a")) is None
    assert own.claim(announced("c")) is not None
