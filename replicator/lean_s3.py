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
import re
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote_plus, urlsplit

from botocore.exceptions import ClientError
from botocore.httpsession import get_cert_path

from replicator.clients import Endpoint
from replicator.lean_http import LeanUnsupported, ThreadConnections, verifying_context
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
# Bytes moved per read and send when a part streams from the source's GET into the target's
# UploadPart: the only buffer such a part holds, whatever its size.
STREAM_CHUNK = 1024 * 1024
_DNS_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")
_AWS_S3_HOST = re.compile(r"^s3[.-]([a-z0-9-]+\.)?amazonaws\.com$")


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
    return verifying_context(str(get_cert_path(verify)))


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
        self._connections = ThreadConnections(
            host.lower(), self._https, _transport(client, self._https), connect_timeout, read_timeout
        )

    def _connection(self) -> http.client.HTTPConnection:
        return self._connections.connection()

    def _drop_connection(self) -> None:
        self._connections.drop()

    def _forget(self, connection: http.client.HTTPConnection) -> None:
        self._connections.forget(connection)

    def _stale(self) -> bool:
        return self._connections.stale()

    def _open(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | memoryview | RangeStream | None,
    ) -> http.client.HTTPResponse:
        """Send a request and read the status and headers; the caller reads the body. A streamed
        body that has begun is never sent a second time."""
        return self._connections.open(
            method, target, headers, body, lambda: not (isinstance(body, RangeStream) and body.started)
        )

    def _exchange(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: bytes | memoryview | RangeStream | None,
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

    def put_object(self, key: str, body: bytes, metadata: dict[str, str], **params: Any) -> str | None:
        """PutObject; returns the ETag the answer names."""
        headers = {"Content-Length": str(len(body))}
        for param, value in params.items():
            if param not in _REQUEST_HEADERS:
                raise LeanUnsupported(f"parameter {param}", endpoint_wide=False)
            headers[_REQUEST_HEADERS[param]] = _expires_text(value) if param == "Expires" else str(value)
        for name, value in metadata.items():
            headers[f"x-amz-meta-{name}"] = value
        return self._send("PUT", key, headers, body, "PutObject").headers.get("etag")

    def _range_response(
        self,
        key: str,
        start: int,
        length: int,
        version_id: str | None,
        if_match: str | None,
        shorter: bool = False,
    ) -> http.client.HTTPResponse:
        """A ranged GET answered with exactly `length` bytes to come (the caller reads them), or
        with fewer when `shorter` allows it and the object ends first (a 206 for what is left)."""
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        if if_match:
            headers["If-Match"] = if_match
        target, signed = self._signed("GET", key, headers, {"versionId": version_id} if version_id else None)
        response = self._open("GET", target, signed, None)
        try:
            if response.status >= 300:
                self._raise(_Response(response.status, response.reason, {}, response.read()), "GetObject")
            answered, ends_first = response.length, shorter and response.status == 206
            if answered is not None and (answered > length or (answered < length and not ends_first)):
                # A store that ignored the Range header: not a body to read as this range.
                raise http.client.HTTPException(
                    f"asked for {length} bytes of {key!r}, the answer holds {response.length}"
                )
        except BaseException:
            self._drop_connection()
            raise
        return response

    def get_range(
        self, key: str, start: int, length: int, version_id: str | None = None, if_match: str | None = None
    ) -> bytearray:
        """Bytes start..start+length-1 of the object, read straight into one buffer (boto3 reads a
        part in chunks and joins them: another copy of every byte); fewer when the object ends
        first, as boto3 gives them."""
        response = self._range_response(key, start, length, version_id, if_match, shorter=True)
        if response.length is not None:
            length = min(length, response.length)
        try:
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

    def supports(self, key: str) -> bool:
        """Whether this path can address `key` (else boto3 does)."""
        try:
            self._path(key)
        except LeanUnsupported:
            return False
        return True

    def open_range(
        self,
        key: str,
        start: int,
        length: int,
        buffer: memoryview,
        version_id: str | None = None,
        if_match: str | None = None,
    ) -> RangeStream:
        """A ranged GET whose body is read later, `buffer` at a time, by whoever iterates the
        stream (in this thread: the connection is this thread's). Close it when done."""
        response = self._range_response(key, start, length, version_id, if_match)
        return RangeStream(self, self._connection(), response, key, length, buffer)

    def upload_part_stream(self, key: str, upload_id: str, number: int, body: RangeStream) -> str:
        """UploadPart with its bytes streamed from a source range as they arrive; returns the
        part's ETag. No Content-MD5: the caller proves the part through the ETag chain."""
        headers = {"Content-Length": str(body.length)}
        params = {"partNumber": str(number), "uploadId": upload_id}
        target, signed = self._signed("PUT", key, headers, params)
        if self._stale():
            self._drop_connection()
        # http.client sends the whole body before it reads the answer: an early refusal shows up
        # as a broken pipe while sending, and the connection is dropped in _open.
        response = self._exchange("PUT", target, signed, body)
        if response.status >= 300:
            self._raise(response, "UploadPart")
        etag = response.headers.get("etag")
        if not etag:
            raise http.client.HTTPException(f"UploadPart of {key!r} answered without an ETag")
        return etag

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
        costs about 25 ms of CPU per 1,000 keys, ElementTree's C parser about 4, the scanner
        of `_list_page` about 1.2."""
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


class RangeStream:
    """The body of a ranged GET as an iterable of chunks for http.client to send: each chunk is
    read into the same buffer, which is refilled only once the previous chunk has been sent.
    Exactly `length` bytes or an error. Closed before it was read to the end, it closes its own
    connection (the rest of the body stays unread), whichever thread closes it."""

    def __init__(
        self,
        owner: LeanS3,
        connection: http.client.HTTPConnection,
        response: http.client.HTTPResponse,
        key: str,
        length: int,
        buffer: memoryview,
    ) -> None:
        self._owner = owner
        self._connection = connection
        self._response = response
        self._key = key
        self.length = length
        self._buffer = buffer
        self.started = False  # once iterated: the body cannot be sent again
        self.complete = False
        self._closed = False

    def __iter__(self) -> Iterator[memoryview]:
        self.started = True
        remaining = self.length
        try:
            while remaining:
                count = self._response.readinto(self._buffer[: min(remaining, len(self._buffer))])
                if not count:
                    raise http.client.IncompleteRead(b"", remaining)
                remaining -= count
                yield self._buffer[:count]
            if self._response.read(1):
                raise http.client.HTTPException(f"range of {self._key!r} longer than the {self.length} bytes")
        except Exception:
            self.close()
            raise
        self.complete = True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if not self.complete:
            self._owner._forget(self._connection)

    def __enter__(self) -> RangeStream:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def _list_page(data: bytes, server: str) -> dict[str, Any]:
    """One ListObjectsV2 page as `_list_page_tree` reads it, by regular expressions over the text
    (ElementTree builds an element per field: most of the cost of a page). A page the scanner
    does not read exactly as an XML parser would is left to `_list_page_tree`, which also raises
    what it raises on a page it cannot parse."""
    try:
        return _scan_page(data, server)
    except _Unsure:
        return _list_page_tree(data, server)


class _Unsure(Exception):
    """The page holds something the scanner does not read exactly as an XML parser does."""


# The scanner reads a subset of XML: the declaration (version 1.0, UTF-8), one <ListBucketResult>
# in the S3 namespace or none, elements without attributes or prefixes, no comments, processing
# instructions, CDATA or DOCTYPE, and only spaces, tabs and newlines between elements. Texts are
# matched as [^<]* (sre's fastest loop, several times faster than any character class), so the
# checks the parser makes on them are made on the whole page instead: no control character (nor
# a carriage return, which the parser would turn into a newline), no U+FFFE or U+FFFF, no "]]>",
# and every "&" the start of a reference to a character XML allows.
_WS = "[ \\t\\n]*"
_NAME = "[A-Za-z_][A-Za-z0-9_.-]*"
_CONTROL_BYTES = tuple(bytes([c]) for c in range(32) if c not in (9, 10))
_QUOTE = "&(?:quot|#34|#x22);"
_FIELDS = ("Key", "ETag", "Size", "LastModified", "StorageClass", "RestoreStatus")


def _leaves(group: str) -> str:
    """Elements holding text or nothing (RestoreStatus's children, CommonPrefixes', an unknown
    element's); `group` names the backreference that pairs each start tag with its end tag."""
    return f"(?:{_WS}<(?P<{group}>{_NAME})(?:{_WS}/>|>[^<]*+</(?P={group})>))*{_WS}"


# The groups a <Contents> pattern has, by the field they hold: key, quoted (an ETag's text
# between &quot; or &#34;: AWS, MinIO, SeaweedFS), etag (any other ETag text), size, modified,
# storage (non-empty: the tree reader skips an empty StorageClass), bare (an <ETag/>), restore
# (a RestoreStatus element after its name); and no_key, no_size, no_modified for <Key/>,
# <Size/> and <LastModified/>, which only _ANY_CONTENTS has.
_COLUMNS = ("key", "quoted", "etag", "size", "modified", "storage", "bare", "restore")
_EMPTIES = (("no_key", "key"), ("no_size", "size"), ("no_modified", "modified"))

# Any <Contents>: its children in any order; each group keeps its field's last occurrence, as the
# tree reader's assignments do.
_ANY_CONTENTS = re.compile(
    f"<Contents>(?:{_WS}<(?:"
    "Key>(?P<key>[^<]*+)</Key>"
    f"|ETag>{_QUOTE}(?P<quoted>[^&]*+){_QUOTE}</ETag>"
    "|ETag>(?P<etag>[^<]*+)</ETag>"
    "|Size>(?P<size>[^<]*+)</Size>"
    "|LastModified>(?P<modified>[^<]*+)</LastModified>"
    f"|StorageClass(?:>(?P<storage>[^<]++)</StorageClass>|></StorageClass>|{_WS}/>)"
    f"|ETag{_WS}/>(?P<bare>)"
    f"|Key{_WS}/>(?P<no_key>)|Size{_WS}/>(?P<no_size>)|LastModified{_WS}/>(?P<no_modified>)"
    f"|RestoreStatus(?P<restore>{_WS}/>|>{_leaves('r')}</RestoreStatus>)"
    f"|(?!(?:{'|'.join(_FIELDS)})[ \\t\\n/>])(?P<other>{_NAME})"
    f"(?:{_WS}/>|>[^<]*+</(?P=other)>|>{_leaves('o')}</(?P=other)>)"
    f"))*{_WS}</Contents>"
)

# Stands for a run of <Contents> elements in the rest of the page: no text can hold it (a NUL
# is refused), and only the root takes it as a child.
_SEPARATOR = "<\x00>"
_ROOT_START = re.compile(
    "(?:<\\?xml[ \\t\\n]+version[ \\t\\n]*=[ \\t\\n]*(?:\"1\\.0\"|'1\\.0')"
    "(?:[ \\t\\n]+encoding[ \\t\\n]*=[ \\t\\n]*(?:\"(?i:utf-8)\"|'(?i:utf-8)'))?"
    "(?:[ \\t\\n]+standalone[ \\t\\n]*=[ \\t\\n]*(?:\"(?:yes|no)\"|'(?:yes|no)'))?[ \\t\\n]*\\?>)?"
    f"{_WS}<ListBucketResult(?:[ \\t\\n]+xmlns{_WS}={_WS}"
    "(?:\"http://s3\\.amazonaws\\.com/doc/2006-03-01/\"|'http://s3\\.amazonaws\\.com/doc/2006-03-01/'))?"
    f"{_WS}>"
)
_ROOT_ITEM = re.compile(
    f"{_WS}(?:"
    "(?:<\x00>[ \\t\\n]*+)++(?P<entries>)"
    f"|<CommonPrefixes>(?P<folder>{_leaves('p')})</CommonPrefixes>"
    f"|<(?!(?:Contents|CommonPrefixes)[ \\t\\n/>])(?P<field>{_NAME})"
    f"(?:{_WS}/>|>(?P<value>[^<]*+)</(?P=field)>)(?P<leaf>)"
    f"|</ListBucketResult>{_WS}\\Z(?P<end>)"
    "|(?P<bad>[\\s\\S]))"
)
_ENTRIES, _FOLDER, _LEAF, _END = (_ROOT_ITEM.groupindex[n] for n in ("entries", "folder", "leaf", "end"))
_FIRST_PREFIX = re.compile(f"<Prefix(?:{_WS}/>|>([^<]*+)</Prefix>)")
_FIRST_RESTORING = re.compile(f"<IsRestoreInProgress(?:{_WS}/>|>([^<]*+)</IsRestoreInProgress>)")

# References that always name a character XML allows: the five entities, decimal 9, 10, 13 and
# 32-54999, hexadecimal 9, A, D and 20-CFFF, without leading zeros. One pattern checks a text of
# these only; a text with any other reference has them checked one by one.
_SAFE_REFERENCE = (
    "&(?:amp|lt|gt|quot|apos"
    "|#(?:9|1[03]|3[2-9]|[4-9][0-9]|[1-9][0-9]{2,3}|[1-4][0-9]{4}|5[0-4][0-9]{3})"
    "|#x(?:[9aAdD]|[2-9a-fA-F][0-9a-fA-F]|[1-9a-fA-F][0-9a-fA-F]{2}|[1-9a-cA-C][0-9a-fA-F]{3}));"
)
_SAFE_REFERENCES_ONLY = re.compile(f"[^&]*+(?:{_SAFE_REFERENCE}[^&]*+)*+")
_REFERENCE = re.compile("&(?:(amp|lt|gt|quot|apos)|#([0-9]{1,7})|#x([0-9a-fA-F]{1,6}));")
_ENTITIES = {"amp": "&", "lt": "<", "gt": ">", "quot": '"', "apos": "'"}


def _character(match: re.Match[str]) -> str:
    name, decimal, hexadecimal = match.groups()
    if name:
        return _ENTITIES[name]
    code = int(decimal) if decimal else int(hexadecimal, 16)
    if (
        0x20 <= code <= 0xD7FF
        or code in (9, 10, 13)
        or 0xE000 <= code <= 0xFFFD
        or 0x10000 <= code <= 0x10FFFF
    ):
        return chr(code)
    raise _Unsure  # the parser refuses a reference to a character XML does not allow


def _unescape(text: str) -> str:
    """A text with its references replaced, as the parser replaces them."""
    if "&" not in text:
        return text
    if "&" in _REFERENCE.sub("", text):
        raise _Unsure  # an entity XML does not define, or a reference without its ";"
    return _REFERENCE.sub(_character, text)


def _check_references(text: str) -> None:
    """Each "&" in a text read only to be skipped must begin a reference the parser takes."""
    if "&" in text and _SAFE_REFERENCES_ONLY.fullmatch(text) is None:
        _unescape(text)  # raises unless every reference in it is one


def _joined(texts: list[Any]) -> str:
    """The texts of a column, none of whose references can run into the next ("<" ends one)."""
    return "<".join(texts if all(texts) else filter(None, texts))


# A child of a <Contents>: its name and its own children's (() for a text, None for <Name/>), as
# patterns (a name escaped; a child's child written <Name/>, the pattern for that element).
_Child = tuple[str, tuple[str, ...] | None]


@dataclass(frozen=True)
class _Shape:
    """A pattern for <Contents> elements, and whether its groups hold every text of the
    elements it matches (then no "&" can hide in a text it skips)."""

    pattern: re.Pattern[str]
    whole: bool
    skipped: tuple[int, ...] = ()  # groups of texts held only to check their references
    layout: tuple[_Child, ...] = ()  # the children it takes, in their order
    spaced: bool = False  # with whitespace between them


_ANY_SHAPE = _Shape(_ANY_CONTENTS, whole=False)
_TAG = re.compile(f"<(/?)({_NAME})(?:{_WS}(/))?>")
_TAGS = re.compile("<[^>]*>")
_SPACED = re.compile(">[ \\t\\n]+<")
# Fixed-order patterns for the pages seen, by the tags of a page's first <Contents>.
_SHAPES: dict[str, _Shape | None] = {}


def _page_shape(doc: str) -> tuple[str, _Shape | None]:
    """A pattern for <Contents> elements laid out as the page's first (or as the entries of
    earlier pages that began the same way), and the key it is kept under. A store writes every
    entry the same way, and a pattern of children in a fixed order costs half as much as one of
    children in any order. Each child is optional: a field some entries lack."""
    start = doc.find("<Contents>")
    layout = _layout_at(doc, start) if start >= 0 else None
    if layout is None:
        return "", None
    tags, spaced = layout
    key = "".join(tags) + " " * spaced
    try:
        return key, _SHAPES[key]
    except KeyError:
        pass
    children = _children(tags)
    shape = _shape_for(children, spaced) if children is not None else None
    if len(_SHAPES) >= 64:
        _SHAPES.clear()
    _SHAPES[key] = shape
    return key, shape


def _layout_at(text: str, start: int) -> tuple[list[str], bool] | None:
    """The layout of the <Contents> element at `start`: the tags inside it, and whether
    whitespace separates them (a text ending in whitespace may say so wrongly: that only costs
    time)."""
    end = text.find("</Contents>", start)
    if end < 0:
        return None
    return _TAGS.findall(text, start + 10, end), _SPACED.search(text, start, end + 1) is not None


def _children(tags: list[str]) -> tuple[_Child, ...] | None:
    """The children the tags inside a <Contents> make, or None if any is not a child or a
    child's child holding text or nothing."""
    children: list[_Child] = []
    parsed = [_TAG.fullmatch(tag) for tag in tags]
    at = 0
    while at < len(tags):
        tag = parsed[at]
        if tag is None or tag[1]:
            return None
        if tag[3]:
            children.append((re.escape(tag[2]), None))
            at += 1
            continue
        closing, inner = f"</{tag[2]}>", []
        at += 1
        while at < len(tags) and tags[at] != closing:
            child = parsed[at]
            if child is None or child[1]:
                return None
            if child[3]:
                inner.append(f"<{re.escape(child[2])}{_WS}/>")
                at += 1
            elif at + 1 < len(tags) and tags[at + 1] == f"</{child[2]}>":
                inner.append(re.escape(child[2]))
                at += 2
            else:
                return None
        children.append((re.escape(tag[2]), tuple(inner)))
        at += 1
    return tuple(children)


def _widened(shape: _Shape, rest: str) -> _Shape | None:
    """The shape with the children of the first <Contents> it did not match (in `rest`) merged
    into its own, in an order that keeps both (AWS lists a ChecksumAlgorithm for newer objects
    only): None if no order keeps both."""
    layout = _layout_at(rest, rest.find("<Contents"))
    theirs = _children(layout[0]) if layout else None
    if layout is None or theirs is None:
        return None
    mine = shape.layout
    # The longest common subsequence, then the children of each around it.
    common = [[0] * (len(theirs) + 1) for _ in range(len(mine) + 1)]
    for i in range(len(mine) - 1, -1, -1):
        for j in range(len(theirs) - 1, -1, -1):
            if mine[i] == theirs[j]:
                common[i][j] = common[i + 1][j + 1] + 1
            else:
                common[i][j] = max(common[i + 1][j], common[i][j + 1])
    merged: list[_Child] = []
    i = j = 0
    while i < len(mine) and j < len(theirs):
        if mine[i] == theirs[j]:
            merged.append(mine[i])
            i, j = i + 1, j + 1
        elif common[i + 1][j] >= common[i][j + 1]:
            merged.append(mine[i])
            i += 1
        else:
            merged.append(theirs[j])
            j += 1
    merged += mine[i:] + theirs[j:]
    spaced = shape.spaced or layout[1]
    if len({name for name, _ in merged}) < len(merged) or (tuple(merged), spaced) == (mine, shape.spaced):
        return None  # a child laid out two ways, or nothing gained
    return _shape_for(tuple(merged), spaced)


def _shape_for(children: tuple[_Child, ...], spaced: bool) -> _Shape | None:
    """The fixed-order pattern for these children (with whitespace between them if `spaced`),
    or None for a layout it does not cover (a field given twice or as <Field/>)."""
    names = [name for name, _ in children]
    if any(names.count(field) > 1 for field in _FIELDS):
        return None
    texts = {
        "Key": "(?P<key>[^<]*+)",
        "ETag": f"(?:{_QUOTE}(?P<quoted>[^&]*+){_QUOTE}|(?P<etag>[^<]*+))",
        "Size": "(?P<size>[^<]*+)",
        "LastModified": "(?P<modified>[^<]*+)",
    }
    space = "[ \\t\\n]*+" if spaced else ""
    restore = f"<RestoreStatus(?P<restore>>{_leaves('r')}</RestoreStatus>)"
    skipped: list[str] = []

    def skip() -> str:
        skipped.append(f"s{len(skipped)}")
        return f"(?P<{skipped[-1]}>[^<]*+)"

    # Each child optional (a field some entries lack): "(?:child|)" costs sre far less than
    # "(?:child)?".
    pieces = ["<Contents>"]
    for at, (name, inner) in enumerate(children):
        if name == "RestoreStatus":
            if at + 1 < len(children):
                pieces.append(f"(?:{restore}|)")
        elif inner is None:
            if name in _FIELDS:
                return None
            pieces.append(f"(?:<{name}{_WS}/>|)")
        elif name == "StorageClass" and not inner:
            pieces.append(
                "(?:<StorageClass>(?P<storage>[^<]++)</StorageClass>|<StorageClass></StorageClass>|)"
            )
        elif not inner:
            pieces.append(f"(?:<{name}>{texts.get(name) or skip()}</{name}>|)")
        elif name in _FIELDS:
            return None
        else:  # an element of elements holding text (Owner: ID, DisplayName)
            parts = (child if child.endswith("/>") else f"<{child}>{skip()}</{child}>" for child in inner)
            pieces.append(f"(?:<{name}>{space}{space.join(parts)}{space}</{name}>|)")
    # RestoreStatus last, or absent (on AWS only archived objects have one): tried after
    # </Contents>, it costs the entries without one nothing.
    if not names or names[-1] == "RestoreStatus" or "RestoreStatus" not in names:
        pieces.append(f"(?:</Contents>|{restore}{space}</Contents>)")
    else:
        pieces.append("</Contents>")
    pattern = re.compile(space.join(pieces))
    skipped_groups = tuple(pattern.groupindex[name] for name in skipped)
    return _Shape(pattern, whole=True, skipped=skipped_groups, layout=children, spaced=spaced)


def _scan_page(data: bytes, server: str) -> dict[str, Any]:
    try:
        doc = data.decode()
    except UnicodeDecodeError:
        raise _Unsure from None
    for byte in _CONTROL_BYTES:
        if byte in data:
            raise _Unsure
    if ("]" in doc and "]]>" in doc) or "\ufffe" in doc or "\uffff" in doc:
        raise _Unsure
    start = _ROOT_START.match(doc)
    if start is None:
        raise _Unsure
    key, shape = _page_shape(doc)
    widenings = 2
    while True:
        shape = shape or _ANY_SHAPE
        parts: list[Any] = shape.pattern.split(doc)
        # What lies between <Contents> elements, empty between most (one separator for a run).
        rest = _SEPARATOR.join(filter(None, parts[:: shape.pattern.groups + 1]))
        if "<Contents" not in rest or shape is _ANY_SHAPE:
            break
        # An entry laid out otherwise: widen the pattern to take it too, for this page and the
        # next ones, or read the page by the pattern of children in any order.
        if widenings:
            widenings -= 1
            shape = _widened(shape, rest)
            _SHAPES[key] = shape  # None (no order takes both): such pages go to the other at once
        else:
            shape = None
    fields, folders = _root_items(rest, start.end())
    encoded = fields.get("EncodingType") == "url"
    contents, checked = _entries(parts, shape, encoded)
    if "&" in rest:
        _check_references(rest)
        checked += rest.count("&")
    # A pattern that skips texts: any "&" beyond those checked is in one of them (or in a field
    # given twice), and the whole page is checked.
    if not shape.whole and doc.count("&") != checked:
        _check_references(doc)
    page: dict[str, Any] = {
        "Contents": contents,
        "CommonPrefixes": [{"Prefix": unquote_plus(f) if encoded else f} for f in folders],
        "IsTruncated": fields.get("IsTruncated") == "true",
        "Server": server,
    }
    token = fields.get("NextContinuationToken")
    if token:
        page["NextContinuationToken"] = token
    return page


def _root_items(rest: str, position: int) -> tuple[dict[str, str], list[str]]:
    """The root's text fields (the first of each name, as findtext reads it) and its
    CommonPrefixes' Prefix texts, from the page with its <Contents> elements taken out."""
    fields: dict[str, str] = {}
    folders: list[str] = []
    ended = False
    for item in _ROOT_ITEM.finditer(rest, position):
        kind = item.lastindex
        if kind == _ENTRIES:
            continue
        if kind == _LEAF:
            name = item["field"]
            if name not in fields:
                fields[name] = _unescape(item["value"] or "")
        elif kind == _FOLDER:
            prefix = _FIRST_PREFIX.search(item["folder"])
            folders.append(_unescape(prefix[1] or "") if prefix else "")
        elif kind == _END:
            ended = True
        else:
            raise _Unsure
    if not ended:
        raise _Unsure
    return fields, folders


def _entries(parts: list[Any], shape: _Shape, encoded: bool) -> tuple[list[dict[str, Any]], int]:
    """The entries from the page split by the shape's pattern, read a column at a time (the
    entries of a page share one layout), and how many "&" the fields read held (each checked)."""
    stride = shape.pattern.groups + 1
    count = len(parts) // stride
    groups = shape.pattern.groupindex
    columns: dict[str, list[Any]] = {
        name: parts[groups[name] :: stride] if name in groups else [None] * count for name in _COLUMNS
    }
    for name, field in _EMPTIES:
        if name in groups:
            _merge_empty(columns[field], parts[groups[name] :: stride])
    keys, quoted, etags, sizes, modified, storage, bare, restore = columns.values()
    for group in shape.skipped:
        _check_references(_joined(parts[group::stride]))
    checked = 0
    if not all(keys) and None in keys:
        raise _Unsure  # a Contents without a Key: the tree reader's "" is no key to act on
    joined = "".join(keys)
    if "&" in joined:
        checked += joined.count("&")
        keys = [_unescape(key) for key in keys]
        joined = "".join(keys)
    if encoded and ("%" in joined or "+" in joined):
        keys = [unquote_plus(key) if "%" in key or "+" in key else key for key in keys]

    etags, amps = _etag_column(quoted, etags, bare)
    checked += amps

    joined = "".join(sizes if all(sizes) else filter(None, sizes))
    if "&" in joined:
        checked += joined.count("&")
        sizes = [_unescape(size) if size else size for size in sizes]
    try:
        sizes = list(map(int, sizes)) if all(sizes) else [int(size or 0) for size in sizes]
    except ValueError:
        raise _Unsure from None  # a Size int() refuses: the tree reader raises what it raises

    regular = restore.count(None) == count  # and every entry with LastModified and StorageClass
    for column in (modified, storage):
        full = all(column)
        regular = regular and full
        joined = "".join(column if full else filter(None, column))
        if "&" in joined:
            checked += joined.count("&")
            column[:] = [_unescape(text) if text else text for text in column]
    if regular:
        return [
            {"ETag": etag, "Key": key, "Size": size, "LastModified": when, "StorageClass": kind}
            for etag, key, size, when, kind in zip(etags, keys, sizes, modified, storage, strict=True)
        ], checked
    if shape.whole:
        _check_references(_joined(restore))
    contents = []
    for etag, key, size, when, kind, status in zip(
        etags, keys, sizes, modified, storage, restore, strict=True
    ):
        entry: dict[str, Any] = {"ETag": etag, "Key": key, "Size": size}
        if when is not None:
            entry["LastModified"] = when or None
        if kind is not None:
            entry["StorageClass"] = kind
        if status is not None:
            restoring = _FIRST_RESTORING.search(status)
            in_progress = _unescape(restoring[1] or "") if restoring else ""
            entry["RestoreStatus"] = {"IsRestoreInProgress": in_progress == "true"}
        contents.append(entry)
    return contents, checked


def _merge_empty(values: list[Any], empty: list[Any]) -> None:
    """A field's texts with "" for each entry that has it as <Field/>."""
    if empty.count(None) == len(empty):
        return
    for index, marker in enumerate(empty):
        if marker is not None:
            if values[index] is not None:
                raise _Unsure  # the field twice: which came last is not known
            values[index] = ""


def _etag_column(quoted: list[Any], etags: list[Any], bare: list[Any]) -> tuple[list[str], int]:
    """The entries' ETags, and how many "&" they held (each checked)."""
    count = len(quoted)
    if bare.count(None) == count:
        if all(quoted) and etags.count(None) == count:  # AWS, MinIO, SeaweedFS
            if "<" in "".join(quoted):
                raise _Unsure  # a quoted ETag running past its element
            return [f'"{core}"' for core in quoted], 2 * count
        if quoted.count(None) == count and all(etags):  # quoted as they are (moto)
            joined = "".join(etags)
            if "&" not in joined:
                return etags, 0
    checked = 0
    values = []
    for core, etag, empty in zip(quoted, etags, bare, strict=True):
        if (core is not None) + (etag is not None) + (empty is not None) > 1:
            raise _Unsure  # two ETags
        if core is not None:
            if "<" in core:
                raise _Unsure
            checked += 2
            values.append(f'"{core}"')
        elif etag:
            checked += etag.count("&")
            values.append(_unescape(etag))
        else:
            values.append("")
    return values, checked


def _list_page_tree(data: bytes, server: str) -> dict[str, Any]:
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
