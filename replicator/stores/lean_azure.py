"""Put Blob, Put Block and Put Block List without the Azure SDK's per-request pipeline.

The SDK spends about 1.75 ms of CPU on a small Put Blob (its policies, the requests and urllib3
layers, header handling) and copies a block's bytes once more on the way; on a copy of small
objects that is most of ours, measured against rclone on the same machine. These three writes
are the ones a copy makes per object and per block, so they go here: signed with the account's
Shared Key exactly as the SDK signs (checked against its own policy in the tests), sent from the
caller's buffer on a keep-alive connection owned by the calling thread (lean_http). Everything
else (reads, listings, deletes, metadata updates, the start-up check) stays with the SDK.

The store decides when this path applies (AzureBlobStore): a Shared Key credential, no proxy or
CA bundle settings in the environment (the SDK's requests session would apply them), and header
values in printable ASCII. Anything else raises LeanUnsupported and the SDK serves it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import http.client
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any
from urllib.parse import quote, urlsplit
from xml.etree import ElementTree as ET

import certifi
import requests
import requests.utils

from replicator.lean_http import ThreadConnections

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


class LeanUnsupported(Exception):
    """This request (or, endpoint_wide, every request) is left to the SDK."""

    def __init__(self, reason: str, endpoint_wide: bool = True) -> None:
        super().__init__(reason)
        self.endpoint_wide = endpoint_wide


@dataclass(frozen=True)
class AzureAnswer(Exception):
    """A refusal from the service: its status, error code and message (no credentials)."""

    status: int
    code: str
    message: str

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"


def _header_order(names: list[str]) -> list[str]:
    # The SDK sorts x-ms-* names with a collation of its own (the service's); reusing it keeps
    # one definition of that order rather than a copy that could drift from it.
    from azure.storage.blob._shared.authentication import _storage_header_sort  # noqa: PLC0415

    return [name for name, _ in _storage_header_sort([(name, "") for name in names])]


class SharedKeySigner:
    """The Authorization header of a Shared Key request, as SharedKeyCredentialPolicy writes it."""

    def __init__(self, account: str, key: str) -> None:
        self.account = account
        self._key = base64.b64decode(key)

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
        digest = hmac.new(
            self._key, self.string_to_sign(method, path, query, headers).encode("utf-8"), hashlib.sha256
        ).digest()
        return f"SharedKey {self.account}:{base64.b64encode(digest).decode()}"


def _plain(value: str) -> bool:
    return value.isascii() and value.isprintable()


class LeanAzure:
    """The three writes of a copy to one container, for the store that owns the decision."""

    def __init__(self, container_client: Any, timeout: float) -> None:
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
            url.netloc, https, ssl.create_default_context(cafile=_ca_bundle()) if https else None, timeout
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
    found = (root.findtext("Message") or "").strip()
    return AzureAnswer(
        response.status, code or root.findtext("Code") or "", found.splitlines()[0] if found else message
    )


def _ca_bundle() -> str:
    """The CA bundle the SDK's requests session verifies with: REQUESTS_CA_BUNDLE or
    CURL_CA_BUNDLE where set (requests reads them as this product's session does), else certifi's."""
    return os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or certifi.where()
