"""A lean request path for the four S3 calls every event makes: HEAD, GET, PUT, GetObjectTagging.

botocore spends several times more CPU on a request than the request itself costs (event hooks,
endpoint rules, serialisers, parsers); on a small machine that CPU is taken from the store. For
these four calls this module builds the request directly — a path-style URL, signed by botocore's
own S3 SigV4 signer (the AWS Common Runtime's where available, :mod:`enforcer.storage.signing`)
with the client's own credentials (so refreshing credentials and web identity
work as before) — sends it over aiohttp, and maps the response headers to the same dict botocore
returns, through the header tables of botocore's S3 service model.

It answers the way aiobotocore does, so the storage adapter handles both paths with the same
code (:class:`~enforcer.storage.transport.S3Transport` picks one per call):

* an error status raises botocore's :class:`~botocore.exceptions.ClientError` with the same
  ``Error`` code and message (from the S3 error document, or from the status for a HEAD) and
  the same ``ResponseMetadata``, so the one error mapping (:mod:`enforcer.storage.errors`)
  translates it; a transport failure raises botocore's
  :class:`~botocore.exceptions.HTTPClientError`. Nothing is sent twice: retries are the retry
  policy's, with its backoff (a 503 SlowDown included);
* a request it would not send the way botocore does (a timestamp parameter, a non-ASCII value,
  an empty key, a bucket name botocore refuses) raises :class:`NotLean` **before** anything is
  sent, and only then does the transport use aiobotocore instead;
* an answer with a typed header it cannot read (a date or a number that is not one) raises
  :class:`~enforcer.errors.StorageRejected` for that object (botocore would raise a bare
  ``ValueError``).

``tests/integration/test_lean_s3.py`` checks both paths give the same answers, and the same
errors, on MinIO and on moto.
"""

from __future__ import annotations

import http
import ssl
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit
from urllib.request import getproxies, proxy_bypass
from xml.etree import ElementTree

import aiohttp
from aiobotocore.credentials import AioCredentials
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError, HTTPClientError
from botocore.handlers import VALID_BUCKET
from yarl import URL

from enforcer.errors import StorageRejected, StorageUnavailable
from enforcer.storage.client import USER_AGENT, parse_timestamp
from enforcer.storage.options import S3Options
from enforcer.storage.signing import s3_signer


class NotLean(Exception):
    """This call is not for the lean path (found before anything was sent): use aiobotocore."""

    def __init__(self, operation: str, reason: str) -> None:
        super().__init__(f"{operation}: {reason}")
        self.operation, self.reason = operation, reason


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
        """Response headers (lower-case names) → botocore's response dict; a typed header that
        does not read as its type is :class:`~enforcer.errors.StorageRejected`."""
        parsed: dict[str, Any] = {}
        metadata: dict[str, str] = {}
        for name, value in headers.items():
            if self.response_prefix and name.startswith(self.response_prefix):
                metadata[name.removeprefix(self.response_prefix)] = value
            elif (field := self.response.get(name)) is not None:
                try:
                    parsed.update(_field(field, value))
                except (ValueError, TypeError, OverflowError):
                    raise StorageRejected(f"{operation}: unreadable header {name}") from None
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


def _field(field: tuple[str, str], value: str) -> dict[str, Any]:
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
    raise ValueError(f"{kind} header {name}")


class LeanS3:
    """The four calls, each answering (or failing) as aiobotocore's would; :class:`NotLean`
    only before sending."""

    def __init__(
        self,
        http: aiohttp.ClientSession,
        endpoint_url: str,
        region: str,
        credentials: Any,
        service_model: Any,
        *,
        crt_signer: bool = True,
    ) -> None:
        self._http = http
        self._endpoint = endpoint_url.rstrip("/")
        self._credentials = credentials  # botocore's (refreshable) credentials of the client
        #: "crt" (awscrt) or "python" (botocore's pure-Python SigV4): see enforcer.storage.signing
        self.signer, self._sign = s3_signer(region, use_crt=crt_signer)
        self._head = HeaderTable(service_model, "HeadObject")
        self._put = HeaderTable(service_model, "PutObject")

    async def head_object(
        self, bucket: str, key: str, version_id: str | None
    ) -> dict[str, Any] | None:
        """botocore's HeadObject response, or None when the store answers 404."""
        async with self._request("HeadObject", "HEAD", bucket, key, _query(version_id)) as answer:
            if answer.status == 404:
                return None
            await _expect(answer, "HeadObject")
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
            await _expect(answer, "GetObject")
            yield answer.content

    async def put_object(
        self, bucket: str, key: str, body: bytes, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """PutObject of ``body`` with ``params`` (botocore's parameter names)."""
        headers = self._put.headers("PutObject", params)
        async with self._request("PutObject", "PUT", bucket, key, "", headers, body) as answer:
            await _expect(answer, "PutObject")
            return self._put.parse("PutObject", _headers(answer, "PutObject"))

    async def get_object_tagging(
        self, bucket: str, key: str, version_id: str | None
    ) -> dict[str, Any]:
        query = _query(version_id, "tagging")
        async with self._request("GetObjectTagging", "GET", bucket, key, query) as answer:
            await _expect(answer, "GetObjectTagging")
            document = await answer.read()
        try:
            root = ElementTree.fromstring(document)  # noqa: S314 - the store's own answer
        except ElementTree.ParseError:
            raise StorageRejected("GetObjectTagging: unreadable answer") from None
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
        if not VALID_BUCKET.search(bucket):  # botocore refuses it before sending: let it say so
            raise NotLean(operation, "bucket name")
        url = f"{self._endpoint}/{quote(bucket, safe='')}/{quote(key, safe='/~')}{query}"
        request = AWSRequest(method=method, url=url, headers=headers or {})
        self._sign(await self._credentials.get_frozen_credentials(), request, body)
        sent = dict(request.headers.items()) | {"User-Agent": USER_AGENT}
        try:
            answer = await self._http.request(
                method, URL(url, encoded=True), headers=sent, data=body or None
            )
        except (aiohttp.InvalidURL, ValueError) as exc:  # refused by aiohttp before sending
            raise NotLean(operation, type(exc).__name__) from exc
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # sent, no answer
            raise HTTPClientError(error=exc) from exc
        try:
            yield answer
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:  # the body broke off
            where = f"{operation} {bucket}/{key}"
            raise StorageUnavailable(f"{where}: {type(exc).__name__}") from exc
        finally:
            answer.release()


@asynccontextmanager
async def open_lean(session: Any, client: Any, options: S3Options) -> AsyncIterator[LeanS3 | None]:
    """The lean path beside aiobotocore ``client`` of ``session``, with the client's endpoint,
    region, credentials and service model; None when configured off or without credentials
    (aiobotocore then says what is missing)."""
    if not options.lean_requests:
        yield None
        return
    if options.access_key_id is not None and options.secret_access_key is not None:
        credentials: Any = AioCredentials(options.access_key_id, options.secret_access_key)
    else:  # the session's provider chain, the object the client itself signs with
        credentials = await session.get_credentials()
    if credentials is None or _proxied(client.meta.endpoint_url):
        yield None
        return
    async with _open_http(options) as http:
        yield LeanS3(
            http,
            client.meta.endpoint_url,
            client.meta.region_name,
            credentials,
            client.meta.service_model,
            crt_signer=options.crt_signer,
        )


def _open_http(options: S3Options) -> aiohttp.ClientSession:
    """The lean path's connection pool, configured as aiobotocore configures its own: bodies
    exactly as stored (no decompression), no automatic Content-Type, the same TLS trust and
    timeouts. (Proxies are aiobotocore's business: with one the lean path is off.)"""
    ca = options.ca_bundle
    context = ssl.create_default_context(cafile=str(ca)) if ca else True
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=options.max_pool_connections, ssl=context),
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
        raise StorageRejected(f"{operation}: a header that is not UTF-8") from None


async def _expect(answer: aiohttp.ClientResponse, operation: str) -> None:
    """Raise on an error status the :class:`ClientError` botocore would raise for it."""
    if answer.status < 300:
        return
    body = b"" if answer.method == "HEAD" else await answer.read()
    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in answer.raw_headers}
    raise ClientError(error_response(answer.status, headers, body), operation)


def error_response(status: int, headers: dict[str, str], body: bytes) -> dict[str, Any]:
    """botocore's parsed error for an S3 answer: ``Code`` and ``Message`` from the error
    document, or the status and its reason phrase when there is none (a HEAD) (pure)."""
    code, message = str(status), _reason(status)
    if body:
        try:
            root = ElementTree.fromstring(body)  # noqa: S314 - the store's own answer
        except ElementTree.ParseError:
            root = None
        if root is not None and root.tag.rsplit("}", 1)[-1] == "Error":
            code = root.findtext("{*}Code") or root.findtext("Code") or code
            message = root.findtext("{*}Message") or root.findtext("Message") or ""
    return {
        "Error": {"Code": code, "Message": message},
        "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": headers},
    }


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return ""
