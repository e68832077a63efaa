"""The copy engine against SeaweedFS (real SigV4, real multipart, real Content-MD5 checks).

Every test runs twice: with the lean request path (the default) and with boto3 for every call.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.seaweed import SeaweedS3
from migrate.uploads import cleanup_uploads
from replicator.clients import Endpoint
from replicator.errors import (
    ArchivedObjectError,
    EncryptedSourceError,
    IntegrityError,
    SourceChangedError,
    UnstorableKeyError,
)
from replicator.lean_s3 import STREAM_CHUNK, RangeStream
from replicator.objects import META_MD5, META_SOURCE_ETAG, ObjectInfo
from replicator.reconcile import head
from replicator.transfer import MARKER_PART, TransferEngine
from tests.integration.support import (
    HEADERS,
    RefusingProxy,
    build_clients,
    drop_bucket,
    engine_through,
    make_engine,
    moto_client,
    put_source,
    settings_for,
    uploads_left,
)

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def fail_part(engine: TransferEngine, number: int, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Part `number` is refused by the target; returns the part numbers tried."""
    real = engine._upload_part
    tried: list[int] = []

    def refuse(obj: Any, upload_id: str, part: int, *args: Any) -> str:
        tried.append(part)
        if part == number:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, "UploadPart")
        return real(obj, upload_id, part, *args)

    monkeypatch.setattr(engine, "_upload_part", refuse)
    return tried


def corrupt_parts_on_the_wire(engine: TransferEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """After checksumming and signing, as a faulty network or proxy would: flip the first byte of
    every part body sent."""
    lean = engine._lean_target
    if lean is not None:
        real_open = lean._open

        def flip(method: str, target: str, headers: dict[str, str], body: Any) -> Any:
            if "partNumber=" in target and body is not None:
                body = bytes([body[0] ^ 0xFF]) + bytes(body[1:])
            return real_open(method, target, headers, body)

        monkeypatch.setattr(lean, "_open", flip)
        return

    def corrupt_body(request: Any, **_: Any) -> None:
        body = request.body
        data = body.read() if hasattr(body, "read") else bytes(body)
        request.body = bytes([data[0] ^ 0xFF]) + data[1:]
        request.headers["Content-Length"] = str(len(request.body))

    # The clients are the test's own, so the handler goes away with them.
    engine.target.client.meta.events.register("before-send.s3.UploadPart", corrupt_body)


def flip_byte_on_read(
    engine: TransferEngine, at: int, monkeypatch: pytest.MonkeyPatch, once: bool = False
) -> list[int]:
    """Corrupt the first byte of the part read from offset `at` (every time, or once)."""
    real = engine._read_range
    flipped: list[int] = []

    def read(obj: Any, start: int, length: int, *rest: Any) -> bytes:
        data = bytes(real(obj, start, length, *rest))
        if start == at and not (once and flipped):
            flipped.append(start)
            return bytes([data[0] ^ 0xFF]) + data[1:]
        return data

    monkeypatch.setattr(engine, "_read_range", read)
    lean = engine._lean_source
    if lean is not None:  # parts that stream from the source's GET into UploadPart
        open_range = lean.open_range

        class Flipped(RangeStream):
            def __iter__(self) -> Iterator[memoryview]:
                for index, chunk in enumerate(super().__iter__()):
                    if index == 0:
                        chunk[0] ^= 0xFF
                    yield chunk

        def stream(key: str, start: int, *rest: Any) -> RangeStream:
            body = open_range(key, start, *rest)
            if start != at or (once and flipped):
                return body
            flipped.append(start)
            corrupt = object.__new__(Flipped)
            corrupt.__dict__ = body.__dict__  # the same response and state, corrupted on the way
            return corrupt

        monkeypatch.setattr(lean, "open_range", stream)
    return flipped


THRESHOLD = 8 * MIB


SIZES = {
    "0B": 0,
    "1B": 1,
    "5MiB": 5 * MIB,
    "threshold-1": THRESHOLD - 1,
    "threshold": THRESHOLD,
    "threshold+1": THRESHOLD + 1,
    "odd-last-part": 3 * 5 * MIB + 123,
}
CASES = [pytest.param(size, False, id=f"{name}-single-source") for name, size in SIZES.items()] + [
    # A multipart source (ETag "...-N", MD5 unknown up front) needs more than one 5 MiB part.
    pytest.param(size, True, id=f"{name}-multipart-source")
    for name, size in SIZES.items()
    if size > 5 * MIB
]


@pytest.mark.parametrize(("size", "source_multipart"), CASES)
def test_sizes_arrive_byte_identical_with_metadata(
    ends: tuple[Endpoint, Endpoint], size: int, source_multipart: bool, request_path: str
) -> None:
    source, target = ends
    data = os.urandom(size)
    key = f"dir/size-{size} ü+%.bin"
    put_source(source, key, data, multipart_part=5 * MIB if source_multipart else None)
    engine = make_engine(ends, part_size_mib=5)
    try:
        obj = head(source, key)
        assert obj is not None
        result = engine.copy(obj)
    finally:
        engine.close()
    # Still on the path under test: nothing made the engine fall back to boto3 on the way.
    assert (engine._lean_source is not None, engine._lean_target is not None) == (
        (request_path == "lean",) * 2
    )
    body = target.client.get_object(Bucket=target.bucket, Key=key)
    assert body["Body"].read() == data
    # Known up front (a single PUT hashes its bytes; a single-part source's ETag is its MD5), or
    # not recorded: the ETag chain proved a multipart source's bytes.
    digest = hashlib.md5(data).hexdigest() if size < THRESHOLD or not source_multipart else None
    assert result.md5 == digest
    assert result.parts == (1 if size < THRESHOLD else -(-size // (5 * MIB)))
    for header, value in HEADERS.items():
        assert body[header] == value, header
    assert body["Metadata"]["owner"] == "qa"
    assert body["Metadata"].get(META_MD5) == digest
    assert body["Metadata"][META_SOURCE_ETAG] == obj.etag
    assert uploads_left(target) == []


def test_memory_is_bounded_by_the_buffer_budget(ends: tuple[Endpoint, Endpoint]) -> None:
    source, target = ends
    data = os.urandom(64 * MIB)
    put_source(source, "big", data)
    engine = make_engine(ends, part_size_mib=5, part_concurrency=8, max_buffer_mib=15)
    try:
        engine.copy(head(source, "big"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert engine.budget.peak <= 15 * MIB
    assert engine.budget.peak >= 10 * MIB  # parts really did run in parallel
    assert engine.budget.in_use == 0
    assert hashlib.md5(target.client.get_object(Bucket=target.bucket, Key="big")["Body"].read()).digest() == (
        hashlib.md5(data).digest()
    )


def test_a_failing_part_aborts_the_upload(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = ends
    put_source(source, "fails", os.urandom(30 * MIB))
    engine = make_engine(ends, part_size_mib=5)
    tried = fail_part(engine, 4, monkeypatch)
    try:
        with pytest.raises(ClientError, match="injected"):
            engine.copy(head(source, "fails"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert 4 in tried
    assert uploads_left(target) == []
    assert head(target, "fails") is None
    assert engine.budget.in_use == 0


def test_a_part_corrupted_on_read_is_detected(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    # At default settings: a single-part source's ETag is its MD5, the one end-to-end proof of
    # the bytes read when no ETag chain covers the copy.
    source, target = ends
    put_source(source, "corrupt", os.urandom(12 * MIB))
    engine = make_engine(ends, part_size_mib=5)
    flipped = flip_byte_on_read(engine, 5 * MIB, monkeypatch)
    try:
        with pytest.raises(IntegrityError, match="MD5"):
            engine.copy(head(source, "corrupt"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert flipped
    assert uploads_left(target) == []
    assert head(target, "corrupt") is None


def test_a_part_corrupted_in_transit_is_rejected_by_content_md5(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A single-part source: no ETag chain, so every part carries its Content-MD5.
    source, target = ends
    put_source(source, "transit", os.urandom(11 * MIB))
    engine = make_engine(ends, part_size_mib=5)
    corrupt_parts_on_the_wire(engine, monkeypatch)
    try:
        with pytest.raises(ClientError) as info:
            engine.copy(head(source, "transit"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert info.value.response["Error"]["Code"] in ("BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch")
    assert uploads_left(target) == []


def test_stale_uploads_of_a_key_are_aborted_when_it_is_copied_again(ends: tuple[Endpoint, Endpoint]) -> None:
    source, target = ends
    put_source(source, "again", os.urandom(9 * MIB))
    stale = target.client.create_multipart_upload(Bucket=target.bucket, Key="again")["UploadId"]
    other = target.client.create_multipart_upload(Bucket=target.bucket, Key="again-other")["UploadId"]
    engine = make_engine(ends, part_size_mib=5)
    try:
        engine.copy(head(source, "again"))  # type: ignore[arg-type]
    finally:
        engine.close()
    left = {u["UploadId"] for u in uploads_left(target)}
    assert stale not in left
    assert other in left  # another key's upload is not ours to touch


def test_cleanup_aborts_only_uploads_older_than_the_age(ends: tuple[Endpoint, Endpoint]) -> None:
    _, target = ends
    old = target.client.create_multipart_upload(Bucket=target.bucket, Key="a/old")["UploadId"]
    cutoff = datetime.now(UTC) + timedelta(seconds=5)
    aborted = cleanup_uploads(target, older_than=cutoff, dry_run=True)
    assert [u.upload_id for u in aborted] == [old]
    assert len(uploads_left(target)) == 1  # dry run
    aborted = cleanup_uploads(target, older_than=cutoff)
    assert [u.upload_id for u in aborted] == [old]
    assert uploads_left(target) == []
    young = target.client.create_multipart_upload(Bucket=target.bucket, Key="b/young")["UploadId"]
    assert cleanup_uploads(target, older_than=datetime.now(UTC) - timedelta(hours=1)) == []
    assert [u["UploadId"] for u in uploads_left(target)] == [young]


def _part_checksums(engine: TransferEngine, monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """For each part uploaded from now on: did it carry a Content-MD5?"""
    calls: list[bool] = []
    real = engine._upload_part

    def record(obj: Any, upload_id: str, number: int, data: Any, content_md5: str | None, *rest: Any) -> str:
        if number != MARKER_PART:  # the resume marker always carries its Content-MD5
            calls.append(content_md5 is not None)
        return real(obj, upload_id, number, data, content_md5, *rest)

    monkeypatch.setattr(engine, "_upload_part", record)
    lean = engine._lean_target
    if lean is not None:  # a streamed part is sent without one: the ETag chain proves it
        streamed = lean.upload_part_stream

        def record_streamed(key: str, upload_id: str, number: int, body: Any) -> str:
            calls.append(False)
            return streamed(key, upload_id, number, body)

        monkeypatch.setattr(lean, "upload_part_stream", record_streamed)
    return calls


def test_multipart_source_is_verified_end_to_end_through_its_etag(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = ends
    data = os.urandom(3 * 6 * MIB + 1000)
    put_source(source, "chained.bin", data, multipart_part=6 * MIB)
    engine = make_engine((source, target), part_size_mib=16)
    checksums = _part_checksums(engine, monkeypatch)
    try:
        result = engine.copy(head(source, "chained.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert checksums == [False] * 4  # the source's 6 MiB layout, not our 16 MiB; the chain checks
    assert result.parts == 4
    got = target.client.get_object(Bucket=target.bucket, Key="chained.bin")
    assert got["Body"].read() == data
    assert got["ETag"].strip('"') == head(source, "chained.bin").etag  # type: ignore[union-attr]
    assert META_MD5 not in got["Metadata"]  # the chain proved the bytes: nothing more to record


def test_a_broken_etag_chain_falls_back_to_content_md5_parts(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = ends
    data = os.urandom(3 * 6 * MIB)
    put_source(source, "flaky.bin", data, multipart_part=6 * MIB)
    engine = make_engine((source, target))
    flipped = flip_byte_on_read(engine, 6 * MIB, monkeypatch, once=True)
    checksums = _part_checksums(engine, monkeypatch)
    try:
        engine.copy(head(source, "flaky.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert flipped  # the corruption happened, was caught by the chain, and the copy redone
    assert checksums[:3] == [False] * 3
    assert checksums[3:] and all(checksums[3:])
    assert target.client.get_object(Bucket=target.bucket, Key="flaky.bin")["Body"].read() == data
    assert uploads_left(target) == []


def test_a_non_uniform_source_layout_is_copied_with_our_own_parts(ends: tuple[Endpoint, Endpoint]) -> None:
    source, target = ends
    sizes = [6 * MIB, 5 * MIB, 7 * MIB]  # first part 6 MiB, three parts: looks uniform, is not
    data = os.urandom(sum(sizes))
    upload = source.client.create_multipart_upload(Bucket=source.bucket, Key="odd.bin")["UploadId"]
    parts, offset = [], 0
    for number, size in enumerate(sizes, 1):
        etag = source.client.upload_part(
            Bucket=source.bucket,
            Key="odd.bin",
            UploadId=upload,
            PartNumber=number,
            Body=data[offset : offset + size],
        )["ETag"]
        parts.append({"PartNumber": number, "ETag": etag})
        offset += size
    source.client.complete_multipart_upload(
        Bucket=source.bucket, Key="odd.bin", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    engine = make_engine((source, target))
    try:
        engine.copy(head(source, "odd.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert target.client.get_object(Bucket=target.bucket, Key="odd.bin")["Body"].read() == data
    assert uploads_left(target) == []


def _count_calls(client: Any, operation: str) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    client.meta.events.register(
        f"provide-client-params.s3.{operation}", lambda params, **_: calls.append(params)
    )
    return calls


def test_a_listed_multipart_source_is_looked_at_with_one_head(ends: tuple[Endpoint, Endpoint]) -> None:
    """One HEAD of part 1 gives the headers, the metadata and the part layout."""
    source, target = ends
    data = os.urandom(2 * 6 * MIB + 5)
    put_source(source, "listed.bin", data, multipart_part=6 * MIB)
    listed = ObjectInfo.from_listing(source.client.list_objects_v2(Bucket=source.bucket)["Contents"][0])
    heads = _count_calls(source.client, "HeadObject")
    engine = make_engine(ends)
    try:
        result = engine.copy(listed)
    finally:
        engine.close()
    assert [h.get("PartNumber") for h in heads] == [1]
    assert result.parts == 3  # the source's own 6 MiB layout, replayed
    got = target.client.get_object(Bucket=target.bucket, Key="listed.bin")
    assert got["Body"].read() == data
    assert got["ContentType"] == HEADERS["ContentType"] and got["Metadata"]["owner"] == "qa"


def test_a_refused_stale_upload_listing_does_not_stop_the_copy(ends: tuple[Endpoint, Endpoint]) -> None:
    source, target = ends
    data = os.urandom(9 * MIB)
    put_source(source, "refused.bin", data)

    def refuse(**_: Any) -> None:
        raise ClientError({"Error": {"Code": "AccessDenied", "Message": "not here"}}, "ListMultipartUploads")

    target.client.meta.events.register("before-call.s3.ListMultipartUploads", refuse)
    engine = make_engine(ends, part_size_mib=5)
    try:
        engine.copy(head(source, "refused.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert target.client.get_object(Bucket=target.bucket, Key="refused.bin")["Body"].read() == data


def test_reads_stay_on_the_version_looked_at(ends: tuple[Endpoint, Endpoint]) -> None:
    """Versioned source: an overwrite during the copy does not mix in the new version's bytes."""
    source, target = ends
    source.client.put_bucket_versioning(Bucket=source.bucket, VersioningConfiguration={"Status": "Enabled"})
    first, second = os.urandom(12 * MIB), os.urandom(12 * MIB)
    put_source(source, "versioned.bin", first)
    looked_at = head(source, "versioned.bin")
    assert looked_at is not None and looked_at.version_id
    put_source(source, "versioned.bin", second)
    engine = make_engine(ends, part_size_mib=5)
    try:
        result = engine.copy(looked_at)
    finally:
        engine.close()
    assert target.client.get_object(Bucket=target.bucket, Key="versioned.bin")["Body"].read() == first
    assert result.md5 == hashlib.md5(first).hexdigest()  # the version's ETag, recorded as is


def test_an_overwrite_during_the_copy_fails_it_cleanly(ends: tuple[Endpoint, Endpoint]) -> None:
    """Unversioned source: reads are pinned with If-Match, so the rewritten object is not copied
    as a mix of two versions; the copy fails (to be reconciled again) and leaves nothing behind."""
    source, target = ends
    put_source(source, "rewritten.bin", os.urandom(12 * MIB))
    looked_at = head(source, "rewritten.bin")
    put_source(source, "rewritten.bin", os.urandom(12 * MIB))
    engine = make_engine(ends, part_size_mib=5)
    try:
        with pytest.raises(SourceChangedError):
            engine.copy(looked_at)  # type: ignore[arg-type]
    finally:
        engine.close()
    assert uploads_left(target) == []
    assert head(target, "rewritten.bin") is None


# -- sizes that move, retries, self-copies ----------------------------------------------------


def test_an_object_that_grew_and_shrank_back_is_copied_as_it_is_now(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listed small, above the threshold at the GET, small again at the HEAD that follows."""
    source, target = ends
    put_source(source, "flux.bin", os.urandom(1024))
    listed = ObjectInfo.from_listing(source.client.list_objects_v2(Bucket=source.bucket)["Contents"][0])
    put_source(source, "flux.bin", os.urandom(THRESHOLD + 1))
    final = os.urandom(2048)
    engine = make_engine(ends, part_size_mib=5)
    real_head = engine._head_source

    def shrink_then_head(key: str, *args: Any, **kwargs: Any) -> ObjectInfo:
        put_source(source, key, final)
        return real_head(key, *args, **kwargs)

    monkeypatch.setattr(engine, "_head_source", shrink_then_head)
    try:
        result = engine.copy(listed)
    finally:
        engine.close()
    assert (result.size, result.parts) == (len(final), 1)
    assert target.client.get_object(Bucket=target.bucket, Key="flux.bin")["Body"].read() == final
    assert engine.budget.in_use == 0


@pytest.mark.parametrize("whole_object_md5", [False, True])
def test_a_multipart_copy_records_the_source_etag_without_a_self_copy(
    ends: tuple[Endpoint, Endpoint], whole_object_md5: bool
) -> None:
    source, target = ends
    data = os.urandom(2 * 6 * MIB + 7)
    put_source(source, "mp.bin", data, multipart_part=6 * MIB)
    copies = _count_calls(target.client, "CopyObject")
    engine = make_engine(ends, whole_object_md5=whole_object_md5)
    try:
        result = engine.copy(head(source, "mp.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    got = target.client.get_object(Bucket=target.bucket, Key="mp.bin")
    assert got["Body"].read() == data
    assert got["Metadata"][META_SOURCE_ETAG] == result.source_etag
    if whole_object_md5:  # asked for: computed while streaming, recorded with a self-copy
        assert len(copies) == 1
        assert got["Metadata"][META_MD5] == result.md5 == hashlib.md5(data).hexdigest()
    else:
        assert copies == []
        assert META_MD5 not in got["Metadata"] and result.md5 is None


def test_a_source_refusing_every_get_is_asked_at_most_max_attempts_times_per_range(
    lyve: SeaweedS3, ends: tuple[Endpoint, Endpoint]
) -> None:
    """Request retries happen once (botocore's, or the engine's on the lean path), never one
    policy inside the other."""
    source, target = ends
    put_source(source, "busy.bin", os.urandom(12 * MIB))
    listed = head(source, "busy.bin")
    refuse_gets = lambda method, path: (503, "SlowDown") if method == "GET" and "busy.bin" in path else None  # noqa: E731
    with RefusingProxy(lyve.endpoint_url, refuse_gets) as proxy:
        engine = engine_through(
            proxy.endpoint_url,
            (lyve.access_key, lyve.secret_key),
            lyve,
            (source.bucket, target.bucket),
            max_attempts=3,
            part_size_mib=5,
        )
        try:
            with pytest.raises(ClientError) as info:
                engine.copy(listed)  # type: ignore[arg-type]
        finally:
            engine.close()
    assert info.value.response["Error"]["Code"] == "SlowDown"
    gets = [r for m, p, r in proxy.seen if m == "GET" and "busy.bin" in p]
    assert gets
    assert max(gets.count(r) for r in set(gets)) <= 3
    # Throttled beyond the retries: the upload is kept for the next attempt to resume.
    assert [u["Key"] for u in uploads_left(target)] == ["busy.bin"]


# -- metadata-only changes --------------------------------------------------------------------


def count_source_reads(engine: TransferEngine, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every GET of the source's bytes from now on, on either request path."""
    reads: list[str] = []
    engine.source.client.meta.events.register(
        "provide-client-params.s3.GetObject", lambda params, **_: reads.append(params["Key"])
    )
    lean = engine._lean_source
    if lean is not None:
        for name in ("get_object", "get_range"):
            monkeypatch.setattr(lean, name, recording(getattr(lean, name), reads))
    return reads


def recording(real: Any, reads: list[str]) -> Any:
    def read(key: str, *args: Any, **kwargs: Any) -> Any:
        reads.append(key)
        return real(key, *args, **kwargs)

    return read


@pytest.mark.parametrize("in_place", ["copy_object", "upload_part_copy"])
def test_a_metadata_change_is_applied_without_sending_the_bytes(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch, in_place: str
) -> None:
    from replicator import transfer
    from replicator.objects import metadata_matches

    source, target = ends
    data = os.urandom(12 * MIB)
    put_source(source, "meta.bin", data)
    engine = make_engine(ends, part_size_mib=5)
    try:
        first = engine.copy(head(source, "meta.bin"))  # type: ignore[arg-type]
        before = head(target, "meta.bin")
        # In place on the source: same bytes and ETag, new headers and metadata.
        source.client.copy_object(
            Bucket=source.bucket,
            Key="meta.bin",
            CopySource={"Bucket": source.bucket, "Key": "meta.bin"},
            MetadataDirective="REPLACE",
            ContentType="text/csv",
            CacheControl="no-store",
            Metadata={"owner": "ops", "stage": "2"},
        )
        changed = head(source, "meta.bin")
        assert changed is not None and before is not None and changed.etag == first.source_etag
        assert not metadata_matches(changed, before)
        if in_place == "upload_part_copy":  # as for an object above CopyObject's 5 GiB
            monkeypatch.setattr(transfer, "SELF_COPY_LIMIT", 1)
            monkeypatch.setattr(transfer, "COPY_PART_SIZE", 5 * MIB)
        copies = _count_calls(target.client, "UploadPartCopy")
        reads = count_source_reads(engine, monkeypatch)
        engine.update_metadata(changed)
    finally:
        engine.close()
    assert reads == []
    assert len(copies) == (3 if in_place == "upload_part_copy" else 0)
    got = target.client.get_object(Bucket=target.bucket, Key="meta.bin")
    assert got["Body"].read() == data
    assert (got["ContentType"], got["CacheControl"]) == ("text/csv", "no-store")
    assert got["Metadata"]["owner"] == "ops" and got["Metadata"]["stage"] == "2"
    assert got["Metadata"][META_SOURCE_ETAG] == first.source_etag
    assert got["Metadata"][META_MD5] == hashlib.md5(data).hexdigest()
    after = head(target, "meta.bin")
    assert after is not None and metadata_matches(changed, after)
    assert uploads_left(target) == []


def test_a_metadata_update_of_a_target_that_differs_is_refused(ends: tuple[Endpoint, Endpoint]) -> None:
    source, target = ends
    put_source(source, "gone.bin", b"new bytes")
    target.client.put_object(Bucket=target.bucket, Key="gone.bin", Body=b"old bytes")
    engine = make_engine(ends)
    try:
        with pytest.raises(SourceChangedError, match="copy it"):
            engine.update_metadata(head(source, "gone.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert target.client.get_object(Bucket=target.bucket, Key="gone.bin")["Body"].read() == b"old bytes"


def test_abort_uploads_takes_exactly_the_key(ends: tuple[Endpoint, Endpoint]) -> None:
    _, target = ends
    mine = {
        target.client.create_multipart_upload(Bucket=target.bucket, Key="k/x")["UploadId"] for _ in range(2)
    }
    other = target.client.create_multipart_upload(Bucket=target.bucket, Key="k/x.more")["UploadId"]
    engine = make_engine(ends)
    try:
        assert engine.abort_uploads("k/x") == 2
    finally:
        engine.close()
    assert {u["UploadId"] for u in uploads_left(target)} == {other}
    assert not mine & {u["UploadId"] for u in uploads_left(target)}


# -- sources that cannot be read, keys that cannot be stored ----------------------------------


@pytest.fixture
def aws_source(moto_url: str, lyve: SeaweedS3, request_path: str) -> Iterator[tuple[Any, str, str]]:
    """(moto S3 client, source bucket, target bucket on SeaweedFS)."""
    name = uuid.uuid4().hex[:10]
    s3 = moto_client(moto_url)
    s3.create_bucket(Bucket=f"aws-{name}")
    lyve.client().create_bucket(Bucket=f"dst-{name}")
    yield s3, f"aws-{name}", f"dst-{name}"
    drop_bucket(lyve.client(), f"dst-{name}")


@pytest.mark.parametrize("size", [1024, 9 * MIB])
def test_an_archived_source_is_refused_before_anything_is_read(
    aws_source: tuple[Any, str, str],
    moto_url: str,
    lyve: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    s3, src, dst = aws_source
    for storage_class in ("DEEP_ARCHIVE", "GLACIER", "GLACIER_IR"):
        s3.put_object(Bucket=src, Key=storage_class, Body=os.urandom(size), StorageClass=storage_class)
    s3.put_object(Bucket=src, Key="restored", Body=os.urandom(size), StorageClass="GLACIER")
    s3.restore_object(Bucket=src, Key="restored", RestoreRequest={"Days": 1})
    engine = engine_through(moto_url, ("testing", "testing"), lyve, (src, dst), part_size_mib=5)
    listed = {e["Key"]: ObjectInfo.from_listing(e) for e in s3.list_objects_v2(Bucket=src)["Contents"]}
    try:
        reads = count_source_reads(engine, monkeypatch)
        with pytest.raises(
            ArchivedObjectError, match="archived in DEEP_ARCHIVE and not restored: restore it"
        ):
            engine.copy(ObjectInfo.from_head("DEEP_ARCHIVE", s3.head_object(Bucket=src, Key="DEEP_ARCHIVE")))
        assert reads == []
        # Listed only: a large one is looked at first, a small one's GET is refused as S3 does.
        with pytest.raises(ArchivedObjectError):
            engine.copy(listed["GLACIER"])
        assert reads == ([] if size >= THRESHOLD else ["GLACIER"])
        for readable in ("GLACIER_IR", "restored"):
            assert engine.copy(listed[readable]).size == size
    finally:
        engine.close()


def refusing_gets_of(key: str, status: int, code: str | None) -> Any:
    return lambda method, path: (status, code) if method == "GET" and key in path else None


@pytest.mark.parametrize("size", [1024, 9 * MIB])
def test_a_kms_source_we_may_not_decrypt_is_refused_naming_the_key(
    aws_source: tuple[Any, str, str], moto_url: str, lyve: SeaweedS3, size: int
) -> None:
    s3, src, dst = aws_source
    key_id = "arn:aws:kms:us-east-1:123456789012:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    s3.put_object(
        Bucket=src,
        Key="secret.bin",
        Body=os.urandom(size),
        ServerSideEncryption="aws:kms",
        SSEKMSKeyId=key_id,
    )
    obj = ObjectInfo.from_head("secret.bin", s3.head_object(Bucket=src, Key="secret.bin"))
    assert obj.kms_key_id == key_id
    # moto does not enforce kms:Decrypt: the proxy answers GETs as S3 does without it.
    with RefusingProxy(moto_url, refusing_gets_of("secret.bin", 403, "AccessDenied")) as proxy:
        engine = engine_through(proxy.endpoint_url, ("testing", "testing"), lyve, (src, dst), part_size_mib=5)
        try:
            with pytest.raises(EncryptedSourceError, match=key_id):
                engine.copy(obj)
        finally:
            engine.close()
    assert lyve.client().list_multipart_uploads(Bucket=dst).get("Uploads", []) == []


def test_an_sse_c_source_is_refused_at_its_head(
    aws_source: tuple[Any, str, str], moto_url: str, lyve: SeaweedS3
) -> None:
    """A listed large object is looked at first; an SSE-C object answers that HEAD with a bare 400,
    and the one-byte GET that confirms it in words (as AWS does without the customer key)."""
    s3, src, dst = aws_source
    s3.put_object(Bucket=src, Key="customer.bin", Body=os.urandom(9 * MIB))
    listed = ObjectInfo.from_listing(s3.list_objects_v2(Bucket=src)["Contents"][0])
    sse_c = "The object was stored using a form of Server Side Encryption."

    def rule(method: str, path: str) -> Any:
        if "customer.bin" not in path:
            return None
        return (400, None) if method == "HEAD" else (400, "InvalidRequest", sse_c)

    with RefusingProxy(moto_url, rule) as proxy:
        engine = engine_through(proxy.endpoint_url, ("testing", "testing"), lyve, (src, dst), part_size_mib=5)
        try:
            with pytest.raises(EncryptedSourceError, match="SSE-C"):
                engine.copy(listed)
        finally:
            engine.close()
    # Nothing read but the probe's one byte.
    assert [r for m, _, r in proxy.seen if m == "GET"] == ["bytes=0-0"]


def test_a_key_the_target_cannot_store_is_refused_before_reading(ends: tuple[Endpoint, Endpoint]) -> None:
    """The source does not even hold it: any read would fail otherwise."""
    engine = make_engine(ends)
    key = "photos/" + "x" * 300 + ".jpg"
    try:
        with pytest.raises(UnstorableKeyError, match="255"):
            engine.copy(ObjectInfo(key=key, size=10, etag="e", complete=False))
    finally:
        engine.close()


@pytest.mark.parametrize("size", [1024, 9 * MIB])
def test_a_target_refusing_the_key_is_not_retried(
    aws_source: tuple[Any, str, str],
    moto_url: str,
    lyve: SeaweedS3,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    """Should the key check miss a rule, the target's own refusal is classified once, not retried."""
    from replicator import transfer

    s3, src, dst = aws_source
    key = "photos/" + "x" * 300 + ".jpg"  # SeaweedFS: at most 255 bytes per segment
    s3.put_object(Bucket=src, Key=key, Body=os.urandom(size))
    monkeypatch.setattr(transfer, "check_key", lambda *_: None)
    with RefusingProxy(lyve.endpoint_url, lambda method, path: None) as proxy:
        engine = engine_through(
            moto_url,
            ("testing", "testing"),
            lyve,
            (src, dst),
            proxy.endpoint_url,
            part_size_mib=5,
            max_attempts=3,
        )
        try:
            with pytest.raises(UnstorableKeyError, match=r"x{20}"):
                engine.copy(ObjectInfo.from_head(key, s3.head_object(Bucket=src, Key=key)))
        finally:
            engine.close()
    puts = [p for m, p, _ in proxy.seen if m == "PUT" and "x" * 20 in p]
    assert puts and len(puts) == len(set(puts))  # the object, or each part, sent once
    creates = [p for m, p, _ in proxy.seen if m == "POST" and p.endswith("?uploads")]
    assert len(creates) == (0 if size < THRESHOLD else 1)  # never started over
    assert lyve.client().list_multipart_uploads(Bucket=dst).get("Uploads", []) == []


# -- a target object is only ever deleted or relabelled when it is the one just written --------


def once_before(client: Any, operation: str, action: Any, when: str = "before-call") -> list[bool]:
    """Runs `action` the first time `operation` is called through `client` (as another writer
    would, in between two of the engine's requests); returns a list that records that it ran."""
    ran: list[bool] = []

    def hook(**kwargs: Any) -> None:
        if not ran:
            ran.append(True)
            action(**kwargs)

    client.meta.events.register(f"{when}.s3.{operation}", hook)
    return ran


def test_an_object_replaced_right_after_the_upload_completed_is_not_deleted(
    lyve: SeaweedS3, ends: tuple[Endpoint, Endpoint]
) -> None:
    """A newer copy (a concurrent migrate, another worker) lands between CompleteMultipartUpload
    and the size check: its size differs, but it is not this upload's object."""
    source, target = ends
    put_source(source, "raced.bin", os.urandom(12 * MIB))
    newer = os.urandom(1000)
    admin = lyve.client()
    ran = once_before(
        target.client,
        "HeadObject",
        lambda **_: admin.put_object(Bucket=target.bucket, Key="raced.bin", Body=newer),
    )
    engine = make_engine(ends, part_size_mib=5)
    try:
        with pytest.raises(SourceChangedError, match="replaced right after its upload completed"):
            engine.copy(head(source, "raced.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert ran
    assert admin.get_object(Bucket=target.bucket, Key="raced.bin")["Body"].read() == newer


def test_a_wrong_size_object_the_upload_wrote_is_deleted(
    lyve: SeaweedS3, ends: tuple[Endpoint, Endpoint]
) -> None:
    """The object the upload completed (same ETag) reports another size: it goes."""
    source, target = ends
    put_source(source, "short.bin", os.urandom(12 * MIB))

    def misreport(parsed: dict[str, Any], **_: Any) -> None:
        parsed["ContentLength"] = 12 * MIB - 1

    ran = once_before(target.client, "HeadObject", misreport, when="after-call")
    engine = make_engine(ends, part_size_mib=5)
    try:
        with pytest.raises(IntegrityError, match=f"target holds {12 * MIB - 1} bytes"):
            engine.copy(head(source, "short.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert ran
    assert head(target, "short.bin") is None


def test_the_md5_is_never_recorded_on_an_object_written_after_the_upload(
    lyve: SeaweedS3, ends: tuple[Endpoint, Endpoint]
) -> None:
    """WHOLE_OBJECT_MD5: the self-copy that records the MD5 is pinned to the object the upload
    completed, so newer bytes written in between never carry the old version's labels."""
    source, target = ends
    put_source(source, "labelled.bin", os.urandom(2 * 6 * MIB + 7), multipart_part=6 * MIB)
    newer = os.urandom(2 * 6 * MIB + 7)
    admin = lyve.client()
    ran = once_before(
        target.client,
        "CopyObject",
        lambda **_: admin.put_object(Bucket=target.bucket, Key="labelled.bin", Body=newer),
    )
    engine = make_engine(ends, whole_object_md5=True)
    try:
        with pytest.raises(SourceChangedError, match="before its MD5 was recorded"):
            engine.copy(head(source, "labelled.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert ran
    got = admin.get_object(Bucket=target.bucket, Key="labelled.bin")
    assert got["Body"].read() == newer
    assert META_MD5 not in got["Metadata"] and META_SOURCE_ETAG not in got["Metadata"]


def test_an_object_written_during_an_in_place_metadata_update_is_kept(
    lyve: SeaweedS3, ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above CopyObject's limit the update is a multipart copy of the object's own ranges: a
    newer object written after the last part copy is not replaced by the old bytes."""
    import threading

    from replicator import transfer

    source, target = ends
    put_source(source, "inplace.bin", os.urandom(12 * MIB))
    engine = make_engine(ends, part_size_mib=5)
    admin = lyve.client()
    newer = os.urandom(3000)
    try:
        engine.copy(head(source, "inplace.bin"))  # type: ignore[arg-type]
        source.client.copy_object(
            Bucket=source.bucket,
            Key="inplace.bin",
            CopySource={"Bucket": source.bucket, "Key": "inplace.bin"},
            MetadataDirective="REPLACE",
            Metadata={"owner": "ops"},
        )
        monkeypatch.setattr(transfer, "SELF_COPY_LIMIT", 1)
        monkeypatch.setattr(transfer, "COPY_PART_SIZE", 5 * MIB)
        copied: list[int] = []
        lock = threading.Lock()

        def after_part_copy(**_: Any) -> None:
            with lock:
                copied.append(1)
                if len(copied) == 3:  # every part copied: another writer's object lands now
                    admin.put_object(Bucket=target.bucket, Key="inplace.bin", Body=newer)

        target.client.meta.events.register("after-call.s3.UploadPartCopy", after_part_copy)
        with pytest.raises(SourceChangedError, match="changed on the target during its metadata update"):
            engine.update_metadata(head(source, "inplace.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert len(copied) == 3
    assert admin.get_object(Bucket=target.bucket, Key="inplace.bin")["Body"].read() == newer
    assert uploads_left(target) == []


# -- buffer space ------------------------------------------------------------------------------


def test_an_object_grown_since_it_was_listed_is_read_within_its_reserved_space(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Listed at 1 KiB, 6 MiB (still below the threshold) at the GET: its own size is reserved
    before its body is read. An object the listing got right costs one GET, as before."""
    source, target = ends
    put_source(source, "grown.bin", os.urandom(1024))
    put_source(source, "steady.bin", os.urandom(2048))
    listed = {
        e["Key"]: ObjectInfo.from_listing(e)
        for e in source.client.list_objects_v2(Bucket=source.bucket)["Contents"]
    }
    grown = os.urandom(6 * MIB)
    put_source(source, "grown.bin", grown)
    engine = make_engine(ends, max_buffer_mib=64)
    reads = count_source_reads(engine, monkeypatch)
    try:
        assert engine.copy(listed["steady.bin"]).size == 2048
        assert reads == ["steady.bin"]
        assert engine.budget.peak == 2048
        result = engine.copy(listed["grown.bin"])
    finally:
        engine.close()
    assert result.size == len(grown)
    assert engine.budget.peak >= len(grown)
    assert engine.budget.in_use == 0
    assert target.client.get_object(Bucket=target.bucket, Key="grown.bin")["Body"].read() == grown


# -- incomplete uploads of a deleted key ---------------------------------------------------------


def test_abort_uploads_started_before_an_instant_keeps_later_ones(ends: tuple[Endpoint, Endpoint]) -> None:
    from replicator.transfer import response_time

    _, target = ends
    old = target.client.create_multipart_upload(Bucket=target.bucket, Key="k/y")["UploadId"]
    time.sleep(1.1)  # the store's clock counts whole seconds
    cut = response_time(target.client.delete_object(Bucket=target.bucket, Key="k/y"))
    assert cut is not None
    later = target.client.create_multipart_upload(Bucket=target.bucket, Key="k/y")["UploadId"]
    engine = make_engine(ends)
    try:
        assert engine.abort_uploads("k/y", started_before=cut) == 1
    finally:
        engine.close()
    left = {u["UploadId"] for u in uploads_left(target)}
    assert later in left and old not in left


# -- parts streamed from the source's GET into UploadPart (lean path, chained layout) ----------


@pytest.fixture
def lean_ends(lyve: SeaweedS3, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Endpoint, Endpoint]]:
    monkeypatch.setenv("LEAN_REQUESTS", "true")
    name = uuid.uuid4().hex[:10]
    admin = lyve.client()
    for bucket in (f"src-{name}", f"dst-{name}"):
        admin.create_bucket(Bucket=bucket)
    clients = build_clients(settings_for(lyve, f"src-{name}", f"dst-{name}"))
    yield clients.source, clients.target
    for bucket in (f"src-{name}", f"dst-{name}"):
        drop_bucket(admin, bucket)


def _opened_ranges(engine: TransferEngine, monkeypatch: pytest.MonkeyPatch, on_open: Any = None) -> list[int]:
    """Starts of the source ranges opened for streaming; `on_open(start, body)` may replace the body."""
    lean = engine._lean_source
    assert lean is not None
    real = lean.open_range
    opened: list[int] = []

    def record(key: str, start: int, *rest: Any) -> RangeStream:
        opened.append(start)
        body = real(key, start, *rest)
        return on_open(start, body) if on_open else body

    monkeypatch.setattr(lean, "open_range", record)
    return opened


def test_a_multipart_source_streams_its_parts_with_one_small_buffer_each(
    lean_ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = lean_ends
    data = os.urandom(3 * 6 * MIB + 1000)
    put_source(source, "streamed.bin", data, multipart_part=6 * MIB)
    engine = make_engine(lean_ends, part_concurrency=2)
    held: list[int] = []  # the budget in use after each reservation
    acquire = engine.budget.acquire

    def reserve(amount: int, *rest: Any) -> None:
        acquire(amount, *rest)
        held.append(engine.budget.in_use)

    monkeypatch.setattr(engine.budget, "acquire", reserve)
    opened = _opened_ranges(engine, monkeypatch)
    try:
        result = engine.copy(head(source, "streamed.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert sorted(opened) == [0, 6 * MIB, 12 * MIB, 18 * MIB]  # each part read once, as a stream
    # A chunk per part, and never more parts reserved than run at once (not the 4 parts' 24 MiB,
    # nor 4 chunks queued ahead of 2 threads).
    assert held and max(held) <= 2 * STREAM_CHUNK
    assert engine.budget.in_use == 0
    assert result.parts == 4
    got = target.client.get_object(Bucket=target.bucket, Key="streamed.bin")
    assert got["Body"].read() == data
    assert got["ETag"].strip('"') == head(source, "streamed.bin").etag  # type: ignore[union-attr]


def test_a_streamed_part_cut_short_is_read_and_sent_again(
    lean_ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = lean_ends
    data = os.urandom(2 * 6 * MIB)
    put_source(source, "cut.bin", data, multipart_part=6 * MIB)
    engine = make_engine(lean_ends)
    cut: list[int] = []

    class CutShort(RangeStream):
        def __iter__(self) -> Iterator[memoryview]:
            for index, chunk in enumerate(super().__iter__()):
                if index == 2:
                    raise ConnectionResetError("the source went away mid-part")
                yield chunk

    def once(start: int, body: RangeStream) -> RangeStream:
        if start != 6 * MIB or cut:
            return body
        cut.append(start)
        broken = object.__new__(CutShort)
        broken.__dict__ = body.__dict__
        return broken

    opened = _opened_ranges(engine, monkeypatch, once)
    try:
        engine.copy(head(source, "cut.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert cut == [6 * MIB]
    assert opened.count(6 * MIB) == 2  # the failed part was read again from the start
    assert target.client.get_object(Bucket=target.bucket, Key="cut.bin")["Body"].read() == data
    assert uploads_left(target) == []


def test_a_source_overwritten_while_its_parts_stream_fails_the_copy_as_changed(
    lean_ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = lean_ends
    put_source(source, "moving.bin", os.urandom(3 * 6 * MIB), multipart_part=6 * MIB)
    listed = head(source, "moving.bin")
    engine = make_engine(lean_ends, part_concurrency=1)  # parts in order: the overwrite lands between them
    overwritten: list[bool] = []
    real = engine._lean_source.open_range  # type: ignore[union-attr]

    def overwrite_then_open(key: str, start: int, *rest: Any) -> RangeStream:
        if start == 6 * MIB and not overwritten:
            overwritten.append(True)
            source.client.put_object(Bucket=source.bucket, Key=key, Body=b"new version")
        return real(key, start, *rest)

    monkeypatch.setattr(engine._lean_source, "open_range", overwrite_then_open)
    try:
        with pytest.raises(SourceChangedError):
            engine.copy(listed)  # type: ignore[arg-type]
    finally:
        engine.close()
    assert overwritten
    assert head(target, "moving.bin") is None  # nothing half-copied became visible
    assert uploads_left(target) == []  # a changed source condemns the upload: aborted
