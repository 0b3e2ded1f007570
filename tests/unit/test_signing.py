"""The lean path's two SigV4 signers sign the same request the same way (pure: a frozen clock).

The CRT signer is given the payload's SHA-256 instead of the body; the pure-Python one hashes
the body itself. With the same clock both must produce the same signed headers and the same
signature, for every request kind the lean path sends; the stores' acceptance of both is
``tests/integration/test_lean_s3.py``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from enforcer.storage import signing

NOW = datetime(2026, 12, 4, 20, 15, 0, tzinfo=UTC)
CREDENTIALS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SESSION = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "token/+=")
REQUESTS = [
    ("HEAD", "http://127.0.0.1:9000/bucket/obj-00001", {}, b""),
    ("HEAD", "http://127.0.0.1:9000/bucket/dir/%C3%BC%20key%2B%3D?versionId=a%2Fb", {}, b""),
    ("GET", "http://127.0.0.1:9000/bucket/k?versionId=v1", {"If-Match": '"abc"'}, b""),
    ("GET", "http://127.0.0.1:9000/bucket/k?tagging&versionId=v1", {}, b""),
    ("PUT", "http://127.0.0.1:9000/bucket/k", {"If-Match": '"abc"',
     "x-amz-server-side-encryption": "aws:kms",
     "x-amz-server-side-encryption-aws-kms-key-id": "ek-1",
     "x-amz-meta-owner": "alice", "Content-Type": "text/csv; charset=utf-8",
     "x-amz-tagging": "a=1&b=x%20y", "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg=="}, b"x" * 4096),
    ("PUT", "https://s3.eu-west-1.amazonaws.com/bucket/k", {"Content-MD5": "abc"}, b"body"),
]  # fmt: skip


def sign(name: str, credentials: Credentials, method: str, url: str,
         headers: dict[str, str], body: bytes) -> dict[str, str]:  # fmt: skip
    chosen, sign = signing.s3_signer("eu-west-1", use_crt=name == "crt")
    assert chosen == name
    request = AWSRequest(method=method, url=url, headers=dict(headers))
    sign(credentials.get_frozen_credentials(), request, body)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    import botocore.auth
    import botocore.crt.auth

    def now(remove_tzinfo: bool = True) -> datetime:
        return NOW.replace(tzinfo=None) if remove_tzinfo else NOW

    monkeypatch.setattr(botocore.auth, "get_current_datetime", now)
    monkeypatch.setattr(botocore.crt.auth, "get_current_datetime", now)


@pytest.mark.skipif(not signing.crt_available(), reason="awscrt is a dependency; BOTO_DISABLE_CRT")
@pytest.mark.parametrize("credentials", [CREDENTIALS, SESSION], ids=["keys", "session-token"])
@pytest.mark.parametrize(("method", "url", "headers", "body"), REQUESTS)
def test_crt_and_python_signers_agree(
    credentials: Credentials, method: str, url: str, headers: dict[str, str], body: bytes
) -> None:
    crt = sign("crt", credentials, method, url, headers, body)
    python = sign("python", credentials, method, url, headers, body)
    assert crt.pop("host") == url.split("/")[2]  # the CRT adds the header it signed; aiohttp
    assert crt == python  # sends the same one
    assert crt["authorization"].startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261204/")


def test_without_the_crt_the_python_signer_signs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(signing, "HAS_CRT", False)  # what BOTO_DISABLE_CRT=true makes botocore say
    assert not signing.crt_available()
    assert signing.s3_signer("us-east-1", use_crt=True)[0] == "python"
    assert signing.s3_signer("us-east-1", use_crt=False)[0] == "python"


def test_a_session_token_is_signed(monkeypatch: pytest.MonkeyPatch) -> None:
    headers: dict[str, Any] = sign("python", SESSION, *REQUESTS[0])
    assert headers["x-amz-security-token"] == "token/+="
