"""S3Storage: the engine's storage port on S3 (MinIO and AWS S3), over one transport.

Every request goes through :class:`~enforcer.storage.transport.S3Transport` (aiobotocore, with
the lean path for the hot calls) and every error is translated once, here, by
:mod:`enforcer.storage.errors`. The same clients serve the read-only :attr:`S3Storage.listing`.

The rewrite never trusts an unlocked read-modify-write: MinIO's in-place CopyObject reads its source
without a lock, so every rewrite ends in a request the server checks atomically under the object's
write lock — PutObject or CompleteMultipartUpload with ``If-Match`` (docs/storage-facts.md). A 412
means a user wrote meanwhile; the caller re-inspects and never overwrites.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import IO, Any

from botocore.exceptions import BotoCoreError, ClientError

from enforcer.core.policy import BucketDefault
from enforcer.core.verdict import Encryption
from enforcer.engine.objects import (
    SPOOL_IN_MEMORY,
    ObjectSnapshot,
    SseKmsTarget,
    WriteResult,
    check_read_size,
)
from enforcer.errors import AccessDenied, CredentialsRejected, StorageRejected
from enforcer.storage.errors import error_code, is_sse_c_refusal, translate
from enforcer.storage.listing import S3Listing
from enforcer.storage.options import S3Options
from enforcer.storage.responses import snapshot_from_head, write_headers, write_result
from enforcer.storage.transport import S3Transport, open_s3_transport

#: Objects up to this size are rewritten from one bytes object, without a spool.
SMALL_BODY = 1024 * 1024
# No default encryption; or no bucket at all (deleted since the event): its objects are gone.
_NO_ENCRYPTION_CONFIG = {"ServerSideEncryptionConfigurationNotFoundError", "NoSuchBucket"}


@asynccontextmanager
async def open_s3_storage(options: S3Options) -> AsyncIterator[S3Storage]:
    """The storage port on S3; its clients are closed when the context exits."""
    async with open_s3_transport(options) as transport:
        yield S3Storage(transport, options)


class S3Storage:
    """The storage port (:class:`~enforcer.engine.ports.BodyStorage`) on one S3 transport."""

    def __init__(self, transport: S3Transport, options: S3Options) -> None:
        self._transport = transport
        self._client = transport.client  # the operations the lean path does not take
        self._identity_confirmed = False
        self.multipart_threshold = options.multipart_threshold
        self.part_size = options.part_size
        self.copy_if_match = options.copy_if_match
        #: Read-only listing over the same clients (the scan, the preflight, ``keys status``).
        self.listing = S3Listing(transport.client)

    # ------------------------------------------------------------ health

    async def check_identity(self) -> None:
        """The storage probe: one signed ListBuckets. Returns when S3 answered for our identity;
        raises StorageUnavailable while it does not answer, CredentialsRejected when it refuses
        the identity itself (unknown key, bad signature) — and also on AccessDenied once a
        ListBuckets has worked before (the grant was revoked). A store that never allowed
        ListBuckets (AWS without s3:ListAllMyBuckets) cannot tell: it answered, so it is up."""
        try:
            await self._client.list_buckets()
        except (ClientError, BotoCoreError) as exc:
            error = translate(exc, "ListBuckets")
            if isinstance(error, AccessDenied) and not isinstance(error, CredentialsRejected):
                if not self._identity_confirmed:
                    return
                raise CredentialsRejected(f"{error} (ListBuckets worked before)") from exc
            raise error from exc
        self._identity_confirmed = True

    # ------------------------------------------------------------ inspection

    async def head(
        self, bucket: str, key: str, version_id: str | None = None
    ) -> ObjectSnapshot | None:
        try:
            found = await self._transport.head_object(bucket, key, version_id)
        except ClientError as exc:
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if status == 400:
                params = {"Bucket": bucket, "Key": key}
                exc = await self._explain_bad_request(exc, params | _version(version_id))
                if is_sse_c_refusal(*error_code(exc)):
                    return ObjectSnapshot(
                        bucket, key, "", 0, Encryption.SSE_C, version_id=version_id
                    )
            raise translate(exc, f"HEAD {bucket}/{key}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"HEAD {bucket}/{key}") from exc
        return None if found is None else snapshot_from_head(bucket, key, found)

    async def _explain_bad_request(self, exc: ClientError, params: dict[str, str]) -> ClientError:
        """The store's own words for a HEAD answered 400 (a HEAD has no error body).

        MinIO names most errors in headers of the HEAD answer; when they are missing (AWS, or
        MinIO refusing the path itself) a one-byte GET of the same object is asked, whose error
        has a body. Only that code and message decide the verdict: an SSE-C object is one the
        store says is SSE-C, never just any 400 (a key the store refuses is a bad event).
        """
        if not error_code(exc)[0].isdigit():
            return exc
        try:
            response = await self._client.get_object(**params, Range="bytes=0-0")
        except ClientError as get_exc:
            return get_exc
        except BotoCoreError:
            return exc
        async with response["Body"] as body:
            await body.read()
        return exc

    async def bucket_default_key(self, bucket: str) -> BucketDefault | None:
        try:
            response = await self._client.get_bucket_encryption(Bucket=bucket)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in _NO_ENCRYPTION_CONFIG:
                return None
            raise translate(exc, f"GetBucketEncryption {bucket}") from exc
        except BotoCoreError as exc:
            raise translate(exc, f"GetBucketEncryption {bucket}") from exc
        for rule in response["ServerSideEncryptionConfiguration"].get("Rules", []):
            default = rule.get("ApplyServerSideEncryptionByDefault", {})
            algorithm = default.get("SSEAlgorithm")
            if algorithm in ("aws:kms", "aws:kms:dsse") and default.get("KMSMasterKeyID"):
                return BucketDefault(str(default["KMSMasterKeyID"]), algorithm == "aws:kms:dsse")
        return None

    async def read_tags(self, snapshot: ObjectSnapshot) -> dict[str, str]:
        try:
            response = await self._transport.get_object_tagging(
                snapshot.bucket, snapshot.key, snapshot.version_id
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"GetObjectTagging {snapshot.bucket}/{snapshot.key}") from exc
        return {t["Key"]: t["Value"] for t in response.get("TagSet", [])}

    async def delete_version(self, bucket: str, key: str, version_id: str) -> None:
        # MinIO grants version deletes only with s3:DeleteObject, which also allows deleting the
        # latest object: never send a delete without an explicit version id.
        if not version_id:
            raise StorageRejected(f"refusing to delete {bucket}/{key} without a version id")
        try:
            await self._client.delete_object(Bucket=bucket, Key=key, VersionId=version_id)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, f"DeleteObject {bucket}/{key}?versionId={version_id}") from exc

    # ------------------------------------------------------------ rewrite

    async def rewrite_sse_kms(
        self, snapshot: ObjectSnapshot, target: SseKmsTarget, tags: dict[str, str]
    ) -> WriteResult:
        headers = write_headers(snapshot.attributes, tags) | {
            "ServerSideEncryption": "aws:kms:dsse" if target.dsse else "aws:kms",
            "SSEKMSKeyId": target.key_name,
        }
        where = f"rewrite {snapshot.bucket}/{snapshot.key}"
        try:
            if snapshot.size > self.multipart_threshold:
                return await self._rewrite_multipart(snapshot, headers)
            if self.copy_if_match:
                return await self._rewrite_copy(snapshot, headers)
            return await self._rewrite_single(snapshot, headers)
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, where, target.key_name) from exc

    async def _rewrite_single(
        self, snapshot: ObjectSnapshot, headers: dict[str, Any]
    ) -> WriteResult:
        """Copy the bytes through a spool (memory up to 8 MiB, then disk) into an If-Match PUT."""
        if snapshot.size <= SMALL_BODY:  # bytes: aiohttp sends a file body via a worker thread
            body = b"".join([chunk async for chunk in self.read_chunks(snapshot)])
            check_read_size(snapshot, len(body))
            digest = hashlib.md5(body, usedforsecurity=False).digest()
            md5_header = {"ContentMD5": base64.b64encode(digest).decode()}
            return await self._put(snapshot, body, len(body), headers | md5_header)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY) as spool:
            md5 = hashlib.md5(usedforsecurity=False)
            size = 0
            async for chunk in self.read_chunks(snapshot):
                md5.update(chunk)
                spool.write(chunk)
                size += len(chunk)
            check_read_size(snapshot, size)
            spool.seek(0)
            content_md5 = base64.b64encode(md5.digest()).decode()  # object lock requires it
            return await self._put(snapshot, spool, size, headers | {"ContentMD5": content_md5})

    async def _rewrite_copy(self, snapshot: ObjectSnapshot, headers: dict[str, Any]) -> WriteResult:
        """In-place CopyObject, for stores that check If-Match on it (AWS): the copy reads
        exactly the inspected version and replaces it only if it is still current, server-side.
        Tags are copied by the store from that same version."""
        headers = {k: v for k, v in headers.items() if k != "Tagging"}
        response = await self._client.copy_object(
            Bucket=snapshot.bucket,
            Key=snapshot.key,
            CopySource=_object_params(snapshot),
            CopySourceIfMatch=snapshot.etag,
            IfMatch=snapshot.etag,
            MetadataDirective="REPLACE",
            TaggingDirective="COPY",
            **headers,
        )
        result = response.get("CopyObjectResult", {})
        return write_result(response | {"ETag": result.get("ETag", "")})

    # ------------------------------------------------------------ body primitives (envelope)

    async def read_chunks(self, snapshot: ObjectSnapshot) -> AsyncIterator[bytes]:
        """Stream exactly the inspected version (GET with If-Match), 1 MiB at a time."""
        chunks = self._transport.read_object(
            snapshot.bucket, snapshot.key, snapshot.version_id, snapshot.etag
        )
        try:
            async for chunk in chunks:
                yield chunk
        except (ClientError, BotoCoreError) as exc:
            where = f"GET {snapshot.bucket}/{snapshot.key}"
            raise translate(exc, where, _bare_key(snapshot.kms_key)) from exc

    async def put_if_match(
        self,
        snapshot: ObjectSnapshot,
        body: bytes | IO[bytes],
        length: int,
        *,
        tags: dict[str, str],
        metadata: dict[str, str],
    ) -> WriteResult:
        """The port's single-request body write: the object's attributes plus ``metadata``."""
        return await self._put(snapshot, body, length, _with_metadata(snapshot, tags, metadata))

    async def upload_if_match(
        self,
        snapshot: ObjectSnapshot,
        parts: AsyncIterator[tuple[IO[bytes], int]],
        *,
        tags: dict[str, str],
        metadata: dict[str, str],
    ) -> WriteResult:
        """The port's multipart body write: the object's attributes plus ``metadata``."""
        return await self._upload(snapshot, _with_metadata(snapshot, tags, metadata), parts)

    async def _put(
        self,
        snapshot: ObjectSnapshot,
        body: bytes | IO[bytes],
        length: int,
        headers: dict[str, Any],
    ) -> WriteResult:
        """PutObject replacing exactly the inspected object, atomically (If-Match)."""
        params = headers | {"IfMatch": snapshot.etag}
        if not isinstance(body, bytes):
            params["ContentLength"] = length
        try:
            response = await self._transport.put_object(snapshot.bucket, snapshot.key, body, params)
        except (ClientError, BotoCoreError) as exc:
            where = f"PUT {snapshot.bucket}/{snapshot.key}"
            raise translate(exc, where, headers.get("SSEKMSKeyId", "")) from exc
        return write_result(response)

    async def _upload(
        self,
        snapshot: ObjectSnapshot,
        headers: dict[str, Any],
        parts: AsyncIterator[tuple[IO[bytes], int]],
    ) -> WriteResult:
        """Upload ``parts`` (body, length); complete only if the object is still as inspected."""

        async def upload(upload_id: str) -> list[dict[str, Any]]:
            done = []
            number = 0
            async for body, length in parts:
                number += 1
                response = await self._client.upload_part(
                    Bucket=snapshot.bucket,
                    Key=snapshot.key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=body,
                    ContentLength=length,
                )
                done.append({"PartNumber": number, "ETag": response["ETag"]})
            return done

        return await self._multipart(snapshot, headers, upload)

    async def _rewrite_multipart(
        self, snapshot: ObjectSnapshot, headers: dict[str, Any]
    ) -> WriteResult:
        """Server-side copy in parts (no data through us), completed under If-Match."""
        return await self._multipart(
            snapshot, headers, lambda upload_id: self._copy_parts(snapshot, upload_id)
        )

    async def _multipart(
        self,
        snapshot: ObjectSnapshot,
        headers: dict[str, Any],
        fill: Callable[[str], Awaitable[list[dict[str, Any]]]],
    ) -> WriteResult:
        """Create an upload, let ``fill`` add its parts, complete it under If-Match; on any
        failure abort it so no orphaned parts are left behind."""
        where = f"multipart {snapshot.bucket}/{snapshot.key}"
        target_key = headers.get("SSEKMSKeyId", "")
        try:
            upload = await self._client.create_multipart_upload(
                Bucket=snapshot.bucket, Key=snapshot.key, **headers
            )
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, where, target_key) from exc
        upload_id = upload["UploadId"]
        try:
            parts = await fill(upload_id)
            response = await self._client.complete_multipart_upload(
                Bucket=snapshot.bucket,
                Key=snapshot.key,
                UploadId=upload_id,
                MultipartUpload={"Parts": parts},
                IfMatch=snapshot.etag,
            )
        except (ClientError, BotoCoreError) as exc:
            await self._abort(snapshot, upload_id)
            raise translate(exc, where, target_key) from exc
        except BaseException:
            await self._abort(snapshot, upload_id)
            raise
        return write_result(response)

    async def _copy_parts(self, snapshot: ObjectSnapshot, upload_id: str) -> list[dict[str, Any]]:
        source = _object_params(snapshot)
        parts = []
        for number, start in enumerate(range(0, snapshot.size, self.part_size), start=1):
            end = min(start + self.part_size, snapshot.size) - 1
            try:
                response = await self._client.upload_part_copy(
                    Bucket=snapshot.bucket,
                    Key=snapshot.key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource=source,
                    CopySourceIfMatch=snapshot.etag,
                    CopySourceRange=f"bytes={start}-{end}",
                )
            except (ClientError, BotoCoreError) as exc:  # reading the source: its own key
                where = f"UploadPartCopy {snapshot.bucket}/{snapshot.key} part {number}"
                raise translate(exc, where, _bare_key(snapshot.kms_key)) from exc
            parts.append({"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]})
        return parts

    async def _abort(self, snapshot: ObjectSnapshot, upload_id: str) -> None:
        # Best effort: a leftover upload expires by lifecycle; the original error is what matters.
        with contextlib.suppress(ClientError, BotoCoreError):
            await self._client.abort_multipart_upload(
                Bucket=snapshot.bucket, Key=snapshot.key, UploadId=upload_id
            )


# ---------------------------------------------------------------- pure helpers


def _object_params(snapshot: ObjectSnapshot) -> dict[str, str]:
    return {"Bucket": snapshot.bucket, "Key": snapshot.key} | _version(snapshot.version_id)


def _version(version_id: str | None) -> dict[str, str]:
    return {"VersionId": version_id} if version_id else {}


def _bare_key(reported: str | None) -> str:
    """The key name as the KMS knows it (MinIO reports ``arn:aws:kms:<name>``)."""
    return reported.removeprefix("arn:aws:kms:") if reported else ""


def _with_metadata(
    snapshot: ObjectSnapshot, tags: dict[str, str], metadata: dict[str, str]
) -> dict[str, Any]:
    headers = write_headers(snapshot.attributes, tags)
    return headers | {"Metadata": headers["Metadata"] | metadata}
