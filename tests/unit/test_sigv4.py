"""The lean path's signer must produce exactly botocore's signature for the same request."""

from __future__ import annotations

from datetime import UTC, datetime
from unittest import mock
from urllib.parse import quote

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from replicator.sigv4 import SigV4Signer

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
