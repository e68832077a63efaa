"""Compare the source and target listings as a streaming merge and decide, key by key.

Both listings are in byte order, so memory stays constant whatever the bucket size. A pair of the
same size whose ETags do not settle it (multipart objects, or objects copied by other tools) is
marked VERIFY: the target's metadata (source ETag and MD5 recorded at copy time) decides, read
with a HEAD by the executor. So is a pair whose source changed after the target was written (an
in-place CopyObject rewrites headers and metadata but keeps size and ETag).
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from migrate.filters import KeyFilter
from migrate.listing import sort_key
from replicator.objects import ObjectInfo, clean_etag, plain_md5, timestamp


class Action(enum.StrEnum):
    COPY = "copy"  # missing on the target
    REPLACE = "replace"  # on the target, but different
    VERIFY = "verify"  # same size; the target's recorded checksums decide
    METADATA = "metadata"  # same bytes, other headers or user metadata: rewritten in place
    DELETE = "delete"  # on the target only (acted on with --delete)
    SKIP = "skip"  # identical
    ARCHIVED = "archived"  # the source is in an archive storage class: not copied


@dataclass(frozen=True)
class Decision:
    action: Action
    key: str
    source: ObjectInfo | None
    target: ObjectInfo | None
    reason: str = ""

    @property
    def size(self) -> int:
        obj = self.source or self.target
        return obj.size if obj else 0


@dataclass
class MergeStats:
    """What the merge saw: source keys inside the key filters (an empty source is suspicious)."""

    source_keys: int = 0
    keys: int = 0  # keys compared: each key of either side once
    digest: int = 0  # XOR of their 64-bit hashes: shards' digests XOR to the whole run's

    def compared(self, key: str) -> None:
        self.keys += 1
        self.digest ^= int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "big")


def source_newer(source: ObjectInfo, target: ObjectInfo) -> bool:
    """The source was modified after the target copy was written. Whole seconds: listings differ
    in resolution between stores, and a finer comparison would flag every fresh copy."""
    if source.last_modified is None or target.last_modified is None:
        return False
    return int(source.last_modified.timestamp()) > int(target.last_modified.timestamp())


def compare_pair(source: ObjectInfo, target: ObjectInfo) -> Decision:
    key = source.key
    if source.size != target.size:
        if source.archived:
            return Decision(Action.ARCHIVED, key, source, target, "archived, not copied")
        return Decision(Action.REPLACE, key, source, target, f"size {target.size} -> {source.size}")
    if source.etag_is_md5 and target.etag_is_md5 and source.etag == target.etag:
        if source_newer(source, target):
            # Same bytes; headers or user metadata may have changed since: HEADs decide.
            return Decision(Action.VERIFY, key, source, target, "source modified after the copy")
        return Decision(Action.SKIP, key, source, target)
    # Otherwise the target may still be our copy with another ETag: its metadata decides.
    return Decision(Action.VERIFY, key, source, target)


def merge(
    source: Iterable[ObjectInfo],
    target: Iterable[ObjectInfo],
    key_filter: KeyFilter,
    stats: MergeStats | None = None,
    sort_key: Callable[[str], Any] = sort_key,
) -> Iterator[Decision]:
    """Decisions for two listings in the same order (`sort_key` of a key gives its place)."""
    stats = stats if stats is not None else MergeStats()
    src_iter = (o for o in source if key_filter.key_selected(o.key))
    dst_iter = (o for o in target if key_filter.key_selected(o.key))
    src = next(src_iter, None)
    dst = next(dst_iter, None)
    if src is not None:
        stats.source_keys += 1
    while src is not None or dst is not None:
        advance_source = False
        decision: Decision | None
        if dst is None or (src is not None and sort_key(src.key) < sort_key(dst.key)):
            assert src is not None
            stats.compared(src.key)
            decision = source_only(src, key_filter)
            advance_source = True
        elif src is None or sort_key(dst.key) < sort_key(src.key):
            stats.compared(dst.key)
            decision = target_only(dst, key_filter)
            dst = next(dst_iter, None)
        else:
            stats.compared(src.key)
            decision = compare_pair(src, dst) if key_filter.object_selected(src) else None
            advance_source = True
            dst = next(dst_iter, None)
        if decision is not None:
            yield decision
        if advance_source:
            src = next(src_iter, None)
            if src is not None:
                stats.source_keys += 1


def source_only(src: ObjectInfo, key_filter: KeyFilter) -> Decision | None:
    if not key_filter.object_selected(src):
        return None
    if src.archived:
        return Decision(Action.ARCHIVED, src.key, src, None, "archived, not copied")
    return Decision(Action.COPY, src.key, src, None, "missing on target")


def target_only(dst: ObjectInfo, key_filter: KeyFilter) -> Decision | None:
    if not key_filter.object_selected(dst):
        return None
    return Decision(Action.DELETE, dst.key, None, dst, "not in source")


def identical_in_listings(source: Mapping[str, Any], target: Mapping[str, Any]) -> bool:
    """What `compare_pair` calls SKIP, read off two listing entries without building objects
    (the common case of a check or a re-run: most pairs): the same size, the same plain MD5
    ETag, and the source not modified after the target was written."""
    if source["Size"] != target["Size"]:
        return False
    etag = clean_etag(source.get("ETag"))
    if etag != clean_etag(target.get("ETag")) or not plain_md5(etag):
        return False
    modified, copied = source.get("LastModified"), target.get("LastModified")
    if modified is None or copied is None:
        return True
    if isinstance(modified, str) and isinstance(copied, str):
        return modified[:19] <= copied[:19]  # ISO 8601 in UTC: text order is time order
    return int(timestamp(modified).timestamp()) <= int(timestamp(copied).timestamp())
