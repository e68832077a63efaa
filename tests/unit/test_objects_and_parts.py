from __future__ import annotations

import math
import threading
import time

import pytest

from replicator.objects import META_MD5, META_SOURCE_ETAG, ObjectInfo, target_matches
from replicator.transfer import MAX_OBJECT_SIZE, MAX_PARTS, MIN_PART_SIZE, ByteBudget, part_size_for

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
    assert math.ceil(size / part) <= MAX_PARTS
    assert part <= 4 * 1024 * MIB


def test_part_size_grows_only_when_needed() -> None:
    assert part_size_for(1024**3, 16 * MIB) == 16 * MIB
    assert part_size_for(MAX_OBJECT_SIZE, 16 * MIB) == math.ceil(MAX_OBJECT_SIZE / MAX_PARTS / MIB) * MIB


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
