"""The aiobotocore S3 client as the enforcer configures it: cheap per request.

On a small machine the enforcer's cost per object is mostly botocore's request machinery, and
every millisecond it burns is taken from the storage it shares the cores with. The documented
levers, all safe for our own well-formed calls:

- ``parameter_validation=False``: no walk over the operation model per request;
- checksums only where the API requires them (``when_required``); PutObject sends Content-MD5;
- a fixed ``user_agent``, which skips the per-request user-agent builder;
- timestamps (Last-Modified, lock dates) parsed with the standard library instead of dateutil.

botocore ≥ 1.43.14 also caches S3 endpoint resolution per bucket instead of per key
(pyproject.toml pins it). The enforcer depends on ``awscrt`` for the lean path's signer
(:mod:`enforcer.storage.signing`), so botocore uses its CRT signers on this path too;
``BOTO_DISABLE_CRT=true`` turns both back to the pure-Python signer.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from typing import Any

from aiobotocore.config import AioConfig
from botocore.utils import parse_timestamp as botocore_parse_timestamp

from enforcer import __version__
from enforcer.storage.options import S3Options

USER_AGENT = f"sse-enforcer/{__version__}"


def client_config(options: S3Options) -> AioConfig:
    return AioConfig(
        s3={"addressing_style": "path"},
        # One attempt: retries are ours (retrying.py). "max_attempts" would count retries only.
        retries={"total_max_attempts": 1, "mode": "standard"},
        max_pool_connections=options.max_pool_connections,
        connect_timeout=5,
        read_timeout=60,
        parameter_validation=False,
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        user_agent=USER_AGENT,
    )


def use_fast_timestamps(session: Any) -> None:
    """Make ``session``'s response parsers use :func:`parse_timestamp`."""
    session.get_component("response_parser_factory").set_parser_defaults(
        timestamp_parser=parse_timestamp
    )


def parse_timestamp(value: str) -> datetime:
    """The two forms S3 sends (ISO 8601 in XML, RFC 1123 in headers) without dateutil; anything
    else, or anything without a time zone, goes to botocore's own parser."""
    try:
        parsed = (
            datetime.fromisoformat(value) if value[:1].isdigit() else parsedate_to_datetime(value)
        )
    except (ValueError, TypeError, IndexError):
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        return botocore_parse_timestamp(value)  # type: ignore[no-any-return]
    return parsed
