"""Reconciling one key against SeaweedFS on both ends (real SigV4, real listings and uploads).

What the reconciler may do depends on what the source proves now: a HEAD's 404 alone never
deletes anything (a missing bucket answers it too), same bytes with new headers are a metadata
update, and failures start the object over only as often as the settings allow.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.awsrequest import AWSResponse

from local_stack.fault_proxy import FaultPlan, FaultProxy
from local_stack.seaweed import SeaweedS3
from replicator.clients import Endpoint, build_clients
from replicator.errors import (
    ArchivedObjectError,
    EncryptedSourceError,
    SourceBucketMissingError,
    SourceChangedError,
    UnstorableKeyError,
)
from replicator.reconcile import Outcome, Reconciler, head, source_absent
from replicator.transfer import TransferEngine
from tests.integration.support import drop_bucket, moto_client, settings_for, settings_through

pytestmark = pytest.mark.integration


class Ends:
    """A source and a target bucket on the server, and an engine between them (reaching the
    target at `target_url` when given: a proxy in front of the server)."""

    def __init__(
        self, lyve: SeaweedS3, source_bucket: str | None = None, target_url: str | None = None, **tuning: Any
    ) -> None:
        name = uuid.uuid4().hex[:10]
        self.admin = lyve.client()
        self.source_bucket = source_bucket or f"src-{name}"
        self.target_bucket = f"dst-{name}"
        self.created = [self.target_bucket] + ([] if source_bucket else [self.source_bucket])
        for bucket in self.created:
            self.admin.create_bucket(Bucket=bucket)
        self.settings = settings_for(lyve, self.source_bucket, self.target_bucket, target_url, **tuning)
        clients = build_clients(self.settings)
        self.source: Endpoint = clients.source
        self.target: Endpoint = clients.target
        self.engine = TransferEngine(self.source, self.target, self.settings)

    def put(self, bucket: str, key: str, body: bytes, **extra: Any) -> None:
        self.admin.put_object(Bucket=bucket, Key=key, Body=body, **extra)

    def target_body(self, key: str) -> bytes:
        return bytes(self.admin.get_object(Bucket=self.target_bucket, Key=key)["Body"].read())

    def uploads(self) -> list[str]:
        listed = self.admin.list_multipart_uploads(Bucket=self.target_bucket).get("Uploads", [])
        return sorted(u["Key"] for u in listed)

    def close(self) -> None:
        self.engine.close()
        for bucket in self.created:
            with contextlib.suppress(self.admin.exceptions.NoSuchBucket):
                drop_bucket(self.admin, bucket)


@pytest.fixture
def ends(lyve: SeaweedS3) -> Iterator[Ends]:
    made = Ends(lyve)
    yield made
    made.close()


def count_calls(endpoint: Endpoint, operation: str) -> list[str]:
    """Records every call of `operation` made through the endpoint's client."""
    calls: list[str] = []
    endpoint.client.meta.events.register(
        f"before-call.s3.{operation}", lambda params, **_: calls.append(params.get("url_path", ""))
    )
    return calls


# -- deletes ------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["deleted", "misnamed"])
def test_a_missing_source_bucket_never_deletes_target_objects(lyve: SeaweedS3, how: str) -> None:
    missing = f"gone-{uuid.uuid4().hex[:10]}"
    made = Ends(lyve, source_bucket=missing if how == "misnamed" else None)
    try:
        made.put(made.target_bucket, "keep/me.txt", b"precious")
        if how == "deleted":
            made.admin.delete_bucket(Bucket=made.source_bucket)
            made.created.remove(made.source_bucket)
        # The source's HEAD answers a bare 404, exactly as for a deleted key ...
        assert head(made.source, "keep/me.txt") is None
        with pytest.raises(
            SourceBucketMissingError, match=f"source bucket '{made.source_bucket}' does not exist"
        ):
            Reconciler(made.engine).reconcile("keep/me.txt")
        # ... yet the target keeps its object.
        assert made.target_body("keep/me.txt") == b"precious"
    finally:
        made.close()


def test_a_key_gone_from_the_source_is_deleted_with_its_incomplete_uploads(ends: Ends) -> None:
    ends.put(ends.target_bucket, "gone.bin", b"old bytes")
    ends.put(ends.source_bucket, "gone.bin-sibling", b"stays")  # shares the key as a prefix
    for key in ("gone.bin", "gone.bin", "gone.bin-sibling"):
        ends.admin.create_multipart_upload(Bucket=ends.target_bucket, Key=key)
    time.sleep(1.1)  # begun before the delete by the target's clock, which counts whole seconds
    assert source_absent(ends.source, "gone.bin")
    result = Reconciler(ends.engine).reconcile("gone.bin")
    assert result.outcome is Outcome.DELETED
    assert head(ends.target, "gone.bin") is None
    assert ends.uploads() == ["gone.bin-sibling"]  # another key's upload is not touched


def test_a_delete_leaves_the_uploads_begun_after_it(ends: Ends) -> None:
    """An upload begun once the key was deleted (by the target's clock) belongs to a copy of the
    key written again since: the delete's clean-up leaves it alone."""
    ends.put(ends.target_bucket, "again.bin", b"old bytes")
    before = ends.admin.create_multipart_upload(Bucket=ends.target_bucket, Key="again.bin")["UploadId"]
    time.sleep(1.1)  # the target's clock counts whole seconds
    after: list[str] = []

    def new_copy_begins(**_: Any) -> None:
        after.append(
            ends.admin.create_multipart_upload(Bucket=ends.target_bucket, Key="again.bin")["UploadId"]
        )

    ends.target.client.meta.events.register("after-call.s3.DeleteObject", new_copy_begins)
    assert Reconciler(ends.engine).reconcile("again.bin").outcome is Outcome.DELETED
    left = {u["UploadId"] for u in ends.admin.list_multipart_uploads(Bucket=ends.target_bucket)["Uploads"]}
    assert len(after) == 1 and left == {after[0]}
    assert before not in left


def test_a_key_listed_after_its_head_said_404_is_copied_not_deleted(ends: Ends) -> None:
    ends.put(ends.source_bucket, "raced.txt", b"new version")
    ends.put(ends.target_bucket, "raced.txt", b"old version")
    answered: list[int] = []

    def first_head_misses(**_: Any) -> tuple[AWSResponse, dict[str, Any]] | None:
        # The object appears between the HEAD and the listing: the HEAD saw nothing.
        if answered:
            return None
        answered.append(404)
        response = AWSResponse(ends.source.url, 404, {}, None)  # type: ignore[arg-type]
        return response, {
            "Error": {"Code": "404", "Message": "Not Found"},
            "ResponseMetadata": {"HTTPStatusCode": 404},
        }

    ends.source.client.meta.events.register("before-call.s3.HeadObject", first_head_misses)
    assert not source_absent(ends.source, "raced.txt")
    result = Reconciler(ends.engine).reconcile("raced.txt")
    assert answered == [404]
    assert result.outcome is Outcome.COPIED
    assert ends.target_body("raced.txt") == b"new version"


# -- metadata -----------------------------------------------------------------------------------


def test_a_metadata_only_change_updates_the_target_without_copying(ends: Ends) -> None:
    body = os.urandom(1000)
    ends.put(
        ends.source_bucket,
        "doc.html",
        body,
        ContentType="text/plain",
        CacheControl="no-cache",
        Metadata={"owner": "a"},
    )
    reconciler = Reconciler(ends.engine)
    assert reconciler.reconcile("doc.html").outcome is Outcome.COPIED
    # An in-place CopyObject with new headers: same bytes, same size, same ETag.
    ends.admin.copy_object(
        Bucket=ends.source_bucket,
        Key="doc.html",
        CopySource={"Bucket": ends.source_bucket, "Key": "doc.html"},
        MetadataDirective="REPLACE",
        ContentType="text/html",
        CacheControl="max-age=60",
        Metadata={"owner": "b"},
    )
    gets = count_calls(ends.source, "GetObject")
    result = reconciler.reconcile("doc.html")
    assert result.outcome is Outcome.METADATA_UPDATED
    assert gets == []  # the bytes were not read again
    target = ends.admin.head_object(Bucket=ends.target_bucket, Key="doc.html")
    assert (target["ContentType"], target["CacheControl"]) == ("text/html", "max-age=60")
    assert target["Metadata"]["owner"] == "b"
    assert ends.target_body("doc.html") == body
    assert reconciler.reconcile("doc.html").outcome is Outcome.UNCHANGED


def test_a_metadata_update_looks_at_the_target_once(ends: Ends) -> None:
    """The reconcile's own HEAD of the target is passed on: the update does not ask again."""
    ends.put(ends.source_bucket, "page.html", b"<p>hi</p>", ContentType="text/plain")
    reconciler = Reconciler(ends.engine)
    assert reconciler.reconcile("page.html").outcome is Outcome.COPIED
    ends.admin.copy_object(
        Bucket=ends.source_bucket,
        Key="page.html",
        CopySource={"Bucket": ends.source_bucket, "Key": "page.html"},
        MetadataDirective="REPLACE",
        ContentType="text/html",
    )
    heads = count_calls(ends.target, "HeadObject")
    assert reconciler.reconcile("page.html").outcome is Outcome.METADATA_UPDATED
    assert len(heads) == 1
    assert ends.admin.head_object(Bucket=ends.target_bucket, Key="page.html")["ContentType"] == "text/html"


class CopyRefusingProxy(FaultProxy):
    """The target as it is, except that it refuses every server-side copy (a request carrying
    x-amz-copy-source) with `status` and `code`, as some stores refuse a copy onto itself."""

    def __init__(self, upstream: str, status: int, code: str) -> None:
        super().__init__(upstream, FaultPlan())
        self.status, self.code = status, code
        self.refused = 0

    def handle(self, request: Any) -> None:
        if not request.headers.get("x-amz-copy-source"):
            super().handle(request)
            return
        self.refused += 1
        length = int(request.headers.get("Content-Length") or 0)
        if length:
            request.rfile.read(length)
        payload = f"<Error><Code>{self.code}</Code><Message>not supported</Message></Error>".encode()
        request.send_response(self.status)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        request.wfile.write(payload)


@pytest.mark.parametrize(("status", "code"), [(400, "InvalidRequest"), (501, "NotImplemented")])
def test_a_target_refusing_copies_onto_itself_gets_the_bytes_again(
    lyve: SeaweedS3, status: int, code: str
) -> None:
    with CopyRefusingProxy(lyve.endpoint_url, status, code) as proxy:
        made = Ends(lyve, target_url=proxy.endpoint_url)
        try:
            body = os.urandom(2000)
            made.put(made.source_bucket, "img.png", body, ContentType="image/jpeg", Metadata={"v": "1"})
            reconciler = Reconciler(made.engine)
            assert reconciler.reconcile("img.png").outcome is Outcome.COPIED
            made.admin.copy_object(
                Bucket=made.source_bucket,
                Key="img.png",
                CopySource={"Bucket": made.source_bucket, "Key": "img.png"},
                MetadataDirective="REPLACE",
                ContentType="image/png",
                Metadata={"v": "2"},
            )
            result = reconciler.reconcile("img.png")
            assert proxy.refused >= 1  # the metadata-only update was tried first
            assert result.outcome is Outcome.COPIED
            target = made.admin.head_object(Bucket=made.target_bucket, Key="img.png")
            assert (target["ContentType"], target["Metadata"]["v"]) == ("image/png", "2")
            assert made.target_body("img.png") == body
            assert reconciler.reconcile("img.png").outcome is Outcome.UNCHANGED
        finally:
            made.close()


def test_a_key_the_target_cannot_hold_fails_before_the_target_is_asked(
    lyve: SeaweedS3, moto_url: str
) -> None:
    name = uuid.uuid4().hex[:10]
    aws = moto_client(moto_url)
    aws.create_bucket(Bucket=f"aws-{name}")
    key = "photos/" + "x" * 300 + ".jpg"  # one segment over 255 bytes
    aws.put_object(Bucket=f"aws-{name}", Key=key, Body=b"jpeg")
    admin = lyve.client()
    admin.create_bucket(Bucket=f"dst-{name}")
    settings = settings_through(moto_url, ("testing", "testing"), lyve, (f"aws-{name}", f"dst-{name}"))
    clients = build_clients(settings)
    engine = TransferEngine(clients.source, clients.target, settings)
    asked: list[str] = []
    clients.target.client.meta.events.register("before-call.s3", lambda model, **_: asked.append(model.name))
    try:
        with pytest.raises(UnstorableKeyError, match="255"):
            Reconciler(engine).reconcile(key)
    finally:
        engine.close()
        drop_bucket(admin, f"dst-{name}")
    assert asked == []


# -- failures -----------------------------------------------------------------------------------


def test_an_sse_c_source_object_is_refused_in_words_at_once(ends: Ends) -> None:
    customer_key = os.urandom(32)
    ends.put(
        ends.source_bucket,
        "vault/secret.bin",
        b"ciphertext",
        SSECustomerAlgorithm="AES256",
        SSECustomerKey=customer_key,
    )
    heads = count_calls(ends.source, "HeadObject")
    with pytest.raises(
        EncryptedSourceError, match=r"'vault/secret.bin' is encrypted with a customer key .*SSE-C"
    ):
        Reconciler(ends.engine).reconcile("vault/secret.bin")
    assert len(heads) == 1  # permanent: not started over
    assert head(ends.target, "vault/secret.bin") is None


def failing_copies(ends: Ends, monkeypatch: pytest.MonkeyPatch, errors: list[BaseException]) -> list[str]:
    """engine.copy raises the given errors in turn, then copies for real."""
    real = ends.engine.copy
    calls: list[str] = []

    def copy(obj: Any, cancel: Any = None) -> Any:
        calls.append(obj.key)
        if errors:
            raise errors.pop(0)
        return real(obj, cancel)

    monkeypatch.setattr(ends.engine, "copy", copy)
    return calls


def test_a_changed_source_starts_the_object_over_as_often_as_configured(
    lyve: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    made = Ends(lyve, source_changed_restarts=2, integrity_restarts=0)
    try:
        body = hashlib.sha256(b"x").digest()
        made.put(made.source_bucket, "busy.bin", body)
        heads = count_calls(made.source, "HeadObject")
        calls = failing_copies(made, monkeypatch, [SourceChangedError("rewritten")] * 2)
        assert Reconciler(made.engine, made.settings).reconcile("busy.bin").outcome is Outcome.COPIED
        assert len(calls) == 3 and len(heads) == 3  # every restart looks at the source again
        assert made.target_body("busy.bin") == body
        calls = failing_copies(made, monkeypatch, [SourceChangedError("rewritten")] * 3)
        made.admin.delete_object(Bucket=made.target_bucket, Key="busy.bin")
        with pytest.raises(SourceChangedError):
            Reconciler(made.engine, made.settings).reconcile("busy.bin")
        assert len(calls) == 3
    finally:
        made.close()


def test_an_archived_object_is_not_started_over(ends: Ends, monkeypatch: pytest.MonkeyPatch) -> None:
    ends.put(ends.source_bucket, "cold.bin", b"frozen")
    calls = failing_copies(ends, monkeypatch, [ArchivedObjectError("'cold.bin' is archived (GLACIER)")])
    with pytest.raises(ArchivedObjectError, match="archived"):
        Reconciler(ends.engine).reconcile("cold.bin")
    assert calls == ["cold.bin"]
