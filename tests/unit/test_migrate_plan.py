"""The merge's decisions for archived sources, for sources changed after their copy, and what it
counts of the source."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from migrate.filters import KeyFilter
from migrate.plan import Action, MergeStats, compare_pair, merge, source_newer
from replicator.objects import ObjectInfo

T0 = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
MD5 = "0" * 31 + "1"


def obj(
    key: str, size: int = 1, etag: str = MD5, when: datetime = T0, storage: str | None = None
) -> ObjectInfo:
    return ObjectInfo(
        key=key, size=size, etag=etag, last_modified=when, complete=False, storage_class=storage
    )


def test_archived_sources_are_decided_up_front_and_glacier_ir_is_copied() -> None:
    source = [
        obj("deep", storage="DEEP_ARCHIVE"),
        obj("glacier", storage="GLACIER"),
        obj("instant", storage="GLACIER_IR"),
        obj("resized", size=2, storage="GLACIER"),
        obj("same", storage="GLACIER"),
    ]
    target = [obj("resized"), obj("same")]
    decided = {d.key: d.action for d in merge(source, target, KeyFilter())}
    assert decided == {
        "deep": Action.ARCHIVED,
        "glacier": Action.ARCHIVED,
        "instant": Action.COPY,
        "resized": Action.ARCHIVED,  # differs, but cannot be read to be copied
        "same": Action.SKIP,  # copied before it was archived: nothing to do
    }


def test_a_pair_whose_source_changed_after_the_copy_is_verified() -> None:
    copied = obj("k", when=T0)
    assert compare_pair(obj("k", when=T0 - timedelta(minutes=5)), copied).action is Action.SKIP
    # Sub-second differences are resolution, not change: stores keep whole seconds or not.
    assert compare_pair(obj("k", when=T0 + timedelta(milliseconds=400)), copied).action is Action.SKIP
    later = compare_pair(obj("k", when=T0 + timedelta(seconds=3)), copied)
    assert later.action is Action.VERIFY
    assert source_newer(obj("k", when=T0 + timedelta(seconds=1)), copied)
    assert not source_newer(ObjectInfo(key="k", size=1, etag=MD5), copied)


def test_the_merge_counts_source_keys_inside_the_key_filters() -> None:
    stats = MergeStats()
    source = [obj("a/1"), obj("a/2"), obj("b/1")]
    target = [obj("a/0"), obj("b/1")]
    decided = list(merge(source, target, KeyFilter(prefix="b/"), stats))
    assert [(d.action, d.key) for d in decided] == [(Action.SKIP, "b/1")]
    assert stats.source_keys == 1
    empty = MergeStats()
    assert [d.action for d in merge([], target, KeyFilter(), empty)] == [Action.DELETE, Action.DELETE]
    assert empty.source_keys == 0
