"""Read-only S3 on the storage's client: the objects (or versions) under a prefix, the buckets,
whole small objects (inventory manifests).

:class:`~enforcer.storage.s3.S3Storage` holds one as ``storage.listing``, on its own client (the
same connection pool, closed with it). Errors are translated once, here, like the rest of the S3
adapter; every request is retried through :mod:`enforcer.retrying`.

**Listing with metadata.** MinIO extends ListObjectsV2 and ListObjectVersions with
``metadata=true``: each entry then carries a ``<UserMetadata>`` element holding, among others,
``X-Amz-Server-Side-Encryption`` and ``X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id`` (as
``arn:aws:kms:NAME``) and the ``X-Amz-Meta-*`` user metadata, plus ``<UserTags>`` (``a=b&c=d``).
Plaintext objects carry no SSE element, but always a ``content-type``, so an entry without
``<UserMetadata>`` means "the store did not answer" (AWS ignores the parameter): its
:attr:`ListedObject.facts` is ``None`` and the caller falls back to HEAD. botocore drops the
unknown elements, so a ``before-parse`` hook reads them from the raw XML of the same response.
"""

from __future__ import annotations

import asyncio
import contextlib
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl, unquote_plus

from botocore.exceptions import BotoCoreError, ClientError

from enforcer.engine.objects import ListedFacts, ListedObject
from enforcer.errors import AccessDenied, CredentialsRejected, EnforcerError
from enforcer.retrying import RetryPolicy, retry_transient
from enforcer.storage.errors import translate
from enforcer.storage.responses import encryption_of

#: ListObjectsV2's own maximum page size.
PAGE_SIZE = 1000
#: Where the ``before-parse`` hook leaves the entries' facts in the parsed page.
_METADATA_FIELD = "EnforcerListedMetadata"
_LIST_OPERATIONS = ("ListObjectsV2", "ListObjectVersions")
_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


# ---------------------------------------------------------------- pure parsing


def facts_from_user_metadata(user_metadata: dict[str, str], tags: str = "") -> ListedFacts:
    """MinIO's ``<UserMetadata>`` (header-named elements) → facts, the way HEAD reads them."""
    headers = {k.lower(): v for k, v in user_metadata.items()}
    head = {
        "ServerSideEncryption": headers.get("x-amz-server-side-encryption"),
        "SSEKMSKeyId": headers.get("x-amz-server-side-encryption-aws-kms-key-id"),
        "SSECustomerAlgorithm": headers.get("x-amz-server-side-encryption-customer-algorithm"),
    }
    metadata = {
        k.removeprefix("x-amz-meta-"): v for k, v in headers.items() if k.startswith("x-amz-meta-")
    }
    encryption, kms_key = encryption_of(head, metadata)
    return ListedFacts(encryption, kms_key, metadata, dict(parse_qsl(tags)))


def parse_listing_metadata(body: bytes) -> list[ListedFacts | None]:
    """Per ``Contents``/``Version`` entry of a raw listing, in order: its facts or None."""
    facts: list[ListedFacts | None] = parse_listing_page(body)[_METADATA_FIELD]
    return facts


def parse_listing_page(body: bytes) -> dict[str, Any]:
    """A raw ListObjectsV2/ListObjectVersions page → the fields botocore's parser would give
    (entries, truncation, continuation) plus each entry's facts, in one pass (pure)."""
    root = ET.fromstring(body)  # noqa: S314 - the response of our own signed request
    url_encoded = root.findtext(f"{_S3_NS}EncodingType") == "url"
    entries: list[dict[str, Any]] = []
    facts: list[ListedFacts | None] = []
    for entry in root:
        if entry.tag in (f"{_S3_NS}Contents", f"{_S3_NS}Version"):
            entries.append(_entry(entry, url_encoded))
            facts.append(_entry_facts(entry))
    prefixes = [
        {"Prefix": unquote_plus(text) if url_encoded else text}
        for text in (
            e.findtext(f"{_S3_NS}Prefix") or "" for e in root.iter(f"{_S3_NS}CommonPrefixes")
        )
    ]
    page: dict[str, Any] = {
        "Versions" if root.tag.endswith("ListVersionsResult") else "Contents": entries,
        "IsTruncated": root.findtext(f"{_S3_NS}IsTruncated") == "true",
        _METADATA_FIELD: facts,
    }
    if prefixes:
        page["CommonPrefixes"] = prefixes
    for name in ("NextContinuationToken", "NextKeyMarker", "NextVersionIdMarker"):
        value = root.findtext(f"{_S3_NS}{name}")
        if value:
            page[name] = unquote_plus(value) if url_encoded and name == "NextKeyMarker" else value
    return page


def _entry(entry: ET.Element, url_encoded: bool) -> dict[str, Any]:
    key = entry.findtext(f"{_S3_NS}Key") or ""
    modified = entry.findtext(f"{_S3_NS}LastModified")
    return {
        "Key": unquote_plus(key) if url_encoded else key,
        "ETag": entry.findtext(f"{_S3_NS}ETag") or "",
        "Size": int(entry.findtext(f"{_S3_NS}Size") or 0),
        "LastModified": datetime.fromisoformat(modified) if modified else None,
        "VersionId": entry.findtext(f"{_S3_NS}VersionId"),
        "IsLatest": entry.findtext(f"{_S3_NS}IsLatest") != "false",
    }


def _entry_facts(entry: ET.Element) -> ListedFacts | None:
    element = entry.find(f"{_S3_NS}UserMetadata")
    if element is None:
        return None
    user_metadata = {child.tag.removeprefix(_S3_NS): child.text or "" for child in element}
    return facts_from_user_metadata(user_metadata, entry.findtext(f"{_S3_NS}UserTags") or "")


def _with_metadata_query(params: dict[str, Any], **_: Any) -> None:
    """``before-call`` hook: ask for MinIO's metadata extension (signed like the rest)."""
    params["url"] += ("&" if "?" in params["url"] else "?") + "metadata=true"


def _parse_page_ourselves(
    response_dict: dict[str, Any], customized_response_dict: dict[str, Any], **_: Any
) -> None:
    """``before-parse`` hook: read the page once, here (botocore drops the metadata elements),
    and hand botocore an empty page of the same kind: its field-by-field parse and timestamp
    parsing cost more than the whole classification."""
    body = response_dict.get("body")
    if response_dict.get("status_code") != 200 or not body:
        return  # errors are botocore's to parse and ours to translate
    try:
        page = parse_listing_page(body)
    except (ET.ParseError, ValueError):
        return  # botocore's own parser reports a broken page
    customized_response_dict.update(page)
    kind = "ListVersionsResult" if "Versions" in page else "ListBucketResult"
    response_dict["body"] = f'<{kind} xmlns="{_S3_NS[1:-1]}"></{kind}>'.encode()


def _listed(
    bucket: str, entry: dict[str, Any], facts: ListedFacts | None, versions: bool
) -> ListedObject:
    version_id = entry.get("VersionId")
    return ListedObject(
        bucket=bucket,
        key=str(entry["Key"]),
        etag=str(entry.get("ETag", "")),
        size=int(entry.get("Size", 0)),
        version_id=version_id if version_id not in (None, "null") else None,
        is_latest=bool(entry.get("IsLatest", True)) if versions else True,
        last_modified=entry.get("LastModified"),
        facts=facts,
    )


# ---------------------------------------------------------------- the adapter


class S3Listing:
    """Listing (objects, versions, buckets), ``authenticate``, ``bucket_exists`` and whole-object
    reads on an aiobotocore ``client``."""

    def __init__(self, client: Any, retry: RetryPolicy | None = None) -> None:
        self._client = client
        self.retry = retry or RetryPolicy()

    def ask_for_metadata(self) -> None:
        """Send ``metadata=true`` on this client's listings from now on (idempotent)."""
        events = self._client.meta.events
        for operation in _LIST_OPERATIONS:
            events.register(
                f"before-call.s3.{operation}",
                _with_metadata_query,
                unique_id=f"enforcer-metadata-{operation}",
            )
            events.register(
                f"before-parse.s3.{operation}",
                _parse_page_ourselves,
                unique_id=f"enforcer-raw-{operation}",
            )

    async def list_keys(
        self, bucket: str, prefix: str = "", page_size: int = PAGE_SIZE
    ) -> AsyncIterator[str]:
        """The current objects' keys under ``prefix``, in ListObjectsV2 order (paginated)."""
        async for entry in self.list_objects(bucket, prefix, page_size=page_size):
            yield entry.key

    async def list_objects(
        self,
        bucket: str,
        prefix: str = "",
        *,
        start_after: str | None = None,
        through: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[ListedObject]:
        """The current objects under ``prefix`` after ``start_after`` and up to ``through``
        (the stop key, included; None: to the end), in key order."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        if start_after:
            params["StartAfter"] = start_after
        following = _next_objects_page if through is None else _stopping_at(through)
        async for page in self._pages("list_objects_v2", params, following):
            contents = page.get("Contents", [])
            for entry, facts in zip(contents, _facts_of(page, len(contents)), strict=True):
                if through is not None and str(entry["Key"]) > through:
                    return
                yield _listed(bucket, entry, facts, versions=False)

    async def list_groups(
        self, bucket: str, prefix: str, *, delimiter: str = "/", max_pages: int = 10
    ) -> tuple[list[str], bool]:
        """The top level under ``prefix``: its common prefixes and the keys beside them,
        sorted; and whether that is all of them (False after ``max_pages`` pages)."""
        params: dict[str, Any] = {
            "Bucket": bucket, "Prefix": prefix, "Delimiter": delimiter, "MaxKeys": PAGE_SIZE,
        }  # fmt: skip
        groups: list[str] = []
        pages = 0
        async for page in self._pages("list_objects_v2", params, _next_objects_page):
            groups += [str(p["Prefix"]) for p in page.get("CommonPrefixes", [])]
            groups += [str(e["Key"]) for e in page.get("Contents", [])]
            pages += 1
            if pages >= max_pages and page.get("IsTruncated"):
                return sorted(groups), False
        return sorted(groups), True

    async def key_after(self, bucket: str, prefix: str, start_after: str | None) -> str | None:
        """The first key under ``prefix`` after ``start_after`` (one request), or None."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": 1}
        if start_after:
            params["StartAfter"] = start_after
        page = await self._list_page("list_objects_v2", params)
        contents = page.get("Contents", [])
        return str(contents[0]["Key"]) if contents else None

    async def list_versions(
        self,
        bucket: str,
        prefix: str = "",
        *,
        key_marker: str | None = None,
        version_id_marker: str | None = None,
        page_size: int = PAGE_SIZE,
    ) -> AsyncIterator[ListedObject]:
        """Every version (not delete markers) under ``prefix`` after the markers, newest first
        per key."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        if key_marker:
            params["KeyMarker"] = key_marker
            if version_id_marker:
                params["VersionIdMarker"] = version_id_marker
        async for page in self._pages("list_object_versions", params, _next_versions_page):
            versions = page.get("Versions", [])
            for entry, facts in zip(versions, _facts_of(page, len(versions)), strict=True):
                yield _listed(bucket, entry, facts, versions=True)

    async def _pages(
        self,
        operation: str,
        params: dict[str, Any],
        following: Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None],
    ) -> AsyncIterator[dict[str, Any]]:
        """The pages in order, the next one already requested while the caller works through
        the current one (the store's time per page overlaps ours)."""
        pending: asyncio.Task[dict[str, Any]] | None = asyncio.create_task(
            self._list_page(operation, params)
        )
        try:
            while pending is not None:
                page = await pending
                after = following(params, page)
                pending = None
                if after is not None:
                    params = after
                    pending = asyncio.create_task(self._list_page(operation, params))
                yield page
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(asyncio.CancelledError, EnforcerError):
                    await pending

    async def _list_page(self, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        where = f"{operation} {params['Bucket']}/{params['Prefix']}"

        async def call() -> dict[str, Any]:
            try:
                return dict(await getattr(self._client, operation)(**params))
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, where) from exc

        page, _ = await retry_transient(call, self.retry)
        return page

    async def read_object(self, bucket: str, key: str) -> bytes:
        """A whole (small) object, such as an inventory manifest."""

        async def call() -> bytes:
            try:
                response = await self._client.get_object(Bucket=bucket, Key=key)
                async with response["Body"] as body:
                    return bytes(await body.read())
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, f"GET s3://{bucket}/{key}") from exc

        data, _ = await retry_transient(call, self.retry)
        return data

    async def authenticate(self) -> None:
        """One signed request (ListBuckets): :class:`CredentialsRejected` if the store does not
        accept our credentials. A plain AccessDenied means they were accepted (the user may just
        not list buckets), so it passes."""

        async def call() -> None:
            try:
                await self._client.list_buckets()
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "ListBuckets") from exc

        try:
            await retry_transient(call, self.retry)
        except CredentialsRejected:
            raise
        except AccessDenied:
            return

    async def bucket_exists(self, bucket: str) -> bool:
        """HeadBucket: False on 404; :class:`AccessDenied` if we may not see it."""

        async def call() -> bool:
            try:
                await self._client.head_bucket(Bucket=bucket)
            except ClientError as exc:
                if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                    return False
                raise translate(exc, f"HeadBucket {bucket}") from exc
            except BotoCoreError as exc:
                raise translate(exc, f"HeadBucket {bucket}") from exc
            return True

        exists, _ = await retry_transient(call, self.retry)
        return exists

    async def list_buckets(self) -> list[str]:
        """Every bucket this S3 user may list; :class:`AccessDenied` without s3:ListAllMyBuckets."""

        async def call() -> list[str]:
            try:
                response = await self._client.list_buckets()
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, "ListBuckets") from exc
            return [str(b["Name"]) for b in response.get("Buckets", [])]

        try:
            names, _ = await retry_transient(call, self.retry)
        except AccessDenied as exc:
            raise AccessDenied(f"{exc} (the S3 user lacks s3:ListAllMyBuckets)") from exc
        return names


def _next_objects_page(params: dict[str, Any], page: dict[str, Any]) -> dict[str, Any] | None:
    token = page.get("NextContinuationToken")
    if not page.get("IsTruncated") or not token:
        return None
    return params | {"ContinuationToken": token}


def _stopping_at(
    through: str,
) -> Callable[[dict[str, Any], dict[str, Any]], dict[str, Any] | None]:
    """Like :func:`_next_objects_page`, but no page is asked for once one reached past
    ``through``."""

    def following(params: dict[str, Any], page: dict[str, Any]) -> dict[str, Any] | None:
        contents = page.get("Contents", [])
        if contents and str(contents[-1]["Key"]) > through:
            return None
        return _next_objects_page(params, page)

    return following


def _next_versions_page(params: dict[str, Any], page: dict[str, Any]) -> dict[str, Any] | None:
    if not page.get("IsTruncated"):
        return None
    return params | {
        "KeyMarker": page.get("NextKeyMarker", ""),
        "VersionIdMarker": page.get("NextVersionIdMarker", ""),
    }


def _facts_of(page: dict[str, Any], count: int) -> list[ListedFacts | None]:
    """The page's per-entry facts (all None when the metadata hook was not asked or the store
    did not answer)."""
    facts: list[ListedFacts | None] = page.get(_METADATA_FIELD) or []
    if len(facts) != count:  # cannot pair them up safely: HEAD everything on this page
        return [None] * count
    return facts
