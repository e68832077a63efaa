"""The lean Azure write path's Shared Key signature and when it applies. Its requests against a
real server are in tests/integration/test_azure_store.py."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from azure.core.pipeline import PipelineContext, PipelineRequest
from azure.core.rest import HttpRequest
from azure.storage.blob import BlobServiceClient
from azure.storage.blob._shared.authentication import SharedKeyCredentialPolicy
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import SecretStr

from replicator.lean_http import LeanUnsupported
from replicator.stores.azure import AzureBlobConfig, encode_name
from replicator.stores.lean_azure import LeanAzure, SharedKeySigner, _answer

KEY = base64.b64encode(os.urandom(64)).decode()
ENDPOINT = "http://127.0.0.1:10000/acct"


def sdk_authorization(method: str, path: str, query: dict[str, str], headers: dict[str, str]) -> str:
    """What the SDK's own policy signs for the same request."""
    url = f"http://127.0.0.1:10000{path}"
    if query:
        url += "?" + "&".join(f"{k}={quote(v, safe='')}" for k, v in query.items())
    request = HttpRequest(method, url, headers=dict(headers))
    SharedKeyCredentialPolicy("acct", KEY).on_request(PipelineRequest(request, PipelineContext(None)))
    return str(request.headers["Authorization"])


names = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters=":"),
    min_size=1,
    max_size=12,
)


@settings(max_examples=200, deadline=None)
@given(
    key=st.text(min_size=1, max_size=40).filter(lambda k: "\x00" not in k),
    metadata=st.dictionaries(names, st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E))),
    length=st.integers(0, 10**9),
    block=st.one_of(st.none(), st.binary(min_size=1, max_size=48)),
    content_type=st.sampled_from(["", "text/plain", "application/x-a_b-c"]),
)
def test_the_signature_is_the_sdks(
    key: str, metadata: dict[str, str], length: int, block: bytes | None, content_type: str
) -> None:
    # Metadata names as the store writes them: `_` and digits, whose order the service's
    # collation sorts otherwise than plain byte order.
    headers = {f"x-ms-meta-{encode_name(name)}": value for name, value in metadata.items()}
    headers |= {
        "x-ms-date": "Sun, 22 Nov 2026 05:00:00 GMT",
        "x-ms-version": "2026-10-06",
        "x-ms-blob-type": "BlockBlob",
        "Content-Length": str(length),
        "Content-MD5": "1B2M2Y8AsgTpgAmY7PhCfg==",
    }
    if content_type:
        headers["x-ms-blob-content-type"] = content_type
    query = {"comp": "block", "blockid": base64.b64encode(block).decode()} if block else {}
    path = f"/acct/box/{quote(key, safe='/~')}"
    ours = SharedKeySigner("acct", KEY).authorization("PUT", path, query, headers)
    assert ours == sdk_authorization("PUT", path, query, headers)


def test_a_different_key_signs_differently() -> None:
    headers = {"x-ms-date": "d", "Content-Length": "1"}
    other = SharedKeySigner("acct", base64.b64encode(os.urandom(64)).decode())
    assert other.authorization("PUT", "/acct/b/k", {}, headers) != SharedKeySigner("acct", KEY).authorization(
        "PUT", "/acct/b/k", {}, headers
    )


def container(connection: str) -> Any:
    return BlobServiceClient.from_connection_string(connection).get_container_client("box")


SHARED_KEY = f"DefaultEndpointsProtocol=http;AccountName=acct;AccountKey={KEY};BlobEndpoint={ENDPOINT};"


def test_a_shared_key_endpoint_takes_the_lean_path(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    LeanAzure(container(SHARED_KEY), 5, 5)


def test_a_sas_credential_is_left_to_the_sdk() -> None:
    sas = f"BlobEndpoint={ENDPOINT};SharedAccessSignature=sv=2024-01-01&sig=abc"
    with pytest.raises(LeanUnsupported, match="not a Shared Key credential"):
        LeanAzure(container(sas), 5, 5)


def test_a_proxy_for_the_endpoint_is_left_to_the_sdk_unless_no_proxy_exempts_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://proxy.invalid:3128")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    with pytest.raises(LeanUnsupported, match="proxy"):
        LeanAzure(container(SHARED_KEY), 5, 5)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    LeanAzure(container(SHARED_KEY), 5, 5)


def test_a_connection_string_whose_key_is_not_base64_is_refused_by_name_without_the_key() -> None:
    bad = SHARED_KEY.replace(KEY, "not*base64!secretish")
    with pytest.raises(ValueError, match="AccountKey is not base64") as caught:
        AzureBlobConfig(container="box", connection_string=SecretStr(bad))
    assert "secretish" not in str(caught.value)


def test_a_ca_directory_is_used_and_an_unusable_bundle_leaves_tls_to_the_sdk(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    https = SHARED_KEY.replace(ENDPOINT, "https://acct.blob.core.windows.net")
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path))  # a directory, as requests allows
    LeanAzure(container(https), 5, 5)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))
    with pytest.raises(LeanUnsupported, match="CA bundle"):
        LeanAzure(container(https), 5, 5)


def test_a_refusal_carries_the_services_details() -> None:
    class Answer:
        status, reason = 400, "Bad Request"

        @staticmethod
        def getheader(name: str) -> str | None:
            return "InvalidHeaderValue" if name == "x-ms-error-code" else None

    body = (
        b'<?xml version="1.0" encoding="utf-8"?><Error><Code>InvalidHeaderValue</Code>'
        b"<Message>The value for one of the HTTP headers is not in the correct format.\nRequestId:1"
        b"</Message><HeaderName>Content-MD5</HeaderName><HeaderValue>abc</HeaderValue></Error>"
    )
    answer = _answer(Answer(), body)  # type: ignore[arg-type]
    assert (answer.status, answer.code) == (400, "InvalidHeaderValue")
    assert "HeaderName:Content-MD5" in answer.message
    assert "RequestId" not in answer.message
