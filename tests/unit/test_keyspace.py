"""The key space: listing orders, where a range's listing starts, key ranges and split points.

Tree order (SeaweedFS) is checked against its definition, comparing keys by their `/`-separated
segments; byte order against UTF-8. A range listed from `start_after` must never miss a key of
the range, including from a store with SeaweedFS's StartAfter quirk (a StartAfter that names a
directory exactly skips that directory's keys), modelled here as measured against the server.
"""

from __future__ import annotations

from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate.keyspace import (
    KeyRange,
    Order,
    Projection,
    key_before,
    known_order,
    ordered,
    ranges_between,
    start_after,
    unordered,
)
from replicator.clients import Endpoint

# Characters that put tree and byte order apart ("/" against "-", ".", " ", "+", "%", "\t"),
# digits and letters (the projection's classes) and characters beyond one UTF-8 byte.
ALPHABET = ["a", "b", "z", "0", "1", "9", "/", "-", ".", " ", "+", "%", "\t", "é", "ü", "\u00ff", "😀", "中"]
keys = st.text(st.sampled_from(ALPHABET), min_size=1, max_size=14)
key_sets = st.lists(keys, min_size=1, max_size=40, unique=True)
orders = st.sampled_from(list(Order))
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def listed_after(keys: list[str], after: str | None, order: Order, prefix: str = "") -> list[str]:
    """What a store answers to ListObjectsV2(Prefix, StartAfter), in its order. In tree order
    a StartAfter naming a directory exactly skips that directory's keys, as SeaweedFS does
    (measured: it lists the prefix's directory from the StartAfter's entry there, so only a
    StartAfter inside that directory has the effect)."""
    chosen = [k for k in keys if k.startswith(prefix)]
    if after is not None:
        chosen = [k for k in chosen if ordered(k, order) > ordered(after, order)]
        if order is Order.TREE and after.startswith(prefix[: prefix.rfind("/") + 1]):
            chosen = [k for k in chosen if not k.startswith(after + "/")]
    return sorted(chosen, key=lambda k: ordered(k, order))


# -- the two orders ----------------------------------------------------------------------------


@FAST
@given(keys, keys)
def test_tree_order_compares_path_segments(a: str, b: str) -> None:
    assert (ordered(a, Order.TREE) < ordered(b, Order.TREE)) == (a.split("/") < b.split("/"))
    assert (ordered(a, Order.TREE) == ordered(b, Order.TREE)) == (a == b)


@FAST
@given(keys, keys)
def test_byte_order_is_utf8_order(a: str, b: str) -> None:
    assert (ordered(a, Order.BYTE) < ordered(b, Order.BYTE)) == (a.encode() < b.encode())


@FAST
@given(keys, orders)
def test_unordered_gives_the_key_back(key: str, order: Order) -> None:
    assert unordered(ordered(key, order), order) == key


def test_tree_order_of_the_keys_seaweedfs_puts_apart() -> None:
    # As SeaweedFS lists them (measured): a directory's keys before its longer siblings' names.
    expected = ["a", "a/b", "a/b/c", "a-b", "a.b", "d/sub", "d/sub/x", "d/sub-a", "e/", "h/ i", "h/é"]
    shuffled = sorted(expected, key=lambda k: k.encode())
    assert shuffled != expected
    assert sorted(shuffled, key=lambda k: ordered(k, Order.TREE)) == expected


# -- where a range's listing starts ------------------------------------------------------------


@FAST
@given(keys)
def test_key_before_is_just_below(key: str) -> None:
    below = key_before(key)
    assert below < key
    # Nothing lies between the two but strings that start with `below` itself.
    for probe in (key[:-1], key[:-1] + "\uffff", key + "a"):
        assert not below < probe < key or probe.startswith(below)


def starts(key_set: list[str]) -> st.SearchStrategy[str]:
    """Starts to list a range from: a key, a directory of one (exactly as a StartAfter would
    name it, and with its "/"), a prefix of one, or any string."""
    directories = [k[:i] for k in key_set for i, c in enumerate(k) if c == "/" and i > 0]
    candidates = (
        key_set + directories + [d + "/" for d in directories] + [k[:-1] for k in key_set if len(k) > 1]
    )
    return st.sampled_from(candidates) | keys


@FAST
@given(st.data(), key_sets, orders)
def test_a_range_listed_from_start_after_misses_no_key_at_or_above_its_start(
    data: st.DataObject, key_set: list[str], order: Order
) -> None:
    start = data.draw(starts(key_set))
    # Under the user's prefix or a range's own (a directory, or part of a name).
    prefix = data.draw(st.sampled_from(["", *(k[:i] for k in key_set for i in range(1, len(k)))]))
    listing = listed_after(key_set, start_after(start, order), order, prefix)
    wanted = [k for k in key_set if k.startswith(prefix) and ordered(k, order) >= ordered(start, order)]
    assert set(wanted) <= set(listing)
    # What is listed below the start is only what the walk drops (it lists from just below).
    assert all(ordered(k, order) < ordered(start, order) for k in set(listing) - set(wanted))


def test_start_after_a_directory_named_exactly_still_lists_its_keys() -> None:
    key_set = ["d/sub", "d/sub/x", "d/sub/y/z", "d/sub-a", "d/suba"]
    naive = listed_after(key_set, "d/sub", Order.TREE)
    assert "d/sub/x" not in naive  # the store's quirk the walk must work around
    for start in ("d/sub/", "d/sub/x"):
        listing = listed_after(key_set, start_after(start, Order.TREE), Order.TREE)
        assert {"d/sub/x", "d/sub/y/z", "d/sub-a", "d/suba"} <= set(listing)


def test_start_after_none_lists_from_the_beginning() -> None:
    assert start_after(None, Order.BYTE) is None
    assert start_after(None, Order.TREE) is None
    assert start_after("/", Order.TREE) is None  # only separators: nothing below to start after


# -- key ranges --------------------------------------------------------------------------------


@FAST
@given(st.data(), key_sets, orders, st.sampled_from(["", "a", "a/", "é"]))
def test_every_key_of_a_range_has_its_listing_prefix(
    data: st.DataObject, key_set: list[str], order: Order, prefix: str
) -> None:
    key_set = [prefix + k for k in key_set]
    ends = sorted(key_set, key=lambda k: ordered(k, order))
    low = data.draw(st.sampled_from([None, *ends]))
    high = data.draw(st.sampled_from([None, *ends]))
    bounds = KeyRange(low, high)
    listing_prefix = bounds.listing_prefix(prefix, order)
    assert listing_prefix.startswith(prefix)
    inside = [
        k
        for k in key_set
        if (low is None or ordered(k, order) >= ordered(low, order))
        and (high is None or ordered(k, order) < ordered(high, order))
    ]
    assert all(k.startswith(listing_prefix) for k in inside)


def test_listing_prefix_in_tree_order_keeps_the_directory() -> None:
    # Tree order puts "d/sub/x" between "d/sub" and "d/sub-a": the prefix must keep it.
    assert KeyRange("d/sub", "d/sub-a").listing_prefix("", Order.TREE) == "d/sub"
    assert KeyRange("d/a/1", "d/a/9").listing_prefix("d/", Order.TREE) == "d/a/"
    assert KeyRange("x", "y").listing_prefix("d/", Order.BYTE) == "d/"  # never shorter than the user's


@FAST
@given(st.lists(keys, max_size=8, unique=True), st.lists(keys, max_size=30))
def test_ranges_between_splits_cover_every_key_once(splits: list[str], key_set: list[str]) -> None:
    ranges = ranges_between(sorted(splits))
    for key in key_set:
        holders = [
            r for r in ranges if (r.start is None or key >= r.start) and (r.end is None or key < r.end)
        ]
        assert len(holders) == 1


# -- projection ----------------------------------------------------------------------------------


def projected(key_set: list[str], order: Order, prefix: str = "") -> tuple[Projection, list[str]]:
    points = sorted(ordered(prefix + k, order) for k in key_set)
    return Projection(points, ordered(prefix, order)), points


@FAST
@given(key_sets, st.lists(keys, min_size=2, max_size=30), orders, st.sampled_from(["", "p/", "é"]))
def test_projection_is_monotone(samples: list[str], others: list[str], order: Order, prefix: str) -> None:
    projection, _ = projected(samples, order, prefix)
    # Keys seen or not, inside the prefix or not.
    points = sorted({ordered(prefix + k, order) for k in others} | {ordered(k, order) for k in others})
    values = [projection.value(p) for p in points]
    assert values == sorted(values)
    assert all(0 <= v < projection.scale for v in values)


@FAST
@given(key_sets, st.lists(keys, min_size=2, max_size=30), orders)
def test_key_at_of_value_keeps_the_order(samples: list[str], others: list[str], order: Order) -> None:
    projection, _ = projected(samples, order)
    points = sorted({ordered(k, order) for k in others + samples})
    back = [projection.key_at(projection.value(p)) for p in points]
    assert back == sorted(back)


@FAST
@given(key_sets, st.sampled_from(["", "p/", "é"]))
def test_key_at_of_value_gives_a_byte_ordered_sample_back(samples: list[str], prefix: str) -> None:
    projection, points = projected(samples, Order.BYTE, prefix)
    for point in points:
        assert projection.key_at(projection.value(point)) == point


@FAST
@given(key_sets, st.sampled_from(["", "p/"]))
def test_key_at_of_value_gives_a_tree_ordered_sample_back(samples: list[str], prefix: str) -> None:
    # In tree order "/" is the lowest character; a sample with a "/" past the prefix must come
    # back whole, or no point can ever be found between two keys of one directory.
    projection, points = projected(samples, Order.TREE, prefix)
    for point in points:
        assert projection.key_at(projection.value(point)) == point


@FAST
@given(st.data(), key_sets, orders, st.sampled_from(["", "p/"]))
def test_between_is_strictly_between_or_none(
    data: st.DataObject, samples: list[str], order: Order, prefix: str
) -> None:
    projection, points = projected(samples, order, prefix)
    low = data.draw(st.sampled_from(points) | keys.map(lambda k: ordered(prefix + k, order)))
    high = data.draw(st.none() | st.sampled_from(points))
    if high is not None and high <= low:
        low, high = high, low
        if low == high:
            return
    point = projection.between(low, high)
    if point is not None:
        assert low < point
        assert high is None or point < high
        assert point.startswith(ordered(prefix, order))


@pytest.mark.parametrize("order", list(Order))
@pytest.mark.parametrize("names", ["d{:05d}", "d/{:05d}", "logs/2024/{:05d}.json"])
def test_between_finds_a_point_among_sequential_names(order: Order, names: str) -> None:
    """A flat run of sequential names (the common case in a big bucket) is split near its
    middle, in either order: in tree order too when the names sit in a directory."""
    samples = [ordered(names.format(i), order) for i in range(0, 10_000, 7)]
    projection = Projection(samples)
    point = projection.between(samples[0], samples[-1])
    assert point is not None
    assert samples[len(samples) // 4] < point < samples[3 * len(samples) // 4]


def test_an_open_end_is_placed_among_names_like_those_seen_not_past_every_letter() -> None:
    """Names with a fixed part ("flat", "logs-") and counting digits: the open end's midpoint
    keeps the fixed letters (a letter seen alone is not taken for its whole alphabet), so a
    probe lands among the names, not past the last one."""
    samples = [f"flat{i:06d}" for i in range(0, 1000, 3)]
    point = Projection(samples).between(samples[-1], None)
    assert point is not None and point.startswith("flat")
    hexes = [f"{i:04x}" for i in range(0, 4096, 37)]  # two letters or more: their alphabet
    wide = Projection(hexes).between(hexes[0], None)
    assert wide is not None and wide > hexes[-1][:1]


def test_between_tells_nothing_apart_past_its_depth() -> None:
    stem = "x" * Projection.DEPTH
    projection = Projection([stem + "a", stem + "b"])
    assert projection.between(stem + "a", stem + "b") is None


# -- the order a store lists in ------------------------------------------------------------------


def endpoint(url: str) -> Endpoint:
    client: Any = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
    return Endpoint("target", "bucket", client, url)


@pytest.mark.parametrize(
    ("url", "server", "expected"),
    [
        ("https://s3.us-east-1.amazonaws.com", "", Order.BYTE),
        ("https://bucket.s3.eu-west-1.amazonaws.com", "", Order.BYTE),
        ("https://s3.us-east-1.lyvecloud.seagate.com", "", Order.BYTE),
        ("https://s3.us-west-1.acme.lyve.seagate.com", "", Order.BYTE),
        ("https://S3.US-EAST-1.LYVECLOUD.SEAGATE.COM", "", Order.BYTE),
        ("http://127.0.0.1:8333", "SeaweedFS 8000GB 4.48", Order.TREE),
        ("http://127.0.0.1:9000", "MinIO", Order.BYTE),
        ("http://127.0.0.1:9000", "AmazonS3", Order.BYTE),
        ("http://127.0.0.1:9000", "", None),
        ("http://127.0.0.1:9000", "Werkzeug/3.0 Python/3.11", None),
        ("https://lyvecloud.seagate.com.example.net", "", None),  # not the Lyve Cloud host
    ],
)
def test_known_order(url: str, server: str, expected: Order | None) -> None:
    assert known_order(endpoint(url), server) is expected
