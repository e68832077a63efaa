"""Client construction (and renewal for child processes), and paged bucket listings."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from migrate.listing import FIRST_PAGE_KEYS, PAGE_KEYS, list_bucket
from replicator.clients import Endpoint, build_clients
from replicator.errors import RetryPolicy
from replicator.settings import Settings


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        yield


def settings_with_secret() -> Settings:
    secrets = boto3.client("secretsmanager", region_name="us-east-1")
    secrets.create_secret(
        Name="lyve-credentials",
        SecretString=json.dumps({"access_key_id": "LYVEKEY", "secret_access_key": "lyve-secret"}),
    )
    return Settings(
        source_bucket="source-bucket",
        target_bucket="target-bucket",
        target_endpoint_url="https://s3.us-east-1.lyvecloud.seagate.com",
        target_secret_id="lyve-credentials",
    )


def test_renewed_clients_are_new_and_need_no_second_secret_lookup(aws: None) -> None:
    settings = settings_with_secret()
    clients = build_clients(settings)
    # Gone from Secrets Manager: a renewal that looked it up again would fail.
    boto3.client("secretsmanager", region_name="us-east-1").delete_secret(
        SecretId="lyve-credentials", ForceDeleteWithoutRecovery=True
    )
    renewed = clients.renewed(settings)
    assert renewed.session is clients.session
    for old, new in ((clients.source, renewed.source), (clients.target, renewed.target)):
        assert new.client is not old.client  # own connection pool
        assert new.client._endpoint.http_session is not old.client._endpoint.http_session
        assert (new.bucket, new.url) == (old.bucket, old.url)
    key = renewed.target.client._request_signer._credentials
    assert (key.access_key, key.secret_key) == ("LYVEKEY", "lyve-secret")
    assert "lyve-secret" not in repr(renewed)


def test_listing_starts_with_a_short_page_and_returns_every_key_in_order(aws: None) -> None:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket="many")
    keys = sorted(f"k/{i:05d}" for i in range(FIRST_PAGE_KEYS + PAGE_KEYS + 7))
    for key in keys:
        s3.put_object(Bucket="many", Key=key, Body=b"x")
    page_sizes: list[int] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        page_sizes.append(params["MaxKeys"])

    s3.meta.events.register("provide-client-params.s3.ListObjectsV2", record)
    listed = [obj.key for obj in list_bucket(Endpoint("source", "many", s3, "moto"))]
    assert listed == keys
    assert page_sizes == [FIRST_PAGE_KEYS, PAGE_KEYS, PAGE_KEYS]


class TruncatedWithoutToken:
    def list_objects_v2(self, **_: Any) -> dict[str, Any]:
        return {"Contents": [{"Key": "a", "Size": 1, "ETag": '"x"'}], "IsTruncated": True}


def test_a_truncated_listing_without_a_token_is_an_error_not_a_short_bucket() -> None:
    listing = list_bucket(Endpoint("source", "b", TruncatedWithoutToken(), "stub"))  # type: ignore[arg-type]
    assert next(listing).key == "a"
    with pytest.raises(RuntimeError, match="continuation token"):
        next(listing)


class Flaky:
    def __init__(self, failures: int, error: Exception) -> None:
        self.failures, self.error, self.calls = failures, error, 0

    def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return "done"


@pytest.mark.parametrize(
    ("failures", "attempts", "retryable", "calls", "succeeds"),
    [
        (0, 3, True, 1, True),  # the fast path: one direct call
        (2, 3, True, 3, True),  # two failures, then tenacity's last attempt succeeds
        (3, 3, True, 3, False),  # every attempt used, then the error
        (1, 3, False, 1, False),  # not retryable: no second call
        (1, 1, True, 1, False),  # one attempt configured
    ],
)
def test_retry_policy_counts_attempts_like_tenacity(
    failures: int, attempts: int, retryable: bool, calls: int, succeeds: bool
) -> None:
    error = ValueError("boom")
    fn = Flaky(failures, error)
    policy = RetryPolicy(attempts, first_wait=0.001, max_wait=0.002, retryable=lambda e: retryable)
    if succeeds:
        assert policy(fn) == "done"
    else:
        with pytest.raises(ValueError, match="boom"):
            policy(fn)
    assert fn.calls == calls


class FlakyLean:
    """A lean path whose first answers are 503 SlowDown (no botocore retries on this path)."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0

    def list_objects(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise ClientError(
                {
                    "Error": {"Code": "SlowDown", "Message": "slow"},
                    "ResponseMetadata": {"HTTPStatusCode": 503},
                },
                "ListObjectsV2",
            )
        return {"Contents": [{"Key": "a", "Size": 1, "ETag": '"e"'}], "IsTruncated": False, "Server": "x"}


def test_a_throttled_listing_page_is_asked_again_not_the_end_of_the_run() -> None:
    from migrate.listing import StoreLister

    lean = FlakyLean(failures=2)
    lister = StoreLister(Endpoint("source", "b", None, "u"), lean, attempts=3)  # type: ignore[arg-type]
    assert [entry["Key"] for page in lister.pages("", None) for entry in page] == ["a"]
    assert lean.calls == 3
    with pytest.raises(ClientError):
        list(
            StoreLister(Endpoint("source", "b", None, "u"), FlakyLean(failures=3), attempts=3).pages("", None)
        )  # type: ignore[arg-type]
