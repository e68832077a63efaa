from __future__ import annotations

import math
import threading
import time
from datetime import UTC, datetime
from typing import Any

import botocore.session
import pytest
from botocore.parsers import RestXMLParser

from replicator.objects import META_MD5, META_SOURCE_ETAG, ObjectInfo, metadata_matches, target_matches
from replicator.transfer import MAX_DATA_PARTS, MAX_OBJECT_SIZE, MIN_PART_SIZE, ByteBudget, part_size_for

MIB = 1024 * 1024
MD5_A = "0cc175b9c0f1b6a831c399e269772661"
MD5_B = "92eb5ffee6ae2fec3ad71c777531578f"


@pytest.mark.parametrize(
    "size",
    [5 * MIB, 8 * MIB, 1024**3, 100 * 1024**3, 160 * 1024**3, 1024**4, 3 * 1024**4 + 7, MAX_OBJECT_SIZE],
)
@pytest.mark.parametrize("configured", [5 * MIB, 16 * MIB, 64 * MIB])
def test_part_size_stays_within_the_limits(size: int, configured: int) -> None:
    part = part_size_for(size, configured)
    assert part >= max(configured, MIN_PART_SIZE)
    assert part % MIB == 0
    assert math.ceil(size / part) <= MAX_DATA_PARTS  # part 10,000 is the resume marker's
    assert part <= 4 * 1024 * MIB


def test_part_size_grows_only_when_needed() -> None:
    assert part_size_for(1024**3, 16 * MIB) == 16 * MIB
    assert part_size_for(MAX_OBJECT_SIZE, 16 * MIB) == math.ceil(MAX_OBJECT_SIZE / MAX_DATA_PARTS / MIB) * MIB


def test_a_layout_never_takes_part_10000() -> None:
    size = 10_000 * 16 * MIB  # exactly 10,000 parts of the configured size
    part = part_size_for(size, 16 * MIB)
    assert part > 16 * MIB and math.ceil(size / part) <= 9_999


def test_objects_above_5_tib_are_refused() -> None:
    with pytest.raises(ValueError, match="5 TiB"):
        part_size_for(MAX_OBJECT_SIZE + 1, 16 * MIB)


def _obj(size: int = 1, etag: str = MD5_A, **meta: str) -> ObjectInfo:
    return ObjectInfo(key="k", size=size, etag=etag, metadata=meta)


def test_target_matches_by_recorded_source_etag() -> None:
    source = _obj(etag="aaaa-3")
    assert target_matches(source, _obj(etag="zzzz-3", **{META_SOURCE_ETAG: "aaaa-3"}))
    # same size, source rewritten: the recorded ETag no longer matches
    assert not target_matches(_obj(etag="bbbb-3"), _obj(etag="zzzz-3", **{META_SOURCE_ETAG: "aaaa-3"}))


def test_target_matches_by_md5_when_nothing_was_recorded() -> None:
    assert target_matches(_obj(etag=MD5_A), _obj(etag=MD5_A))
    assert not target_matches(_obj(etag=MD5_A), _obj(etag=MD5_B))
    assert target_matches(_obj(etag="x-2", **{META_MD5: MD5_A}), _obj(etag=MD5_A))
    assert not target_matches(_obj(etag="x-2"), _obj(etag="y-2"))  # no way to tell: copy


def test_size_difference_always_means_different() -> None:
    assert not target_matches(_obj(size=1), _obj(size=2, **{META_SOURCE_ETAG: MD5_A}))


def test_kms_etag_is_not_taken_for_an_md5() -> None:
    head = {"ContentLength": 3, "ETag": f'"{MD5_A}"', "ServerSideEncryption": "aws:kms"}
    info = ObjectInfo.from_head("k", head)
    assert info.known_md5 is None
    plain = ObjectInfo.from_head("k", {"ContentLength": 3, "ETag": f'"{MD5_A}"'})
    assert plain.known_md5 == MD5_A


def test_a_head_of_part_one_gives_the_object_size_and_the_part_layout() -> None:
    head = {
        "ContentLength": 5 * 1024 * 1024,
        "ContentRange": "bytes 0-5242879/15728647",
        "PartsCount": 3,
        "ETag": '"fa64a06e32b26ac12259a1d54d7281e2-3"',
    }
    info = ObjectInfo.from_head("k", head)
    assert (info.size, info.first_part_size, info.parts_count) == (15728647, 5242880, 3)
    plain = ObjectInfo.from_head("k", {"ContentLength": 3, "ETag": f'"{MD5_A}"'})
    assert (plain.size, plain.first_part_size, plain.parts_count) == (3, None, None)


@pytest.mark.parametrize("content_range", ["bytes 5-9/20", "bytes 0-9/*", "bytes */20", "0-9/20"])
def test_an_unexpected_content_range_is_not_taken_for_a_size(content_range: str) -> None:
    with pytest.raises(ValueError, match="Content-Range"):
        ObjectInfo.from_head("k", {"ContentLength": 10, "ContentRange": content_range, "ETag": '"x"'})


def test_byte_budget_blocks_until_released() -> None:
    budget = ByteBudget(10)
    budget.acquire(8)
    acquired = threading.Event()

    def take() -> None:
        budget.acquire(5)
        acquired.set()

    thread = threading.Thread(target=take)
    thread.start()
    time.sleep(0.2)
    assert not acquired.is_set()
    budget.release(8)
    assert acquired.wait(2)
    thread.join()
    assert budget.in_use == 5


def test_byte_budget_lets_an_oversized_part_run_alone() -> None:
    budget = ByteBudget(10)
    budget.acquire(50)
    assert budget.in_use == 10
    budget.release(50)
    assert budget.in_use == 0


# -- HeadObject and listing shapes, as botocore parses them from the wire ----------------------


def parsed_head(headers: dict[str, str]) -> dict[str, Any]:
    """A HeadObject response as boto3 returns it for these HTTP headers."""
    model = botocore.session.get_session().get_service_model("s3").operation_model("HeadObject")
    wire = {"Content-Length": "3", "ETag": f'"{MD5_A}"', **headers}
    parsed: dict[str, Any] = RestXMLParser().parse(
        {"headers": wire, "status_code": 200, "body": b""}, model.output_shape
    )
    return parsed


@pytest.mark.parametrize(
    ("headers", "archived", "tier"),
    [
        ({}, False, None),
        ({"x-amz-storage-class": "STANDARD_IA"}, False, None),
        ({"x-amz-storage-class": "GLACIER_IR"}, False, None),  # instant retrieval: readable
        ({"x-amz-storage-class": "GLACIER"}, True, "GLACIER"),
        ({"x-amz-storage-class": "DEEP_ARCHIVE"}, True, "DEEP_ARCHIVE"),
        ({"x-amz-storage-class": "GLACIER", "x-amz-restore": 'ongoing-request="true"'}, True, "GLACIER"),
        (
            {
                "x-amz-storage-class": "DEEP_ARCHIVE",
                "x-amz-restore": 'ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT"',
            },
            False,
            "DEEP_ARCHIVE",
        ),
        ({"x-amz-storage-class": "INTELLIGENT_TIERING"}, False, None),
        (
            {"x-amz-storage-class": "INTELLIGENT_TIERING", "x-amz-archive-status": "ARCHIVE_ACCESS"},
            True,
            "ARCHIVE_ACCESS",
        ),
        (
            {"x-amz-storage-class": "INTELLIGENT_TIERING", "x-amz-archive-status": "DEEP_ARCHIVE_ACCESS"},
            True,
            "DEEP_ARCHIVE_ACCESS",
        ),
    ],
)
def test_archive_state_is_read_from_a_head(headers: dict[str, str], archived: bool, tier: str | None) -> None:
    info = ObjectInfo.from_head("k", parsed_head(headers))
    assert (info.archived, info.archive_tier) == (archived, tier)
    assert info.storage_class == headers.get("x-amz-storage-class")


def test_archive_state_is_read_from_a_listing() -> None:
    entry = {"Key": "k", "Size": 3, "ETag": f'"{MD5_A}"', "StorageClass": "GLACIER"}
    assert ObjectInfo.from_listing(entry).archived  # restore state unknown: a HEAD tells
    restored = entry | {"RestoreStatus": {"IsRestoreInProgress": False, "RestoreExpiryDate": "2030-01-01"}}
    assert not ObjectInfo.from_listing(restored).archived
    assert ObjectInfo.from_listing(entry | {"RestoreStatus": {"IsRestoreInProgress": True}}).archived
    standard = ObjectInfo.from_listing(entry | {"StorageClass": "STANDARD"})
    assert not standard.archived and standard.storage_class is None  # as HEAD says it: absent


def test_the_kms_key_of_an_encrypted_object_is_recorded() -> None:
    key_id = "arn:aws:kms:us-east-1:123456789012:key/abc"
    info = ObjectInfo.from_head(
        "k",
        parsed_head(
            {"x-amz-server-side-encryption": "aws:kms", "x-amz-server-side-encryption-aws-kms-key-id": key_id}
        ),
    )
    assert (info.kms_key_id, info.encrypted_etag, info.known_md5) == (key_id, True, None)


# -- the target's multipart ETag is never taken for an MD5 -------------------------------------

NOT_AN_MD5 = "5f0e2b7c1d3a4e6f8091a2b3c4d5e6f7"  # looks like one; Lyve's multipart ETag, say


def test_an_object_we_wrote_is_judged_by_what_we_recorded() -> None:
    """A multipart copy on a store whose multipart ETags look like plain MD5s."""
    target = ObjectInfo.from_head(
        "k", {"ContentLength": 3, "ETag": f'"{NOT_AN_MD5}"', "Metadata": {META_SOURCE_ETAG: "aaaa-3"}}
    )
    assert not target.etag_is_md5 and target.known_md5 is None
    assert target_matches(_obj(size=3, etag="aaaa-3"), target)
    assert not target_matches(_obj(size=3, etag="bbbb-3"), target)
    # A single-part source: its MD5 ETag is compared with the recorded source ETag, not ours.
    single = ObjectInfo.from_head(
        "k", {"ContentLength": 3, "ETag": f'"{NOT_AN_MD5}"', "Metadata": {META_SOURCE_ETAG: MD5_A}}
    )
    assert target_matches(_obj(size=3, etag=MD5_A), single)
    assert single.known_md5 is None
    recorded = ObjectInfo.from_head(
        "k",
        {
            "ContentLength": 3,
            "ETag": f'"{NOT_AN_MD5}"',
            "Metadata": {META_SOURCE_ETAG: "x-2", META_MD5: MD5_B},
        },
    )
    assert recorded.known_md5 == MD5_B


# -- metadata_matches ----------------------------------------------------------------------


def _head(**fields: Any) -> ObjectInfo:
    return ObjectInfo.from_head("k", {"ContentLength": 3, "ETag": f'"{MD5_A}"', **fields})


def test_metadata_matches_compares_content_headers_and_user_metadata() -> None:
    source = _head(ContentType="text/csv", CacheControl="max-age=60", Metadata={"owner": "qa"})
    ours = {META_SOURCE_ETAG: MD5_A, META_MD5: MD5_A}
    assert metadata_matches(
        source, _head(ContentType="text/csv", CacheControl="max-age=60", Metadata={"owner": "qa", **ours})
    )
    assert not metadata_matches(
        source, _head(ContentType="text/plain", CacheControl="max-age=60", Metadata={"owner": "qa"})
    )
    assert not metadata_matches(
        source, _head(ContentType="text/csv", Metadata={"owner": "qa"})
    )  # header removed
    assert not metadata_matches(
        source, _head(ContentType="text/csv", CacheControl="max-age=60", Metadata={"owner": "ops"})
    )
    assert not metadata_matches(
        source,
        _head(ContentType="text/csv", CacheControl="max-age=60", Metadata={"owner": "qa", "extra": "1"}),
    )


def test_metadata_matches_normalises_what_stores_normalise() -> None:
    when = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    boto3_side = _head(Expires=when, Metadata={"Owner": "qa"})  # boto3 parses Expires
    lean_side = _head(
        Expires="Wed, 02 Jan 2030 03:04:05 GMT", Metadata={"owner": "qa"}
    )  # the lean path: text
    assert metadata_matches(boto3_side, lean_side)
    assert not metadata_matches(
        boto3_side, _head(Expires="Wed, 02 Jan 2030 03:04:06 GMT", Metadata={"owner": "qa"})
    )
    unparsable = _head(Expires="never", Metadata={"owner": "qa"})
    assert metadata_matches(unparsable, _head(Expires="never", Metadata={"owner": "qa"}))
    assert not metadata_matches(unparsable, lean_side)


def test_metadata_matches_refuses_a_listing() -> None:
    with pytest.raises(ValueError, match="listing"):
        metadata_matches(ObjectInfo.from_listing({"Key": "k", "Size": 3}), _head())
