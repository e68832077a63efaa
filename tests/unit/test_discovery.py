"""Shard ranges found by a few probes: every key in exactly one range, and ranges about even."""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Iterator
from typing import Any

import pytest

from migrate.discovery import probe_budget, shard_ranges
from migrate.keyspace import KeyRange, Order, ordered


class FakeStore:
    """A store answering ListObjectsV2 from memory, in byte order (S3) or by path segments
    (SeaweedFS), with Delimiter listings of one folder."""

    side = "source"

    def __init__(self, keys: list[str], order: Order) -> None:
        self.order = order
        self.keys = sorted(set(keys), key=lambda k: ordered(k, order))
        self.sorted = [ordered(k, order) for k in self.keys]
        self.requests = 0

    def pages(
        self, prefix: str, start_after: str | None, max_keys: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        index = (
            0 if start_after is None else bisect.bisect_right(self.sorted, ordered(start_after, self.order))
        )
        while True:
            self.requests += 1
            page: list[dict[str, Any]] = []
            while index < len(self.keys) and len(page) < max_keys:
                if self.keys[index].startswith(prefix):
                    page.append({"Key": self.keys[index]})
                index += 1
            yield page
            if index >= len(self.keys):
                return
            max_keys = 1000

    def folders(self, prefix: str) -> tuple[list[str], list[str], bool]:
        self.requests += 1
        entries: list[tuple[str, str]] = []
        seen: set[str] = set()
        for key in self.keys:
            if not key.startswith(prefix):
                continue
            rest = key[len(prefix) :]
            if "/" in rest:
                folder = prefix + rest.split("/", 1)[0] + "/"
                if folder not in seen:
                    seen.add(folder)
                    entries.append(("folder", folder))
            else:
                entries.append(("file", key))
        more = len(entries) > 1000
        entries = entries[:1000]
        return [e for t, e in entries if t == "file"], [e for t, e in entries if t == "folder"], more


def counts(store: FakeStore, ranges: list[KeyRange]) -> list[int]:
    """Keys in each range; every key must fall in exactly one."""
    found = []
    for rng in ranges:
        low = 0 if rng.start is None else bisect.bisect_left(store.sorted, ordered(rng.start, store.order))
        high = (
            len(store.sorted)
            if rng.end is None
            else bisect.bisect_left(store.sorted, ordered(rng.end, store.order))
        )
        found.append(max(0, high - low))
    for key in random.Random(0).sample(store.keys, min(500, len(store.keys))):
        inside = [
            r
            for r in ranges
            if (r.start is None or ordered(key, store.order) >= ordered(r.start, store.order))
            and (r.end is None or ordered(key, store.order) < ordered(r.end, store.order))
        ]
        assert len(inside) == 1, (key, inside)
    return found


ODD_FOLDERS = ["é", "日本", "a b", "a+b", "%2F", "z", "a-b", "a.b", "\t"]


def key_sets() -> dict[str, list[str]]:
    rng = random.Random(7)
    digest = [hashlib.sha1(str(i).encode()).hexdigest() for i in range(40_000)]
    return {
        "flat": [f"{i:08d}" for i in range(40_000)],
        "hex": digest,
        "deep": [
            f"t/{a}/{b}/{c}/f{d}"
            for a in range(8)
            for b in range(8)
            for c in range(8)
            for d in range(rng.randint(40, 120))
        ],
        "skewed folders": [
            f"logs/2026-{m:02d}-{d:02d}/{i:04d}.json"
            for m in range(1, 7)
            for d in range(1, 29)
            for i in range(60)
        ]
        + [f"flat/{h}" for h in digest[:25_000]]
        + [f"img/{h[:2]}/{h}.jpg" for h in digest[25_000:31_000]],
        "odd bytes": [rng.choice(ODD_FOLDERS) + f"/{i}-{rng.random()}" for i in range(30_000)]
        + ["a", "a/b", "a-b/c", "\U0001f600/x", "k" * 1000],
        "small": [f"k{i}" for i in range(2_500)],
        "one": ["only"],
        "none": [],
    }


@pytest.mark.parametrize("order", list(Order))
@pytest.mark.parametrize("shards", [1, 2, 4, 7])
@pytest.mark.parametrize("name", list(key_sets()))
def test_every_key_falls_in_exactly_one_range_within_the_stated_budget(
    name: str, shards: int, order: Order
) -> None:
    store = FakeStore(key_sets()[name], order)
    ranges, requests = shard_ranges(store, order, "", shards)
    assert len(ranges) == shards
    assert sum(counts(store, ranges)) == len(store.keys)
    assert requests == store.requests <= probe_budget(shards)


@pytest.mark.parametrize("order", list(Order))
@pytest.mark.parametrize("name", ["flat", "hex", "deep", "skewed folders"])
def test_four_shards_get_about_a_quarter_each(name: str, order: Order) -> None:
    store = FakeStore(key_sets()[name], order)
    ranges, _ = shard_ranges(store, order, "", 4)
    found = counts(store, ranges)
    assert max(found) <= 1.1 * len(store.keys) / 4, found


def test_a_prefix_keeps_the_ranges_inside_it() -> None:
    keys = [f"in/{i:05d}" for i in range(5_000)] + [f"out/{i:05d}" for i in range(5_000)]
    store = FakeStore(keys, Order.BYTE)
    ranges, _ = shard_ranges(store, Order.BYTE, "in/", 3)
    inside = [k for k in store.keys if k.startswith("in/")]
    sub = FakeStore(inside, Order.BYTE)
    found = counts(sub, ranges)
    assert sum(found) == 5_000
    assert max(found) <= 1.1 * 5_000 / 3


class CountedOnly:
    """A listing without Delimiter (an S3 Inventory): counted exactly, no request."""

    side = "source"
    requests = 0

    def __init__(self, keys: list[str]) -> None:
        self.store = FakeStore(keys, Order.BYTE)

    def pages(
        self, prefix: str, start_after: str | None, max_keys: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        yield from self.store.pages(prefix, start_after, max_keys)


def test_a_listing_without_folders_is_split_by_exact_counts() -> None:
    listing = CountedOnly(key_sets()["skewed folders"])
    ranges, requests = shard_ranges(listing, Order.BYTE, "", 4)
    found = counts(listing.store, ranges)
    assert requests == 0
    assert max(found) - min(found) <= 1
