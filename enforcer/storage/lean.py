"""A lean request path for the four S3 calls every event makes: HEAD, GET, PUT, GetObjectTagging.

botocore spends several times more CPU on a request than the request itself costs (event hooks,
endpoint rules, serialisers, parsers); on a small machine that CPU is taken from the store. For
these four calls this module builds the request directly — a path-style URL, signed by botocore's
own S3 SigV4 signer with the client's own credentials (so refreshing credentials and web identity
work as before) — sends it over aiohttp, and maps the response headers to the same dict botocore
returns, through the header tables of botocore's S3 service model.

It takes only the common case. An error status, a transport error, or a parameter it does not
send the way botocore would (a timestamp, a non-ASCII value, a streamed body) raises
:class:`NotLean`, and the caller repeats the call through aiobotocore: errors, retries of odd
cases and their translation stay in one proven place. ``tests/integration/test_lean_s3.py``
checks both paths give the same answers on MinIO and on moto.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit
from urllib.request import getproxies, proxy_bypass
from xml.etree import ElementTree

import aiohttp
from aiobotocore.credentials import AioCredentials
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from yarl import URL

from enforcer.config import S3Settings
from enforcer.errors import StorageUnavailable
from enforcer.storage.client import USER_AGENT, parse_timestamp
from enforcer.telemetry import LEAN_FALLBACKS


class NotLean(Exception):
    """This call is not for the lean path: repeat it through aiobotocore."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"{operation}: {reason}")
        LEAN_FALLBACKS.add(1, {"operation": operation, "reason": reason})


class HeaderTable:
    """One operation's header members, from botocore's service model: how a response header
    becomes a response field, and how a request parameter becomes a header."""

    def __init__(self, service_model: Any, operation: str) -> None:
        model = service_model.operation_model(operation)
        #: response header (lower case) → (field, type); request parameter → (header, type)
        self.response: dict[str, tuple[str, str]] = {}
        self.request: dict[str, tuple[str, str]] = {}
        self.response_prefix = self.request_prefix = ""  # Metadata: x-amz-meta-*
        for name, member in _members(model.output_shape):
            header = member.serialization.get("name", name)
            if member.serialization.get("location") == "header":
                self.response[header.lower()] = (name, member.type_name)
            elif member.serialization.get("location") == "headers":
                self.response_prefix = header.lower()
        for name, member in _members(model.input_shape):
            header = member.serialization.get("name", name)
            if member.serialization.get("location") == "header":
                self.request[name] = (header, member.type_name)
            elif member.serialization.get("location") == "headers":
                self.request_prefix = header

    def parse(self, operation: str, headers: Mapping[str, str]) -> dict[str, Any]:
        """Response headers (lower-case names) → botocore's response dict."""
        parsed: dict[str, Any] = {}
        metadata: dict[str, str] = {}
        for name, value in headers.items():
            if self.response_prefix and name.startswith(self.response_prefix):
                metadata[name.removeprefix(self.response_prefix)] = value
            elif (field := self.response.get(name)) is not None:
                try:
                    parsed.update(_field(operation, field, value))
                except (ValueError, TypeError, OverflowError):
                    raise NotLean(operation, f"header {name}") from None
        if self.response_prefix:
            parsed["Metadata"] = metadata
        return parsed

    def headers(self, operation: str, params: Mapping[str, Any]) -> dict[str, str]:
        """Request parameters → headers; only plain ASCII strings, as botocore sends them."""
        headers: dict[str, str] = {}
        for name, value in params.items():
            if name == "Metadata":
                items = {f"{self.request_prefix}{k}": v for k, v in value.items()}
            elif name in self.request and self.request[name][1] == "string":
                items = {self.request[name][0]: value}
            else:
                raise NotLean(operation, f"parameter {name}")
            for header, text in items.items():
                if not isinstance(text, str) or not text.isascii():
                    raise NotLean(operation, f"value of {name}")
                headers[header] = text
        return headers


def _members(shape: Any) -> list[tuple[str, Any]]:
    return list(shape.members.items()) if shape is not None else []


def _field(operation: str, field: tuple[str, str], value: str) -> dict[str, Any]:
    name, kind = field
    if kind == "string":
        return {name: value}
    if kind in ("integer", "long"):
        return {name: int(value)}
    if kind == "boolean":
        return {name: value.lower() == "true"}
    if kind == "timestamp":
        if name == "Expires":  # botocore keeps the raw value as well, and drops a bad date
            try:
                return {"ExpiresString": value, name: parse_timestamp(value)}
            except (ValueError, TypeError, OverflowError):
                return {"ExpiresString": value}
        return {name: parse_timestamp(value)}
    raise NotLean(operation, f"{kind} header {name}")


class LeanS3:
    """The four calls, each returning what aiobotocore's would (or raising :class:`NotLean`)."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        endpoint_url: str,
        region: str,
        credentials: Any,
        service_model: Any,
    ) -> None:
        self._http = http
        self._endpoint = endpoint_url.rstrip("/")
        self._region = region
        self._credentials = credentials  # botocore's (refreshable) credentials of the client
        self._head = HeaderTable(service_model, "HeadObject")
        self._put = HeaderTable(service_model, "PutObject")

    async def head_object(
        self, bucket: str, key: str, version_id: str | None
    ) -> dict[str, Any] | None:
        """botocore's HeadObject response, or None when the store answers 404."""
        async with self._request("HeadObject", "HEAD", bucket, key, _query(version_id)) as answer:
            if answer.status == 404:
                return None
            _expect(answer, "HeadObject")
            return self._head.parse("HeadObject", _headers(answer, "HeadObject"))

    @asynccontextmanager
    async def get_object(
        self, bucket: str, key: str, version_id: str | None, if_match: str
    ) -> AsyncIterator[aiohttp.StreamReader]:
        """The body of exactly this version (If-Match), as a stream."""
        headers = {"If-Match": if_match}
        async with self._request(
            "GetObject", "GET", bucket, key, _query(version_id), headers
        ) as answer:
            _expect(answer, "GetObject")
            yield answer.content

    async def put_object(
        self, bucket: str, key: str, body: bytes, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PutObject of ``body`` with ``params`` (botocore's parameter names)."""
        headers = self._put.headers("PutObject", params)
        async with self._request("PutObject", "PUT", bucket, key, "", headers, body) as answer:
            _expect(answer, "PutObject")
            return self._put.parse("PutObject", _headers(answer, "PutObject"))

    async def get_object_tagging(
        self, bucket: str, key: str, version_id: str | None
    ) -> dict[str, Any]:
        query = _query(version_id, "tagging")
        async with self._request("GetObjectTagging", "GET", bucket, key, query) as answer:
            _expect(answer, "GetObjectTagging")
            document = await answer.read()
        try:
            root = ElementTree.fromstring(document)  # noqa: S314 - the store's own answer
        except ElementTree.ParseError:
            raise NotLean("GetObjectTagging", "unreadable body") from None
        tags = [
            {"Key": tag.findtext("{*}Key", ""), "Value": tag.findtext("{*}Value", "")}
            for tag in root.iterfind(".//{*}Tag")  # with or without S3's namespace (MinIO)
        ]
        return {"TagSet": tags}

    @asynccontextmanager
    async def _request(
        self,
        operation: str,
        method: str,
        bucket: str,
        key: str,
        query: str,
        headers: dict[str, str] | None = None,
        body: bytes = b"",
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        if not key:  # "/bucket/" would name the bucket, not an object
            raise NotLean(operation, "empty key")
        url = f"{self._endpoint}/{quote(bucket, safe='')}/{quote(key, safe='/~')}{query}"
        request = AWSRequest(method=method, url=url, headers=headers or {}, data=body)
        frozen = await self._credentials.get_frozen_credentials()
        S3SigV4Auth(frozen, "s3", self._region).add_auth(request)
        sent = dict(request.headers.items()) | {"User-Agent": USER_AGENT}
        try:
            answer = await self._http.request(
                method, URL(url, encoded=True), headers=sent, data=body or None
            )
        except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:  # no answer
            raise NotLean(operation, type(exc).__name__) from exc
        try:
            yield answer
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # the body broke off
            where = f"{operation} {bucket}/{key}"
            raise StorageUnavailable(f"{where}: {type(exc).__name__}") from exc
        finally:
            answer.release()


@asynccontextmanager
async def open_lean(
    session: Any, client: Any, settings: S3Settings
) -> AsyncIterator[LeanS3 | None]:
    """The lean path beside aiobotocore ``client`` of ``session``, with the client's endpoint,
    region, credentials and service model; None when configured off or without credentials
    (aiobotocore then says what is missing)."""
    if not settings.lean_requests:
        yield None
        return
    if settings.access_key_id is not None and settings.secret_access_key is not None:
        credentials: Any = AioCredentials(
            settings.access_key_id.get_secret_value(),
            settings.secret_access_key.get_secret_value(),
        )
    else:  # the session's provider chain, the object the client itself signs with
        credentials = await session.get_credentials()
    if credentials is None or _proxied(client.meta.endpoint_url):
        yield None
        return
    async with _open_http(settings) as http:
        yield LeanS3(
            http,
            client.meta.endpoint_url,
            client.meta.region_name,
            credentials,
            client.meta.service_model,
        )


def _open_http(settings: S3Settings) -> aiohttp.ClientSession:
    """The lean path's connection pool, configured as aiobotocore configures its own: bodies
    exactly as stored (no decompression), no automatic Content-Type, the same TLS trust and
    timeouts. (Proxies are aiobotocore's business: with one the lean path is off.)"""
    ca = settings.ca_bundle
    context = ssl.create_default_context(cafile=str(ca)) if ca else True
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=settings.max_pool_connections, ssl=context),
        timeout=aiohttp.ClientTimeout(sock_connect=5, sock_read=60),
        skip_auto_headers={"Content-Type", "Accept-Encoding"},
        auto_decompress=False,
    )


def _proxied(endpoint_url: str) -> bool:
    """Does the environment send requests to this endpoint through a proxy?"""
    url = urlsplit(endpoint_url)
    return url.scheme in getproxies() and not proxy_bypass(url.hostname or "")


def _query(version_id: str | None, subresource: str = "") -> str:
    parts = [subresource] if subresource else []
    if version_id:
        parts.append(f"versionId={quote(version_id, safe='')}")
    return f"?{'&'.join(parts)}" if parts else ""


def _headers(answer: aiohttp.ClientResponse, operation: str) -> dict[str, str]:
    # As aiobotocore hands them to botocore: names lower-cased, both decoded as UTF-8.
    try:
        return {k.decode().lower(): v.decode() for k, v in answer.raw_headers}
    except UnicodeDecodeError:
        raise NotLean(operation, "header not UTF-8") from None


def _expect(answer: aiohttp.ClientResponse, operation: str) -> None:
    if answer.status != 200:
        raise NotLean(operation, str(answer.status))
