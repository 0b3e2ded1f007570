"""One S3 transport: a request is sent once on one path, and both paths fail the same way.

A small S3-speaking HTTP server runs in the test (aiohttp's own server, counting what it is
sent); the real adapter — aiobotocore and the lean path — talks to it. Every error case runs
with the lean path on and off: the same error class, and exactly one request per attempt.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import pytest
from aiohttp import web
from scrape import value

from enforcer.core.verdict import Encryption
from enforcer.engine.objects import ObjectSnapshot, PreservedAttributes, SseKmsTarget
from enforcer.errors import EnforcerError, PreconditionFailed, StorageUnavailable
from enforcer.retrying import RetryPolicy, retry_transient
from enforcer.storage.lean import error_response
from enforcer.storage.options import S3Options
from enforcer.storage.s3 import S3Storage, open_s3_storage

SLOW_DOWN = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message><Resource>/b/k</Resource></Error>"
)
PRECONDITION = (
    b"<Error><Code>PreconditionFailed</Code><Message>At least one of the pre-conditions you "
    b"specified did not hold</Message></Error>"
)


@dataclass
class FakeS3:
    """Answers every request with ``status`` and ``body``; remembers what it was sent."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)

    async def answer(self, request: web.Request) -> web.Response:
        await request.read()
        self.seen.append(request.method)
        return web.Response(status=self.status, body=self.body, headers=self.headers)


@pytest.fixture
async def fake_s3() -> AsyncIterator[tuple[FakeS3, str]]:
    fake = FakeS3()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.answer)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield fake, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def options(endpoint: str, lean: bool) -> S3Options:
    return S3Options(endpoint_url=endpoint, access_key_id="k", secret_access_key="s",
                     lean_requests=lean)  # fmt: skip


SNAPSHOT = ObjectSnapshot("b", "k", '"etag"', 4, Encryption.NONE, attributes=PreservedAttributes())


async def head(storage: S3Storage) -> object:
    return await storage.head("b", "k")


async def put(storage: S3Storage) -> object:
    return await storage.put_if_match(SNAPSHOT, b"data", 4, tags={}, metadata={})


async def rewrite(storage: S3Storage) -> object:  # GET (If-Match) then PUT
    return await storage.rewrite_sse_kms(SNAPSHOT, SseKmsTarget("ek"), {})


async def tags(storage: S3Storage) -> object:
    return await storage.read_tags(SNAPSHOT)


Call = Callable[[S3Storage], object]


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiobotocore"])
@pytest.mark.parametrize(
    ("call", "status", "body", "error", "method"),
    [
        (put, 412, PRECONDITION, PreconditionFailed, "PUT"),
        (head, 503, b"", StorageUnavailable, "HEAD"),
        (put, 503, SLOW_DOWN, StorageUnavailable, "PUT"),
        (rewrite, 503, SLOW_DOWN, StorageUnavailable, "GET"),
        (tags, 503, SLOW_DOWN, StorageUnavailable, "GET"),
        (head, 412, b"", PreconditionFailed, "HEAD"),
    ],
)
async def test_an_error_status_is_sent_once_and_translated_alike_on_both_paths(
    fake_s3: tuple[FakeS3, str],
    lean: bool,
    call: Call,
    status: int,
    body: bytes,
    error: type[EnforcerError],
    method: str,
) -> None:
    fake, endpoint = fake_s3
    fake.status, fake.body = status, body
    async with open_s3_storage(options(endpoint, lean)) as storage:
        with pytest.raises(error):
            await call(storage)  # type: ignore[misc]
    assert fake.seen == [method]


@pytest.mark.parametrize("lean", [True, False], ids=["lean", "aiobotocore"])
async def test_a_missing_object_is_asked_once(fake_s3: tuple[FakeS3, str], lean: bool) -> None:
    fake, endpoint = fake_s3
    fake.status = 404
    async with open_s3_storage(options(endpoint, lean)) as storage:
        assert await storage.head("b", "k") is None
    assert fake.seen == ["HEAD"]


async def test_slow_down_is_retried_only_by_the_retry_policy(fake_s3: tuple[FakeS3, str]) -> None:
    """Each request is one attempt of the policy (backoff with jitter between them; zero in
    tests), which counts every retry: no request is repeated behind its back."""
    fake, endpoint = fake_s3
    fake.status, fake.body = 503, SLOW_DOWN
    before = value("enforcer_retries_total", error_type="storage_unavailable")
    async with open_s3_storage(options(endpoint, lean=True)) as storage:
        with pytest.raises(StorageUnavailable, match="503"):
            await retry_transient(lambda: storage.head("b", "k"), RetryPolicy(attempts=3))
    assert fake.seen == ["HEAD"] * 3
    assert value("enforcer_retries_total", error_type="storage_unavailable") == before + 2


async def test_a_request_the_lean_path_would_not_encode_goes_to_aiobotocore_unsent(
    fake_s3: tuple[FakeS3, str],
) -> None:
    fake, endpoint = fake_s3
    fake.headers = {"ETag": '"new"'}
    before = value("enforcer_s3_lean_fallbacks_total", operation="PutObject")
    retained = PreservedAttributes(lock_mode="GOVERNANCE", lock_retain_until=datetime.now(UTC))
    locked = replace(SNAPSHOT, attributes=retained)  # a timestamp header: botocore's own format
    async with open_s3_storage(options(endpoint, lean=True)) as storage:
        written = await storage.put_if_match(locked, b"data", 4, tags={}, metadata={})
    assert written.etag == '"new"'
    assert fake.seen == ["PUT"]  # refused before sending: aiobotocore's is the only request
    assert value("enforcer_s3_lean_fallbacks_total", operation="PutObject") == before + 1


def test_error_documents_become_botocore_errors() -> None:
    parsed = error_response(503, {"x-amz-request-id": "r"}, SLOW_DOWN)
    assert parsed["Error"] == {"Code": "SlowDown", "Message": "Please reduce your request rate."}
    assert parsed["ResponseMetadata"]["HTTPStatusCode"] == 503
    assert error_response(404, {}, b"")["Error"] == {"Code": "404", "Message": "Not Found"}
    assert error_response(500, {}, b"<html>oops</html>")["Error"]["Code"] == "500"
