"""The S3 store against real servers on loopback: SeaweedFS (SigV4 and Content-MD5 checked, as
Lyve Cloud does) and moto (AWS's answers: versions, storage classes, SSE-KMS), on the lean HTTP
path and on boto3. What arrived is read back with a plain boto3 client, not through the store."""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.fault_proxy import FaultPlan, FaultProxy
from local_stack.seaweed import SeaweedS3, free_port
from replicator.clients import build_clients
from replicator.errors import (
    ArchivedObjectError,
    EncryptedSourceError,
    IntegrityError,
    PermanentError,
    SourceChangedError,
    is_retryable,
)
from replicator.objects import META_MD5, META_SOURCE_ETAG
from replicator.settings import Settings
from replicator.stores import (
    ContentHeaders,
    ListedObject,
    ObjectVersion,
    Part,
    S3Store,
    Store,
    StoreAccessError,
    StoreLimits,
    StoreMissingError,
)
from replicator.stores import s3 as s3_module
from replicator.transfer import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_SINGLE_PUT,
    MIN_PART_SIZE,
    TransferEngine,
)
from tests.integration.support import RefusingProxy, drop_bucket, moto_client

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
MOTO_KEYS = ("testing", "testing")
HEADERS = ContentHeaders(
    content_type="text/plain; charset=utf-8",
    content_encoding="identity",
    content_disposition='attachment; filename="report.txt"',
    content_language="en-GB",
    cache_control="max-age=60",
    expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
)
USER_METADATA = {"owner": "qa", "my-key": "dash", "my.key": "dot"}  # moto drops `_` names
# Keys a URL, a signature or a listing could get wrong, all sent on the lean path when it is on.
ODD_KEYS = [
    "with space.txt",
    "plus+sign",
    "percent%20not-a-space",
    "uni/é中文🙂.bin",
    "question?mark",
    "hash#tag",
    "amp&er=sand",
    "tilde~",
]
# One the lean path leaves to boto3 (lean_for says None); SeaweedFS lists it as `double/slash`.
DOUBLE_SLASH = "double//slash"


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def metadata_for(data: bytes) -> dict[str, str]:
    return {**USER_METADATA, META_SOURCE_ETAG: f"source-{md5_hex(data)[:8]}", META_MD5: md5_hex(data)}


@dataclass
class Server:
    kind: str
    url: str
    keys: tuple[str, str]
    admin: Any  # a plain boto3 client, for setting up and reading back


def settings_at(url: str, keys: tuple[str, str], bucket: str, **tuning: Any) -> Settings:
    return Settings(
        source_bucket=bucket,
        source_endpoint_url=url,
        source_access_key_id=keys[0],
        source_secret_access_key=keys[1],
        source_addressing_style="path",
        target_bucket=bucket,
        target_endpoint_url=url,
        target_access_key_id=keys[0],
        target_secret_access_key=keys[1],
        allow_http_endpoints=True,
        **({"max_attempts": 2} | tuning),
    )


def store_at(url: str, keys: tuple[str, str], bucket: str, side: str = "target", **tuning: Any) -> S3Store:
    """A store of `bucket` at `url`, reached as the source or the target is in production."""
    settings = settings_at(url, keys, bucket, **tuning)
    return S3Store(getattr(build_clients(settings), side), settings)


def seaweed_server(lyve: SeaweedS3) -> Server:
    return Server("seaweedfs", lyve.endpoint_url, (lyve.access_key, lyve.secret_key), lyve.client())


def moto_server(url: str) -> Server:
    return Server("moto", url, MOTO_KEYS, moto_client(url))


@pytest.fixture(params=["seaweedfs", "moto"])
def server(request: pytest.FixtureRequest) -> Server:
    if request.param == "seaweedfs":
        return seaweed_server(request.getfixturevalue("lyve"))
    return moto_server(request.getfixturevalue("moto_url"))


@dataclass
class Bucket:
    server: Server
    name: str
    store: S3Store

    def body(self, key: str) -> bytes:
        return bytes(self.server.admin.get_object(Bucket=self.name, Key=key)["Body"].read())


@contextlib.contextmanager
def new_bucket(server: Server, request_path: str, side: str = "target", **tuning: Any) -> Iterator[Bucket]:
    name = f"s3store-{uuid.uuid4().hex[:10]}"
    server.admin.create_bucket(Bucket=name)
    try:
        store = store_at(server.url, server.keys, name, side, **tuning)
        # The path under test is the one really taken, not a silent fallback to boto3.
        assert (store.lean is not None) == (request_path == "lean")
        yield Bucket(server, name, store)
    finally:
        drop_bucket(server.admin, name)


@pytest.fixture
def bucket(server: Server, request_path: str) -> Iterator[Bucket]:
    with new_bucket(server, request_path) as made:
        yield made


@pytest.fixture
def seaweed_bucket(lyve: SeaweedS3, request_path: str) -> Iterator[Bucket]:
    with new_bucket(seaweed_server(lyve), request_path) as made:
        yield made


def write_multipart(store: S3Store, key: str, data: bytes, part_size: int = 5 * MIB) -> str | None:
    """create, the parts in parallel (the last one short), complete with the parts out of order."""
    upload = store.create_upload(key, HEADERS, metadata_for(data))
    chunks = [data[at : at + part_size] for at in range(0, len(data), part_size)]
    with ThreadPoolExecutor(4) as pool:
        parts = list(
            pool.map(
                lambda numbered: store.upload_part(upload, numbered[0], numbered[1], md5_hex(numbered[1])),
                enumerate(chunks, 1),
            )
        )
    return store.complete(upload, list(reversed(parts)))


# -- what it is ----------------------------------------------------------------------------------


def test_it_is_a_store_named_without_secrets(bucket: Bucket) -> None:
    store = bucket.store
    assert isinstance(store, Store)
    assert store.name == f"s3 {bucket.name} at {bucket.server.url}"
    assert repr(store) == f"S3Store({store.name!r})"
    assert bucket.server.keys[1] not in f"{store.name} {store!r}"
    assert store.limits == StoreLimits(
        max_parts=MAX_PARTS,
        min_part_size=MIN_PART_SIZE,
        max_part_size=MAX_PART_SIZE,
        max_single_put=MAX_SINGLE_PUT,
        max_object_size=MAX_OBJECT_SIZE,
    )


# -- head and reads ------------------------------------------------------------------------------


def test_head_of_a_missing_key_is_none_and_a_written_one_round_trips(bucket: Bucket) -> None:
    store = bucket.store
    assert store.head("never/written") is None
    data = os.urandom(3000)
    md5 = md5_hex(data)
    assert store.put("dir/obj.txt", data, HEADERS, metadata_for(data), md5) == md5

    # What arrived, read with a plain client.
    raw = bucket.server.admin.head_object(Bucket=bucket.name, Key="dir/obj.txt")
    assert raw["Metadata"] == metadata_for(data)
    assert (raw["ContentType"], raw["CacheControl"], raw["ContentDisposition"]) == (
        HEADERS.content_type,
        HEADERS.cache_control,
        HEADERS.content_disposition,
    )
    assert bucket.body("dir/obj.txt") == data

    head = store.head("dir/obj.txt")
    assert head is not None
    assert (head.key, head.size, head.etag, head.content_md5) == ("dir/obj.txt", 3000, md5, md5)
    assert head.headers == HEADERS
    assert dict(head.metadata) == metadata_for(data)
    assert head.user_metadata() == USER_METADATA
    assert (head.replica.md5, head.replica.source_etag) == (md5, f"source-{md5[:8]}")
    assert head.last_modified is not None
    assert abs(head.last_modified - datetime.now(UTC)) < timedelta(minutes=5)
    assert head.version_id is None  # no versioning on the bucket
    assert head.to_object_info().known_md5 == md5


def test_a_pinned_read_of_a_changed_object_is_source_changed(bucket: Bucket) -> None:
    store, admin = bucket.store, bucket.server.admin
    data = os.urandom(5000)
    store.put("pinned", data, ContentHeaders(), {}, md5_hex(data))
    head = store.head("pinned")
    assert head is not None
    assert store.read_range("pinned", 1000, 500, head.version) == data[1000:1500]
    assert store.read_range("pinned", 0, 5000, head.version) == data
    assert store.read_range("pinned", 10, 0, head.version) == b""
    assert store.read_range("pinned", 4990, 10) == data[4990:]

    admin.put_object(Bucket=bucket.name, Key="pinned", Body=os.urandom(5000))  # same size, other bytes
    with pytest.raises(SourceChangedError, match="changed or vanished"):
        store.read_range("pinned", 0, 100, head.version)
    with pytest.raises(SourceChangedError, match="shorter now"):
        store.read_range("pinned", 4990, 20)  # unpinned, past the end
    with pytest.raises(SourceChangedError, match="changed or vanished"):
        store.read_range("pinned", 6000, 10)  # wholly past the end: 416
    with pytest.raises(SourceChangedError, match="changed or vanished"):
        store.read_range("never-written", 0, 1)
    with pytest.raises(SourceChangedError, match="changed or vanished"):
        store.read_range("never-written", 0, 1, ObjectVersion(md5_hex(b"x")))
    with pytest.raises(ValueError, match="bad range"):
        store.read_range("pinned", -1, 1)


def test_a_versioned_read_finds_its_version_and_a_delete_marker_reads_as_nothing(
    server: Server, request_path: str
) -> None:
    admin = server.admin
    name = f"s3store-v-{uuid.uuid4().hex[:8]}"
    admin.create_bucket(Bucket=name)
    try:
        admin.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
        store = store_at(server.url, server.keys, name)
        first = os.urandom(1000)
        store.put("v.bin", first, ContentHeaders(), {}, md5_hex(first))
        head = store.head("v.bin")
        assert head is not None and head.version_id
        admin.put_object(Bucket=name, Key="v.bin", Body=os.urandom(1000))
        # Pinned by its version id, the read finds the bytes looked at, not the newer ones.
        assert store.read_range("v.bin", 0, 1000, head.version) == first
        newer = store.head("v.bin")
        assert newer is not None and newer.version_id not in (None, head.version_id)

        store.delete("v.bin")  # leaves a delete marker
        assert store.head("v.bin") is None
        assert store.read_range("v.bin", 0, 10, head.version) == first[:10]  # still there, by version
        assert [o.key for o in store.list()] == []
    finally:
        versions = admin.list_object_versions(Bucket=name)
        for entry in versions.get("Versions", []) + versions.get("DeleteMarkers", []):
            admin.delete_object(Bucket=name, Key=entry["Key"], VersionId=entry["VersionId"])
        admin.delete_bucket(Bucket=name)


class CutOnceProxy(FaultProxy):
    """Forwards every request; the body of the first ranged GET stops half-way and the
    connection closes (its Content-Length promised all of it)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, FaultPlan())
        self.ranged_gets = 0

    def handle(self, request: Any) -> None:
        if request.command == "GET" and request.headers.get("Range"):
            with self._lock:
                self.ranged_gets += 1
                first = self.ranged_gets == 1
            if first:
                request.wfile = _HalfBody(request.wfile)
                super().handle(request)
                request.close_connection = True
                with contextlib.suppress(OSError):
                    request.connection.shutdown(socket.SHUT_RDWR)
                return
        super().handle(request)


class _HalfBody:
    """A response writer that sends the headers (first write) and half of the body (second)."""

    def __init__(self, wfile: Any) -> None:
        self._wfile = wfile
        self._writes = 0

    def write(self, data: bytes) -> int:
        self._writes += 1
        if self._writes == 2:
            data = bytes(data)[: len(data) // 2]
        return int(self._wfile.write(data))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._wfile, name)


def test_a_read_cut_short_is_read_again(lyve: SeaweedS3, request_path: str) -> None:
    with new_bucket(seaweed_server(lyve), request_path) as made:
        data = os.urandom(200_000)
        made.server.admin.put_object(Bucket=made.name, Key="cut", Body=data)
        with CutOnceProxy(lyve.endpoint_url) as proxy:
            store = store_at(proxy.endpoint_url, made.server.keys, made.name)
            head = store.head("cut")
            assert head is not None
            assert store.read_range("cut", 1000, 150_000, head.version) == data[1000:151_000]
        assert proxy.ranged_gets == 2


# -- writes --------------------------------------------------------------------------------------


def test_a_put_with_a_wrong_md5_is_refused_as_an_integrity_error(seaweed_bucket: Bucket) -> None:
    """SeaweedFS checks Content-MD5 as Lyve Cloud and AWS do (moto does not)."""
    store = seaweed_bucket.store
    data = b"the bytes that were read"
    with pytest.raises(IntegrityError, match="do not match their checksum") as refused:
        store.put("bad.bin", data, HEADERS, metadata_for(data), md5_hex(b"the bytes that were meant"))
    assert not is_retryable(refused.value)
    assert store.head("bad.bin") is None

    upload = store.create_upload("bad-part.bin", HEADERS, {})
    with pytest.raises(IntegrityError):
        store.upload_part(upload, 1, data, md5_hex(b"something else"))
    store.abort(upload)


def test_a_multipart_upload_arrives_byte_identical(bucket: Bucket) -> None:
    store = bucket.store
    data = os.urandom(2 * 5 * MIB + 12_345)
    etag = write_multipart(store, "big/obj.bin", data)
    assert bucket.body("big/obj.bin") == data
    assert etag is not None and etag.endswith("-3")

    head = store.head("big/obj.bin")
    assert head is not None
    assert (head.size, head.etag) == (len(data), etag)
    assert head.headers == HEADERS
    assert dict(head.metadata) == metadata_for(data)
    assert head.content_md5 == md5_hex(data)  # the MD5 recorded, not the multipart ETag
    assert store.incomplete_uploads("big/obj.bin") == []

    # A part may go without its MD5; a part number given twice is refused before anything is sent.
    upload = store.create_upload("small/parts.bin", ContentHeaders(), {})
    part = store.upload_part(upload, 1, b"tiny", None)
    assert part == Part(1, md5_hex(b"tiny"), 4)
    with pytest.raises(ValueError, match="given twice"):
        store.complete(upload, [part, part])
    assert store.complete(upload, [part]) is not None
    assert bucket.body("small/parts.bin") == b"tiny"


def test_an_aborted_upload_is_gone_and_aborting_again_is_fine(bucket: Bucket) -> None:
    store = bucket.store
    upload = store.create_upload("abandoned.bin", HEADERS, {})
    part = store.upload_part(upload, 1, os.urandom(5 * MIB), None)
    assert [u.upload_id for u in store.incomplete_uploads("abandoned.bin")] == [upload.upload_id]
    store.abort(upload)
    assert store.incomplete_uploads("abandoned.bin") == []
    store.abort(upload)  # idempotent
    assert store.head("abandoned.bin") is None
    if bucket.server.kind == "seaweedfs":  # moto answers these with a 500 (NoSuchUpload on AWS)
        with pytest.raises(SourceChangedError, match="gone"):
            store.upload_part(upload, 2, b"late", None)
        with pytest.raises(SourceChangedError, match="gone"):
            store.complete(upload, [part])


def test_incomplete_uploads_are_those_of_exactly_the_key_with_their_parts(bucket: Bucket) -> None:
    store = bucket.store
    first = store.create_upload("dir/key", HEADERS, {})
    chunks = [os.urandom(5 * MIB), os.urandom(1000)]
    sent = [store.upload_part(first, number, chunk, md5_hex(chunk)) for number, chunk in enumerate(chunks, 1)]
    second = store.create_upload("dir/key", ContentHeaders(), {})
    longer = store.create_upload("dir/key2", ContentHeaders(), {})  # the key is its prefix
    store.upload_part(longer, 1, b"other", None)

    found = {upload.upload_id: upload for upload in store.incomplete_uploads("dir/key")}
    assert set(found) == {first.upload_id, second.upload_id}
    assert all(upload.key == "dir/key" for upload in found.values())
    assert found[first.upload_id].parts == {
        1: Part(1, md5_hex(chunks[0]), 5 * MIB),
        2: Part(2, md5_hex(chunks[1]), 1000),
    }
    assert found[first.upload_id].parts == {part.number: part for part in sent}
    assert found[second.upload_id].parts == {}
    # `initiated` as the listing says (moto says 2010 for every upload; SeaweedFS, now).
    listing = bucket.server.admin.list_multipart_uploads(Bucket=bucket.name, Prefix="dir/key")["Uploads"]
    initiated = {entry["UploadId"]: entry["Initiated"] for entry in listing}
    assert {upload_id: upload.initiated for upload_id, upload in found.items()} == {
        upload_id: initiated[upload_id] for upload_id in found
    }
    assert all(isinstance(upload.initiated, datetime) for upload in found.values())

    # Completed with the parts as listed: gone from the list, the object is there.
    listed = found[first.upload_id].parts
    assert listed is not None
    store.complete(first, list(listed.values()))
    assert [u.upload_id for u in store.incomplete_uploads("dir/key")] == [second.upload_id]
    assert bucket.body("dir/key") == b"".join(chunks)
    assert store.incomplete_uploads("never/uploaded") == []
    for upload in (second, longer):
        store.abort(upload)


# -- listing and deletes -------------------------------------------------------------------------


def test_list_is_in_key_order_under_a_prefix_after_start_after(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin, store = bucket.server.admin, bucket.store
    keys = ["p/b", "p/a", "p/c/d", "p/é", "p/ab", "p/A", "p/a b", "q/x", "p", "o/p/z"]
    for key in keys:
        admin.put_object(Bucket=bucket.name, Key=key, Body=key.encode())
    under = sorted((key for key in keys if key.startswith("p/")), key=lambda key: key.encode())
    assert under == ["p/A", "p/a", "p/a b", "p/ab", "p/b", "p/c/d", "p/é"]

    listed = list(store.list("p/"))
    assert [entry.key for entry in listed] == under
    assert all(isinstance(entry, ListedObject) for entry in listed)
    assert [(entry.size, entry.etag) for entry in listed] == [
        (len(k.encode()), md5_hex(k.encode())) for k in under
    ]
    assert all(entry.last_modified is not None and entry.last_modified.tzinfo for entry in listed)
    assert [entry.key for entry in store.list("p/", start_after="p/ab")] == ["p/b", "p/c/d", "p/é"]
    assert [entry.key for entry in store.list("p/", start_after="p/é")] == []
    assert [entry.key for entry in store.list("nothing/")] == []
    everything = sorted(keys, key=lambda key: key.encode())
    assert [entry.key for entry in store.list()] == everything

    # Pages of two keys: the continuation tokens carry the listing on, in the same order.
    pages: list[str | None] = []
    real = S3Store._page_call

    def counted(self: S3Store, prefix: str, start_after: str | None, token: str | None) -> Any:
        pages.append(token)
        return real(self, prefix, start_after, token)

    monkeypatch.setattr(s3_module, "PAGE_KEYS", 2)
    monkeypatch.setattr(S3Store, "_page_call", counted)
    assert [entry.key for entry in store.list("p/", start_after="p/A")] == under[1:]
    assert len(pages) == 3 and pages[0] is None and all(pages[1:])
    assert [entry.key for entry in store.list()] == everything


def test_delete_removes_and_is_idempotent(bucket: Bucket) -> None:
    store = bucket.store
    store.put("gone.txt", b"bye", ContentHeaders(), {}, md5_hex(b"bye"))
    assert store.head("gone.txt") is not None
    store.delete("gone.txt")
    assert store.head("gone.txt") is None
    with pytest.raises(ClientError):
        bucket.server.admin.head_object(Bucket=bucket.name, Key="gone.txt")
    store.delete("gone.txt")
    store.delete("never/written")


def test_odd_keys_round_trip(bucket: Bucket) -> None:
    store = bucket.store
    odd_keys = ODD_KEYS + ([DOUBLE_SLASH] if bucket.server.kind == "moto" else [])
    for key in odd_keys:
        data = f"bytes of {key}".encode()
        store.put(key, data, HEADERS, {"name": "odd"}, md5_hex(data))
    for key in odd_keys:
        data = f"bytes of {key}".encode()
        assert bucket.body(key) == data
        head = store.head(key)
        assert head is not None and (head.key, head.size, head.etag) == (key, len(data), md5_hex(data))
        assert store.read_range(key, 0, len(data), head.version) == data
    assert [entry.key for entry in store.list()] == sorted(odd_keys, key=lambda key: key.encode())
    assert [entry.key for entry in store.list("uni/é")] == ["uni/é中文🙂.bin"]
    assert [entry.key for entry in store.list(start_after="plus+sign")] == sorted(
        (key for key in odd_keys if key.encode() > b"plus+sign"), key=lambda key: key.encode()
    )

    multipart = "multi part/é+%20?#.bin"
    data = os.urandom(5 * MIB + 10)
    write_multipart(store, multipart, data)
    assert bucket.body(multipart) == data
    assert store.incomplete_uploads(multipart) == []

    for key in [*odd_keys, multipart]:
        store.delete(key)
    assert list(store.list()) == []


# -- refusals ------------------------------------------------------------------------------------


def test_wrong_credentials_are_an_access_error_that_names_no_secret(
    lyve: SeaweedS3, request_path: str
) -> None:
    """SeaweedFS checks SigV4 (moto does not)."""
    server = seaweed_server(lyve)
    with new_bucket(server, request_path) as made:
        server.admin.put_object(Bucket=made.name, Key="there", Body=b"x")
        wrong_secret = "not-the-secret-key-0123456789abcdef"
        for keys in ((lyve.access_key, wrong_secret), ("AKIAWRONGKEYID000000", wrong_secret)):
            store = store_at(lyve.endpoint_url, keys, made.name)
            upload_store = store_at(lyve.endpoint_url, server.keys, made.name)
            upload = upload_store.create_upload("up", ContentHeaders(), {})
            calls = {
                "head": lambda store=store: store.head("there"),
                "read": lambda store=store: store.read_range("there", 0, 1),
                "put": lambda store=store: store.put("new", b"y", ContentHeaders(), {}, md5_hex(b"y")),
                "create": lambda store=store: store.create_upload("new", ContentHeaders(), {}),
                "part": lambda store=store, upload=upload: store.upload_part(upload, 1, b"y", None),
                "list": lambda store=store: list(store.list()),
                "uploads": lambda store=store: store.incomplete_uploads("up"),
                "delete": lambda store=store: store.delete("there"),
            }
            for what, call in calls.items():
                with pytest.raises(StoreAccessError) as refused:
                    call()
                text = f"{refused.value} {refused.value!r}"
                assert wrong_secret not in text, what
                assert keys[0] not in text and lyve.secret_key not in text, what
                assert f"bucket {made.name!r} at {lyve.endpoint_url}" in text, what
                assert "check the target's access key and secret key" in text, what
                assert refused.value.reason == "store_access"
                assert not is_retryable(refused.value)
            upload_store.abort(upload)
        assert made.body("there") == b"x"  # nothing was deleted


def test_a_missing_bucket_is_a_missing_store(lyve: SeaweedS3, moto_url: str) -> None:
    """SeaweedFS creates a bucket on the first PutObject into it: writes are asked of moto only.
    A HEAD's bare 404 cannot tell a missing bucket from a missing key (head says None)."""
    for server in (seaweed_server(lyve), moto_server(moto_url)):
        store = store_at(server.url, server.keys, f"no-such-bucket-{uuid.uuid4().hex[:8]}")
        assert store.head("k") is None
        for call in (lambda s=store: list(s.list()), lambda s=store: s.incomplete_uploads("k")):
            with pytest.raises(StoreMissingError, match="does not exist") as missing:
                call()
            assert isinstance(missing.value, PermanentError) and missing.value.reason == "store_missing"
        if server.kind == "moto":
            with pytest.raises(StoreMissingError):
                store.put("k", b"x", ContentHeaders(), {}, md5_hex(b"x"))
            with pytest.raises(StoreMissingError):
                store.create_upload("k", ContentHeaders(), {})


def test_an_sse_c_source_object_is_refused_for_good(lyve: SeaweedS3, request_path: str) -> None:
    server = seaweed_server(lyve)
    with new_bucket(server, request_path, side="source") as made:
        server.admin.put_object(
            Bucket=made.name,
            Key="vault/secret.bin",
            Body=b"ciphertext",
            SSECustomerAlgorithm="AES256",
            SSECustomerKey=os.urandom(32),
        )
        for call in (
            lambda: made.store.head("vault/secret.bin"),
            lambda: made.store.read_range("vault/secret.bin", 0, 5),
        ):
            with pytest.raises(EncryptedSourceError, match=r"'vault/secret.bin' is encrypted .*SSE-C"):
                call()


def test_source_objects_that_cannot_be_read_are_refused_in_words(moto_url: str, request_path: str) -> None:
    """Archived: moto answers InvalidObjectState. SSE-KMS without kms:Decrypt: AWS answers the
    GET with a bare AccessDenied (moto does not enforce it: a proxy answers as AWS does), and a
    HEAD, which needs no kms:Decrypt, tells which key. On the target the same answer is a plain
    access error."""
    server = moto_server(moto_url)
    key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    with new_bucket(server, request_path, side="source") as made:
        server.admin.put_object(Bucket=made.name, Key="cold.bin", Body=b"frozen", StorageClass="GLACIER")
        server.admin.put_object(
            Bucket=made.name,
            Key="secret.bin",
            Body=b"x" * 100,
            ServerSideEncryption="aws:kms",
            SSEKMSKeyId=key_id,
        )
        cold = made.store.head("cold.bin")
        assert cold is not None and cold.size == 6
        with pytest.raises(ArchivedObjectError, match="archived"):
            made.store.read_range("cold.bin", 0, 6)

        rule = lambda method, path: (403, "AccessDenied") if method == "GET" and "secret" in path else None  # noqa: E731
        with RefusingProxy(moto_url, rule) as proxy:
            source = store_at(proxy.endpoint_url, MOTO_KEYS, made.name, side="source")
            target = store_at(proxy.endpoint_url, MOTO_KEYS, made.name, side="target")
            head = source.head("secret.bin")
            assert head is not None and head.content_md5 is None  # an SSE-KMS ETag is no MD5
            with pytest.raises(EncryptedSourceError, match=key_id):
                source.read_range("secret.bin", 0, 10, head.version)
            with pytest.raises(StoreAccessError, match=r"refused GetObject of 'secret\.bin'"):
                target.read_range("secret.bin", 0, 10)


def test_passing_trouble_is_retried_then_raised_as_retryable(lyve: SeaweedS3, request_path: str) -> None:
    """Each request is sent MAX_ATTEMPTS times in all (botocore's retries, or the lean path's),
    then what it raised is left as it is: errors.is_retryable takes it for passing trouble."""
    server = seaweed_server(lyve)
    with new_bucket(server, request_path) as made:
        server.admin.put_object(Bucket=made.name, Key="there", Body=b"0123456789")
        plan = FaultPlan(slow_down=1.0)
        with FaultProxy(lyve.endpoint_url, plan) as proxy:
            store = store_at(proxy.endpoint_url, server.keys, made.name, max_attempts=3)
            calls = {
                "head": lambda: store.head("there"),
                "read": lambda: store.read_range("there", 0, 5),
                "put": lambda: store.put("new", b"y", ContentHeaders(), {}, md5_hex(b"y")),
                "list": lambda: list(store.list()),
            }
            for what, call in calls.items():
                before = plan.injected["slow_down"]
                with pytest.raises(ClientError) as failed:
                    call()
                assert is_retryable(failed.value), what
                assert plan.injected["slow_down"] - before == 3, what
        assert made.body("there") == b"0123456789"

    nobody = f"http://127.0.0.1:{free_port()}"
    store = store_at(nobody, server.keys, "any-bucket", max_attempts=2)
    for call in (lambda: store.head("k"), lambda: store.read_range("k", 0, 1)):
        with pytest.raises(Exception) as unreachable:  # botocore's or http.client's
            call()
        assert is_retryable(unreachable.value)
        assert not isinstance(unreachable.value, PermanentError)


class RedirectingLeanProxy(FaultProxy):
    """Answers every request not sent by boto3 (the lean path sends no User-Agent) with a
    redirect, as a store does for a bucket in another region; forwards boto3's."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, FaultPlan())
        self.redirected = 0

    def handle(self, request: Any) -> None:
        if "Boto3" in (request.headers.get("User-Agent") or ""):
            super().handle(request)
            return
        self.redirected += 1
        length = int(request.headers.get("Content-Length") or 0)
        if length:
            request.rfile.read(length)
        request.send_response(307)
        request.send_header("Location", "http://127.0.0.1:9/elsewhere")
        request.send_header("Content-Length", "0")
        request.end_headers()


def test_a_lean_path_refused_for_the_endpoint_is_turned_off_once(
    lyve: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LEAN_REQUESTS", "true")
    server = seaweed_server(lyve)
    with new_bucket(server, "lean") as made:
        data = os.urandom(1000)
        server.admin.put_object(Bucket=made.name, Key="obj", Body=data)
        with RedirectingLeanProxy(lyve.endpoint_url) as proxy:
            store = store_at(proxy.endpoint_url, server.keys, made.name)
            assert store.lean is not None and store.lean_for("obj") is store.lean
            assert store.lean_for("a//b") is None  # a key the lean path cannot address
            assert store.read_range("obj", 0, 1000) == data  # refused on the lean path, sent by boto3
            assert store.lean is None and store.lean_for("obj") is None
            store.put("more", b"more", ContentHeaders(), {}, md5_hex(b"more"))
            assert [entry.key for entry in store.list()] == ["more", "obj"]
        assert proxy.redirected == 1
        assert made.body("more") == b"more"


# -- the copy engine on stores -------------------------------------------------------------------


def test_an_engine_without_a_target_reads_the_source_and_says_what_it_cannot_do(
    lyve: SeaweedS3, request_path: str
) -> None:
    """A source-only engine (the one read for targets that are not S3-compatible): read_first
    works, anything that needs a target says it has none."""
    server = seaweed_server(lyve)
    with new_bucket(server, request_path, side="source") as made:
        data = os.urandom(1000)
        server.admin.put_object(Bucket=made.name, Key="small.bin", Body=data, Metadata={"owner": "qa"})
        settings = settings_at(server.url, server.keys, made.name)
        engine = TransferEngine(build_clients(settings).source, None, settings)
        try:
            assert (engine.source_store.lean is not None) == (request_path == "lean")
            with engine.read_first("small.bin", 1000) as read:
                assert read is not None
                info, body = read
                assert body == data
                assert (info.size, info.etag, info.metadata) == (1000, md5_hex(data), {"owner": "qa"})
            with engine.read_first("absent.bin", 10) as read:
                assert read is None
            for call in (
                lambda: engine.target,
                lambda: engine.target_store,
                lambda: engine.copy(info),
                lambda: engine.copy_read(info, data, 0.0),
                lambda: engine.abort_uploads("small.bin"),
            ):
                with pytest.raises(RuntimeError, match="built without a target"):
                    call()
        finally:
            engine.close()
