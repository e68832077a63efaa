"""The several-target migration's listings: merged in byte order whatever order the stores list
in, with memory that does not grow with the bucket (both listings are sorted on disk)."""

from __future__ import annotations

import itertools
import random
import tempfile
import threading
import time
import tracemalloc
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from migrate import store_run
from migrate.filters import KeyFilter
from migrate.listing import KeySet
from migrate.plan import Action
from migrate.runner import Options
from migrate.store_run import StoreMigration
from replicator.clients import Endpoint
from replicator.settings import Settings
from replicator.store_target import StoreTarget
from replicator.stores.base import ListedObject, StoreUnavailableError

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)


def settings() -> Settings:
    return Settings(
        source_bucket="source-bucket",
        targets={
            "blob": {"type": "azure", "container": "blobs", "connection_string": "UseDevelopmentStorage=true"}
        },
    )


class Lister:
    """The source's listing, in the order given (a store need not list in byte order)."""

    keys: ClassVar[list[str]] = []

    def __init__(self, *_: Any) -> None:
        pass

    def pages(self, prefix: str, start_after: str | None) -> Iterator[list[dict[str, Any]]]:
        page: list[dict[str, Any]] = []
        for key in self.keys:
            if key.startswith(prefix):
                page.append(
                    {
                        "Key": key,
                        "Size": len(key),
                        "ETag": '"0123456789abcdef0123456789abcdef"',
                        "LastModified": WHEN,
                    }
                )
            if len(page) == 1000:
                yield page
                page = []
        yield page


class ListingStore:
    """A target store that lists its blobs in the order given, and records deletes."""

    def __init__(self, keys: list[str]) -> None:
        self.keys = keys
        self.deleted: list[str] = []

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ListedObject]:
        for key in self.keys:
            if key.startswith(prefix):
                yield ListedObject(key, len(key), "0x8DC0FFEE", WHEN)

    def incomplete_uploads(self, key: str) -> list[Any]:
        return []

    def delete(self, key: str) -> None:
        self.deleted.append(key)


def migration(
    monkeypatch: pytest.MonkeyPatch, source: list[str], *targets: list[str], **options: Any
) -> StoreMigration:
    monkeypatch.setattr(store_run, "StoreLister", Lister)
    monkeypatch.setattr(store_run, "lean_path", lambda *_: None)
    monkeypatch.setattr(Lister, "keys", source)
    config = settings()
    endpoint = Endpoint("source", "source-bucket", None, "http://source")  # type: ignore[arg-type]
    reader: Any = SimpleNamespace(settings=config, source=endpoint)
    stores = [
        StoreTarget(f"t{i}", ListingStore([]), ListingStore(keys), config)  # type: ignore[arg-type]
        for i, keys in enumerate(targets)
    ]
    return StoreMigration(reader, stores, Options(**options))


def test_keys_are_merged_in_byte_order_whatever_order_the_stores_list_in(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    keys = ["b", "a/b", "a-b", "é", "z", "a/a", "\U0001f600", "\uff5e"]  # Azure: UTF-16 order
    on_target = ["\uff5e", "a/a", "extra", "\U0001f600"]
    run = migration(monkeypatch, keys, on_target, delete=True)
    deletes: dict[str, KeySet] = {}
    work = list(run._work(deletes))
    assert [w.key for w in work] == sorted(keys, key=lambda k: k.encode())
    actions = {w.key: w.decisions["t0"].action for w in work}
    assert {k for k, a in actions.items() if a is Action.COPY} == set(keys) - set(on_target)
    assert list(deletes["t0"]) == [("extra", len("extra"))]
    deletes["t0"].remove()
    assert not list(tmp_path.iterdir())  # the listings spilled to disk are gone


def test_a_target_whose_listing_fails_is_reported_and_the_others_go_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    keys = [f"k{i:04d}" for i in range(3000)]

    class Broken(ListingStore):
        def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ListedObject]:
            yield from itertools.islice(super().list(prefix), 1500)
            raise StoreUnavailableError("container listing: 503 ServerBusy")

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run = migration(monkeypatch, keys, [], [])
    run.targets[1].target = Broken(keys)  # type: ignore[attr-defined]
    reading = run._work({})
    first = next(reading)
    assert len(list(tmp_path.iterdir())) == 2  # the failed listing's part is gone already
    work = [first, *reading]
    assert [w.key for w in work] == keys
    assert all(set(w.decisions) == {"t0"} for w in work)
    summary = run.summary.settle()
    assert [f["key"] for f in summary.failures] == ["(listing of target t1)"]
    assert "503 ServerBusy" in summary.failures[0]["error"]


def test_a_reader_stopped_early_leaves_no_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    keys = [f"k{i:04d}" for i in range(100)]
    work = migration(monkeypatch, keys, [], keys[:10])._work({})
    assert next(work).key == "k0000"
    assert len(list(tmp_path.iterdir())) == 3  # the source's listing and each target's
    work.close()  # as when the run is cancelled
    assert not list(tmp_path.iterdir())


def test_a_cancelled_listing_decides_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"k{i:05d}" for i in range(5000)]
    run = migration(monkeypatch, keys, [])
    pages = Lister.pages
    fetched = []

    def cancelling(self: Lister, prefix: str, start_after: str | None) -> Iterator[list[dict[str, Any]]]:
        for number, page in enumerate(pages(self, prefix, start_after)):
            fetched.append(number)
            if number == 2:
                run.stop()
            yield page

    monkeypatch.setattr(Lister, "pages", cancelling)
    assert list(run._work({})) == []  # not the 3,000 keys listed before the cancel
    assert fetched == [0, 1, 2]  # and no page asked for after it


def deletes_of(tmp_path: Path, **on: list[str]) -> dict[str, KeySet]:
    sets = {}
    for name, keys in on.items():
        sets[name] = KeySet(str(tmp_path))
        for key in keys:
            sets[name].add(key, 7)
    return sets


def test_deletes_look_at_the_source_once_per_key_and_delete_on_every_target_holding_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run = migration(monkeypatch, ["kept"], [], [])
    looked: list[str] = []
    back = {"b"}  # written again at the source since it was listed: stays

    def absent(endpoint: Any, key: str) -> bool:
        looked.append(key)
        return key not in back

    monkeypatch.setattr(store_run, "source_absent", absent)
    run.stats.source_keys = 1
    candidates = deletes_of(tmp_path, t0=["a", "b", "c"], t1=["a", "b"])
    run._delete(candidates)
    assert looked == ["a", "b", "c"]
    assert [t.target.deleted for t in run.targets] == [["a", "c"], ["a"]]  # type: ignore[attr-defined]
    summary = run.summary.settle()
    assert summary.done["delete"] == 3
    assert summary.planned["delete"] == 5
    for keys in candidates.values():
        keys.remove()


@pytest.mark.parametrize(("source_keys", "limit"), [(0, None), (1, 2)], ids=["empty-source", "max-delete"])
def test_deletes_are_refused_whole_for_an_empty_source_or_past_max_delete(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, source_keys: int, limit: int | None
) -> None:
    run = migration(monkeypatch, [], [], [], max_delete=limit)
    monkeypatch.setattr(store_run, "source_absent", lambda *_: True)
    run.stats.source_keys = source_keys
    candidates = deletes_of(tmp_path, t0=["a", "b"], t1=["a"])
    run._delete(candidates)
    assert [t.target.deleted for t in run.targets] == [[], []]  # type: ignore[attr-defined]
    assert run.summary.deletes_refused == 3
    for keys in candidates.values():
        keys.remove()


def test_keys_only_on_targets_are_read_back_once_each_with_every_target_that_holds_them(
    tmp_path: Path,
) -> None:
    sets = {"a": KeySet(str(tmp_path)), "b": KeySet(str(tmp_path))}
    for key in ("z", "y", "\u00e9", "x"):
        sets["a"].add(key, 1)
    for key in ("y", "\u00e9", "w"):
        sets["b"].add(key, 2)
    try:
        assert list(store_run._by_key(sets)) == [
            ("w", [("b", 2)]),
            ("x", [("a", 1)]),
            ("y", [("a", 1), ("b", 2)]),
            ("z", [("a", 1)]),
            ("\u00e9", [("a", 1), ("b", 2)]),
        ]
    finally:
        for keys in sets.values():
            keys.remove()


def test_a_key_on_one_target_only_is_work_for_the_other(monkeypatch: pytest.MonkeyPatch) -> None:
    keys = [f"k{i:03d}" for i in range(50)]
    random.Random(1).shuffle(keys)
    run = migration(monkeypatch, keys, keys[:25], keys[25:])
    work = list(run._work({}))
    assert [w.key for w in work] == sorted(keys)
    for w in work:
        missing, holding = ("t1", "t0") if w.key in keys[:25] else ("t0", "t1")
        assert w.decisions[missing].action is Action.COPY
        # Where it is, a blob of the right size is not yet proven a copy (a HEAD will tell).
        assert w.decisions[holding].action is Action.VERIFY


@pytest.mark.parametrize(
    "key_filter",
    [KeyFilter(), KeyFilter(include=("dir1/*",)), KeyFilter(min_size=10**6)],
    ids=["all", "few-keys-included", "every-object-too-small"],
)
def test_memory_does_not_grow_with_the_listings(
    monkeypatch: pytest.MonkeyPatch, key_filter: KeyFilter
) -> None:
    count = 20_000
    keys = [f"dir{i % 97}/object-{i:07d}.bin" for i in range(count)]
    random.Random(2).shuffle(keys)
    on_target = keys[: count // 2]
    # Two targets: the source is read once per target, each at its own pace.
    run = migration(monkeypatch, keys, on_target, [], key_filter=key_filter)
    tracemalloc.start()
    try:
        copies = seen = 0
        previous = b""
        for w in run._work({}):
            assert w.key.encode() > previous
            previous = w.key.encode()
            seen += 1
            copies += w.decision.action is Action.COPY
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    selected = [k for k in keys if key_filter.key_selected(k) and key_filter.min_size is None]
    assert copies == len(selected)  # every selected key is missing on the second target
    assert seen >= copies
    # Held in lists, the two listings' objects came to 12 MiB here (2.5 sorted on disk).
    assert peak < 6 * 2**20, f"peak {peak / 2**20:.1f} MiB"


def test_the_summary_is_folded_as_the_keys_go_by_not_at_the_end(monkeypatch: pytest.MonkeyPatch) -> None:
    # A --check against a target holding 10^8 keys the source lacks: 10^8 findings would wait in
    # the summary's queue until the end.
    keys = [f"k{i:05d}" for i in range(12_000)]
    run = migration(monkeypatch, [], keys, check=True)
    waiting: list[int] = []
    differ = run.summary.differ

    def recording(key: str, what: str) -> None:
        waiting.append(run.summary._events.qsize())
        differ(key, what)

    run.summary.differ = recording  # type: ignore[method-assign]
    summary = run.run()
    assert len(summary.differences) == len(keys) == len(waiting)
    assert summary.differences[-1] == {"key": keys[-1], "difference": "extra on target"}
    assert max(waiting) <= 1001
    summary.close()


def test_the_source_and_every_target_are_listed_at_the_same_time(monkeypatch: pytest.MonkeyPatch) -> None:
    # One after another, the first copy of a bucket of 10^8 keys would wait for every listing.
    keys = [f"k{i:04d}" for i in range(2500)]
    run = migration(monkeypatch, keys, keys[:5], keys[:7])
    together = threading.Barrier(3, timeout=10)  # each listing waits until all three have begun
    source_pages = Lister.pages

    def source_waiting(self: Lister, prefix: str, start_after: str | None) -> Iterator[list[dict[str, Any]]]:
        together.wait()
        yield from source_pages(self, prefix, start_after)

    monkeypatch.setattr(Lister, "pages", source_waiting)
    for target in run.targets:
        store = target.target  # type: ignore[attr-defined]

        def waiting(prefix: str = "", start_after: str | None = None, listed: Any = store.list) -> Any:
            together.wait()
            yield from listed(prefix)

        store.list = waiting
    work = list(run._work({}))
    assert [w.key for w in work] == keys
    assert {name for w in work[:5] for name in w.decisions} == {"t0", "t1"}


def test_a_failed_source_listing_stops_the_target_listings(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    keys = [f"k{i:05d}" for i in range(20_000)]
    run = migration(monkeypatch, keys, keys)
    target_pages: list[int] = []
    listing = threading.Event()

    def failing(self: Lister, prefix: str, start_after: str | None) -> Iterator[list[dict[str, Any]]]:
        listing.wait(10)  # the target's listing is under way
        raise StoreUnavailableError("source listing: 503 SlowDown")
        yield []

    monkeypatch.setattr(Lister, "pages", failing)
    store = run.targets[0].target  # type: ignore[attr-defined]
    listed = store.list

    def slow(prefix: str = "", start_after: str | None = None) -> Iterator[ListedObject]:
        for number, entry in enumerate(listed(prefix)):
            if number % 1000 == 0:
                target_pages.append(number)
                listing.set()
                time.sleep(0.05)
            yield entry

    store.list = slow
    with pytest.raises(StoreUnavailableError, match="503 SlowDown"):
        list(run._work({}))
    assert 1 <= len(target_pages) < 5  # begun with the source's, stopped at its next pages
    assert not list(tmp_path.iterdir())
