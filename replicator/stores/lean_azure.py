"""Put Blob, Put Block and Put Block List without the Azure SDK's per-request pipeline.

The SDK spends about 1.75 ms of CPU on a small Put Blob (its policies, the requests and urllib3
layers, header handling) and copies a block's bytes once more on the way; on a copy of small
objects that is most of ours, measured against rclone on the same machine. These three writes
are the ones a copy makes per object and per block, so they go here: signed with the account's
Shared Key exactly as the SDK signs (checked against its own policy in the tests), sent from the
caller's buffer on a keep-alive connection owned by the calling thread (lean_http). Everything
else (reads, listings, deletes, metadata updates, the start-up check) stays with the SDK.

LeanAzure() decides whether this path applies to a store's container: a Shared Key credential, no
proxy that applies to the endpoint (the SDK's requests session would go through it), a CA bundle
it can load (the one requests would use); and each request, whether its header values are printable
ASCII. Anything else raises LeanUnsupported and the store uses the SDK.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
import ssl
from collections.abc import Mapping
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree as ET

import certifi
import requests
import requests.utils
from azure.storage.blob._shared.authentication import _storage_header_sort

from replicator.lean_http import LeanUnsupported, ThreadConnections, verifying_context

# Headers whose values the Shared Key string-to-sign lists by position, in that order, then Range:
# the SDK's list names it "byte_range", which no request carries, so its line is always empty (the
# SDK sends ranges as x-ms-range), and so is it here.
_POSITIONAL = (
    "content-encoding",
    "content-language",
    "content-length",
    "content-md5",
    "content-type",
    "date",
    "if-modified-since",
    "if-match",
    "if-none-match",
    "if-unmodified-since",
)


class AzureAnswer(Exception):
    """A refusal from the service: its status, error code and message (no credentials)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message


def _header_order(names: list[str]) -> list[str]:
    # The SDK sorts x-ms-* names with a collation of its own (the service's); reusing it keeps
    # one definition of that order rather than a copy that could drift from it.
    return [name for name, _ in _storage_header_sort([(name, "") for name in names])]


class SharedKeySigner:
    """The Authorization header of a Shared Key request, as SharedKeyCredentialPolicy writes it."""

    def __init__(self, account: str, key: str) -> None:
        self.account = account
        try:
            # Kept as a keyed HMAC, copied per request: the key's bytes are held nowhere else.
            self._mac = hmac.new(base64.b64decode(key, validate=True), digestmod=hashlib.sha256)
        except ValueError:
            raise LeanUnsupported("the account key is not base64") from None

    def string_to_sign(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> str:
        lowered = {name.lower(): value for name, value in headers.items()}
        if lowered.get("content-length") == "0":
            del lowered["content-length"]
        # An empty value counts as absent by position, but an empty x-ms-* header is signed.
        positional = "\n".join(lowered.get(name) or "" for name in _POSITIONAL) + "\n\n"
        ms_names = _header_order([name for name in lowered if name.startswith("x-ms-")])
        canonical_headers = "".join(f"{name}:{lowered[name]}\n" for name in ms_names)
        resource = f"/{self.account}{path}"
        resource += "".join(f"\n{name.lower()}:{value}" for name, value in sorted(query.items()))
        return f"{method}\n{positional}{canonical_headers}{resource}"

    def authorization(
        self, method: str, path: str, query: Mapping[str, str], headers: Mapping[str, str]
    ) -> str:
        mac = self._mac.copy()
        mac.update(self.string_to_sign(method, path, query, headers).encode("utf-8"))
        digest = mac.digest()
        return f"SharedKey {self.account}:{base64.b64encode(digest).decode()}"


def _plain(value: str) -> bool:
    return value.isascii() and value.isprintable()


class LeanAzure:
    """The three writes of a copy to one container, for the store that owns the decision."""

    def __init__(self, container_client: Any, connect_timeout: float, read_timeout: float) -> None:
        credential = getattr(container_client, "credential", None)
        account, key = getattr(credential, "account_name", None), getattr(credential, "account_key", None)
        if not (isinstance(account, str) and isinstance(key, str)):
            raise LeanUnsupported("not a Shared Key credential (a SAS or a token)")
        url = urlsplit(container_client.url)
        if url.scheme not in ("http", "https") or url.query:
            raise LeanUnsupported(f"container URL scheme {url.scheme!r}")
        # requests' own reading of the environment (HTTP(S)_PROXY, ALL_PROXY, NO_PROXY): where a
        # proxy applies to the endpoint, the SDK goes through it, and so must every request.
        if requests.utils.get_environ_proxies(container_client.url):
            raise LeanUnsupported("a proxy applies to the endpoint")
        self._signer = SharedKeySigner(account, key)
        self._version = str(container_client.api_version)
        self._path = url.path.rstrip("/")
        https = url.scheme == "https"
        self._connections = ThreadConnections(
            url.netloc, https, _tls_context() if https else None, connect_timeout, read_timeout
        )

    def put_blob(
        self, key: str, body: bytes | bytearray | memoryview, md5_b64: str, headers: Mapping[str, str]
    ) -> str:
        """Put Blob of a block blob, replacing any; `headers`: x-ms-blob-content-* and x-ms-meta-*.
        Returns the new ETag."""
        sent = {**headers, "x-ms-blob-type": "BlockBlob", "Content-MD5": md5_b64}
        return self._put(key, {}, sent, body)

    def put_block(self, key: str, block_id: str, body: bytes | bytearray | memoryview, md5_b64: str) -> None:
        self._put(key, {"comp": "block", "blockid": _encoded_id(block_id)}, {"Content-MD5": md5_b64}, body)

    def put_block_list(self, key: str, block_ids: list[str], headers: Mapping[str, str]) -> str:
        """Put Block List committing `block_ids` (staged, uncommitted blocks) in that order."""
        root = ET.Element("BlockList")
        for block_id in block_ids:
            ET.SubElement(root, "Latest").text = _encoded_id(block_id)
        body = b'<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root)
        return self._put(key, {"comp": "blocklist"}, dict(headers), body)

    def _put(
        self, key: str, query: dict[str, str], headers: dict[str, str], body: bytes | bytearray | memoryview
    ) -> str:
        if not all(_plain(value) for value in headers.values()):
            raise LeanUnsupported("a header value outside printable ASCII", endpoint_wide=False)
        path = f"{self._path}/{quote(key, safe='/~')}"
        sent = {
            **headers,
            "Content-Length": str(len(body)),
            "x-ms-date": formatdate(usegmt=True),
            "x-ms-version": self._version,
        }
        sent["Authorization"] = self._signer.authorization("PUT", path, query, sent)
        target = path + (
            "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items()) if query else ""
        )
        # A memoryview is sent as it is; bytes would be joined to the request head first (a copy).
        response, data = self._connections.exchange("PUT", target, sent, memoryview(body), lambda: True)
        if response.status >= 300:
            raise _answer(response, data)
        return (response.getheader("ETag") or "").strip('"')


def _encoded_id(block_id: str) -> str:
    """A block id as the service takes it (base64 of its UTF-8 bytes, as the SDK encodes it)."""
    return base64.b64encode(block_id.encode("utf-8")).decode()


def _answer(response: http.client.HTTPResponse, data: bytes) -> AzureAnswer:
    code = response.getheader("x-ms-error-code") or ""
    message = response.reason or ""
    try:
        root = ET.fromstring(data)  # noqa: S314 (the service's own error document)
    except ET.ParseError:
        return AzureAnswer(response.status, code, message)
    # The message's first line, then the details the service adds (HeaderName, Reason, ...),
    # as the SDK's error text carries them.
    found = (root.findtext("Message") or "").strip().splitlines()[:1]
    details = [
        f"{child.tag}:{(child.text or '').strip()}" for child in root if child.tag not in ("Code", "Message")
    ]
    return AzureAnswer(
        response.status, code or root.findtext("Code") or "", " ".join(found + details) or message
    )


def _tls_context() -> ssl.SSLContext:
    """Verification against the CA bundle the SDK's requests session uses: REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE where set (a file or a directory, as requests reads them), else certifi's. A
    bundle this path cannot load leaves the endpoint to the SDK, which reports it in its words."""
    return verifying_context(
        os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
    )
