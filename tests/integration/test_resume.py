"""Interrupted multipart copies resume from the parts already uploaded, against SeaweedFS.

An interruption (the cancel event: shutdown, lost lease, lease cap) keeps the upload; the next
copy of the key finds it, checks through its marker part that it belongs to the same source
version and layout, and sends only the missing parts. Every test runs on both request paths.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from typing import Any

import pytest
from botocore.exceptions import ClientError

from local_stack.seaweed import SeaweedS3
from replicator.clients import Endpoint
from replicator.errors import CancelledError
from replicator.objects import META_MD5, META_SOURCE_ETAG
from replicator.reconcile import head
from replicator.transfer import MARKER_PART, TransferEngine
from tests.integration.support import RefusingProxy, engine_through, make_engine, put_source, uploads_left

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
PART = 5 * MIB


class Recorder:
    """Wraps an engine's part reads and uploads: what was read and sent, and a stop after
    `stop_after` data parts were uploaded (the cancel event, as a shutdown or a lost lease sets it)."""

    def __init__(
        self, engine: TransferEngine, monkeypatch: pytest.MonkeyPatch, stop_after: int | None = None
    ):
        self.cancel = threading.Event()
        self.read: list[int] = []  # start offsets
        self.sent: list[int] = []  # data part numbers
        self.markers = 0
        real_read, real_upload = engine._read_range, engine._upload_part
        lock = threading.Lock()

        def read(obj: Any, start: int, length: int, *rest: Any) -> Any:
            with lock:
                self.read.append(start)
            return real_read(obj, start, length, *rest)

        def upload(obj: Any, upload_id: str, number: int, data: Any, checksum: str | None, *rest: Any) -> str:
            etag = real_upload(obj, upload_id, number, data, checksum, *rest)
            with lock:
                if number == MARKER_PART:
                    self.markers += 1
                else:
                    self.sent.append(number)
                    if stop_after is not None and len(self.sent) >= stop_after:
                        self.cancel.set()
            return etag

        monkeypatch.setattr(engine, "_read_range", read)
        monkeypatch.setattr(engine, "_upload_part", upload)
        # Parts of a chained layout stream from the source's GET into UploadPart on the lean path.
        lean_source, lean_target = engine._lean_source, engine._lean_target
        if lean_source is not None and lean_target is not None:
            real_open, real_stream = lean_source.open_range, lean_target.upload_part_stream

            def open_range(key: str, start: int, *rest: Any) -> Any:
                with lock:
                    self.read.append(start)
                return real_open(key, start, *rest)

            def stream(key: str, upload_id: str, number: int, body: Any) -> str:
                etag = real_stream(key, upload_id, number, body)
                with lock:
                    self.sent.append(number)
                    if stop_after is not None and len(self.sent) >= stop_after:
                        self.cancel.set()
                return etag

            monkeypatch.setattr(lean_source, "open_range", open_range)
            monkeypatch.setattr(lean_target, "upload_part_stream", stream)


def interrupted_copy(
    ends: tuple[Endpoint, Endpoint], key: str, monkeypatch: pytest.MonkeyPatch, stop_after: int, **tuning: Any
) -> list[Any]:
    """A copy stopped after `stop_after` data parts; returns the uploads left for the key."""
    source, target = ends
    engine = make_engine(ends, part_size_mib=5, part_concurrency=1, **tuning)
    recorder = Recorder(engine, monkeypatch, stop_after=stop_after)
    try:
        with pytest.raises(CancelledError):
            engine.copy(head(source, key), recorder.cancel)  # type: ignore[arg-type]
    finally:
        engine.close()
    assert engine.budget.in_use == 0
    assert head(target, key) is None  # never completed once told to stop
    return [u for u in uploads_left(target) if u["Key"] == key]


def resumed_copy(
    ends: tuple[Endpoint, Endpoint], key: str, monkeypatch: pytest.MonkeyPatch, **tuning: Any
) -> tuple[Any, Recorder]:
    """The next copy of the key after an interruption: its result, and what it read and sent."""
    engine = make_engine(ends, part_size_mib=5, **tuning)
    recorder = Recorder(engine, monkeypatch)
    try:
        result = engine.copy(head(ends[0], key))  # type: ignore[arg-type]
    finally:
        engine.close()
    return result, recorder


def parts_of(target: Endpoint, key: str, upload_id: str) -> dict[int, int]:
    listed = target.client.list_parts(Bucket=target.bucket, Key=key, UploadId=upload_id)
    return {p["PartNumber"]: p["Size"] for p in listed.get("Parts", [])}


def test_the_store_completes_an_upload_with_a_subset_of_its_parts(ends: tuple[Endpoint, Endpoint]) -> None:
    """What the marker relies on: a part left out of CompleteMultipartUpload is not part of the
    object, and goes with the upload."""
    _, target = ends
    client, bucket = target.client, target.bucket
    upload = client.create_multipart_upload(Bucket=bucket, Key="subset")["UploadId"]
    first, last = os.urandom(PART), os.urandom(100)
    parts = [
        {
            "PartNumber": n,
            "ETag": client.upload_part(Bucket=bucket, Key="subset", UploadId=upload, PartNumber=n, Body=b)[
                "ETag"
            ],
        }
        for n, b in ((1, first), (2, last))
    ]
    marker = client.upload_part(
        Bucket=bucket, Key="subset", UploadId=upload, PartNumber=MARKER_PART, Body=b"marker"
    )
    assert marker["ETag"].strip('"') == hashlib.md5(b"marker").hexdigest()
    client.complete_multipart_upload(
        Bucket=bucket, Key="subset", UploadId=upload, MultipartUpload={"Parts": parts}
    )
    assert client.get_object(Bucket=bucket, Key="subset")["Body"].read() == first + last
    assert uploads_left(target) == []


def test_an_interrupted_copy_resumes_with_only_the_missing_parts(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = ends
    data = os.urandom(5 * PART + 123)  # six parts, the last one short
    put_source(source, "big.bin", data)
    left = interrupted_copy(ends, "big.bin", monkeypatch, stop_after=3)
    assert len(left) == 1  # kept for the next attempt, and only that one
    assert parts_of(target, "big.bin", left[0]["UploadId"]).keys() == {1, 2, 3, MARKER_PART}

    result, recorder = resumed_copy(ends, "big.bin", monkeypatch)
    assert sorted(recorder.sent) == [4, 5, 6] and recorder.markers == 0
    assert sorted(recorder.read) == [3 * PART, 4 * PART, 5 * PART]
    assert (result.parts, result.resumed_bytes) == (6, 3 * PART)
    got = target.client.get_object(Bucket=target.bucket, Key="big.bin")
    assert got["Body"].read() == data
    assert got["Metadata"][META_SOURCE_ETAG] == result.source_etag
    assert got["Metadata"][META_MD5] == hashlib.md5(data).hexdigest()  # the source's ETag, an MD5
    assert uploads_left(target) == []


def test_an_upload_of_another_source_version_is_aborted_not_resumed(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = ends
    put_source(source, "moved.bin", os.urandom(4 * PART))
    old = interrupted_copy(ends, "moved.bin", monkeypatch, stop_after=2)
    assert len(old) == 1
    rewritten = os.urandom(4 * PART)  # same size, same layout, other bytes
    put_source(source, "moved.bin", rewritten)

    result, recorder = resumed_copy(ends, "moved.bin", monkeypatch)
    assert sorted(recorder.sent) == [1, 2, 3, 4] and result.resumed_bytes == 0
    assert target.client.get_object(Bucket=target.bucket, Key="moved.bin")["Body"].read() == rewritten
    assert uploads_left(target) == []  # the other version's upload was aborted


def test_an_upload_whose_marker_does_not_match_starts_over(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = ends
    data = os.urandom(4 * PART)
    put_source(source, "tampered.bin", data)
    (upload,) = interrupted_copy(ends, "tampered.bin", monkeypatch, stop_after=2)
    target.client.upload_part(
        Bucket=target.bucket,
        Key="tampered.bin",
        UploadId=upload["UploadId"],
        PartNumber=MARKER_PART,
        Body=b"other",
    )
    result, recorder = resumed_copy(ends, "tampered.bin", monkeypatch)
    assert sorted(recorder.sent) == [1, 2, 3, 4] and result.resumed_bytes == 0
    assert target.client.get_object(Bucket=target.bucket, Key="tampered.bin")["Body"].read() == data
    assert uploads_left(target) == []


def test_a_chained_copy_resumes_and_passes_the_etag_chain(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = ends
    data = os.urandom(4 * 6 * MIB + 99)
    put_source(source, "chain.bin", data, multipart_part=6 * MIB)  # the layout to replay: 6 MiB x 5
    (upload,) = interrupted_copy(ends, "chain.bin", monkeypatch, stop_after=2)
    assert parts_of(target, "chain.bin", upload["UploadId"]).keys() == {1, 2, MARKER_PART}

    result, recorder = resumed_copy(ends, "chain.bin", monkeypatch)
    assert sorted(recorder.sent) == [3, 4, 5]
    assert result.resumed_bytes == 2 * 6 * MIB
    got = target.client.get_object(Bucket=target.bucket, Key="chain.bin")
    assert got["Body"].read() == data
    assert got["ETag"].strip('"') == result.source_etag  # kept and new parts combine into it
    assert uploads_left(target) == []


def test_a_chained_resume_over_tampered_parts_starts_over(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The marker matches, but a part found in the upload does not hold the source's bytes: the
    ETag chain catches it before completion and the copy is redone afresh with the same layout."""
    source, target = ends
    data = os.urandom(3 * 6 * MIB)
    put_source(source, "swapped.bin", data, multipart_part=6 * MIB)
    (upload,) = interrupted_copy(ends, "swapped.bin", monkeypatch, stop_after=1)
    target.client.upload_part(
        Bucket=target.bucket,
        Key="swapped.bin",
        UploadId=upload["UploadId"],
        PartNumber=2,
        Body=os.urandom(6 * MIB),
    )
    result, recorder = resumed_copy(ends, "swapped.bin", monkeypatch)
    assert sorted(recorder.sent) == [1, 2, 3, 3]  # part 3 on the resumed upload, then all afresh
    assert result.resumed_bytes == 0
    got = target.client.get_object(Bucket=target.bucket, Key="swapped.bin")
    assert got["Body"].read() == data and got["ETag"].strip('"') == result.source_etag
    assert uploads_left(target) == []


def test_a_part_uploaded_twice_is_sent_again_not_kept(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """SeaweedFS lists each upload of a part number until completion: which one counts is unclear."""
    source, target = ends
    data = os.urandom(3 * 6 * MIB)
    put_source(source, "twice.bin", data, multipart_part=6 * MIB)
    (upload,) = interrupted_copy(ends, "twice.bin", monkeypatch, stop_after=2)
    target.client.upload_part(
        Bucket=target.bucket,
        Key="twice.bin",
        UploadId=upload["UploadId"],
        PartNumber=1,
        Body=os.urandom(6 * MIB),
    )
    result, recorder = resumed_copy(ends, "twice.bin", monkeypatch)
    assert sorted(recorder.sent) == [1, 3] and result.resumed_bytes == 6 * MIB
    got = target.client.get_object(Bucket=target.bucket, Key="twice.bin")
    assert got["Body"].read() == data and got["ETag"].strip('"') == result.source_etag


def test_with_the_whole_object_md5_kept_parts_are_read_again_but_not_sent(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, target = ends
    data = os.urandom(3 * 6 * MIB)
    put_source(source, "hashed.bin", data, multipart_part=6 * MIB)
    interrupted_copy(ends, "hashed.bin", monkeypatch, stop_after=1, whole_object_md5=True)
    result, recorder = resumed_copy(ends, "hashed.bin", monkeypatch, whole_object_md5=True)
    assert sorted(recorder.sent) == [2, 3] and len(recorder.read) == 3
    got = target.client.get_object(Bucket=target.bucket, Key="hashed.bin")
    assert got["Body"].read() == data
    assert got["Metadata"][META_MD5] == result.md5 == hashlib.md5(data).hexdigest()


def test_without_resume_an_interrupted_copy_aborts_its_upload(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    source, _ = ends
    put_source(source, "plain.bin", os.urandom(3 * PART))
    assert interrupted_copy(ends, "plain.bin", monkeypatch, stop_after=1, resume_uploads=False) == []


def test_a_failed_copy_leaves_no_upload_behind(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A failure retrying cannot fix (here a refusal) aborts the upload, resumable or not."""
    source, target = ends
    put_source(source, "broken.bin", os.urandom(3 * PART))
    engine = make_engine(ends, part_size_mib=5, part_concurrency=1)
    real = engine._upload_part

    def refuse_part_2(obj: Any, upload_id: str, number: int, *args: Any) -> str:
        if number == 2:
            raise ClientError({"Error": {"Code": "AccessDenied", "Message": "injected"}}, "UploadPart")
        return real(obj, upload_id, number, *args)

    monkeypatch.setattr(engine, "_upload_part", refuse_part_2)
    try:
        with pytest.raises(ClientError, match="injected"):
            engine.copy(head(source, "broken.bin"))  # type: ignore[arg-type]
    finally:
        engine.close()
    assert uploads_left(target) == []


def test_an_interruption_stops_the_copy_at_once(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lost lease must stop the copy before another worker can see the message: no part is
    read or sent once the copy is told to stop, beyond the reads already under way."""
    source, target = ends
    put_source(source, "slow.bin", os.urandom(10 * PART))
    engine = make_engine(ends, part_size_mib=5, part_concurrency=2)
    recorder = Recorder(engine, monkeypatch, stop_after=2)
    slow_read = engine._read_range
    stopped_at: list[float] = []

    def read(obj: Any, start: int, length: int, *rest: Any) -> Any:
        data = slow_read(obj, start, length, *rest)
        time.sleep(0.3)  # a slow source: the interruption finds reads under way
        return data

    monkeypatch.setattr(engine, "_read_range", read)
    real_set = recorder.cancel.set

    def stop() -> None:
        stopped_at.append(time.monotonic())
        real_set()

    monkeypatch.setattr(recorder.cancel, "set", stop)
    try:
        with pytest.raises(CancelledError):
            engine.copy(head(source, "slow.bin"), recorder.cancel)  # type: ignore[arg-type]
    finally:
        engine.close()
    assert stopped_at and time.monotonic() - stopped_at[0] < 2
    assert len(recorder.sent) <= 3 and len(recorder.read) <= 5  # 2 + what was in flight
    (upload,) = [u for u in uploads_left(target) if u["Key"] == "slow.bin"]
    assert set(parts_of(target, "slow.bin", upload["UploadId"])) - {MARKER_PART} == set(recorder.sent)
    assert head(target, "slow.bin") is None


def test_an_upload_failing_on_passing_trouble_is_kept_and_resumed(
    lyve: SeaweedS3, ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Part 3 is throttled beyond the request retries: the parts already sent stay on the target
    and the next copy sends only what is missing."""
    source, target = ends
    data = os.urandom(3 * PART + 77)  # four parts
    put_source(source, "throttled.bin", data)
    part_3 = re.compile(r"[?&]partNumber=3(&|$)")
    rule = lambda method, path: (503, "SlowDown") if method == "PUT" and part_3.search(path) else None  # noqa: E731
    with RefusingProxy(lyve.endpoint_url, rule) as proxy:
        engine = engine_through(
            lyve.endpoint_url,
            (lyve.access_key, lyve.secret_key),
            lyve,
            (source.bucket, target.bucket),
            proxy.endpoint_url,
            part_size_mib=5,
            part_concurrency=1,
        )
        try:
            with pytest.raises(ClientError) as info:
                engine.copy(head(source, "throttled.bin"))  # type: ignore[arg-type]
        finally:
            engine.close()
    assert info.value.response["Error"]["Code"] == "SlowDown"
    assert len([p for m, p, _ in proxy.seen if m == "PUT" and part_3.search(p)]) == 2  # MAX_ATTEMPTS
    (upload,) = uploads_left(target)
    assert parts_of(target, "throttled.bin", upload["UploadId"]).keys() == {1, 2, MARKER_PART}

    result, recorder = resumed_copy(ends, "throttled.bin", monkeypatch)
    assert sorted(recorder.sent) == [3, 4] and result.resumed_bytes == 2 * PART
    assert target.client.get_object(Bucket=target.bucket, Key="throttled.bin")["Body"].read() == data
    assert uploads_left(target) == []


def test_an_interrupted_upload_nothing_could_resume_is_aborted(
    ends: tuple[Endpoint, Endpoint], monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a store whose part ETags are not MD5s the marker cannot be recognised later: keeping
    the upload would only leave billed parts behind."""
    source, _ = ends
    put_source(source, "opaque.bin", os.urandom(3 * PART))
    engine = make_engine(ends, part_size_mib=5, part_concurrency=1)
    recorder = Recorder(engine, monkeypatch, stop_after=1)
    real = engine._upload_part

    def opaque_marker_etag(obj: Any, upload_id: str, number: int, *args: Any) -> str:
        etag = real(obj, upload_id, number, *args)
        return '"0123456789abcdef0123456789abcdef-1"' if number == MARKER_PART else etag

    monkeypatch.setattr(engine, "_upload_part", opaque_marker_etag)
    try:
        with pytest.raises(CancelledError):
            engine.copy(head(source, "opaque.bin"), recorder.cancel)  # type: ignore[arg-type]
    finally:
        engine.close()
    assert recorder.markers == 1 and recorder.sent
    assert [u for u in uploads_left(ends[1]) if u["Key"] == "opaque.bin"] == []
