"""One S3 transport: aiobotocore for every call, the lean path for the four hot ones.

The request path is decided once per call. The lean path (:mod:`enforcer.storage.lean`) answers
and fails exactly as aiobotocore does — an error status is botocore's ``ClientError``, a
transport failure botocore's ``HTTPClientError`` — so the storage adapter translates both with
the same code and nothing is ever sent twice. The one way back to aiobotocore is a request the
lean path refuses *before sending* (:class:`~enforcer.storage.lean.NotLean`: a parameter it would
not encode the way botocore does), counted by ``enforcer_s3_lean_fallbacks_total``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from aiobotocore.session import get_session
from botocore.exceptions import ClientError

from enforcer.storage.client import client_config, use_fast_timestamps
from enforcer.storage.lean import LeanS3, NotLean, open_lean
from enforcer.storage.options import S3Options
from enforcer.telemetry import LEAN_FALLBACKS

_READ_CHUNK = 1024 * 1024


class S3Transport:
    """The aiobotocore ``client`` (for every operation) and, when configured, the lean path."""

    def __init__(self, client: Any, lean: LeanS3 | None) -> None:
        self.client = client
        self.lean = lean  #: the lean path, None when off

    async def head_object(
        self, bucket: str, key: str, version_id: str | None
    ) -> dict[str, Any] | None:
        """HeadObject's response, or None when the object does not exist (404)."""
        if (lean := self.lean) is not None:
            with _unless_refused():
                return await lean.head_object(bucket, key, version_id)
        params = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
        try:
            return dict(await self.client.head_object(**params))
        except ClientError as exc:
            if exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") == 404:
                return None
            raise

    async def read_object(
        self, bucket: str, key: str, version_id: str | None, if_match: str
    ) -> AsyncIterator[bytes]:
        """The body of exactly this version (GET with If-Match), 1 MiB at a time."""
        if (lean := self.lean) is not None:
            try:
                async with lean.get_object(bucket, key, version_id, if_match) as stream:
                    async for chunk in stream.iter_chunked(_READ_CHUNK):
                        yield chunk
                return
            except NotLean as refused:  # raised on entering, before anything was sent
                _count(refused)
        params = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
        response = await self.client.get_object(**params, IfMatch=if_match)
        async with response["Body"] as body:
            while chunk := await body.read(_READ_CHUNK):
                yield chunk

    async def put_object(
        self, bucket: str, key: str, body: Any, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PutObject of ``body`` (bytes take the lean path; a file body aiobotocore's)."""
        if (lean := self.lean) is not None and isinstance(body, bytes):
            with _unless_refused():
                return await lean.put_object(bucket, key, body, params)
        return dict(await self.client.put_object(Bucket=bucket, Key=key, Body=body, **params))

    async def get_object_tagging(
        self, bucket: str, key: str, version_id: str | None
    ) -> dict[str, Any]:
        if (lean := self.lean) is not None:
            with _unless_refused():
                return await lean.get_object_tagging(bucket, key, version_id)
        params = {"Bucket": bucket, "Key": key} | ({"VersionId": version_id} if version_id else {})
        return dict(await self.client.get_object_tagging(**params))


@contextmanager
def _unless_refused() -> Iterator[None]:
    """Runs the lean call in the block; only :class:`NotLean` (raised before sending) is
    swallowed and counted, so the code after the block uses aiobotocore instead."""
    try:
        yield
    except NotLean as refused:
        _count(refused)


def _count(refused: NotLean) -> None:
    LEAN_FALLBACKS.add(1, {"operation": refused.operation, "reason": refused.reason})


@asynccontextmanager
async def open_s3_transport(options: S3Options) -> AsyncIterator[S3Transport]:
    """The aiobotocore client for ``options`` and the lean path beside it, closed on exit."""
    session = get_session()
    use_fast_timestamps(session)
    async with (
        session.create_client(
            "s3",
            endpoint_url=options.endpoint_url,
            region_name=options.region,
            aws_access_key_id=options.access_key_id,
            aws_secret_access_key=options.secret_access_key,
            verify=str(options.ca_bundle) if options.ca_bundle else None,
            config=client_config(options),
        ) as client,
        open_lean(session, client, options) as lean,
    ):
        yield S3Transport(client, lean)
