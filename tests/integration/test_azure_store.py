"""The Azure Blob store against Azurite (a real Azure Storage server on loopback, Shared Key
checked, Content-MD5 of blocks and blobs checked). What arrived is read back with the plain SDK,
not through the store."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from azure.core.exceptions import HttpResponseError, ResourceNotFoundError
from azure.storage.blob import BlobClient, ContainerClient
from pydantic import SecretStr

from local_stack.azurite import Azurite
from local_stack.fault_proxy import FaultPlan, FaultProxy
from local_stack.seaweed import free_port
from replicator.errors import (
    INTEGRITY,
    SOURCE_CHANGED,
    IntegrityError,
    SourceChangedError,
    is_retryable,
    object_restart_kind,
)
from replicator.objects import META_MD5, META_SOURCE_ETAG
from replicator.stores.azure import AzureBlobConfig, AzureBlobStore, block_id_for, encode_name
from replicator.stores.base import (
    ContentHeaders,
    ObjectVersion,
    Part,
    Store,
    StoreAccessError,
    StoreMissingError,
    StoreUnavailableError,
)
from tests.integration.support import azure_config

pytestmark = pytest.mark.integration

KIB = 1024
THRESHOLD = 256 * KIB  # below: one Put Blob; from it on: blocks
BLOCK = 100 * KIB
HEADERS = ContentHeaders(
    content_type="text/plain; charset=utf-8",
    content_encoding="identity",
    content_disposition='attachment; filename="report.txt"',
    content_language="en-GB",
    cache_control="max-age=60",
    expires=datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC),
)
EXPIRES_TEXT = "Wed, 02 Jan 2030 03:04:05 GMT"
# Names a plain `-` -> `_` replacement would merge, a dot, and our own fields.
USER_METADATA = {"my-key": "dash", "my_key": "underscore", "my.key": "dot", "plain": "p"}


def md5_hex(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def payload(size: int) -> bytes:
    return os.urandom(size)


def write(store: Store, key: str, data: bytes, headers: ContentHeaders = HEADERS) -> str:
    """What the engine will do: one put below THRESHOLD, BLOCK-sized parts from it on (the last
    one odd). Returns the MD5 recorded."""
    md5 = md5_hex(data)
    metadata = {**USER_METADATA, META_SOURCE_ETAG: f"source-{md5[:8]}", META_MD5: md5}
    if len(data) < THRESHOLD:
        store.put(key, data, headers, metadata, md5)
        return md5
    upload = store.create_upload(key, headers, metadata)
    parts = [
        store.upload_part(upload, number, chunk, md5_hex(chunk))
        for number, chunk in enumerate((data[i : i + BLOCK] for i in range(0, len(data), BLOCK)), 1)
    ]
    store.complete(upload, list(reversed(parts)))  # order comes from the numbers
    return md5


@pytest.fixture(params=[True, False], ids=["lean", "sdk"])
def store(azurite: Azurite, container: ContainerClient, request: pytest.FixtureRequest) -> AzureBlobStore:
    """The store as users run it (its writes on the lean path), and with the SDK for everything."""
    store = AzureBlobStore(azure_config(azurite, container.container_name, lean_requests=request.param))
    assert (store._lean is not None) is request.param
    return store


def test_it_is_a_store(store: AzureBlobStore) -> None:
    assert isinstance(store, Store)
    assert store.name == f"azure-blob:{store.config.account}/{store.config.container}"


@pytest.mark.parametrize(
    "size",
    [0, 1, THRESHOLD - 1, THRESHOLD, THRESHOLD + 1, 5 * BLOCK + 777],
    ids=["0B", "1B", "threshold-1", "threshold", "threshold+1", "blocks+odd"],
)
def test_objects_arrive_byte_identical_with_headers_and_metadata(
    store: AzureBlobStore, container: ContainerClient, size: int
) -> None:
    data = payload(size)
    key = f"dir/obj {size} é.bin"
    md5 = write(store, key, data)

    blob = container.get_blob_client(key)
    assert blob.download_blob().readall() == data
    props = blob.get_blob_properties()
    settings = props.content_settings
    assert props.size == size
    assert props.blob_type == "BlockBlob"
    assert (
        settings.content_type,
        settings.content_encoding,
        settings.content_disposition,
        settings.content_language,
        settings.cache_control,
    ) == (
        HEADERS.content_type,
        HEADERS.content_encoding,
        HEADERS.content_disposition,
        HEADERS.content_language,
        HEADERS.cache_control,
    )
    assert settings.content_md5 is not None
    assert bytes(settings.content_md5).hex() == md5  # Put Blob: checked; Put Block List: recorded
    assert props.metadata == {
        "m_my_2dkey": "dash",
        "m_my_5fkey": "underscore",
        "m_my_2ekey": "dot",
        "m_plain": "p",
        encode_name(META_SOURCE_ETAG): f"source-{md5[:8]}",
        encode_name(META_MD5): md5,
        "h_expires": EXPIRES_TEXT,
    }
    blocks, _ = blob.get_block_list("committed")
    assert len(blocks) == (0 if size < THRESHOLD else -(-size // BLOCK))

    # And the store reads back what it wrote, by the S3 names.
    head = store.head(key)
    assert head is not None
    assert (head.size, head.content_md5, head.etag) == (size, md5, props.etag.strip('"'))
    assert head.user_metadata() == USER_METADATA
    assert (head.replica.md5, head.replica.source_etag) == (md5, f"source-{md5[:8]}")
    assert head.headers == ContentHeaders(**{**vars(HEADERS), "expires": EXPIRES_TEXT})
    assert head.to_object_info().known_md5 == md5


def test_the_lean_path_writes_without_the_sdk(
    azurite: Azurite, container: ContainerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AzureBlobStore(azure_config(azurite, container.container_name))

    def refused(*_: object, **__: object) -> None:
        raise AssertionError("the SDK was asked to write")

    for method in ("upload_blob", "stage_block", "commit_block_list"):
        monkeypatch.setattr(BlobClient, method, refused)
    for size in (0, 1, THRESHOLD + 1):
        data = payload(size)
        md5 = write(store, f"lean-{size}", data)
        blob = container.get_blob_client(f"lean-{size}")
        assert blob.download_blob().readall() == data
        props = blob.get_blob_properties()
        assert props.metadata[encode_name("my-key")] == "dash"
        assert props.content_settings.content_disposition == HEADERS.content_disposition
        assert bytes(props.content_settings.content_md5 or b"").hex() == md5
    assert store._lean is not None


def test_a_header_value_outside_ascii_is_written_by_the_sdk_and_the_lean_path_stays(
    azurite: Azurite, container: ContainerClient
) -> None:
    store = AzureBlobStore(azure_config(azurite, container.container_name))
    store.put("k", b"x", HEADERS, {"city": "Zürich"}, md5_hex(b"x"))
    assert container.get_blob_client("k").get_blob_properties().metadata[encode_name("city")] == "Zürich"
    assert store._lean is not None  # only that request went to the SDK


def test_padded_metadata_and_header_values_are_stored_trimmed(
    store: AzureBlobStore, container: ContainerClient
) -> None:
    # The service trims header values before checking the signature: sent as they are, padded
    # values would be refused as a bad signature (an "access" error for a metadata quirk).
    headers = ContentHeaders(content_type=" text/plain ", cache_control="max-age=5 ")
    metadata = {"padded": " v ", "blank": " ", "tail": "x\t"}
    data = payload(THRESHOLD + 1)
    store.put("padded-small", b"x", headers, metadata, md5_hex(b"x"))
    upload = store.create_upload("padded-big", headers, metadata)
    store.complete(upload, [store.upload_part(upload, 1, data, md5_hex(data))])
    for key in ("padded-small", "padded-big"):
        props = container.get_blob_client(key).get_blob_properties()
        assert props.metadata[encode_name("padded")] == "v"
        assert props.metadata[encode_name("blank")] == ""
        assert props.metadata[encode_name("tail")] == "x"
        assert props.content_settings.content_type == "text/plain"
        assert props.content_settings.cache_control == "max-age=5"


def test_ranged_reads_are_pinned_to_the_version_looked_at(
    store: AzureBlobStore, container: ContainerClient
) -> None:
    data = payload(3000)
    write(store, "pinned", data)
    head = store.head("pinned")
    assert head is not None
    assert store.read_range("pinned", 1000, 500, head.version) == data[1000:1500]
    assert store.read_range("pinned", 0, 0, head.version) == b""
    container.get_blob_client("pinned").upload_blob(b"rewritten", overwrite=True)
    with pytest.raises(SourceChangedError, match="changed"):
        store.read_range("pinned", 0, 5, head.version)
    with pytest.raises(SourceChangedError, match="shorter"):
        store.read_range("pinned", 5, 10)  # 9 bytes now
    with pytest.raises(SourceChangedError, match="vanished"):
        store.read_range("never-written", 0, 1)
    with pytest.raises(SourceChangedError):  # Azurite: 412 for a pin on nothing
        store.read_range("never-written", 0, 1, ObjectVersion("0x8D0000000000000"))


def test_a_corrupted_block_is_refused_by_the_server(
    store: AzureBlobStore, container: ContainerClient
) -> None:
    data = payload(BLOCK)
    upload = store.create_upload("corrupt", HEADERS, {})
    store.upload_part(upload, 1, data, md5_hex(data))
    with pytest.raises(IntegrityError, match="MD5") as caught:
        store.upload_part(upload, 2, data, md5_hex(data[:-1] + b"\0"))  # the bytes changed after hashing
    assert object_restart_kind(caught.value) == INTEGRITY
    (pending,) = store.incomplete_uploads("corrupt")
    assert sorted(pending.parts or {}) == [1]  # the refused block was not kept
    assert store.head("corrupt") is None


def test_a_corrupted_single_put_is_refused(store: AzureBlobStore, container: ContainerClient) -> None:
    with pytest.raises(IntegrityError, match="MD5"):
        store.put("corrupt-put", b"hello", HEADERS, {}, md5_hex(b"hellO"))
    assert store.head("corrupt-put") is None
    with pytest.raises(ResourceNotFoundError):
        container.get_blob_client("corrupt-put").get_blob_properties()


def test_a_part_without_md5_is_still_sent_with_one(
    store: AzureBlobStore, container: ContainerClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[str | None] = []
    blob_client = container.get_blob_client("unhashed")
    if store._lean is not None:
        put_block = store._lean.put_block

        def lean_spy(key: str, block_id: str, body: Any, md5_b64: str) -> None:
            sent.append(md5_b64)
            put_block(key, block_id, body, md5_b64)

        monkeypatch.setattr(store._lean, "put_block", lean_spy)
    else:
        stage_block = blob_client.stage_block

        def spy(block_id: str, data: bytes, length: int, **kwargs: Any) -> Any:
            sent.append(kwargs.get("headers", {}).get("Content-MD5"))
            return stage_block(block_id, data, length, **kwargs)

        monkeypatch.setattr(blob_client, "stage_block", spy)
        monkeypatch.setattr(store, "_blob", lambda key: blob_client)
    upload = store.create_upload("unhashed", ContentHeaders(), {})
    part = store.upload_part(upload, 1, b"abc", None)
    assert sent == [base64.b64encode(hashlib.md5(b"abc").digest()).decode()]
    store.complete(upload, [part])
    assert blob_client.download_blob().readall() == b"abc"


def test_a_failure_mid_copy_leaves_no_blob(store: AzureBlobStore, container: ContainerClient) -> None:
    data = payload(3 * BLOCK)
    upload = store.create_upload("half", HEADERS, {"k": "v"})
    for number in (1, 2):
        store.upload_part(upload, number, data[(number - 1) * BLOCK : number * BLOCK], None)
    # ... and the copy dies here: no complete.
    assert store.head("half") is None
    assert [blob.name for blob in container.list_blobs()] == []
    assert list(store.list()) == []
    with pytest.raises(ResourceNotFoundError):
        container.get_blob_client("half").get_blob_properties()
    (pending,) = store.incomplete_uploads("half")
    assert pending.upload_id == upload.upload_id
    assert {n: p.size for n, p in (pending.parts or {}).items()} == {1: BLOCK, 2: BLOCK}
    store.abort(upload)
    store.abort(upload)
    assert store.head("half") is None


def test_a_failed_overwrite_keeps_the_old_blob_and_attempts_never_mix(
    store: AzureBlobStore, container: ContainerClient
) -> None:
    old = payload(THRESHOLD + 10)
    write(store, "kept", old)
    before = container.get_blob_client("kept").get_blob_properties()

    new = payload(2 * BLOCK + 5)
    failed = store.create_upload("kept", HEADERS, {"attempt": "1"})
    store.upload_part(failed, 1, new[:BLOCK], None)
    store.upload_part(failed, 2, payload(BLOCK), None)  # wrong bytes: this attempt is never completed
    store.abort(failed)
    blob = container.get_blob_client("kept")
    assert blob.download_blob().readall() == old
    assert blob.get_blob_properties().metadata == before.metadata

    # A second attempt commits its own blocks only, though the first one's are still there.
    retry = store.create_upload("kept", HEADERS, {"attempt": "2"})
    parts = [store.upload_part(retry, n, new[(n - 1) * BLOCK : n * BLOCK], None) for n in range(1, 4)]
    assert {u.upload_id for u in store.incomplete_uploads("kept")} == {failed.upload_id, retry.upload_id}
    store.complete(retry, parts)
    assert blob.download_blob().readall() == new
    assert blob.get_blob_properties().metadata["m_attempt"] == "2"


def test_completing_with_blocks_that_are_gone_means_start_over(
    store: AzureBlobStore, container: ContainerClient
) -> None:
    upload = store.create_upload("gone", HEADERS, {})
    first = store.upload_part(upload, 1, b"first", None)
    missing = Part(2, f"{upload.upload_id}-00002", 6)  # never staged (expired, discarded)
    with pytest.raises(SourceChangedError, match="are gone") as caught:
        store.complete(upload, [first, missing])
    assert object_restart_kind(caught.value) == SOURCE_CHANGED
    assert store.head("gone") is None
    with pytest.raises(ValueError, match="does not belong"):
        store.complete(upload, [Part(1, "another-upload-00001", 5)])
    with pytest.raises(ValueError, match="twice"):
        store.complete(upload, [first, first])


def test_delete_removes_and_is_idempotent(store: AzureBlobStore, container: ContainerClient) -> None:
    write(store, "doomed", b"bytes")
    container.get_blob_client("doomed").create_snapshot()  # snapshots go with it
    store.delete("doomed")
    assert store.head("doomed") is None
    assert [blob.name for blob in container.list_blobs(include=["snapshots"])] == []
    store.delete("doomed")
    store.delete("never-written")


def test_delete_discards_staged_blocks_so_no_upload_completes_after_it(
    store: AzureBlobStore, container: ContainerClient
) -> None:
    # Blocks of a name with no blob: Azurite would still commit them after a plain Delete Blob.
    early = store.create_upload("staged", HEADERS, {})
    early_part = store.upload_part(early, 1, b"before the delete", None)
    store.delete("staged")
    assert store.incomplete_uploads("staged") == []
    with pytest.raises(SourceChangedError, match="are gone"):
        store.complete(early, [early_part])
    assert store.head("staged") is None
    assert [blob.name for blob in container.list_blobs()] == []

    # Beside a committed blob: both go, and the old blocks cannot come back either.
    write(store, "both", b"committed")
    pending = store.create_upload("both", HEADERS, {})
    pending_part = store.upload_part(pending, 1, b"staged", None)
    store.delete("both")
    with pytest.raises(SourceChangedError):
        store.complete(pending, [pending_part])
    assert store.head("both") is None
    assert [blob.name for blob in container.list_blobs()] == []

    # An upload begun after the delete is not touched by it.
    later = store.create_upload("both", HEADERS, {})
    store.complete(later, [store.upload_part(later, 1, b"after", None)])
    assert container.get_blob_client("both").download_blob().readall() == b"after"


def test_list_in_name_order_with_start_after(store: AzureBlobStore, container: ContainerClient) -> None:
    keys = ["a/1", "a/10", "a/2", "a/3", "b/1", "b/é"]
    for key in reversed(keys):
        write(store, key, key.encode())
    store.upload_part(store.create_upload("a/25", HEADERS, {}), 1, b"staged only", None)

    listed = list(store.list())
    assert [o.key for o in listed] == keys
    assert [o.size for o in listed] == [len(k.encode()) for k in keys]
    head = store.head("a/2")
    assert head is not None
    assert listed[2].etag == head.etag
    assert [o.key for o in store.list("a/")] == ["a/1", "a/10", "a/2", "a/3"]
    assert [o.key for o in store.list("a/", start_after="a/10")] == ["a/2", "a/3"]
    assert [o.key for o in store.list("a/", start_after="a/11")] == ["a/2", "a/3"]
    assert [o.key for o in store.list(start_after="a/3")] == ["b/1", "b/é"]
    assert [o.key for o in store.list("b/", start_after="a/9")] == ["b/1", "b/é"]
    assert list(store.list(start_after="b/é")) == []
    assert list(store.list("c/")) == []


def secrets_absent(text: str, *secrets: str) -> bool:
    return not any(secret in text for secret in secrets)


def test_a_wrong_account_key_is_a_clear_error_without_the_secret(
    azurite: Azurite,
    container: ContainerClient,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    wrong_key = base64.b64encode(os.urandom(64)).decode()
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="azure")  # logs.configure_logging quiets it
    configs = [
        AzureBlobConfig(
            container=container.container_name,
            account_name=azurite.account_name,
            account_key=SecretStr(wrong_key),
            account_url=azurite.blob_endpoint,
            max_attempts=2,
        ),
        azure_config(
            azurite,
            container.container_name,
            connection_string=SecretStr(azurite.connection_string.replace(azurite.account_key, wrong_key)),
        ),
    ]
    for config in configs:
        store = AzureBlobStore(config)
        for attempt in (
            lambda s=store: s.head("x"),
            lambda s=store: s.put("x", b"1", HEADERS, {}, md5_hex(b"1")),
            lambda s=store: s.upload_part(s.create_upload("x", HEADERS, {}), 1, b"1", None),
            lambda s=store: s.complete(
                upload := s.create_upload("x", HEADERS, {}), [Part(1, block_id_for(upload.upload_id, 1), 1)]
            ),
            lambda s=store: list(s.list()),
        ):
            with pytest.raises(StoreAccessError) as caught:
                attempt()
            error = caught.value
            assert error.reason == "store_access"
            assert not is_retryable(error)
            assert "check the account key or connection string" in str(error)
            assert azurite.account_name in str(error)
            assert container.container_name in str(error)
            assert "403" in str(error)
            for text in (str(error), repr(error), repr(store), repr(config), str(config)):
                assert secrets_absent(text, wrong_key, azurite.account_key), text
    captured = capsys.readouterr()
    assert caplog.records  # the SDK did log its requests
    assert secrets_absent(caplog.text + captured.out + captured.err, wrong_key, azurite.account_key)


def test_a_missing_container_is_a_clear_error(azurite: Azurite) -> None:
    store = AzureBlobStore(azure_config(azurite, "no-such-container"))
    for attempt in (
        lambda: store.head("x"),
        lambda: store.put("x", b"1", HEADERS, {}, md5_hex(b"1")),
        lambda: store.upload_part(store.create_upload("x", HEADERS, {}), 1, b"1", None),
        lambda: list(store.list()),
        lambda: store.delete("x"),
    ):
        with pytest.raises(
            StoreMissingError, match=r"container 'no-such-container' .* does not exist"
        ) as caught:
            attempt()
        assert caught.value.reason == "store_missing"


def test_an_unreachable_endpoint_is_retryable(azurite: Azurite) -> None:
    closed = f"http://127.0.0.1:{free_port()}/{azurite.account_name}"
    store = AzureBlobStore(
        AzureBlobConfig(
            container="replica",
            account_name=azurite.account_name,
            account_key=SecretStr(azurite.account_key),
            account_url=closed,
            max_attempts=1,
            connect_timeout=2,
        )
    )
    assert store._lean is not None
    for attempt in (
        lambda: store.head("x"),
        lambda: store.put("x", b"1", HEADERS, {}, md5_hex(b"1")),
        lambda: store.upload_part(store.create_upload("x", HEADERS, {}), 1, b"1", None),
    ):
        with pytest.raises(StoreUnavailableError, match="connection trouble") as caught:
            attempt()
        assert is_retryable(caught.value)


def test_lean_writes_are_retried_through_busy_answers_and_dropped_connections(
    azurite: Azurite, container: ContainerClient
) -> None:
    plan = FaultPlan(slow_down=0.25, drop=0.1, seed=3)
    with FaultProxy(azurite.blob_endpoint, plan) as proxy:
        store = AzureBlobStore(
            AzureBlobConfig(
                container=container.container_name,
                account_name=azurite.account_name,
                account_key=SecretStr(azurite.account_key),
                account_url=f"{proxy.endpoint_url}/{azurite.account_name}",
                max_attempts=8,
            )
        )
        assert store._lean is not None
        sizes = [1, 100, THRESHOLD + 1, 2 * THRESHOLD + 7] * 3
        datas = {f"busy-{n}": payload(size) for n, size in enumerate(sizes)}
        with ThreadPoolExecutor(len(datas)) as pool:
            list(pool.map(lambda item: write(store, *item), datas.items()))
    assert plan.injected["slow_down"] and plan.injected["drop"]
    for key, data in datas.items():
        assert container.get_blob_client(key).download_blob().readall() == data


@pytest.mark.parametrize(
    ("status", "code", "kind"),
    [
        (503, "ServerBusy", StoreUnavailableError),
        (500, "InternalError", StoreUnavailableError),
        (429, "", StoreUnavailableError),
        (400, "Md5Mismatch", IntegrityError),
        (412, "ConditionNotMet", SourceChangedError),
        (403, "AuthenticationFailed", StoreAccessError),
    ],
)
def test_service_answers_map_to_the_projects_errors(
    store: AzureBlobStore, status: int, code: str, kind: type[Exception]
) -> None:
    # Azurite cannot be made to throttle or fail; what Azure answers then, mapped.
    answer = HttpResponseError(message=f"{code} answered")
    answer.status_code = status
    answer.error_code = code  # type: ignore[attr-defined]
    mapped = store._failure(answer, "Put Block 1", "k")
    assert type(mapped) is kind
    assert is_retryable(mapped) == (kind is StoreUnavailableError)


def test_azurite_stops_with_its_processes_even_on_error() -> None:
    server = Azurite()
    group = 0

    def crash() -> None:
        nonlocal group
        with server:
            assert server._process is not None
            group = server._process.pid
            server.create_container("probe")
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        crash()
    assert group
    with pytest.raises(ProcessLookupError):
        os.killpg(group, 0)
    assert server.log_path is not None
    assert not server.log_path.exists()  # its temporary directory is gone


def test_azurite_names_what_is_missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(RuntimeError, match=r"not installed.*make setup"):
        Azurite(root=tmp_path).start()
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(RuntimeError, match="'node' binary is missing"):
        Azurite().start()
