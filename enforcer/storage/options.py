"""What the S3 adapter is told: plain options, built from the settings by :mod:`enforcer.app`."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

GiB = 1024**3
MiB = 1024**2


@dataclass(frozen=True)
class S3Options:
    """One S3 endpoint and how to talk to it.

    Without an access key pair the default AWS credential chain signs (web identity, instance
    profile...). ``crt_signer``: the lean path signs with the AWS Common Runtime when it is
    installed (and ``BOTO_DISABLE_CRT`` is not ``true``). ``copy_if_match``: the store checks
    ``If-Match`` on CopyObject (AWS), so a rewrite may be one server-side copy; MinIO ignores
    it there.
    """

    endpoint_url: str | None = None
    region: str = "us-east-1"
    access_key_id: str | None = field(default=None, repr=False)
    secret_access_key: str | None = field(default=None, repr=False)
    ca_bundle: Path | None = None
    max_pool_connections: int = 32
    lean_requests: bool = True
    crt_signer: bool = True
    copy_if_match: bool = False
    multipart_threshold: int = 5 * GiB
    part_size: int = 64 * MiB


def is_aws_endpoint(endpoint_url: str | None) -> bool:
    """No endpoint (botocore picks AWS's) or an ``amazonaws.com`` host."""
    if not endpoint_url:
        return True
    host = urlsplit(endpoint_url).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn"))
