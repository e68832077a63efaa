"""StoreTarget writing to Azure Blob (Azurite: Shared Key and every block's Content-MD5 checked),
its source an S3 bucket on SeaweedFS read through S3Store, or an Azurite container read through
AzureBlobStore. What arrived is read back with the plain Azure SDK, not through the stores."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import ResourceNotFoundError
from azure.storage.blob import ContainerClient
from pydantic import SecretStr

from local_stack.azurite import Azurite
from local_stack.seaweed import SeaweedS3
from replicator.clients import build_clients
from replicator.errors import (
    INTEGRITY,
    CancelledError,
    IntegrityError,
    SourceChangedError,
    UnstorableKeyError,
    object_restart_kind,
)
from replicator.objects import META_MD5, META_SOURCE_ETAG, ObjectInfo, metadata_matches, target_matches
from replicator.settings import Settings
from replicator.store_target import StoreTarget, part_size_for, stored_info
from replicator.stores.azure import (
    AzureBlobConfig,
    AzureBlobStore,
    block_size_for,
    encode_name,
)
from replicator.stores.base import (
    ContentHeaders,
    Store,
    StoreAccessError,
    StoreUnavailableError,
    UpdatesMetadata,
)
from replicator.stores.s3 import S3Store
from tests.integration.support import azure_config, drop_bucket, settings_for

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
THRESHOLD = 5 * MIB  # MULTIPART_THRESHOLD_MIB=5
PART = 5 * MIB  # PART_SIZE_MIB=5
EXPIRES = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
HEADERS = {
    "ContentType": "text/plain; charset=utf-8",
    "ContentEncoding": "identity",
    "ContentDisposition": 'attachment; filename="report.txt"',
    "ContentLanguage": "en-GB",
    "CacheControl": "max-age=60",
    "Expires": EXPIRES,
}
# Names Azure cannot take as they are (a dash, a dot), and upper case (S3 lowercases it).
METADATA = {"my-key": "dash", "x.y": "dot", "Upper-Case": "upper", "plain": "p"}
REPO = Path(__file__).resolve().parents[2]


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# -- the two kinds of source --------------------------------------------------------------------------


@dataclass
class Source:
    """A source bucket or container: objects are written with the plain SDK of its kind and
    looked at as the reconciler does (S3: HeadObject read into ObjectInfo)."""

    kind: str
    store: Store
    s3: Any = None  # boto3 client (S3)
    container: ContainerClient | None = None  # plain SDK client (Azure)

    def write(self, key: str, data: bytes, *, in_parts: bool = False, **headers: Any) -> None:
        """With its headers and METADATA (unless given). `in_parts`: a multipart object, whose
        MD5 the source does not know."""
        headers = {**HEADERS, "Metadata": METADATA} | headers
        if self.kind == "s3":
            bucket = self.store.bucket  # type: ignore[attr-defined]
            if not in_parts:
                self.s3.put_object(Bucket=bucket, Key=key, Body=data, **headers)
                return
            upload = self.s3.create_multipart_upload(Bucket=bucket, Key=key, **headers)["UploadId"]
            parts = []
            for number, start in enumerate(range(0, len(data), PART), 1):
                etag = self.s3.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload,
                    PartNumber=number,
                    Body=data[start : start + PART],
                )["ETag"]
                parts.append({"PartNumber": number, "ETag": etag})
            self.s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload, MultipartUpload={"Parts": parts}
            )
            return
        metadata = headers.pop("Metadata")
        content = ContentHeaders.from_s3(headers)
        if not in_parts:
            self.store.put(key, data, content, metadata, md5_hex(data))
            return
        upload = self.store.create_upload(key, content, metadata)  # no MD5 recorded: none known
        parts = [
            self.store.upload_part(upload, number, data[start : start + PART], None)
            for number, start in enumerate(range(0, len(data), PART), 1)
        ]
        self.store.complete(upload, parts)

    def info(self, key: str) -> ObjectInfo:
        """The object as the reconciler sees it."""
        if self.kind == "s3":
            bucket = self.store.bucket  # type: ignore[attr-defined]
            return ObjectInfo.from_head(key, self.s3.head_object(Bucket=bucket, Key=key))
        stored = self.store.head(key)
        assert stored is not None
        return stored_info(stored)

    def listed(self, key: str) -> ObjectInfo:
        (entry,) = [o for o in self.store.list(key) if o.key == key]
        return ObjectInfo(entry.key, entry.size, entry.etag, entry.last_modified, complete=False)

    def user_metadata(self, metadata: Mapping[str, str] = METADATA) -> dict[str, str]:
        """What the source reports of metadata written so (S3 lowercases the names)."""
        return {k.lower() if self.kind == "s3" else k: v for k, v in metadata.items()}


def azure_store(azurite: Azurite, container: str, **overrides: object) -> AzureBlobStore:
    return AzureBlobStore(azure_config(azurite, container, **overrides))


@pytest.fixture
def target_store(azurite: Azurite, container: ContainerClient) -> AzureBlobStore:
    return azure_store(azurite, container.container_name)


def settings(lyve: SeaweedS3, bucket: str = "source-bucket", **tuning: Any) -> Settings:
    tuning = {"multipart_threshold_mib": 5, "part_size_mib": 5} | tuning
    return settings_for(lyve, bucket, "unused-target", **tuning)


@contextlib.contextmanager
def s3_source(lyve: SeaweedS3) -> Iterator[Source]:
    bucket = f"src-{uuid.uuid4().hex[:10]}"
    admin = lyve.client()
    admin.create_bucket(Bucket=bucket)
    tuned = settings(lyve, bucket)
    try:
        yield Source("s3", S3Store(build_clients(tuned).source, tuned), s3=admin)
    finally:
        drop_bucket(admin, bucket)


@contextlib.contextmanager
def azure_source(azurite: Azurite) -> Iterator[Source]:
    client = azurite.client().get_container_client(f"s-{uuid.uuid4().hex[:12]}")
    client.create_container()
    try:
        yield Source("azure", azure_store(azurite, client.container_name), container=client)
    finally:
        client.delete_container()


@pytest.fixture
def source(lyve: SeaweedS3) -> Iterator[Source]:
    with s3_source(lyve) as made:
        yield made


@pytest.fixture(params=["s3", "azure"])
def any_source(request: pytest.FixtureRequest, lyve: SeaweedS3, azurite: Azurite) -> Iterator[Source]:
    with s3_source(lyve) if request.param == "s3" else azure_source(azurite) as made:
        yield made


@pytest.fixture
def make_target(lyve: SeaweedS3, target_store: AzureBlobStore) -> Iterator[Any]:
    made: list[StoreTarget] = []

    def make(source: Source, store: Any = None, **tuning: Any) -> StoreTarget:
        target = StoreTarget("azure-dr", source.store, store or target_store, settings(lyve, **tuning))
        made.append(target)
        return target

    yield make
    for target in made:
        target.close()


def committed_blocks(container: ContainerClient, key: str) -> list[Any] | None:
    """The blob's committed blocks; None when no blob was ever committed nor staged."""
    try:
        committed, _ = container.get_blob_client(key).get_block_list("committed")
    except ResourceNotFoundError:
        return None
    return list(committed)


def assert_nothing_visible(target: StoreTarget, container: ContainerClient, key: str) -> None:
    assert target.head(key) is None
    assert [blob.name for blob in container.list_blobs()] == []
    assert not committed_blocks(container, key)
    with pytest.raises(ResourceNotFoundError):
        container.get_blob_client(key).download_blob()
    assert target.budget.in_use == 0


# -- copies ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [0, 1, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, 3 * PART + 123_457],
    ids=["0B", "1B", "threshold-1", "threshold", "threshold+1", "blocks+odd"],
)
def test_objects_arrive_byte_identical_with_headers_and_metadata(
    any_source: Source, make_target: Any, container: ContainerClient, size: int
) -> None:
    data = os.urandom(size)
    key = f"dir/obj {size} é.bin"
    any_source.write(key, data)
    target = make_target(any_source)
    source_info = any_source.info(key)

    result = target.copy(any_source.listed(key))  # listed: the copy looks at the source itself

    md5 = md5_hex(data)
    blob = container.get_blob_client(key)
    assert blob.download_blob().readall() == data
    props = blob.get_blob_properties()
    settings = props.content_settings
    assert (props.size, props.blob_type) == (size, "BlockBlob")
    assert (
        settings.content_type,
        settings.content_encoding,
        settings.content_disposition,
        settings.content_language,
        settings.cache_control,
    ) == (
        HEADERS["ContentType"],
        HEADERS["ContentEncoding"],
        HEADERS["ContentDisposition"],
        HEADERS["ContentLanguage"],
        HEADERS["CacheControl"],
    )
    assert props.metadata["h_expires"] == "Wed, 02 Jan 2030 03:04:05 GMT"
    assert props.metadata[encode_name("my-key")] == "dash"
    assert props.metadata[encode_name("x.y")] == "dot"
    blocks = committed_blocks(container, key)
    single = size < THRESHOLD
    assert len(blocks or []) == (0 if single else -(-size // block_size_for(size, PART)))
    # The whole-object MD5: computed on a single put, the source's (it knows it) on blocks.
    assert settings.content_md5 is not None
    assert bytes(settings.content_md5).hex() == md5
    assert (result.key, result.size, result.md5) == (key, size, md5)
    assert result.parts == (1 if single else -(-size // PART))
    assert result.source_etag == source_info.etag

    # Through the target: the S3 names, our record, and a match with the source as looked at.
    head = target.head(key)
    assert head is not None
    assert head.user_metadata() == any_source.user_metadata()
    assert (head.metadata[META_SOURCE_ETAG], head.metadata[META_MD5]) == (source_info.etag, md5)
    assert target_matches(source_info, head)
    assert metadata_matches(source_info, head)
    assert target.budget.in_use == 0


def test_md5_is_recorded_only_where_known_or_asked_for(
    source: Source, make_target: Any, container: ContainerClient
) -> None:
    data = os.urandom(2 * PART + 1)
    source.write("multipart", data, in_parts=True)
    info = source.info("multipart")
    assert info.known_md5 is None  # `<md5>-3`: nobody knows the object's MD5

    result = make_target(source).copy(info)
    props = container.get_blob_client("multipart").get_blob_properties()
    assert result.md5 is None
    assert encode_name(META_MD5) not in props.metadata
    assert props.content_settings.content_md5 is None
    assert props.metadata[encode_name(META_SOURCE_ETAG)] == info.etag

    asked = make_target(source, whole_object_md5=True)
    result = asked.copy(info)
    props = container.get_blob_client("multipart").get_blob_properties()
    assert result.md5 == md5_hex(data)
    assert props.metadata[encode_name(META_MD5)] == md5_hex(data)
    assert bytes(props.content_settings.content_md5).hex() == md5_hex(data)
    assert container.get_blob_client("multipart").download_blob().readall() == data


def test_a_corrupted_block_is_refused_and_no_blob_is_committed(
    source: Source,
    make_target: Any,
    target_store: AzureBlobStore,
    container: ContainerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = os.urandom(3 * PART + 10)
    source.write("corrupt", data)
    upload_part = target_store.upload_part
    sent: list[int] = []

    def corrupting(upload: Any, number: int, body: Any, md5: str | None) -> Any:
        sent.append(number)
        if number == 2:  # bytes changed on the way, after their MD5 was taken
            body = bytes(body[:-1]) + bytes([body[-1] ^ 0xFF])
        return upload_part(upload, number, body, md5)

    monkeypatch.setattr(target_store, "upload_part", corrupting)
    target = make_target(source, part_concurrency=2)
    with pytest.raises(IntegrityError, match="MD5") as caught:
        target.copy(source.info("corrupt"))
    assert object_restart_kind(caught.value) == INTEGRITY  # the caller starts the object over
    assert 2 in sent
    assert_nothing_visible(target, container, "corrupt")


def test_a_failed_source_read_mid_copy_leaves_no_blob(
    source: Source, make_target: Any, container: ContainerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = os.urandom(4 * PART + 10)
    source.write("half", data)
    read_range = source.store.read_range

    def failing(key: str, start: int, length: int, expect: Any = None) -> bytes:
        if start == 2 * PART:  # part 3
            raise StoreUnavailableError("the source went away")
        return read_range(key, start, length, expect)

    monkeypatch.setattr(source.store, "read_range", failing)
    target = make_target(source)
    with pytest.raises(StoreUnavailableError, match="went away"):
        target.copy(source.info("half"))
    assert_nothing_visible(target, container, "half")

    # Over an older copy, the failure leaves that one as it was.
    monkeypatch.setattr(source.store, "read_range", read_range)
    old = os.urandom(THRESHOLD + 7)
    source.write("half", old)
    target.copy(source.info("half"))
    before = container.get_blob_client("half").get_blob_properties()
    source.write("half", data)
    monkeypatch.setattr(source.store, "read_range", failing)
    with pytest.raises(StoreUnavailableError):
        target.copy(source.info("half"))
    blob = container.get_blob_client("half")
    assert blob.download_blob().readall() == old
    assert blob.get_blob_properties().etag == before.etag


def test_a_cancel_mid_copy_raises_and_leaves_nothing_visible(
    source: Source,
    make_target: Any,
    target_store: AzureBlobStore,
    container: ContainerClient,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    data = os.urandom(4 * PART + 10)
    source.write("stopped", data)
    cancel = threading.Event()
    read_range = source.store.read_range
    upload_part = target_store.upload_part
    uploaded: list[int] = []

    def stopping(key: str, start: int, length: int, expect: Any = None) -> bytes:
        if start == PART:  # told to stop while part 2 is read
            cancel.set()
        return read_range(key, start, length, expect)

    def spy(upload: Any, number: int, body: Any, md5: str | None) -> Any:
        uploaded.append(number)
        return upload_part(upload, number, body, md5)

    monkeypatch.setattr(source.store, "read_range", stopping)
    monkeypatch.setattr(target_store, "upload_part", spy)
    target = make_target(source, part_concurrency=1)
    with pytest.raises(CancelledError):
        target.copy(source.info("stopped"), cancel)
    assert uploaded == [1]  # nothing sent after the stop
    assert_nothing_visible(target, container, "stopped")

    # Told to stop before it began: nothing is read or sent.
    with pytest.raises(CancelledError, match="not started"):
        target.copy(source.info("stopped"), cancel)
    assert uploaded == [1]


def test_a_source_changed_during_the_copy_is_never_written(
    source: Source, make_target: Any, container: ContainerClient
) -> None:
    source.write("moving", os.urandom(2 * PART))
    looked_at = source.info("moving")
    source.write("moving", os.urandom(2 * PART))  # rewritten after the HEAD
    target = make_target(source)
    with pytest.raises(SourceChangedError):
        target.copy(looked_at)
    assert_nothing_visible(target, container, "moving")
    small = source.info("moving")
    source.write("moving", b"short now")
    with pytest.raises(SourceChangedError):
        target.copy(replace(small, size=THRESHOLD - 1))
    assert_nothing_visible(target, container, "moving")


def test_copy_read_writes_the_bytes_already_read(
    source: Source, make_target: Any, container: ContainerClient
) -> None:
    data = os.urandom(1000)
    source.write("read-once", data)
    info = source.info("read-once")
    target = make_target(source)
    started = time.monotonic()
    result = target.copy_read(info, data, started)
    assert (result.md5, result.parts, result.source_etag) == (md5_hex(data), 1, info.etag)
    assert result.seconds >= 0
    assert container.get_blob_client("read-once").download_blob().readall() == data
    head = target.head("read-once")
    assert head is not None
    assert target_matches(info, head) and metadata_matches(info, head)
    with pytest.raises(IntegrityError, match="MD5"):  # not the bytes the source's ETag names
        target.copy_read(info, data[:-1] + b"x", started)
    with pytest.raises(IntegrityError, match="999 bytes"):
        target.copy_read(info, data[:-1], started)
    stop = threading.Event()
    stop.set()
    with pytest.raises(CancelledError):
        target.copy_read(info, data, started, stop)


# -- what the reconciler compares ---------------------------------------------------------------------


def test_the_targets_head_tells_a_copy_of_the_source_from_a_changed_source(
    source: Source, make_target: Any
) -> None:
    data = os.urandom(3000)
    source.write("compared", data)
    target = make_target(source)
    target.copy(source.info("compared"))
    copied = target.head("compared")
    assert copied is not None
    assert copied.written_by_us
    assert target_matches(source.info("compared"), copied)
    assert metadata_matches(source.info("compared"), copied)

    source.write("compared", os.urandom(3000))  # same size, other bytes
    rewritten = source.info("compared")
    assert rewritten.size == copied.size
    assert not target_matches(rewritten, copied)

    source.write("compared", data, Metadata={**METADATA, "my-key": "changed"}, CacheControl="no-cache")
    relabelled = source.info("compared")  # the same bytes again: the same ETag (their MD5)
    assert target_matches(relabelled, copied)
    assert not metadata_matches(relabelled, copied)
    assert target.head("never-written") is None


def test_another_tools_blob_with_the_sources_md5_counts_as_a_copy(
    source: Source, make_target: Any, container: ContainerClient
) -> None:
    data = os.urandom(2000)
    source.write("adopted", data)
    # Written by another tool: no record of ours, only Azure's own Content-MD5.
    container.get_blob_client("adopted").upload_blob(data)
    target = make_target(source)
    existing = target.head("adopted")
    assert existing is not None
    assert not existing.written_by_us
    assert target_matches(source.info("adopted"), existing)
    container.get_blob_client("adopted").upload_blob(os.urandom(2000), overwrite=True)
    changed = target.head("adopted")
    assert changed is not None
    assert not target_matches(source.info("adopted"), changed)


class PlainStore:
    """A Store without the optional in-place metadata update (UpdatesMetadata)."""

    def __init__(self, inner: AzureBlobStore) -> None:
        self.inner = inner
        self.name = inner.name
        self.limits = inner.limits
        self.puts = 0

    def head(self, key: str) -> Any:
        return self.inner.head(key)

    def read_range(self, key: str, start: int, length: int, expect: Any = None) -> bytes:
        return self.inner.read_range(key, start, length, expect)

    def put(self, key: str, data: Any, headers: Any, metadata: Any, md5: str) -> str | None:
        self.puts += 1
        return self.inner.put(key, data, headers, metadata, md5)

    def create_upload(self, key: str, headers: Any, metadata: Any) -> Any:
        return self.inner.create_upload(key, headers, metadata)

    def upload_part(self, upload: Any, number: int, data: Any, md5: str | None) -> Any:
        return self.inner.upload_part(upload, number, data, md5)

    def complete(self, upload: Any, parts: Any) -> str | None:
        return self.inner.complete(upload, parts)

    def abort(self, upload: Any) -> None:
        self.inner.abort(upload)

    def list(self, prefix: str = "", start_after: str | None = None) -> Any:
        return self.inner.list(prefix, start_after)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def incomplete_uploads(self, key: str) -> Any:
        return self.inner.incomplete_uploads(key)


@pytest.mark.parametrize("in_parts", [False, True], ids=["put", "blocks"])
def test_update_metadata_changes_headers_and_metadata_not_the_bytes(
    source: Source,
    make_target: Any,
    target_store: AzureBlobStore,
    container: ContainerClient,
    monkeypatch: pytest.MonkeyPatch,
    in_parts: bool,
) -> None:
    assert isinstance(target_store, UpdatesMetadata)
    data = os.urandom(2 * PART + 3 if in_parts else 3000)
    source.write("doc", data, in_parts=in_parts)
    target = make_target(source)
    target.copy(source.info("doc"))
    blob = container.get_blob_client("doc")
    before = blob.get_blob_properties()

    new_metadata = {"new-name": "v", "Upper-Case": "changed"}
    new_headers = {"ContentType": "text/html", "CacheControl": "no-cache", "ContentLanguage": "fr"}
    if in_parts:  # S3 gives a multipart object a new ETag when it is rewritten: relabel its look
        changed = replace(
            source.info("doc"),
            metadata=source.user_metadata(new_metadata),
            headers={**source.info("doc").headers, **new_headers},
        )
    else:
        source.write("doc", data, Metadata=new_metadata, **new_headers)
        changed = source.info("doc")
    existing = target.head("doc")
    assert existing is not None
    assert target_matches(changed, existing) and not metadata_matches(changed, existing)

    def no_bytes(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("bytes sent for a metadata update")

    for name in ("put", "create_upload", "upload_part", "complete"):
        monkeypatch.setattr(target_store, name, no_bytes)
    target.update_metadata(changed, existing)

    after = blob.get_blob_properties()
    assert blob.download_blob().readall() == data
    assert after.etag != before.etag
    assert (after.content_settings.content_type, after.content_settings.cache_control) == (
        "text/html",
        "no-cache",
    )
    assert after.content_settings.content_language == "fr"
    assert after.content_settings.content_encoding == HEADERS["ContentEncoding"]
    assert after.content_settings.content_md5 == before.content_settings.content_md5  # kept
    head = target.head("doc")
    assert head is not None
    assert head.user_metadata() == source.user_metadata(new_metadata)
    assert head.metadata[META_SOURCE_ETAG] == existing.metadata[META_SOURCE_ETAG]
    assert head.metadata.get(META_MD5) == existing.metadata.get(META_MD5)
    assert (META_MD5 in head.metadata) == (not in_parts)
    assert target_matches(changed, head) and metadata_matches(changed, head)


def test_update_metadata_leaves_an_object_changed_meanwhile_alone(
    source: Source, make_target: Any, container: ContainerClient
) -> None:
    data = os.urandom(100)
    source.write("raced", data)
    target = make_target(source)
    target.copy(source.info("raced"))
    existing = target.head("raced")
    assert existing is not None
    source.write("raced", data, Metadata={"new": "1"})
    changed = source.info("raced")
    assert target_matches(changed, existing)
    # Another writer touched the target's object after it was looked at.
    blob = container.get_blob_client("raced")
    blob.set_blob_metadata({**blob.get_blob_properties().metadata, "m_other": "writer"})
    with pytest.raises(SourceChangedError):
        target.update_metadata(changed, existing)
    assert blob.get_blob_properties().metadata["m_other"] == "writer"
    assert blob.get_blob_properties().metadata.get("m_new") is None

    # An object that does not hold the source's bytes is to be copied, not relabelled.
    source.write("raced", os.urandom(100))
    current = target.head("raced")
    assert current is not None
    with pytest.raises(SourceChangedError, match="copy it"):
        target.update_metadata(source.info("raced"), current)


def test_update_metadata_copies_again_where_the_store_cannot_in_place(
    source: Source, make_target: Any, target_store: AzureBlobStore, container: ContainerClient
) -> None:
    plain = PlainStore(target_store)
    assert not isinstance(plain, UpdatesMetadata)
    data = os.urandom(500)
    source.write("plain", data)
    target = make_target(source, store=plain)
    target.copy(source.info("plain"))
    source.write("plain", data, Metadata={"new": "1"})
    changed = source.info("plain")
    existing = target.head("plain")
    assert existing is not None and not metadata_matches(changed, existing)
    target.update_metadata(changed, existing)
    assert plain.puts == 2
    head = target.head("plain")
    assert head is not None and metadata_matches(changed, head) and target_matches(changed, head)
    assert container.get_blob_client("plain").download_blob().readall() == data


def test_the_store_keeps_a_foreign_blobs_content_md5_when_relabelling(
    target_store: AzureBlobStore, container: ContainerClient
) -> None:
    data = os.urandom(100)
    container.get_blob_client("foreign").upload_blob(data)  # Content-MD5 by Azure, no metadata
    stored = target_store.head("foreign")
    assert stored is not None and stored.content_md5 == md5_hex(data)
    target_store.update_metadata("foreign", stored.version, ContentHeaders(content_type="a/b"), {"k": "v"})
    props = container.get_blob_client("foreign").get_blob_properties()
    assert bytes(props.content_settings.content_md5).hex() == md5_hex(data)
    assert (props.content_settings.content_type, props.metadata) == ("a/b", {"m_k": "v"})
    with pytest.raises(SourceChangedError):  # pinned to the ETag looked at, which is gone
        target_store.update_metadata("foreign", stored.version, ContentHeaders(), {})


# -- deletes ----------------------------------------------------------------------------------------


def test_deletes_propagate_and_discard_uploads_begun_before(
    source: Source, make_target: Any, target_store: AzureBlobStore, container: ContainerClient
) -> None:
    source.write("gone", os.urandom(100))
    target = make_target(source)
    target.copy(source.info("gone"))
    stale = target_store.create_upload("gone", ContentHeaders(), {})
    target_store.upload_part(stale, 1, b"staged by an earlier copy", None)
    assert [u.upload_id for u in target_store.incomplete_uploads("gone")] == [stale.upload_id]

    assert target.delete("gone") == 1
    assert target.head("gone") is None
    assert target_store.incomplete_uploads("gone") == []
    assert [blob.name for blob in container.list_blobs()] == []
    assert target.delete("gone") == 0  # absent is fine
    assert target.delete("never-written") == 0

    # Blocks of a key that has no blob: the delete discards them too, and their upload cannot
    # be completed afterwards.
    orphan = target_store.create_upload("orphan", ContentHeaders(), {})
    part = target_store.upload_part(orphan, 1, b"staged only", None)
    assert target.delete("orphan") == 1
    assert target_store.incomplete_uploads("orphan") == []
    with pytest.raises(SourceChangedError):
        target_store.complete(orphan, [part])
    assert target.head("orphan") is None


# -- keys Azure Blob cannot hold ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "why"),
    [
        ("k" * 1025, "1025 characters"),
        ("\U0001f600" * 513, "1026 characters"),  # UTF-16 counts each as two
        ("/".join(["s"] * 255), "255 '/'-separated segments"),
        ("ends.", "'ends.' ends with '.'"),
        ("dir./file", "'dir.' ends with '.'"),
        ("a/../b", "'..' ends with '.'"),
        ("dir/", "ends with '/'"),
        ("back\\slash", "backslash"),
        ("tab\there", "U+0009"),
        ("c1\x85", "U+0085"),
        ("nonchar\ufffe", "U+FFFE"),
    ],
)
def test_keys_azure_blob_cannot_hold_are_refused(
    lyve: SeaweedS3, target_store: AzureBlobStore, key: str, why: str
) -> None:
    target = StoreTarget("azure-dr", target_store, target_store, settings(lyve))
    refusal = target.refusal(key)
    assert isinstance(refusal, UnstorableKeyError)
    assert refusal.reason == "unstorable_key"
    assert why in str(refusal)
    assert repr(key) in str(refusal) and "'azure-dr'" in str(refusal)
    listed = ObjectInfo(key, 1, "etag")
    with pytest.raises(UnstorableKeyError):  # before anything is read or written
        target.copy(listed)
    with pytest.raises(UnstorableKeyError):
        target.copy_read(listed, b"x", time.monotonic())
    target.close()


@pytest.mark.parametrize(
    "key", ["k" * 1024, "/".join(["s"] * 254), "dir/.hidden", "a.b/c", "x..y", "é/ü", "/leading", "sp ace"]
)
def test_keys_azure_blob_can_hold_are_not_refused(
    lyve: SeaweedS3, target_store: AzureBlobStore, key: str
) -> None:
    target = StoreTarget("azure-dr", target_store, target_store, settings(lyve))
    assert target.refusal(key) is None
    target.close()


def test_part_sizes_follow_the_targets_limits() -> None:
    configured = 16 * MIB
    for size in (
        1,
        5 * MIB,
        16 * MIB + 1,
        50_000 * 16 * MIB + 1,
        3 * 1024**4,
        AzureBlobStore.limits.max_object_size,
    ):
        assert part_size_for(size, configured, AzureBlobStore.limits) == block_size_for(size, configured)
    assert part_size_for(1, 5000 * MIB, AzureBlobStore.limits) == 4000 * MIB
    s3 = S3Store.limits
    assert part_size_for(5 * 1024**4, configured, s3) <= s3.max_part_size
    assert -(-5 * 1024**4 // part_size_for(5 * 1024**4, configured, s3)) <= s3.max_parts
    with pytest.raises(ValueError, match="exceeds"):
        part_size_for(AzureBlobStore.limits.max_object_size + 1, configured, AzureBlobStore.limits)


# -- credentials ----------------------------------------------------------------------------------


def test_credentials_never_reach_an_error_or_a_log_line(
    source: Source,
    lyve: SeaweedS3,
    azurite: Azurite,
    container: ContainerClient,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="azure")  # logs.configure_logging quiets it
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    store = AzureBlobStore(
        AzureBlobConfig(
            container=container.container_name,
            account_name=azurite.account_name,
            account_key=SecretStr(wrong_key),
            account_url=azurite.blob_endpoint,
            max_attempts=1,
        )
    )
    source.write("small", os.urandom(10))
    source.write("large", os.urandom(THRESHOLD + 1))
    target = StoreTarget("azure-dr", source.store, store, settings(lyve))
    secrets = (wrong_key, azurite.account_key, lyve.secret_key)
    for attempt in (
        lambda: target.copy(source.info("small")),
        lambda: target.copy(source.info("large")),
        lambda: target.head("small"),
        lambda: target.delete("small"),
    ):
        with pytest.raises(StoreAccessError) as caught:
            attempt()
        for text in (str(caught.value), repr(caught.value)):
            assert not any(secret in text for secret in secrets), text
            assert container.container_name in text
    assert target.budget.in_use == 0
    captured = capsys.readouterr()
    for text in (repr(target), caplog.text, captured.out, captured.err):
        assert not any(secret in text for secret in secrets), text
    target.close()
