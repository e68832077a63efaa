"""A small object's reconcile reads the source once: its GET stands in for the HEAD (moto as the
source, behind a recording proxy; SeaweedFS as the target). Every guarantee of the HEAD path holds:
a 404 deletes only after the one-key listing, refused reads end as they always did, and an object
that grew past the multipart threshold is not read whole."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from local_stack.seaweed import SeaweedS3
from replicator.errors import ArchivedObjectError, EncryptedSourceError, SourceBucketMissingError
from replicator.reconcile import Outcome, Reconciler, head
from replicator.transfer import TransferEngine
from tests.integration.support import (
    HEADERS,
    RefusingProxy,
    drop_bucket,
    engine_through,
    moto_client,
    put_source,
)

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
KEYS = ("testing", "testing")


class Source:
    """A moto bucket reached through a proxy that records every request (and refuses those
    `rule` answers), a SeaweedFS target bucket and an engine between them."""

    def __init__(self, moto_url: str, lyve: SeaweedS3, rule: Any = None, bucket: str | None = None) -> None:
        name = uuid.uuid4().hex[:10]
        self.s3 = moto_client(moto_url)
        self.bucket = bucket or f"aws-{name}"
        if bucket is None:
            self.s3.create_bucket(Bucket=self.bucket)
        self.target_bucket = f"dst-{name}"
        self.admin = lyve.client()
        self.admin.create_bucket(Bucket=self.target_bucket)
        self.proxy = RefusingProxy(moto_url, rule or (lambda method, path: None)).__enter__()
        self.engine: TransferEngine = engine_through(
            self.proxy.endpoint_url, KEYS, lyve, (self.bucket, self.target_bucket), part_size_mib=5
        )

    def requests(self) -> list[str]:
        """The source requests since the last call: method, and `list` for a listing."""
        seen = [("list" if "list-type" in path else method) for method, path, _ in self.proxy.seen]
        self.proxy.seen.clear()
        return seen

    def close(self) -> None:
        self.engine.close()
        self.proxy.stop()
        drop_bucket(self.admin, self.target_bucket)


@pytest.fixture
def source(moto_url: str, lyve: SeaweedS3, request_path: str) -> Iterator[Source]:
    made = Source(moto_url, lyve)
    yield made
    made.close()


def test_a_small_object_is_reconciled_with_one_source_request(source: Source) -> None:
    body = os.urandom(3000)
    put_source(source.engine.source, "a.bin", body)
    put_source(source.engine.source, "b.bin", body)
    source.requests()
    reconciler = Reconciler(source.engine)
    # Without a size from the event: HEAD, then the GET.
    assert reconciler.reconcile("a.bin").outcome is Outcome.COPIED
    assert source.requests() == ["HEAD", "GET"]
    # With it: the GET alone, and the same object on the target.
    assert reconciler.reconcile("b.bin", expected_size=len(body)).outcome is Outcome.COPIED
    assert source.requests() == ["GET"]
    copied = source.admin.get_object(Bucket=source.target_bucket, Key="b.bin")
    assert copied["Body"].read() == body
    assert copied["Metadata"]["owner"] == "qa" and copied["ContentType"] == HEADERS["ContentType"]
    assert copied["CacheControl"] == HEADERS["CacheControl"]
    # Again: the target holds it (the bytes were read for nothing, one request all the same).
    assert reconciler.reconcile("b.bin", expected_size=len(body)).outcome is Outcome.UNCHANGED
    assert source.requests() == ["GET"]
    # New metadata at the source, same bytes: compared on what the GET said.
    source.s3.copy_object(
        Bucket=source.bucket,
        Key="b.bin",
        CopySource={"Bucket": source.bucket, "Key": "b.bin"},
        Metadata={"owner": "ops"},
        MetadataDirective="REPLACE",
    )
    source.requests()
    assert reconciler.reconcile("b.bin", expected_size=len(body)).outcome is Outcome.METADATA_UPDATED
    assert source.requests() == ["GET"]
    assert head(source.engine.target, "b.bin").metadata["owner"] == "ops"  # type: ignore[union-attr]


def test_a_get_404_deletes_only_once_the_listing_shows_the_key_gone(source: Source) -> None:
    source.admin.put_object(Bucket=source.target_bucket, Key="gone.bin", Body=b"old")
    put_source(source.engine.source, "gone.bin-sibling", b"stays")  # shares the key as a prefix
    source.requests()
    assert Reconciler(source.engine).reconcile("gone.bin", expected_size=3).outcome is Outcome.DELETED
    assert source.requests() == ["GET", "list"]
    assert head(source.engine.target, "gone.bin") is None


def test_a_get_404_from_a_missing_bucket_deletes_nothing(moto_url: str, lyve: SeaweedS3) -> None:
    made = Source(moto_url, lyve, bucket=f"gone-{uuid.uuid4().hex[:10]}")
    try:
        made.admin.put_object(Bucket=made.target_bucket, Key="keep/me.txt", Body=b"precious")
        with pytest.raises(SourceBucketMissingError, match=f"source bucket '{made.bucket}' does not exist"):
            Reconciler(made.engine).reconcile("keep/me.txt", expected_size=8)
        assert (
            made.admin.get_object(Bucket=made.target_bucket, Key="keep/me.txt")["Body"].read() == b"precious"
        )
    finally:
        made.close()


def test_a_key_listed_after_its_get_said_404_is_copied_not_deleted(moto_url: str, lyve: SeaweedS3) -> None:
    answered: list[str] = []

    def first_get_misses(method: str, path: str) -> Any:
        # The object appears between the GET and the listing: the GET saw nothing.
        if method == "GET" and "raced.txt" in path and "list-type" not in path and not answered:
            answered.append(path)
            return (404, "NoSuchKey", "The specified key does not exist.")
        return None

    made = Source(moto_url, lyve, first_get_misses)
    try:
        made.s3.put_object(Bucket=made.bucket, Key="raced.txt", Body=b"new version")
        made.admin.put_object(Bucket=made.target_bucket, Key="raced.txt", Body=b"old version")
        made.requests()
        result = Reconciler(made.engine).reconcile("raced.txt", expected_size=11)
        assert result.outcome is Outcome.COPIED
        assert made.requests() == ["GET", "list", "HEAD", "GET"]
        assert (
            made.admin.get_object(Bucket=made.target_bucket, Key="raced.txt")["Body"].read() == b"new version"
        )
    finally:
        made.close()


def test_an_archived_object_is_refused_as_before_unless_the_target_holds_it(source: Source) -> None:
    """An archived object answers the GET with InvalidObjectState: the HEAD path takes over and
    decides as it always did."""
    source.s3.put_object(Bucket=source.bucket, Key="cold.bin", Body=b"frozen", StorageClass="GLACIER")
    source.requests()
    reconciler = Reconciler(source.engine)
    with pytest.raises(ArchivedObjectError, match="archived in GLACIER"):
        reconciler.reconcile("cold.bin", expected_size=6)
    assert source.requests() == ["GET", "HEAD"]  # permanent: not started over
    assert head(source.engine.target, "cold.bin") is None
    # Copied while it was readable, archived since: nothing to do, as before.
    source.s3.put_object(Bucket=source.bucket, Key="was-warm.bin", Body=b"frozen later")
    assert reconciler.reconcile("was-warm.bin", expected_size=12).outcome is Outcome.COPIED
    source.s3.copy_object(
        Bucket=source.bucket,
        Key="was-warm.bin",
        CopySource={"Bucket": source.bucket, "Key": "was-warm.bin"},
        StorageClass="GLACIER",
    )
    source.requests()
    assert reconciler.reconcile("was-warm.bin", expected_size=12).outcome is Outcome.UNCHANGED
    assert source.requests() == ["GET", "HEAD"]


def test_an_sse_c_object_is_refused_in_words(moto_url: str, lyve: SeaweedS3) -> None:
    sse_c = "The object was stored using a form of Server Side Encryption."

    def rule(method: str, path: str) -> Any:
        if "customer.bin" not in path:
            return None
        return (400, None) if method == "HEAD" else (400, "InvalidRequest", sse_c)

    made = Source(moto_url, lyve, rule)
    try:
        made.s3.put_object(Bucket=made.bucket, Key="customer.bin", Body=b"ciphertext")
        with pytest.raises(EncryptedSourceError, match="SSE-C"):
            Reconciler(made.engine).reconcile("customer.bin", expected_size=10)
        assert head(made.engine.target, "customer.bin") is None
    finally:
        made.close()


def test_a_kms_object_we_may_not_decrypt_is_refused_naming_its_key(moto_url: str, lyve: SeaweedS3) -> None:
    """AWS answers a bare AccessDenied to the GET: only the HEAD tells it is aws:kms, and which key."""
    key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    made = Source(
        moto_url,
        lyve,
        lambda method, path: (403, "AccessDenied") if method == "GET" and "secret" in path else None,
    )
    try:
        made.s3.put_object(
            Bucket=made.bucket,
            Key="secret.bin",
            Body=b"x" * 100,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=key_id,
        )
        with pytest.raises(EncryptedSourceError, match=key_id):
            Reconciler(made.engine).reconcile("secret.bin", expected_size=100)
        assert head(made.engine.target, "secret.bin") is None
    finally:
        made.close()


def test_an_object_grown_past_the_threshold_since_its_event_is_copied_in_parts(source: Source) -> None:
    body = os.urandom(9 * MIB)
    put_source(source.engine.source, "grown.bin", body)
    source.requests()
    result = Reconciler(source.engine).reconcile("grown.bin", expected_size=1000)
    assert result.outcome is Outcome.COPIED and result.copy is not None and result.copy.parts == 2
    # The GET's body was left unread (the object is no longer small); a HEAD describes it.
    seen = list(source.proxy.seen)
    assert [(method, rng is not None) for method, _, rng in seen[:2]] == [("GET", False), ("HEAD", False)]
    assert all(method == "GET" and rng for method, _, rng in seen[2:])  # the parts: ranged reads
    assert source.admin.get_object(Bucket=source.target_bucket, Key="grown.bin")["Body"].read() == body
