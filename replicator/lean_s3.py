"""GetObject, PutObject, ranged GETs and UploadPart without boto3's per-call machinery.

For objects of a few KiB the copy is bound by per-request CPU, and boto3 spends about 1 ms of it
per call (parameter validation, event hooks, serializers, parsers). A 16 MiB part's GET and
UploadPart cost boto3 about 14 ms of CPU together (it reads the body in chunks and joins them);
here about 8, reading the part straight into one buffer and sending it from there.

This path keeps botocore's credentials, endpoint and CA bundle, signs with `sigv4.SigV4Signer`
(botocore's canonical form, checked against it in the tests, at a seventh of the cost), and sends
the request on a keep-alive http.client connection owned by the calling thread (a shared pool's
locks convoy under the GIL), whose responses skip the email package's header parser. It covers the
plain cases only; anything else (redirects, unusual keys, virtual-host endpoints it cannot derive,
signed payloads, a proxy, a client certificate, verification turned off) raises LeanUnsupported
and the caller uses boto3.
"""

from __future__ import annotations

import http.client
import os
import re
import ssl
import threading
import types
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

from botocore.exceptions import ClientError
from botocore.httpsession import get_cert_path

from replicator.clients import Endpoint
from replicator.logs import get_logger
from replicator.settings import Settings
from replicator.sigv4 import SigV4Signer, query_string

log = get_logger("replicator.lean_s3")

# Response headers -> the names boto3 uses in a GetObject/HeadObject response.
_RESPONSE_HEADERS = {
    "content-type": "ContentType",
    "content-encoding": "ContentEncoding",
    "content-disposition": "ContentDisposition",
    "content-language": "ContentLanguage",
    "cache-control": "CacheControl",
    "expires": "Expires",
    "etag": "ETag",
    "x-amz-version-id": "VersionId",
    "x-amz-server-side-encryption": "ServerSideEncryption",
    "x-amz-server-side-encryption-customer-algorithm": "SSECustomerAlgorithm",
}
# Request parameters -> HTTP headers, for the content headers we carry over.
_REQUEST_HEADERS = {
    "ContentType": "Content-Type",
    "ContentEncoding": "Content-Encoding",
    "ContentDisposition": "Content-Disposition",
    "ContentLanguage": "Content-Language",
    "CacheControl": "Cache-Control",
    "Expires": "Expires",
    "ContentMD5": "Content-MD5",
}
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_AWS_S3_HOST = re.compile(r"^s3[.-]([a-z0-9-]+\.)?amazonaws\.com$")


def _parse_headers(fp: Any) -> http.client.HTTPMessage:
    """http.client.parse_headers without the email package's feed parser (about 20 us per
    response, a tenth of a small object's copy): S3 answers with plain `Name: value` lines."""
    message = http.client.HTTPMessage()
    for line in http.client._read_headers(fp):  # type: ignore[attr-defined]  # the stdlib's limits
        name, separator, value = line.decode("iso-8859-1").partition(":")
        if separator:  # the email package's rules: name as is, value without leading blanks
            message[name] = value.lstrip(" \t").rstrip("\r\n")
    return message


class _QuickHeadersResponse(http.client.HTTPResponse):
    # The stdlib's own begin(), run with the header parser above in place of parse_headers:
    # every other rule (status line, 100 Continue, chunking, keep-alive) stays the stdlib's.
    begin = types.FunctionType(
        http.client.HTTPResponse.begin.__code__,
        {**vars(http.client), "parse_headers": _parse_headers},
    )


class _Connection(http.client.HTTPConnection):
    response_class = _QuickHeadersResponse


class _TLSConnection(http.client.HTTPSConnection):
    response_class = _QuickHeadersResponse


def lean_path(endpoint: Endpoint, settings: Settings) -> LeanS3 | None:
    """The lean path to an endpoint, or None when settings or the endpoint rule it out (the one
    place that decides; boto3 serves what it does not)."""
    if not settings.lean_requests:
        return None
    try:
        return LeanS3(
            endpoint.client, endpoint.bucket, settings.connect_timeout_seconds, settings.read_timeout_seconds
        )
    except LeanUnsupported as exc:
        log.debug("lean_path_off", side=endpoint.name, reason=str(exc))
        return None


class LeanUnsupported(Exception):
    """This request is better left to boto3 (and, endpoint_wide, every later one too)."""

    def __init__(self, reason: str, endpoint_wide: bool = True) -> None:
        super().__init__(reason)
        self.endpoint_wide = endpoint_wide


@dataclass
class _Response:
    status: int
    reason: str
    headers: dict[str, str]  # lower-case names
    data: bytes


def _expires_text(value: Any) -> str:
    if hasattr(value, "strftime"):
        return str(value.strftime("%a, %d %b %Y %H:%M:%S GMT"))
    return str(value)


def _transport(client: Any, https: bool) -> ssl.SSLContext | None:
    """The TLS context for this endpoint, from the settings botocore's own HTTP session uses
    (the client's `verify`, AWS_CA_BUNDLE, `ca_bundle` in the profile, REQUESTS_CA_BUNDLE, all
    resolved by botocore into the session). Anything this path does not do as botocore would (a
    proxy, a client certificate, verification turned off) leaves the endpoint to boto3."""
    session = getattr(getattr(client, "_endpoint", None), "http_session", None)
    verify = getattr(session, "_verify", None)
    proxies = getattr(session, "_proxy_config", None)
    if verify is None or proxies is None:
        raise LeanUnsupported("botocore's TLS and proxy settings are not readable")
    # botocore resolved the proxies for this endpoint (HTTP(S)_PROXY with NO_PROXY, or Config
    # proxies); a connection of our own would bypass them.
    if proxies.proxy_url_for(client.meta.endpoint_url):
        raise LeanUnsupported("a proxy applies to the endpoint")
    if getattr(session, "_cert_file", None):
        raise LeanUnsupported("client certificate configured")
    if not https:
        return None
    if verify is False:
        raise LeanUnsupported("certificate verification is off")
    bundle = str(get_cert_path(verify))
    try:
        if os.path.isdir(bundle):
            return ssl.create_default_context(capath=bundle)
        return ssl.create_default_context(cafile=bundle)
    except (OSError, ValueError) as exc:
        # boto3 reports an unusable bundle on its first request, in its own words.
        raise LeanUnsupported(f"CA bundle {bundle!r} unusable: {exc}") from None


class LeanS3:
    def __init__(self, client: Any, bucket: str, connect_timeout: float, read_timeout: float) -> None:
        meta = client.meta
        config_s3 = meta.config.s3 or {}
        if config_s3.get("use_accelerate_endpoint") or config_s3.get("use_dualstack_endpoint"):
            raise LeanUnsupported("accelerate/dualstack endpoints")
        if config_s3.get("payload_signing_enabled", True):
            raise LeanUnsupported("payload signing is on")
        credentials = client._get_credentials()  # botocore's own resolved chain
        if credentials is None:
            raise LeanUnsupported("no credentials")
        self._signer = SigV4Signer(credentials, meta.region_name or "us-east-1")
        endpoint = urlsplit(meta.endpoint_url)
        style = config_s3.get("addressing_style") or "auto"
        if style == "path":
            host, self._prefix = endpoint.netloc, f"{endpoint.path.rstrip('/')}/{bucket}"
        elif _DNS_BUCKET.match(bucket) and _AWS_S3_HOST.match(endpoint.hostname or ""):
            host, self._prefix = f"{bucket}.{endpoint.netloc}", ""
        else:
            raise LeanUnsupported(f"addressing style {style!r} on {endpoint.hostname}")
        self._https = endpoint.scheme == "https"
        self._host = host.lower()
        self._timeout = max(connect_timeout, read_timeout)
        self._ssl = _transport(client, self._https)
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._https:
                connection = _TLSConnection(self._host, timeout=self._timeout, context=self._ssl)
            else:
                connection = _Connection(self._host, timeout=self._timeout)
            self._local.connection = connection
        return connection

    def _drop_connection(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def _open(
        self, method: str, target: str, headers: dict[str, str], body: bytes | memoryview | None
    ) -> http.client.HTTPResponse:
        """Send a request and read the status and headers; the caller reads the body."""
        for attempt in (1, 2):
            connection = self._connection()
            try:
                connection.request(method, target, body=body, headers=headers)
                return connection.getresponse()
            except (http.client.HTTPException, ConnectionError):
                # A kept-alive connection the server had closed: reconnect once, then give up
                # (the caller's retry policy takes over).
                self._drop_connection()
                if attempt == 2:
                    raise
            except BaseException:
                self._drop_connection()  # a timeout leaves the connection mid-exchange
                raise
        raise AssertionError("unreachable")

    def _exchange(
        self, method: str, target: str, headers: dict[str, str], body: bytes | memoryview | None
    ) -> _Response:
        response = self._open(method, target, headers, body)
        try:
            data = response.read()
        except BaseException:
            self._drop_connection()
            raise
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        return _Response(response.status, response.reason, answer_headers, data)

    def _path(self, key: str) -> str:
        if any(s in (".", "..") for s in key.split("/")) or "//" in key:
            # URL normalisers on the way may rewrite such paths: let boto3 handle them.
            raise LeanUnsupported("key with dot or empty path segments", endpoint_wide=False)
        return f"{self._prefix}/{quote(key, safe='/~')}"

    def _signed(
        self, method: str, key: str, headers: dict[str, str], params: dict[str, str] | None
    ) -> tuple[str, dict[str, str]]:
        """(request target, signed headers)."""
        path = self._path(key)
        query = query_string(params) if params else ""
        signed = self._signer.sign(method, path, self._host, headers, query)
        return (f"{path}?{query}" if query else path), signed

    def _send(
        self,
        method: str,
        key: str,
        headers: dict[str, str],
        body: bytes | memoryview | None,
        operation: str,
        params: dict[str, str] | None = None,
    ) -> _Response:
        target, signed = self._signed(method, key, headers, params)
        response = self._exchange(method, target, signed, body)
        if response.status >= 300:
            self._raise(response, operation)
        return response

    @staticmethod
    def _raise(response: _Response, operation: str) -> None:
        code, message = str(response.status), response.reason or ""
        try:
            root = ET.fromstring(response.data)  # noqa: S314 (the endpoint's own error document)
            code = root.findtext("Code") or code
            message = root.findtext("Message") or message
        except ET.ParseError:
            pass
        if 300 <= response.status < 400 or code in ("AuthorizationHeaderMalformed", "PermanentRedirect"):
            raise LeanUnsupported(f"{code}: the bucket wants another endpoint or region")
        error: Any = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": response.status},
        }
        raise ClientError(error, operation)

    def get_object(self, key: str, max_size: int | None = None) -> tuple[dict[str, Any], bytes | None]:
        """(a GetObject-shaped response without Body, the body). A body longer than max_size is
        not read (None, and the connection is dropped): the object grew since it was listed, and
        nothing larger than planned is ever buffered."""
        target, signed = self._signed("GET", key, {}, None)
        response = self._open("GET", target, signed, None)
        data: bytes | None
        try:
            if response.status >= 300:
                self._raise(_Response(response.status, response.reason, {}, response.read()), "GetObject")
            if max_size is None or (response.length is not None and response.length <= max_size):
                data = response.read()
            elif response.length is not None:
                data = None
            else:  # no Content-Length: one byte more than allowed tells
                data = response.read(max_size + 1)
                if len(data) > max_size:
                    data = None
            if data is None:
                self._drop_connection()  # the rest of the body stays unread
        except BaseException:
            self._drop_connection()
            raise
        headers = {name.lower(): value for name, value in response.getheaders()}
        result: dict[str, Any] = {
            "ContentLength": int(headers.get("content-length", len(data) if data is not None else -1)),
            "Metadata": {
                k[11:].lower(): v for k, v in headers.items() if k.lower().startswith("x-amz-meta-")
            },
        }
        for name, field in _RESPONSE_HEADERS.items():
            if name in headers:
                result[field] = headers[name]
        return result, data

    def put_object(self, key: str, body: bytes, metadata: dict[str, str], **params: Any) -> None:
        headers = {"Content-Length": str(len(body))}
        for param, value in params.items():
            if param not in _REQUEST_HEADERS:
                raise LeanUnsupported(f"parameter {param}", endpoint_wide=False)
            headers[_REQUEST_HEADERS[param]] = _expires_text(value) if param == "Expires" else str(value)
        for name, value in metadata.items():
            headers[f"x-amz-meta-{name}"] = value
        self._send("PUT", key, headers, body, "PutObject")

    def get_range(
        self, key: str, start: int, length: int, version_id: str | None = None, if_match: str | None = None
    ) -> bytearray:
        """Bytes start..start+length-1 of the object, read straight into one buffer (boto3 reads a
        part in chunks and joins them: another copy of every byte)."""
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        if if_match:
            headers["If-Match"] = if_match
        target, signed = self._signed("GET", key, headers, {"versionId": version_id} if version_id else None)
        response = self._open("GET", target, signed, None)
        try:
            if response.status >= 300:
                self._raise(_Response(response.status, response.reason, {}, response.read()), "GetObject")
            if response.length is not None and response.length != length:
                # A store that ignored the Range header: not a body to read into this buffer.
                raise http.client.HTTPException(
                    f"asked for {length} bytes of {key!r}, the answer holds {response.length}"
                )
            buffer = bytearray(length)
            view = memoryview(buffer)
            filled = 0
            while filled < length:
                count = response.readinto(view[filled:])
                if not count:
                    raise http.client.IncompleteRead(b"", length - filled)
                filled += count
            if response.read(1):
                raise http.client.HTTPException(f"range of {key!r} longer than the {length} bytes asked for")
        except BaseException:
            self._drop_connection()
            raise
        return buffer

    def upload_part(
        self, key: str, upload_id: str, number: int, body: bytes | bytearray, content_md5: str | None
    ) -> str:
        """UploadPart; returns the part's ETag."""
        headers = {"Content-Length": str(len(body))}
        if content_md5:
            headers["Content-MD5"] = content_md5
        params = {"partNumber": str(number), "uploadId": upload_id}
        response = self._send("PUT", key, headers, memoryview(body), "UploadPart", params)
        etag = response.headers.get("etag")
        if not etag:
            raise http.client.HTTPException(f"UploadPart of {key!r} answered without an ETag")
        return etag

    def list_objects(
        self,
        prefix: str,
        start_after: str | None = None,
        token: str | None = None,
        max_keys: int = 1000,
        optional_attributes: tuple[str, ...] = (),
        delimiter: str | None = None,
    ) -> dict[str, Any]:
        """One ListObjectsV2 page, shaped like boto3's answer (Contents with Key, Size, ETag,
        LastModified as an aware datetime, StorageClass, RestoreStatus; IsTruncated,
        NextContinuationToken), plus "Server": the store's Server header. botocore's XML parser
        costs about 25 ms of CPU per 1,000 keys, ElementTree's C parser here about 3."""
        params = {"list-type": "2", "encoding-type": "url", "max-keys": str(max_keys), "prefix": prefix}
        if start_after is not None:
            params["start-after"] = start_after
        if token is not None:
            params["continuation-token"] = token
        if delimiter is not None:
            params["delimiter"] = delimiter
        headers = {}
        if optional_attributes:
            headers["x-amz-optional-object-attributes"] = ",".join(optional_attributes)
        query = query_string(params)
        path = self._prefix or "/"
        signed = self._signer.sign("GET", path, self._host, headers, query)
        response = self._exchange("GET", f"{path}?{query}", signed, None)
        if response.status >= 300:
            self._raise(response, "ListObjectsV2")
        return _list_page(response.data, response.headers.get("server", ""))


_S3_NS = "{http://s3.amazonaws.com/doc/2006-03-01/}"


def _list_page(data: bytes, server: str) -> dict[str, Any]:
    """The page's children read in one pass each (findtext per field costs a path lookup every
    time); LastModified stays text until an object is built from it (objects.timestamp)."""
    root = ET.fromstring(data)  # noqa: S314 (the endpoint's own listing)
    ns = _S3_NS if root.tag.startswith(_S3_NS) else ""
    encoded = root.findtext(f"{ns}EncodingType") == "url"
    key_tag, size_tag, etag_tag, modified_tag = f"{ns}Key", f"{ns}Size", f"{ns}ETag", f"{ns}LastModified"
    class_tag, restore_tag = f"{ns}StorageClass", f"{ns}RestoreStatus"
    contents = []
    for item in root.iterfind(f"{ns}Contents"):
        entry: dict[str, Any] = {"ETag": ""}
        for child in item:
            tag = child.tag
            if tag == key_tag:
                key = child.text or ""
                entry["Key"] = unquote_plus(key) if encoded and ("%" in key or "+" in key) else key
            elif tag == size_tag:
                entry["Size"] = int(child.text or 0)
            elif tag == etag_tag:
                entry["ETag"] = child.text or ""
            elif tag == modified_tag:
                entry["LastModified"] = child.text
            elif tag == class_tag and child.text:
                entry["StorageClass"] = child.text
            elif tag == restore_tag:
                entry["RestoreStatus"] = {
                    "IsRestoreInProgress": (child.findtext(f"{ns}IsRestoreInProgress") or "") == "true"
                }
        entry.setdefault("Key", "")
        entry.setdefault("Size", 0)
        contents.append(entry)
    folders = []
    for item in root.iterfind(f"{ns}CommonPrefixes"):
        folder = item.findtext(f"{ns}Prefix") or ""
        folders.append({"Prefix": unquote_plus(folder) if encoded else folder})
    page: dict[str, Any] = {
        "Contents": contents,
        "CommonPrefixes": folders,
        "IsTruncated": (root.findtext(f"{ns}IsTruncated") or "") == "true",
        "Server": server,
    }
    token = root.findtext(f"{ns}NextContinuationToken")
    if token:
        page["NextContinuationToken"] = token
    return page
