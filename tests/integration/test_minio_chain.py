"""Independent proof that enforcer.crypto is MinIO's chain: open MinIO's own SSE-KMS objects.

MinIO (single drive) writes ``<drive>/<bucket>/<object>/xl.meta`` and, for data above the inline
threshold, ``<drive>/<bucket>/<object>/<data dir>/part.N``. We read both straight from disk, unwrap
the DEK through KES with the enforcer's identity, derive the KEK, unseal the OEK and DARE-decrypt
the part files with our modules. The plaintext must be what was uploaded.

xl.meta (cmd/xl-storage-format-v2.go): ``XL2 `` + uint16 LE major + uint16 LE minor (1.3), then
msgpack: bin(metadata), uint32 (xxhash of it), inline data. The metadata is a msgpack sequence:
header version, meta version, version count, then per version bin(header), bin(version), where
version is a map whose ``V2Obj`` holds ``DDir`` (16-byte data dir UUID), ``EcM``/``EcBSize``
(bitrot shard size = ceil(EcBSize / EcM)), ``PartNums``/``PartSizes`` and ``MetaSys`` (internal
metadata, values as bytes). Part files interleave a 32-byte HighwayHash before every shard.
"""

from __future__ import annotations

import base64
import json
import os
import struct
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgpack  # type: ignore[import-untyped]
import pytest
from support import MakeBucket, MakeKey, StackEnv

from enforcer.crypto import chain, dare
from enforcer.errors import IntegrityError
from enforcer.kms.kes import KesKms

pytestmark = pytest.mark.integration

INTERNAL = "X-Minio-Internal-Server-Side-Encryption-"
HASH_SIZE = 32  # HighwayHash-256 in front of every bitrot shard


def read_version(xl_meta: Path) -> dict[str, Any]:
    """The newest version's ``V2Obj`` map from an xl.meta file."""
    raw = xl_meta.read_bytes()
    assert raw[:4] == b"XL2 "
    assert struct.unpack_from("<HH", raw, 4) >= (1, 3)  # the indexed format
    outer = msgpack.Unpacker(raw=False)
    outer.feed(raw[8:])
    metadata = outer.unpack()
    inner = msgpack.Unpacker(raw=False)
    inner.feed(metadata)
    _header_version, _meta_version, count = inner.unpack(), inner.unpack(), inner.unpack()
    assert count >= 1
    _version_header = inner.unpack()
    version = msgpack.unpackb(inner.unpack(), raw=False)
    obj: dict[str, Any] = version["V2Obj"]
    return obj


def strip_bitrot(part: bytes, shard_size: int, data_size: int) -> bytes:
    """Drop the hash in front of each shard of a part file."""
    out, pos = bytearray(), 0
    while len(out) < data_size:
        take = min(shard_size, data_size - len(out))
        out += part[pos + HASH_SIZE : pos + HASH_SIZE + take]
        pos += HASH_SIZE + take
    assert pos == len(part), "the part file holds more than its shards"
    return bytes(out)


class MinioObject:
    """What MinIO stored for one SSE-KMS object, read from its drive."""

    def __init__(self, drive: Path, bucket: str, key: str) -> None:
        self.folder = drive / bucket / key
        self.version = read_version(self.folder / "xl.meta")
        meta_sys = self.version["MetaSys"].items()  # also holds binary values (e.g. a sealed CRC)
        self.sys = {k: bytes(v).decode() for k, v in meta_sys if k.startswith(INTERNAL)}

    def field(self, name: str) -> str:
        return self.sys[INTERNAL + name]

    def parts(self) -> list[tuple[int, bytes]]:
        data_dir = self.folder / str(uuid.UUID(bytes=self.version["DDir"]))
        shard = -(-int(self.version["EcBSize"]) // int(self.version["EcM"]))
        numbers, sizes = self.version["PartNums"], self.version["PartSizes"]
        return [
            (n, strip_bitrot((data_dir / f"part.{n}").read_bytes(), shard, size))
            for n, size in zip(numbers, sizes, strict=True)
        ]


@pytest.fixture
async def enforcer_kes(stack: StackEnv) -> AsyncIterator[KesKms]:
    env = stack.enforcer_env
    async with KesKms(
        env["ENFORCER_KMS__ENDPOINT"],
        client_cert=env["ENFORCER_KMS__CLIENT_CERT"],
        client_key=env["ENFORCER_KMS__CLIENT_KEY"],
        ca_path=env["ENFORCER_KMS__CA_PATH"],
    ) as kes:
        yield kes


async def open_minio_oek(kes: KesKms, stored: MinioObject, bucket: str, key: str) -> bytes:
    """MinIO's UnsealObjectKey, step by step, with our modules."""
    assert stored.field("Seal-Algorithm") == chain.SEAL_ALGORITHM
    ek_name = stored.field("S3-Kms-Key-Id")
    wrapped_dek = base64.b64decode(stored.field("S3-Kms-Sealed-Key"))
    iv = base64.b64decode(stored.field("Iv"))
    sealed_oek = base64.b64decode(stored.field("Kms-Sealed-Key"))
    context = stored.sys.get(INTERNAL + "Context")  # only if the client sent one
    extra = json.loads(base64.b64decode(context)) if context else None
    dek = await kes.decrypt(ek_name, wrapped_dek, chain.kms_context(bucket, key, extra))
    kek = chain.derive_kek(dek, iv, bucket, key)
    return chain.unseal_oek(kek, sealed_oek)


async def test_single_part_object_uses_the_oek(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    enforcer_kes: KesKms,
) -> None:
    ek, bucket, key = make_key("chain"), make_bucket(notify=False), "nested/dir/object.bin"
    plaintext = os.urandom(300 * 1024)  # above the 128 KiB inline threshold: a part file
    s3_admin.put_object(
        Bucket=bucket, Key=key, Body=plaintext, ServerSideEncryption="aws:kms", SSEKMSKeyId=ek
    )
    head = s3_admin.head_object(Bucket=bucket, Key=key)
    assert head["SSEKMSKeyId"] == f"arn:aws:kms:{ek}"
    stored = MinioObject(stack.minio_drive, bucket, key)
    assert stored.field("S3-Kms-Key-Id") == ek
    oek = await open_minio_oek(enforcer_kes, stored, bucket, key)
    ((number, body),) = stored.parts()
    assert number == 1
    assert len(body) == dare.encrypted_size(len(plaintext))
    assert dare.decrypt(oek, body) == plaintext  # single part: the OEK itself, no part key
    with pytest.raises(IntegrityError, match="authentication failed"):
        dare.decrypt(chain.derive_part_key(oek, 1), body)


async def test_multipart_object_uses_part_keys(
    stack: StackEnv,
    s3_admin: Any,
    make_key: MakeKey,
    make_bucket: MakeBucket,
    enforcer_kes: KesKms,
) -> None:
    ek, bucket, key = make_key("chain"), make_bucket(notify=False), "big.bin"
    pieces = [os.urandom(5 * 1024 * 1024 + 3), os.urandom(200 * 1024)]
    upload = s3_admin.create_multipart_upload(
        Bucket=bucket, Key=key, ServerSideEncryption="aws:kms", SSEKMSKeyId=ek
    )["UploadId"]
    etags = [
        s3_admin.upload_part(Bucket=bucket, Key=key, UploadId=upload, PartNumber=n, Body=piece)
        for n, piece in enumerate(pieces, start=1)
    ]
    s3_admin.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload,
        MultipartUpload={
            "Parts": [{"PartNumber": n, "ETag": e["ETag"]} for n, e in enumerate(etags, start=1)]
        },
    )
    stored = MinioObject(stack.minio_drive, bucket, key)
    oek = await open_minio_oek(enforcer_kes, stored, bucket, key)
    parts = stored.parts()
    assert [n for n, _ in parts] == [1, 2]
    for (number, body), piece in zip(parts, pieces, strict=True):
        assert dare.decrypt(chain.derive_part_key(oek, number), body) == piece
