"""Read-only listing on the storage's S3 client: the objects under a prefix, the buckets.

Written as a mixin over ``self._client`` so :class:`~enforcer.storage.s3.S3Storage` can take it as a
base class; until then :meth:`S3Listing.of` borrows the storage's client (same connection pool,
closed by :func:`~enforcer.storage.s3.open_s3_storage`). Errors are translated once, here, like
the rest of the S3 adapter; every page is retried through :mod:`enforcer.retrying`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from enforcer.errors import AccessDenied, CredentialsRejected
from enforcer.retrying import RetryPolicy, retry_transient
from enforcer.storage.errors import translate
from enforcer.storage.s3 import S3Storage

#: ListObjectsV2's own maximum page size.
PAGE_SIZE = 1000


class S3ListingMixin:
    """``list_keys``, ``list_buckets``, ``authenticate`` and ``bucket_exists`` for any class
    that holds an aiobotocore ``_client``."""

    _client: Any
    retry: RetryPolicy = RetryPolicy()

    async def list_keys(
        self, bucket: str, prefix: str = "", page_size: int = PAGE_SIZE
    ) -> AsyncIterator[str]:
        """The current objects' keys under ``prefix``, in ListObjectsV2 order (paginated)."""
        params: dict[str, Any] = {"Bucket": bucket, "Prefix": prefix, "MaxKeys": page_size}
        while True:
            page = await self._list_page(params)
            for entry in page.get("Contents", []):
                yield str(entry["Key"])
            token = page.get("NextContinuationToken")
            if not page.get("IsTruncated") or not token:
                return
            params = params | {"ContinuationToken": token}

    async def _list_page(self, params: dict[str, Any]) -> dict[str, Any]:
        where = f"ListObjectsV2 {params['Bucket']}/{params['Prefix']}"

        async def call() -> dict[str, Any]:
            try:
                return dict(await self._client.list_objects_v2(**params))
            except (ClientError, BotoCoreError) as exc:
                raise translate(exc, where) from exc

        page, _ = await retry_transient(call, self.retry)
        return page

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


class S3Listing(S3ListingMixin):
    """The mixin on a borrowed client."""

    def __init__(self, client: Any) -> None:
        self._client = client

    @classmethod
    def of(cls, storage: S3Storage) -> S3Listing:
        return cls(storage._client)  # the same adapter's client: see the module doc
