"""Listings for migrate: the on-disk sort keeps what the filters need, a missing source bucket is
an error, and the look at the source before a delete finds every key it holds in few requests."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from unittest.mock import patch

import boto3
import pytest
from botocore.exceptions import ClientError
from hypothesis import given, settings
from hypothesis import strategies as st
from moto import mock_aws

from migrate import listing
from migrate.filters import KeyFilter
from migrate.listing import (
    KeySet,
    ListingOrderError,
    key_before,
    list_bucket,
    list_entries,
    listed_now,
    sort_key,
    sorted_on_disk,
)
from migrate.plan import Action, merge
from replicator.clients import Endpoint
from replicator.errors import SourceBucketMissingError

keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=30)


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="src")
        client.create_bucket(Bucket="dst")
        yield client


class Counting:
    """A client that counts (and may reorder) ListObjectsV2 calls."""

    def __init__(self, client: Any, reverse: bool = False) -> None:
        self.client, self.reverse, self.calls = client, reverse, 0

    def list_objects_v2(self, **args: Any) -> Any:
        self.calls += 1
        page = self.client.list_objects_v2(**args)
        if self.reverse:
            page["Contents"] = list(reversed(page.get("Contents", [])))
        return page


def endpoint(client: Any, bucket: str = "src", name: str = "source") -> Endpoint:
    return Endpoint(name, bucket, client, "moto")


def test_the_on_disk_sort_keeps_last_modified_storage_class_and_restore_state(s3: Any) -> None:
    s3.put_object(Bucket="src", Key="b", Body=b"x", StorageClass="GLACIER")
    s3.put_object(Bucket="src", Key="a", Body=b"xy")
    entries = list(list_entries(endpoint(s3)))
    entries.append({**entries[0], "Key": "c", "RestoreStatus": {"IsRestoreInProgress": False}})
    by_key = {obj.key: obj for obj in sorted_on_disk(entries)}
    assert list(by_key) == ["a", "b", "c"]
    listed = {obj.key: obj for obj in list_bucket(endpoint(s3))}
    for key in ("a", "b"):
        assert by_key[key].last_modified == listed[key].last_modified is not None
        assert by_key[key].storage_class == listed[key].storage_class
    assert by_key["b"].archived
    assert not by_key["c"].archived  # restored: readable, so copied
    assert not by_key["a"].archived


def test_time_filters_apply_to_sorted_listings_on_both_sides(s3: Any) -> None:
    for bucket in ("src", "dst"):
        s3.put_object(Bucket=bucket, Key=f"only-in-{bucket}", Body=b"x")
    future = datetime.now(UTC) + timedelta(days=1)

    def decisions(key_filter: KeyFilter) -> set[tuple[Action, str]]:
        source = sorted_on_disk(list_entries(endpoint(s3, "src")))
        target = sorted_on_disk(list_entries(endpoint(s3, "dst", "target")))
        return {(d.action, d.key) for d in merge(source, target, key_filter)}

    assert decisions(KeyFilter(newer_than=future)) == set()
    assert decisions(KeyFilter(older_than=future)) == {
        (Action.COPY, "only-in-src"),
        (Action.DELETE, "only-in-dst"),
    }


def test_listing_a_missing_source_bucket_raises_instead_of_listing_nothing(s3: Any) -> None:
    with pytest.raises(SourceBucketMissingError, match=r"'gone' .* does not exist"):
        list(list_bucket(endpoint(s3, "gone")))
    with pytest.raises(SourceBucketMissingError):
        listed_now(endpoint(s3, "gone"), ["a"])
    with pytest.raises(Exception, match="NoSuchBucket"):  # the target side: not a source error
        list(list_bucket(endpoint(s3, "gone", "target")))


@given(keys, keys)
def test_key_before_is_below_the_key_with_nothing_else_in_between(key: str, other: str) -> None:
    before = key_before(key)
    assert sort_key(before) < sort_key(key)
    if sort_key(before) < sort_key(other) < sort_key(key):
        assert other.startswith(before)


def test_a_dense_run_of_keys_is_settled_with_one_request_per_thousand(s3: Any) -> None:
    for i in range(0, 1500, 3):  # every third key is at the source again
        s3.put_object(Bucket="src", Key=f"dir/{i:05d}", Body=b"")
    s3.put_object(Bucket="src", Key="dir/00001/below", Body=b"")  # a deeper level: not the key
    client = Counting(s3)
    asked = [f"dir/{i:05d}" for i in range(1500)]
    assert listed_now(endpoint(client), asked) == {f"dir/{i:05d}" for i in range(0, 1500, 3)}
    assert client.calls == 1  # 500 keys listed under the keys' range: one page


def test_scattered_keys_cost_at_most_one_request_each(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(listing, "PAGE_KEYS", 100)
    for i in range(250):
        s3.put_object(Bucket="src", Key=f"k/{i:05d}", Body=b"")
    client = Counting(s3)
    assert listed_now(endpoint(client), ["k/00000", "k/00249x"]) == {"k/00000"}
    # The 249 keys in between are jumped over, not paged through (that would take 3 pages).
    assert client.calls == 2
    client.calls = 0
    assert listed_now(endpoint(client), ["a-first", "k/00005", "k/00120", "zz"]) == {"k/00005", "k/00120"}
    assert client.calls <= 4


@settings(max_examples=60, deadline=None)
@given(
    st.sets(st.sampled_from(["a", "a/", "a/b", "a-c", "a/c/d", "a0", "b", "ü", "ü/x", "sp ace", "a/c-d"])),
    st.integers(min_value=1, max_value=4),
)
def test_listed_now_finds_exactly_the_keys_present(present: set[str], page_keys: int) -> None:
    """Any page size: a page may end on a common prefix ("a/c/") that byte order puts after keys
    still to be looked for ("a/c-d")."""
    with mock_aws(), patch.object(listing, "PAGE_KEYS", page_keys):
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="src")
        for key in present:
            client.put_object(Bucket="src", Key=key, Body=b"")
        asked = sorted(
            ["a", "a/", "a/b", "a-c", "a/c/d", "a/c/e", "a/c-d", "a0", "b", "c", "ü", "ü/x", "sp ace"],
            key=sort_key,
        )
        assert listed_now(endpoint(client), asked) == present


def test_a_listing_out_of_byte_order_is_not_trusted_to_prove_absence(s3: Any) -> None:
    for key in ("d/a", "d/b"):
        s3.put_object(Bucket="src", Key=key, Body=b"")
    with pytest.raises(ListingOrderError):
        listed_now(endpoint(Counting(s3, reverse=True)), ["d/a", "d/c"])


def test_key_sets_keep_any_key_and_answer_membership_whatever_the_order_written() -> None:
    written = ["ü/x", "a\nb", "z\\n", "a", "tab\there"]  # as ranges decide them: in no order
    keys = KeySet()
    try:
        for size, key in enumerate(written):
            keys.add(key, size)
        keys.add("a", 99)  # a key decided twice counts once
        assert keys.count == len(written)
        in_order = sorted(written, key=sort_key)
        assert list(keys) == [(key, written.index(key)) for key in in_order]
        asked = [*written, "a0", "b", "zz"]
        assert [key for key in asked if key in keys] == written
    finally:
        keys.remove()


class RestoreAware:
    """Answers like S3 asked for RestoreStatus, or refuses that header when told to."""

    def __init__(self, refuse: bool) -> None:
        self.refuse = refuse
        self.asked: list[dict[str, Any]] = []

    def list_objects_v2(self, **args: Any) -> Any:
        self.asked.append(dict(args))
        if "OptionalObjectAttributes" in args and self.refuse:
            error = {"Error": {"Code": "AccessDenied", "Message": "denied"}}
            raise ClientError(error, "ListObjectsV2")  # type: ignore[arg-type]
        restored = (
            {"RestoreStatus": {"IsRestoreInProgress": False}} if "OptionalObjectAttributes" in args else {}
        )
        return {
            "Contents": [
                {"Key": "cold", "Size": 1, "ETag": '"e"', "StorageClass": "GLACIER"},
                {"Key": "warm", "Size": 1, "ETag": '"e"', "StorageClass": "GLACIER", **restored},
            ],
            "IsTruncated": False,
        }


def test_on_aws_the_listing_says_which_archived_objects_are_restored() -> None:
    aws = RestoreAware(refuse=False)
    listed = {
        o.key: o for o in list_bucket(Endpoint("source", "b", aws, "https://s3.us-east-1.amazonaws.com"))
    }  # type: ignore[arg-type]
    assert aws.asked[0]["OptionalObjectAttributes"] == ["RestoreStatus"]
    assert listed["cold"].archived
    assert not listed["warm"].archived  # restored: copied like any object
    other = RestoreAware(refuse=False)
    list(list_bucket(Endpoint("source", "b", other, "https://s3.us-east-1.lyvecloud.seagate.com")))  # type: ignore[arg-type]
    assert "OptionalObjectAttributes" not in other.asked[0]


def test_a_policy_refusing_the_restore_status_does_not_stop_the_listing() -> None:
    strict = RestoreAware(refuse=True)
    listed = [o.key for o in list_bucket(Endpoint("source", "b", strict, "https://s3.amazonaws.com"))]  # type: ignore[arg-type]
    assert listed == ["cold", "warm"]
    assert ["OptionalObjectAttributes" in args for args in strict.asked] == [True, False]
