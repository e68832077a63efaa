"""Compare the source and target listings as a streaming merge and decide, key by key.

Both listings are in byte order, so memory stays constant whatever the bucket size. A pair of the
same size whose ETags do not settle it (multipart objects, or objects copied by other tools) is
marked VERIFY: the target's metadata (source ETag and MD5 recorded at copy time) decides, read
with a HEAD by the executor. So is a pair whose source changed after the target was written (an
in-place CopyObject rewrites headers and metadata but keeps size and ETag).
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from migrate.filters import KeyFilter
from migrate.listing import sort_key
from replicator.objects import ObjectInfo


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
) -> Iterator[Decision]:
    stats = stats if stats is not None else MergeStats()
    src_iter = (o for o in source if key_filter.key_selected(o.key))
    dst_iter = (o for o in target if key_filter.key_selected(o.key))
    src = next(src_iter, None)
    dst = next(dst_iter, None)
    if src is not None:
        stats.source_keys += 1
    while src is not None or dst is not None:
        advance_source = False
        if dst is None or (src is not None and sort_key(src.key) < sort_key(dst.key)):
            assert src is not None
            if key_filter.object_selected(src):
                if src.archived:
                    yield Decision(Action.ARCHIVED, src.key, src, None, "archived, not copied")
                else:
                    yield Decision(Action.COPY, src.key, src, None, "missing on target")
            advance_source = True
        elif src is None or sort_key(dst.key) < sort_key(src.key):
            if key_filter.object_selected(dst):
                yield Decision(Action.DELETE, dst.key, None, dst, "not in source")
            dst = next(dst_iter, None)
        else:
            if key_filter.object_selected(src):
                yield compare_pair(src, dst)
            advance_source = True
            dst = next(dst_iter, None)
        if advance_source:
            src = next(src_iter, None)
            if src is not None:
                stats.source_keys += 1
