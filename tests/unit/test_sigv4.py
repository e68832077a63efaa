"""The lean path's signer must produce exactly botocore's signature for the same request."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from unittest import mock
from urllib.parse import quote, urlsplit

import botocore.session
import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from replicator.sigv4 import SigV4Signer, query_string

NOW = datetime(2026, 11, 21, 7, 30, 15, tzinfo=UTC)
CONFIG = Config(s3={"payload_signing_enabled": False})


def botocore_headers(
    credentials: Credentials, method: str, url: str, headers: dict[str, str]
) -> dict[str, str]:
    request = AWSRequest(method=method, url=url, data=b"payload", headers=headers)
    request.context["client_config"] = CONFIG
    with mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None)):
        S3SigV4Auth(credentials.get_frozen_credentials(), "s3", "eu-west-1").add_auth(request)
    return dict(request.headers.items())


KEYS = ["plain.bin", "with space/and+plus%25.txt", "unicodé/ключ/日本.bin", "a" * 200 + "/" + "b" * 200]
HEADER_SETS = [
    {},
    {"Content-Length": "7", "Content-MD5": "abc==", "Content-Type": "text/plain; charset=utf-8"},
    {
        "Content-Length": "7",
        "x-amz-meta-Note": "  two   spaces  inside ",
        "Cache-Control": "max-age=60",
        "Expires": "Sat, 21 Nov 2026 07:00:00 GMT",
        "User-Agent": "not signed",
    },
]


@pytest.mark.parametrize("token", [None, "session-token/with+odd=chars"])
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize("headers", HEADER_SETS)
@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_signature_matches_botocore(
    method: str, headers: dict[str, str], key: str, token: str | None
) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    host = "127.0.0.1:8333"
    path = f"/bucket/{quote(key, safe='/~')}"
    ours = SigV4Signer(credentials, "eu-west-1").sign(method, path, host, headers, now=NOW)
    theirs = botocore_headers(credentials, method, f"http://{host}{path}", headers | {"Host": host})
    assert ours == theirs


def test_signing_key_follows_the_day_and_the_secret() -> None:
    credentials = Credentials("AKIDEXAMPLE", "secret-one")
    signer = SigV4Signer(credentials, "us-east-1")
    first = signer.sign("GET", "/b/k", "h", {}, now=NOW)["Authorization"]
    next_day = signer.sign("GET", "/b/k", "h", {}, now=NOW.replace(day=22))["Authorization"]
    assert "20261122/us-east-1/s3/aws4_request" in next_day and first != next_day
    # Rotated (refreshable) credentials: the cached key must not be reused.
    credentials.secret_key = "secret-two"
    rotated = signer.sign("GET", "/b/k", "h", {}, now=NOW)["Authorization"]
    expected = SigV4Signer(Credentials("AKIDEXAMPLE", "secret-two"), "us-east-1").sign(
        "GET", "/b/k", "h", {}, now=NOW
    )["Authorization"]
    assert rotated == expected != first


class _Captured(Exception):
    def __init__(self, request: Any) -> None:
        super().__init__("captured")
        self.request = request


def serialised_by_botocore(operation: str, token: str | None, **params: Any) -> Any:
    """The request a real botocore client builds and signs for the call (never sent)."""
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url="http://127.0.0.1:8333",
        region_name="eu-west-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
        aws_session_token=token,
        config=Config(
            s3={"addressing_style": "path", "payload_signing_enabled": False},
            request_checksum_calculation="when_required",
            retries={"total_max_attempts": 1},
        ),
    )

    def capture(request: Any, **_: Any) -> None:
        raise _Captured(request)

    client.meta.events.register("before-send.s3", capture)
    frozen = mock.patch("botocore.auth.get_current_datetime", return_value=NOW.replace(tzinfo=None))
    with frozen, pytest.raises(_Captured) as captured:
        getattr(client, operation)(**params)
    return captured.value.request


ODD_IDS = ["2~abc.DEF_ghi-jkl", "3/L4kqtJlcpXroDTDmJ+rmSpXd3dIbrHY+MTRCxf3vjVBH40Nr8X8gdRQ=="]


@pytest.mark.parametrize("token", [None, "session-token"])
@pytest.mark.parametrize("odd_id", ODD_IDS)
@pytest.mark.parametrize("key", KEYS)
@pytest.mark.parametrize(
    ("operation", "make_params", "make_query"),
    [
        (
            "upload_part",
            lambda key, odd: {
                "Key": key,
                "UploadId": odd,
                "PartNumber": 17,
                "Body": b"part",
                "ContentMD5": "x==",
            },
            lambda odd: {"partNumber": "17", "uploadId": odd},
        ),
        (
            "get_object",
            lambda key, odd: {"Key": key, "VersionId": odd, "Range": "bytes=0-99", "IfMatch": '"abc"'},
            lambda odd: {"versionId": odd},
        ),
    ],
)
def test_query_string_requests_match_what_botocore_sends(
    operation: str, make_params: Any, make_query: Any, key: str, odd_id: str, token: str | None
) -> None:
    request = serialised_by_botocore(operation, token, Bucket="bucket", **make_params(key, odd_id))
    url = urlsplit(request.url)
    query = query_string(make_query(odd_id))
    # The same query on the wire (order aside) and the same path...
    assert sorted(query.split("&")) == sorted(url.query.split("&"))
    assert url.path == f"/bucket/{quote(key, safe='/~')}"
    # ...and, given the headers botocore signed (it adds its amz-sdk-* headers after signing),
    # the same signature.
    authorization = request.headers["Authorization"].decode()
    signed_names = set(authorization.split("SignedHeaders=")[1].split(",")[0].split(";"))
    added_by_signer = {"x-amz-date", "x-amz-content-sha256", "x-amz-security-token", "host"}
    headers = {
        k: v.decode() if isinstance(v, bytes) else v
        for k, v in request.headers.items()
        if k.lower() in signed_names - added_by_signer
    }
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    ours = SigV4Signer(credentials, "eu-west-1").sign(
        request.method, url.path, url.netloc, headers, query, now=NOW
    )
    assert ours["Authorization"] == authorization
