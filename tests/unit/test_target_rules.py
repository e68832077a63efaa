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


# -- AWS S3 as the target: only S3's own limit -----------------------------------------------------


class ShowsAClash:
    """An AWS S3 target holding `a` (and so, for Lyve's rules, standing in the way of `a/b`)."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def head_object(self, **args: Any) -> Any:
        self.calls.append("head_object")
        return {"ContentLength": 1}

    def list_objects_v2(self, **args: Any) -> Any:
        self.calls.append("list_objects_v2")
        return {"Contents": [{"Key": f"{args['Prefix']}x"}]}


AWS_URLS = [
    "https://s3.us-east-1.amazonaws.com",
    "https://s3.amazonaws.com",
    "https://s3.dualstack.eu-west-1.amazonaws.com",
    "https://s3-fips.us-gov-west-1.amazonaws.com",
    "https://s3.cn-north-1.amazonaws.com.cn",
    "https://S3.US-WEST-2.AMAZONAWS.COM",
]
OTHER_URLS = [
    "https://s3.us-east-1.lyvecloud.seagate.com",
    "https://s3.us-east-1.acct.lyve.seagate.com",
    "http://127.0.0.1:8333",
    "https://amazonaws.com.example.net",
    "https://notamazonaws.com",
]


@pytest.mark.parametrize("url", AWS_URLS + OTHER_URLS)
def test_on_aws_is_true_for_aws_s3_hosts_only(url: str) -> None:
    from replicator.aws_endpoint import on_aws

    assert on_aws(Endpoint("target", "b", NoCalls(), url)) is (url in AWS_URLS)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", AWS_URLS[:2])
def test_aws_s3_stores_a_segment_over_255_bytes(url: str) -> None:
    aws = Endpoint("target", "bucket", NoCalls(), url)  # type: ignore[arg-type]
    key = "dir/" + "b" * 300 + "/c"
    assert check_key(key, aws) is None
    assert isinstance(check_key(key, TARGET), UnstorableKeyError)
    assert isinstance(check_key(key), UnstorableKeyError)  # no target named: Lyve's rules
    too_long = "/".join(["s" * 250] * 5)
    assert "over the 1024-byte limit" in str(check_key(too_long, aws))  # S3's own limit holds


def test_on_aws_a_500_is_never_taken_for_a_refusal_of_the_key() -> None:
    client = ShowsAClash()
    aws = Endpoint("target", "bucket", client, "https://s3.us-east-1.amazonaws.com")  # type: ignore[arg-type]
    error = client_error(500, "InternalError", "CompleteMultipartUpload")
    assert explain_refusal(error, "a/b", aws) is None
    assert explain_refusal(error, "x/" + "L" * 256, aws) is None
    assert client.calls == []  # no probe: on S3 `a` and `a/b` coexist
    lyve = Endpoint("target", "bucket", client, "https://s3.us-east-1.lyvecloud.seagate.com")  # type: ignore[arg-type]
    refusal = explain_refusal(error, "a/b", lyve)
    assert isinstance(refusal, UnstorableKeyError) and "cannot coexist" in str(refusal)


def test_on_aws_key_too_long_is_still_permanent() -> None:
    aws = Endpoint("target", "bucket", NoCalls(), "https://s3.amazonaws.com")  # type: ignore[arg-type]
    key = "k" * 1100
    refusal = explain_refusal(client_error(400, "KeyTooLongError"), key, aws)
    assert isinstance(refusal, UnstorableKeyError) and "1100 bytes" in str(refusal)
