"""The parallel range walk: both sides listed range by range, split while listed, merged by
several threads, must decide exactly what one plain merge of the two sorted listings decides.

The stores are in memory: a byte-ordered one (S3, Lyve Cloud) and a tree-ordered one that
answers like SeaweedFS, StartAfter quirk included (tests/integration/test_walk.py holds the model
to the real server). A per-page delay keeps ranges busy long enough for idle threads to split
them.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import Counter
from collections.abc import Generator, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore import parsers
from botocore.handlers import decode_list_object_v2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from migrate import walk as walk_module
from migrate.filters import KeyFilter
from migrate.keyspace import KeyRange, Order, ordered, ranges_between, start_after
from migrate.listing import ListingOrderError, StoreLister
from migrate.plan import Action, Decision, merge
from migrate.splitting import SPLIT_RATIO, SplitBudget
from migrate.walk import Plan, Skipped, Walk, detect_order
from replicator.clients import Endpoint
from replicator.lean_s3 import _list_page
from replicator.objects import ObjectInfo, timestamp
from tests.unit.test_keyspace import ALPHABET, listed_after

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
BOTH_ORDERS = pytest.mark.parametrize("order", list(Order))


def entry(size: int, content: str = "") -> dict[str, Any]:
    digest = hashlib.md5(f"{size}:{content}".encode()).hexdigest()
    return {"Size": size, "ETag": f'"{digest}"', "LastModified": T0, "StorageClass": "STANDARD"}


class FakeStore:
    """A bucket in memory that lists like a store: every key under the prefix after StartAfter,
    in the store's order, `page_keys` at most per page (MaxKeys caps it too), one request per
    page, each taking `delay` seconds. In tree order a StartAfter that names a directory
    exactly skips that directory's keys, as SeaweedFS does."""

    def __init__(
        self,
        side: str,
        objects: dict[str, dict[str, Any]],
        order: Order = Order.BYTE,
        page_keys: int = 1000,
        delay: float = 0.0,
    ) -> None:
        self.side = side
        self.objects = objects
        self.order = order
        self.page_keys = page_keys
        self.delay = delay
        self.requests = 0
        self.calls: list[tuple[str, str | None]] = []
        self._lock = threading.Lock()

    def pages(
        self, prefix: str, start_after: str | None, max_keys: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        with self._lock:
            self.calls.append((prefix, start_after))
        listing = listed_after(list(self.objects), start_after, self.order, prefix)
        size = min(max_keys, self.page_keys)
        for index in range(0, max(len(listing), 1), size):
            with self._lock:
                self.requests += 1
            if self.delay:
                time.sleep(self.delay)
            yield [dict(self.objects[key], Key=key) for key in listing[index : index + size]]


class FolderStore(FakeStore):
    """A FakeStore that also lists a folder with Delimiter "/" (one page, as the walk asks)."""

    def folders(self, prefix: str, start_after: str | None = None) -> tuple[list[str], list[str], bool]:
        with self._lock:
            self.requests += 1
            self.calls.append((prefix, "/"))
        entries: list[tuple[str, bool]] = []  # (name, is a folder), in the store's order
        for key in listed_after(list(self.objects), start_after, self.order, prefix):
            rest = key[len(prefix) :]
            if "/" not in rest:
                entries.append((key, False))
            elif (folder := prefix + rest[: rest.index("/") + 1]) != (entries[-1][0] if entries else None):
                entries.append((folder, True))
        page = entries[: self.page_keys]
        files = [name for name, folder in page if not folder]
        return files, [name for name, folder in page if folder], len(entries) > self.page_keys


# -- the key sets --------------------------------------------------------------------------------

# Names where tree and byte order disagree, a file beside a directory of the same name, keys
# beyond one UTF-8 byte, and long keys that differ only far into their names.
AWKWARD = [
    "a",
    "a/b",
    "a/b/c",
    "a-b",
    "a.b",
    "a b",
    "a+b",
    "a%2Bb",
    "a/",
    "d/sub",
    "d/sub/x",
    "d/sub/y/z",
    "d/sub-a",
    "d/sub.b",
    "d/suba",
    "zü/ä",
    "中文/文件",
    "😀/😀",
    "\u00ff/x",
    "sp ace/k+1",
    "L/" + "x" * 600 + "/1",
    "L/" + "x" * 600 + "/2",
    "L/" + "x" * 600 + "-1",
    "L/" + "y" * 900,
]


def clustered_keys(rng: random.Random, count: int) -> list[str]:
    """Clusters as buckets have them: a flat run of sequential names, dated logs, siblings
    that tree order puts apart, unicode directories, long names, plus the awkward ones."""
    made = set(AWKWARD)
    while len(made) < count:
        kind = rng.randrange(6)
        i = rng.randrange(100_000)
        if kind == 0:
            made.add(f"flat/{i:06d}.bin")
        elif kind == 1:
            made.add(f"logs/2025/{i % 12 + 1:02d}/{i % 28 + 1:02d}/{i}.json")
        elif kind == 2:
            made.add(rng.choice([f"d/sub{i % 50}/x{i}", f"d/sub{i % 50}-{i}", f"d/sub{i % 50}.{i}"]))
        elif kind == 3:
            made.add(rng.choice(["zü", "中文", "😀", "sp ace", "plus+"]) + f"/{i}")
        elif kind == 4:
            made.add("long/" + "n" * rng.randrange(40, 300) + f"/{i}")
        else:
            made.add("".join(rng.choice(ALPHABET) for _ in range(rng.randrange(1, 12))))
    return sorted(made)


KINDS = ("same", "source_only", "target_only", "size", "etag")


def pair_of(keys: Iterable[str], kinds: Iterable[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Source and target buckets: each key identical on both, on one side only, or different
    in size or in content."""
    source: dict[str, Any] = {}
    target: dict[str, Any] = {}
    for n, (key, kind) in enumerate(zip(keys, kinds, strict=True)):
        size = n % 7 * 100
        if kind != "target_only":
            source[key] = entry(size)
        if kind in ("same", "target_only"):
            target[key] = entry(size)
        elif kind == "size":
            target[key] = entry(size + 1)
        elif kind == "etag":
            target[key] = entry(size, "other")
    return source, target


def random_pair(seed: int, count: int) -> tuple[dict[str, Any], dict[str, Any]]:
    rng = random.Random(seed)
    keys = clustered_keys(rng, count)
    return pair_of(keys, [rng.choice(KINDS) for _ in keys])


# -- running and checking a walk -----------------------------------------------------------------


def run(
    source: FakeStore,
    target: FakeStore,
    plan: Plan,
    key_filter: KeyFilter | None = None,
    ranges: Iterable[KeyRange] = (KeyRange(),),
    threads: int = 16,
    budget: SplitBudget | None = None,
) -> tuple[Walk, list[Decision | Skipped]]:
    walk = Walk(source, target, plan, key_filter or KeyFilter(), list(ranges), threads=threads)
    walk.budget = budget or walk.budget
    decisions = list(walk.decisions())
    assert_no_listing_threads()
    return walk, decisions


def assert_no_listing_threads() -> None:
    for thread in threading.enumerate():
        if thread.name.startswith("listing-"):
            thread.join(timeout=5)
            assert not thread.is_alive(), f"{thread.name} outlived its walk"


def infos(objects: dict[str, Any]) -> list[ObjectInfo]:
    """A bucket's listing in byte order, as one plain merge takes it."""
    return [ObjectInfo.from_listing(dict(objects[k], Key=k)) for k in sorted(objects, key=str.encode)]


def blake64(key: str) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")


def assert_exact(
    walk: Walk,
    decisions: list[Decision | Skipped],
    source: dict[str, Any],
    target: dict[str, Any],
    key_filter: KeyFilter | None = None,
) -> None:
    key_filter = key_filter or KeyFilter()
    expected = {d.key: d for d in merge(infos(source), infos(target), key_filter)}
    # Identical pairs come counted in batches: as many as one merge's SKIPs not decided one by one.
    skipped = sum(item.keys for item in decisions if isinstance(item, Skipped))
    decisions = [item for item in decisions if not isinstance(item, Skipped)]
    counts = Counter(d.key for d in decisions)
    assert [k for k, n in counts.items() if n > 1] == [], "keys decided twice"
    got = {d.key: d for d in decisions}
    batched = {k for k, d in expected.items() if d.action is Action.SKIP and k not in got}
    assert len(batched) == skipped, "identical pairs counted"
    expected = {k: d for k, d in expected.items() if k not in batched}
    assert sorted(set(expected) - set(got)) == [], "keys never decided"
    assert sorted(set(got) - set(expected)) == [], "keys decided that one merge does not decide"
    assert got == expected
    assert all(d.key not in source for d in decisions if d.action is Action.DELETE)
    assert all(d.key not in target for d in decisions if d.action is Action.COPY)
    compared = {k for k in source.keys() | target.keys() if key_filter.key_selected(k)}
    assert walk.stats.merge.keys == len(compared)
    digest = 0
    for key in compared:
        digest ^= blake64(key)
    assert walk.stats.merge.digest == digest
    assert walk.stats.merge.source_keys == sum(1 for k in source if key_filter.key_selected(k))


# -- exactness ------------------------------------------------------------------------------------

pairs = st.lists(
    st.tuples(st.text(st.sampled_from(ALPHABET), min_size=1, max_size=10), st.sampled_from(KINDS)),
    max_size=60,
    unique_by=lambda item: item[0],
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pairs,
    st.sampled_from(list(Order)),
    st.sampled_from([1, 16]),
    st.sampled_from([1, 3, 1000]),
    st.sampled_from([FakeStore, FolderStore]),
)
def test_a_walk_decides_what_one_plain_merge_decides(
    items: list[tuple[str, str]], order: Order, threads: int, page_keys: int, store: type[FakeStore]
) -> None:
    source, target = pair_of((k for k, _ in items), (kind for _, kind in items))
    walk, decisions = run(
        store("source", source, order, page_keys),
        FakeStore("target", target, order, page_keys),
        Plan(order),
        threads=threads,
    )
    assert_exact(walk, decisions, source, target)


@BOTH_ORDERS
@pytest.mark.parametrize("seed", [1, 2])
def test_ranges_split_while_listed_still_decide_every_key_once(order: Order, seed: int) -> None:
    source, target = random_pair(seed, 3000)
    walk, decisions = run(
        FolderStore("source", source, order, page_keys=25, delay=0.002),
        FakeStore("target", target, order, page_keys=25, delay=0.002),
        Plan(order),
        budget=SplitBudget(allowance=100),  # requests are no object here: splits are
    )
    assert walk.stats.splits > 0
    assert walk.stats.ranges == walk.stats.splits + 1
    assert_exact(walk, decisions, source, target)


@BOTH_ORDERS
def test_a_bucket_of_folders_is_split_at_folder_starts_without_a_probe(order: Order) -> None:
    keys = [
        f"{top}/{sub:03d}/{n:03d}" for top in ("logs", "data", "img") for sub in range(20) for n in range(50)
    ]
    source, target = pair_of(keys, ["same"] * len(keys))
    walk, decisions = run(
        FolderStore("source", source, order, page_keys=25, delay=0.002),
        FakeStore("target", target, order, page_keys=25, delay=0.002),
        Plan(order),
    )
    assert walk.stats.splits > 2
    assert walk.stats.probes <= 2  # a folder's start is a cut that needs no probe
    assert_exact(walk, decisions, source, target)


@BOTH_ORDERS
@pytest.mark.parametrize("store", [FakeStore, FolderStore])
def test_splitting_costs_a_bounded_share_of_the_listing(order: Order, store: type[FakeStore]) -> None:
    """Each split costs requests (a partial page per side, a probe, a folder listing): however
    many idle threads there are, they spend a small allowance plus a twentieth of the pages."""
    rng = random.Random(5)
    keys = clustered_keys(rng, 6000) + [f"flat/{rng.getrandbits(40):010x}" for _ in range(4000)]
    source, target = pair_of(keys, ["same"] * len(keys))
    src = store("source", source, order, page_keys=25, delay=0.002)
    dst = FakeStore("target", target, order, page_keys=25, delay=0.002)
    walk, decisions = run(src, dst, Plan(order))
    assert_exact(walk, decisions, source, target)
    needed = 2 * -(-len(keys) // 25)  # one page per 25 keys on each side
    # A cut's partial pages come to one request on average, two at most.
    assert src.requests + dst.requests <= needed * (1 + 2 * SPLIT_RATIO) + 2


@BOTH_ORDERS
def test_a_flat_folder_is_split_by_probes_at_the_default_budget(order: Order) -> None:
    """The folder listing finds no folder in it: splits go to probes, and the budget that the
    listing left is not spent on listing it again."""
    keys = [f"flat/{i:06d}" for i in range(8000)]
    source, target = pair_of(keys, ["same"] * len(keys))
    src = FolderStore("source", source, order, page_keys=25, delay=0.002)
    walk, decisions = run(src, FakeStore("target", target, order, page_keys=25, delay=0.002), Plan(order))
    assert walk.stats.splits >= 2 and walk.stats.probes >= 2
    assert [prefix for prefix, after in src.calls if after == "/"] == ["", "flat/"]  # each once
    assert_exact(walk, decisions, source, target)


@BOTH_ORDERS
def test_one_thread_decides_the_same(order: Order) -> None:
    source, target = random_pair(3, 1500)
    walk, decisions = run(
        FakeStore("source", source, order, page_keys=50),
        FakeStore("target", target, order, page_keys=50),
        Plan(order),
        threads=1,
    )
    assert walk.stats.splits == 0
    assert_exact(walk, decisions, source, target)


@BOTH_ORDERS
@pytest.mark.parametrize("names", ["flat{:06d}", "flat/{:06d}", "data/2025/{:06d}.bin"])
def test_a_flat_run_of_names_is_listed_by_several_threads(order: Order, names: str) -> None:
    """Millions of keys in one directory are the common big bucket: the walk splits them, in
    tree order as in byte order."""
    keys = [names.format(i) for i in range(6000)]
    source, target = pair_of(keys, ["same"] * 4000 + ["source_only"] * 2000)
    walk, decisions = run(
        FakeStore("source", source, order, page_keys=25, delay=0.002),
        FakeStore("target", target, order, page_keys=25, delay=0.002),
        Plan(order),
        budget=SplitBudget(allowance=100),
    )
    assert walk.stats.splits > 0
    assert_exact(walk, decisions, source, target)


@BOTH_ORDERS
def test_empty_sides(order: Order) -> None:
    source, target = random_pair(4, 300)
    for left, right in (({}, {}), (source, {}), ({}, target)):
        walk, decisions = run(
            FakeStore("source", left, order, page_keys=7),
            FakeStore("target", right, order, page_keys=7),
            Plan(order),
        )
        assert_exact(walk, decisions, left, right)


@BOTH_ORDERS
def test_given_ranges_are_walked_apart_and_cover_the_whole(order: Order) -> None:
    source, target = random_pair(5, 1000)
    splits = sorted(["b", "d/sub", "d/sub/x", "flat/05", "zü"], key=lambda k: ordered(k, order))
    walk, decisions = run(
        FakeStore("source", source, order, page_keys=20),
        FakeStore("target", target, order, page_keys=20),
        Plan(order),
        ranges=ranges_between(splits),
    )
    assert walk.stats.ranges >= len(splits) + 1
    assert_exact(walk, decisions, source, target)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data(), pairs, st.sampled_from(list(Order)))
def test_ranges_cut_anywhere_decide_every_key_once(
    data: st.DataObject, items: list[tuple[str, str]], order: Order
) -> None:
    """Range ends at keys, at directories named exactly (with and without their "/") and in
    the middle of names: each range lists under its own prefix from its own StartAfter."""
    keys = [k for k, _ in items]
    candidates = ["a", "d/sub", *keys, *(k[:i] for k in keys for i in range(1, len(k)))]
    ends = data.draw(st.lists(st.sampled_from(candidates), max_size=6, unique=True))
    source, target = pair_of(keys, (kind for _, kind in items))
    walk, decisions = run(
        FakeStore("source", source, order, page_keys=4),
        FakeStore("target", target, order, page_keys=4),
        Plan(order),
        ranges=ranges_between(sorted(ends, key=lambda k: ordered(k, order))),
        threads=4,
    )
    assert_exact(walk, decisions, source, target)


@BOTH_ORDERS
def test_a_prefix_lists_only_under_it(order: Order) -> None:
    source, target = random_pair(6, 1500)
    key_filter = KeyFilter(prefix="d/")
    src = FakeStore("source", source, order, page_keys=10, delay=0.001)
    dst = FakeStore("target", target, order, page_keys=10, delay=0.001)
    walk, decisions = run(src, dst, Plan(order), key_filter)
    assert_exact(walk, decisions, source, target, key_filter)
    assert all(prefix.startswith("d/") for prefix, _ in src.calls + dst.calls)


@BOTH_ORDERS
def test_tasks_given_disjoint_ranges_add_up_to_the_whole_run(order: Order) -> None:
    """Shards are ranges walked by separate tasks: their digests XOR, and their counts add, to
    the run that walks the whole key space; every key is decided by exactly one of them."""
    source, target = random_pair(7, 800)
    whole, _ = run(FakeStore("source", source, order), FakeStore("target", target, order), Plan(order))
    splits = sorted(["d/sub1", "flat/", "logs/2025/06"], key=lambda k: ordered(k, order))
    digest, keys, decided, skipped = 0, 0, [], 0
    for bounds in ranges_between(splits):
        walk, decisions = run(
            FakeStore("source", source, order, page_keys=30),
            FakeStore("target", target, order, page_keys=30),
            Plan(order),
            ranges=[bounds],
        )
        digest ^= walk.stats.merge.digest
        keys += walk.stats.merge.keys
        decided += [d.key for d in decisions if not isinstance(d, Skipped)]
        skipped += sum(d.keys for d in decisions if isinstance(d, Skipped))
    assert (digest, keys) == (whole.stats.merge.digest, whole.stats.merge.keys)
    assert len(set(decided)) == len(decided)
    assert len(decided) + skipped == len(source.keys() | target.keys())


def test_a_range_cut_just_before_its_listing_ends_is_still_walked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread that cut a range may be descheduled right after the cut, until the range it
    cut has been listed to its new end and nothing else is left to do: the new range must
    still be walked, not dropped with the walk finished."""
    keys = [f"a{i:05d}" for i in range(1000)] + [f"w{i:05d}" for i in range(1000)]
    source, target = pair_of(keys, ["same"] * len(keys))
    walk = Walk(
        FakeStore("source", source, Order.BYTE, page_keys=20, delay=0.001),
        FakeStore("target", target, Order.BYTE, page_keys=20, delay=0.001),
        Plan(Order.BYTE),
        KeyFilter(),
        [KeyRange()],
        threads=2,
    )
    cut_at = walk_module._Range.cut_at
    held: list[str] = []

    def descheduled_after_the_cut(rng: Any, key: str) -> tuple[bool, str | None]:
        cut = cut_at(rng, key)
        if cut[0] and not held:
            held.append(key)
            deadline = time.monotonic() + 1
            while rng in walk._active and time.monotonic() < deadline:
                time.sleep(0.001)
            time.sleep(0.05)
        return cut

    monkeypatch.setattr(walk_module._Range, "cut_at", descheduled_after_the_cut)
    decisions = list(walk.decisions())
    assert_no_listing_threads()
    assert held
    assert_exact(walk, decisions, source, target)


# -- sides sorted on disk --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source_order", "target_order"), [(Order.BYTE, Order.TREE), (Order.TREE, Order.BYTE), (None, None)]
)
def test_sides_in_another_order_are_sorted_and_not_split(
    source_order: Order | None, target_order: Order | None
) -> None:
    plan = Plan.for_pair(source_order, target_order)
    source, target = random_pair(8, 2000)
    # A store in no known order lists in some order of its own: tree order stands in for it.
    walk, decisions = run(
        FakeStore("source", source, source_order or Order.TREE, page_keys=25, delay=0.001),
        FakeStore("target", target, target_order or Order.TREE, page_keys=25, delay=0.001),
        plan,
    )
    assert plan.name == "sorted"
    assert walk.stats.splits == 0
    assert walk.stats.probes == 0
    assert_exact(walk, decisions, source, target)


def test_sorted_sides_over_given_ranges() -> None:
    source, target = random_pair(9, 1000)
    walk, decisions = run(
        FakeStore("source", source, Order.BYTE, page_keys=30),
        FakeStore("target", target, Order.TREE, page_keys=30),
        Plan.for_pair(Order.BYTE, Order.TREE),
        ranges=ranges_between(["a/", "d/sub", "d/sub-", "long/"]),
    )
    assert_exact(walk, decisions, source, target)


# -- a side not in the order it was taken for ------------------------------------------------------


@pytest.mark.parametrize(("taken_for", "really"), [(Order.TREE, Order.BYTE), (Order.BYTE, Order.TREE)])
@pytest.mark.parametrize("wrong_side", ["source", "target"])
def test_a_side_in_another_order_raises_listing_order_error(
    taken_for: Order, really: Order, wrong_side: str
) -> None:
    source, target = pair_of(AWKWARD, ["same"] * len(AWKWARD))
    orders = {"source": taken_for, "target": taken_for, wrong_side: really}
    with pytest.raises(ListingOrderError) as raised:
        run(
            FakeStore("source", source, orders["source"], page_keys=5),
            FakeStore("target", target, orders["target"], page_keys=5),
            Plan(taken_for),
        )
    assert raised.value.side == wrong_side
    assert_no_listing_threads()


@pytest.mark.parametrize(("taken_for", "really"), [(Order.TREE, Order.BYTE), (Order.BYTE, Order.TREE)])
def test_a_side_in_another_order_is_caught_across_a_range_end(taken_for: Order, really: Order) -> None:
    """Two ranges that meet between keys the two orders put apart: a side listed in the other
    order answers one range with a key past its end first, and the other range never lists
    the key that came after it. Only the order of the page tells: it must not be lost."""
    keys = ["a-z", "a/b"]  # tree order: a/b, a-z; byte order: a-z, a/b
    boundary = sorted(keys, key=lambda k: ordered(k, taken_for))[1]
    source, target = pair_of(keys, ["source_only"] * 2)
    with pytest.raises(ListingOrderError):
        run(
            FakeStore("source", source, really),
            FakeStore("target", target, taken_for),
            Plan(taken_for),
            ranges=ranges_between([boundary]),
        )


# -- stopping -----------------------------------------------------------------------------------


class FailingStore(FakeStore):
    def pages(
        self, prefix: str, start_after: str | None, max_keys: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        pages = super().pages(prefix, start_after, max_keys)
        yield next(pages)
        raise ConnectionError("the store went away")


def test_a_listing_error_reaches_the_caller_and_stops_every_thread() -> None:
    source, target = random_pair(10, 500)
    with pytest.raises(ConnectionError, match="went away"):
        run(
            FailingStore("source", source, Order.BYTE, page_keys=10, delay=0.001),
            FakeStore("target", target, Order.BYTE, page_keys=10, delay=0.001),
            Plan(Order.BYTE),
        )
    assert_no_listing_threads()


def test_a_caller_that_stops_early_stops_every_thread() -> None:
    source, target = random_pair(11, 3000)
    walk = Walk(
        FakeStore("source", source, Order.BYTE, page_keys=10, delay=0.001),
        FakeStore("target", target, Order.BYTE, page_keys=10, delay=0.001),
        Plan(Order.BYTE),
        KeyFilter(),
        [KeyRange()],
    )
    decisions = walk.decisions()
    assert isinstance(decisions, Generator)
    taken = [next(decisions) for _ in range(20)]
    decisions.close()
    assert len(taken) == 20
    assert_no_listing_threads()


def test_cancel_ends_the_walk() -> None:
    source, target = random_pair(12, 3000)
    cancel = threading.Event()
    src = FakeStore("source", source, Order.BYTE, page_keys=10, delay=0.002)
    walk = Walk(
        src,
        FakeStore("target", target, Order.BYTE, page_keys=10, delay=0.002),
        Plan(Order.BYTE),
        KeyFilter(),
        [KeyRange()],
        cancel=cancel,
    )
    count = 0
    for _ in walk.decisions():
        count += 1
        if count == 50:
            cancel.set()
    assert count < 3000
    assert src.requests < 3000 // 10
    assert_no_listing_threads()


def test_idle_threads_wait_for_work_instead_of_spinning() -> None:
    """Keys that no split point tells apart (they differ only past the projection's depth) keep
    one range: the other threads must wait for work, not burn the CPU (and the GIL) the one
    listing thread needs."""
    stem = "same/" + "x" * 100
    keys = [f"{stem}{i:05d}" for i in range(4000)]
    source, target = pair_of(keys, ["same"] * len(keys))

    def cpu_seconds(threads: int) -> float:
        started = time.process_time()
        run(
            FakeStore("source", source, Order.BYTE, page_keys=20, delay=0.001),
            FakeStore("target", target, Order.BYTE, page_keys=20, delay=0.001),
            Plan(Order.BYTE),
            threads=threads,
        )
        return time.process_time() - started

    alone = cpu_seconds(1)
    assert cpu_seconds(16) < alone * 4 + 0.2


class LateFirstProbe(FakeStore):
    """Answers the first probe that finds a key only once the range's own listing (the one
    from the start, without StartAfter) has gone past that key: the listing moved on while the
    probe was in flight."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listing_pages = 0
        self.held_back = False

    def pages(
        self, prefix: str, start_after: str | None, max_keys: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        pages = super().pages(prefix, start_after, max_keys)
        if start_after is None:
            for page in pages:
                self.listing_pages += 1
                yield page
            return
        first = next(pages)
        if first and not self.held_back:
            self.held_back = True
            ordered_keys = sorted(self.objects, key=lambda k: ordered(k, self.order))
            holding = ordered_keys.index(first[0]["Key"]) // min(max_keys, self.page_keys)
            deadline = time.monotonic() + 10
            # The page after the one holding the key is asked for: that one has been fetched.
            while self.listing_pages < holding + 2 and time.monotonic() < deadline:
                time.sleep(0.001)
        yield first
        yield from pages


@BOTH_ORDERS
def test_a_probe_overtaken_by_the_listing_does_not_stop_later_splits(order: Order) -> None:
    """A probe that comes back after the listing passed its key cannot cut the range there; the
    source still has keys beyond it, so later probes must still split the range (the whole key
    space is one such unbounded range)."""
    # The first probe lands between the clusters: the key it finds leaves a whole cluster after.
    keys = [f"a{i:05d}" for i in range(1000)] + [f"w{i:05d}" for i in range(4000)]
    source, target = pair_of(keys, ["same"] * len(keys))
    src = LateFirstProbe("source", source, order, page_keys=20, delay=0.001)
    walk, decisions = run(src, FakeStore("target", target, order, page_keys=20, delay=0.001), Plan(order))
    assert src.held_back
    assert walk.stats.splits > 0
    assert_exact(walk, decisions, source, target)


# -- plans and orders ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "target", "expected"),
    [
        (Order.BYTE, Order.BYTE, Plan(Order.BYTE)),
        (Order.TREE, Order.TREE, Plan(Order.TREE)),
        (Order.BYTE, Order.TREE, Plan(Order.BYTE, sort_target=True)),
        (Order.TREE, Order.BYTE, Plan(Order.BYTE, sort_source=True)),
        (None, Order.BYTE, Plan(Order.BYTE, sort_source=True)),
        (Order.BYTE, None, Plan(Order.BYTE, sort_target=True)),
        (None, Order.TREE, Plan(Order.BYTE, sort_source=True, sort_target=True)),
        (None, None, Plan(Order.BYTE, sort_source=True, sort_target=True)),
    ],
)
def test_plan_for_pair(source: Order | None, target: Order | None, expected: Plan) -> None:
    plan = Plan.for_pair(source, target)
    assert plan == expected
    assert plan.splittable == (not (expected.sort_source or expected.sort_target))
    assert plan.name == (expected.order.value if plan.splittable else "sorted")


class StubbedStore(StoreLister):
    """A StoreLister whose requests are answered here, counted as the real one counts them."""

    def __init__(self, url: str, server: str) -> None:
        client: Any = boto3.client("s3", endpoint_url=url, region_name="us-east-1")
        super().__init__(Endpoint("target", "bucket", client, url))
        self.answer_server = server

    def _request(self, *_: Any) -> Any:
        return {"Contents": [], "IsTruncated": False, "Server": self.answer_server}


@pytest.mark.parametrize(
    ("url", "server", "expected", "requests"),
    [
        ("https://s3.us-east-1.amazonaws.com", "AmazonS3", Order.BYTE, 0),
        ("https://s3.us-east-1.lyvecloud.seagate.com", "", Order.BYTE, 0),
        ("http://127.0.0.1:8333", "SeaweedFS 8000GB 4.48", Order.TREE, 1),
        ("http://127.0.0.1:9000", "MinIO", Order.BYTE, 1),
        ("http://127.0.0.1:9000", "Werkzeug/3.0", None, 1),
    ],
)
def test_detect_order_asks_the_store_only_when_its_host_does_not_tell(
    url: str, server: str, expected: Order | None, requests: int
) -> None:
    lister = StubbedStore(url, server)
    assert detect_order(lister) is expected
    assert lister.requests == requests


@pytest.mark.parametrize(
    ("first", "server", "replayed"),
    [
        (KeyRange(), "SeaweedFS 8000GB 4.48", True),
        (KeyRange("logs/2024/", "logs/2025/"), "SeaweedFS 8000GB 4.48", True),
        (KeyRange("logs/2024-05", None), "MinIO", True),
        # A range that starts at a folder is listed from another StartAfter in byte order.
        (KeyRange("logs/2024/", None), "MinIO", False),
    ],
)
def test_the_page_that_told_the_order_is_the_first_page_of_the_walk(
    first: KeyRange, server: str, replayed: bool
) -> None:
    lister = StubbedStore("http://127.0.0.1:9000", server)
    order = detect_order(lister, first, "logs/")
    assert order is not None and lister.requests == 1
    pages = lister.pages(first.listing_prefix("logs/", order), start_after(first.start, order))
    assert next(pages) == []
    assert lister.requests == (1 if replayed else 2)
    again = lister.pages(first.listing_prefix("logs/", order), start_after(first.start, order))
    assert next(again) == [] and lister.requests == (2 if replayed else 3)  # kept for one listing


def test_a_listing_that_is_no_store_is_taken_in_byte_order() -> None:
    assert detect_order(FakeStore("source", {}, Order.TREE)) is Order.BYTE


# -- ListObjectsV2 pages on the lean path ---------------------------------------------------------

S3_NS = ' xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def listing_xml(namespace: str, encoded: bool, truncated: bool) -> bytes:
    def contents(key: str, extra: str = "") -> str:
        return (
            f"<Contents><Key>{key}</Key><LastModified>2026-01-02T03:04:05.123Z</LastModified>"
            "<ETag>&quot;0123456789abcdef0123456789abcdef&quot;</ETag><Size>1234567890123</Size>"
            f"{extra}<StorageClass>STANDARD</StorageClass></Contents>"
        )

    if encoded:
        keys = ["a+b", "plus%2Bsign", "sp%20ace", "z%C3%BC/%E4%B8%AD%F0%9F%98%80", "pct%2520", "amp%26%3C%3E"]
    else:
        keys = ["a+b", "plus%2Bsign", "sp ace", "zü/中😀", "amp&amp;&lt;&gt;"]
    restore = (
        "<RestoreStatus><IsRestoreInProgress>false</IsRestoreInProgress>"
        "<RestoreExpiryDate>2026-02-01T00:00:00.000Z</RestoreExpiryDate></RestoreStatus>"
    )
    body = "".join(contents(k) for k in keys) + contents("restoring", restore.replace("false", "true"))
    body += contents("restored", restore)
    token = "<NextContinuationToken>1ueGcxLPRx1Tr/XYExHnhbYLgveDs2J/wm36Hy4vbOwM=</NextContinuationToken>"
    return (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<ListBucketResult{namespace}><Name>bucket</Name>'
        f"<Prefix></Prefix><KeyCount>{len(keys) + 2}</KeyCount><MaxKeys>1000</MaxKeys>"
        + ("<EncodingType>url</EncodingType>" if encoded else "")
        + f"<IsTruncated>{str(truncated).lower()}</IsTruncated>"
        + (token if truncated else "")
        + f"{body}</ListBucketResult>"
    ).encode()


def as_boto3_parses(xml: bytes) -> dict[str, Any]:
    """The page as boto3's list_objects_v2 returns it (its own parser and URL decoding)."""
    model = boto3.client("s3", region_name="us-east-1").meta.service_model
    output = model.operation_model("ListObjectsV2").output_shape
    assert output is not None
    parsed: dict[str, Any] = parsers.create_parser("rest-xml").parse(
        {"body": xml, "headers": {}, "status_code": 200}, output
    )
    decode_list_object_v2(parsed, {"encoding_type_auto_set": True})
    return parsed


@pytest.mark.parametrize("namespace", [S3_NS, ""])
@pytest.mark.parametrize("encoded", [True, False])
@pytest.mark.parametrize("truncated", [True, False])
def test_a_listing_page_reads_as_boto3_reads_it(namespace: str, encoded: bool, truncated: bool) -> None:
    xml = listing_xml(namespace, encoded, truncated)
    page = _list_page(xml, "SeaweedFS 8000GB 4.48")
    expected = as_boto3_parses(listing_xml(S3_NS, encoded, truncated))
    assert page["Server"] == "SeaweedFS 8000GB 4.48"
    assert page["IsTruncated"] is truncated
    assert page.get("NextContinuationToken") == expected.get("NextContinuationToken")
    fields = ("Key", "Size", "ETag", "StorageClass")
    assert [{f: c.get(f) for f in fields} for c in page["Contents"]] == [
        {f: c.get(f) for f in fields} for c in expected["Contents"]
    ]
    # LastModified stays text until an object is built from it: the same instant as boto3's.
    assert [timestamp(c["LastModified"]) for c in page["Contents"]] == [
        c["LastModified"] for c in expected["Contents"]
    ]
    assert [c.get("RestoreStatus", {}).get("IsRestoreInProgress") for c in page["Contents"]] == [
        c.get("RestoreStatus", {}).get("IsRestoreInProgress") for c in expected["Contents"]
    ]
    assert all(timestamp(c["LastModified"]).tzinfo is not None for c in page["Contents"])
    keys = [c["Key"] for c in page["Contents"]]
    assert "a b" in keys if encoded else "a+b" in keys  # "+" is a space only in an encoded key
    assert "plus+sign" in keys if encoded else "plus%2Bsign" in keys


def test_an_empty_listing_page() -> None:
    xml = f'<?xml version="1.0"?><ListBucketResult{S3_NS}><Name>b</Name><KeyCount>0</KeyCount><IsTruncated>false</IsTruncated></ListBucketResult>'
    page = _list_page(xml.encode(), "")
    assert (page["Contents"], page["IsTruncated"], page["Server"]) == ([], False, "")
    assert "NextContinuationToken" not in page


@pytest.mark.parametrize("encoded", [True, False])
def test_a_folder_page_reads_as_boto3_reads_it(encoded: bool) -> None:
    folders = ["d%2B/", "sp%20ace/", "z%C3%BC/"] if encoded else ["d+/", "sp ace/", "zü/"]
    xml = (
        f'<?xml version="1.0"?><ListBucketResult{S3_NS}><Name>b</Name><Prefix></Prefix>'
        "<Delimiter>/</Delimiter>"
        + ("<EncodingType>url</EncodingType>" if encoded else "")
        + "<IsTruncated>false</IsTruncated>"
        + "".join(f"<CommonPrefixes><Prefix>{f}</Prefix></CommonPrefixes>" for f in folders)
        + "</ListBucketResult>"
    ).encode()
    expected = as_boto3_parses(xml)
    assert _list_page(xml, "").get("CommonPrefixes") == expected["CommonPrefixes"]
    assert [f["Prefix"] for f in expected["CommonPrefixes"]] == ["d+/", "sp ace/", "zü/"]
