"""Keys the target cannot store, judged from the key alone, and which write errors may be taken
for a refusal of the key (without a server; tests/integration/test_target_rules.py has SeaweedFS's
real answers)."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from replicator.clients import Endpoint
from replicator.errors import UnstorableKeyError
from replicator.target_rules import check_key, explain_refusal


@pytest.mark.parametrize(
    "key",
    [
        "a" * 255,
        "dir/" + "b" * 255 + "/c",
        "x/" + "é" * 127,  # 254 bytes
        "/".join(["s" * 200] * 5),  # 1,004 bytes in 200-byte segments
        "a/",
        "",
    ],
    ids=["255", "255-inside", "254-utf8", "1004-in-segments", "trailing-slash", "empty"],
)
def test_storable_keys(key: str) -> None:
    assert check_key(key) is None


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("a" * 256, "256 bytes"),
        ("dir/" + "b" * 256 + "/c", "256 bytes"),
        ("x/" + "é" * 128, "256 bytes (UTF-8)"),  # 128 characters, 256 bytes
        ("/".join(["s" * 250] * 5), "1254 bytes, over the 1024-byte limit"),
    ],
    ids=["256", "256-inside", "256-utf8", "over-1024"],
)
def test_unstorable_keys_are_named_with_the_reason(key: str, reason: str) -> None:
    error = check_key(key)
    assert isinstance(error, UnstorableKeyError)
    assert error.reason == "unstorable_key"
    assert reason in str(error) and str(error).startswith(f"target cannot store {key!r}")


class NoCalls:
    """A client that must not be asked anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the target was probed ({name}) for an answer that needs no probe")


TARGET = Endpoint("target", "bucket", NoCalls(), "https://lyve.example")  # type: ignore[arg-type]


def client_error(status: int, code: str, operation: str = "PutObject") -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},  # type: ignore[typeddict-item]
        operation,
    )


@pytest.mark.parametrize(
    "error",
    [
        client_error(503, "SlowDown"),
        client_error(503, "ServiceUnavailable"),
        client_error(504, "504"),
        client_error(403, "AccessDenied"),
        client_error(400, "BadDigest", "UploadPart"),
        client_error(404, "NoSuchUpload", "CompleteMultipartUpload"),
        ConnectionResetError(),
    ],
    ids=["SlowDown", "503", "504", "AccessDenied", "BadDigest", "NoSuchUpload", "transport"],
)
def test_answers_that_mean_what_they_say_are_not_refusals_and_need_no_probe(error: BaseException) -> None:
    assert explain_refusal(error, "a/b", TARGET) is None


def test_a_key_too_long_is_permanent_without_a_probe() -> None:
    key = "x/" + "L" * 256
    refusal = explain_refusal(client_error(400, "KeyTooLongError"), key, TARGET)
    assert isinstance(refusal, UnstorableKeyError)
    assert "256 bytes" in str(refusal) and "KeyTooLongError on PutObject" in str(refusal)


def test_an_internal_error_on_a_key_with_a_long_segment_needs_no_probe() -> None:
    key = "x/" + "L" * 256
    error = client_error(500, "InternalError", "CompleteMultipartUpload")
    refusal = explain_refusal(error, key, TARGET)
    assert isinstance(refusal, UnstorableKeyError)
    assert "InternalError on CompleteMultipartUpload" in str(refusal)
