"""Migration (or a check) to several targets at once, or to one that is not S3-compatible.

The source is listed once; it and each target's listing (ListObjectsV2 for an S3 target, the
store's own list call for Azure Blob), all at the same time, are spilled to disk (SQLite, as the
S3 path does for stores that list in another order), then merged in byte order, each target's
merge reading the source's spill at its own pace. Keys only on targets (for --delete) go to disk
too. Memory stays flat whatever the bucket size; the disk holds about 200 bytes a key of 40
characters, per listing, while the run lasts.
Each key that is missing, different or not provably ours on some targets is reconciled on those
targets together, through the same Reconciler as the worker: one GET of a small source object
serves every target, a large one is read per target (each has its own part layout and pace).
Deletes (with --delete) look at the source again, key by key, just before each delete.

One S3 target alone goes through runner.Migration (a streaming merge, listing splits, processes
for small objects, shards, S3 Inventory).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, TypeVar

from migrate.listing import KeySet, ListingSpill, StoreLister, sort_key
from migrate.plan import Action, Decision, MergeStats, merge
from migrate.progress import Progress
from migrate.runner import Options, Summary
from replicator.errors import (
    ArchivedObjectError,
    CancelledError,
    PermanentError,
    SourceBucketMissingError,
    describe,
)
from replicator.lean_s3 import lean_path
from replicator.logs import get_logger
from replicator.looks import source_absent
from replicator.objects import ObjectInfo, target_matches, timestamp
from replicator.reconcile import Outcome, Reconciler
from replicator.store_target import StoreTarget
from replicator.targets import S3Target, Target
from replicator.transfer import TransferEngine

log = get_logger("migrate")

T = TypeVar("T")

# How a key's decisions on several targets are shown as one: the most work wins.
_WEIGHT = {Action.COPY: 3, Action.REPLACE: 2, Action.VERIFY: 1}


@dataclass(frozen=True)
class KeyWork:
    """One source key and what each target needs for it (targets that need nothing left out)."""

    key: str
    source: ObjectInfo
    decisions: dict[str, Decision]

    @property
    def decision(self) -> Decision:
        """The key's decision for the summary and the progress bar."""
        return max(self.decisions.values(), key=lambda d: _WEIGHT.get(d.action, 0))


def _store_objects(spill: ListingSpill) -> Iterator[ObjectInfo]:
    """A store's listing read back: its ETag as the store spells it (from_listing would read it
    as an S3 one)."""
    for row in spill.rows():
        modified = row.get("LastModified")
        yield ObjectInfo(
            row["Key"], row["Size"], row["ETag"], timestamp(modified) if modified else None, complete=False
        )


def _tagged(name: str, keys: KeySet) -> Iterator[tuple[bytes, str, str, int]]:
    for key, size in keys:
        yield sort_key(key), key, name, size


def _by_key(candidates: dict[str, KeySet]) -> Iterator[tuple[str, list[tuple[str, int]]]]:
    """Each key of the targets' key sets, once, in byte order, with (target, size) for each
    target that holds it."""
    merged = heapq.merge(*(_tagged(name, keys) for name, keys in candidates.items()))
    for _, group in itertools.groupby(merged, key=lambda item: item[0]):
        items = list(group)
        yield items[0][1], [(name, size) for _, _, name, size in items]


def _keyed(decisions: Iterable[Decision], index: int) -> Iterator[tuple[Any, int, Decision]]:
    """A target's decisions as (place of the key, the target's index, decision)."""
    for decision in decisions:
        yield sort_key(decision.key), index, decision


class StoreMigration:
    def __init__(
        self,
        reader: TransferEngine,
        targets: Sequence[Target],
        options: Options,
        progress: Progress | None = None,
    ) -> None:
        self.reader = reader
        self.targets = list(targets)
        self.options = options
        self.progress = progress or Progress.quiet()
        self.summary = Summary()
        self.cancel = threading.Event()
        self.stats = MergeStats()
        self.reconciler = Reconciler(
            reader, reader.settings, {t.name: t for t in self.targets}, fanout_threads=options.concurrency
        )

    def stop(self, *_: Any) -> None:
        self.cancel.set()

    def run(self) -> Summary:
        started = time.monotonic()
        deletes: dict[str, KeySet] = {}  # by target: keys only there (on disk, like the listings)
        in_flight: set[Future[None]] = set()
        limit = self.options.concurrency
        try:
            with ThreadPoolExecutor(limit, thread_name_prefix="object") as pool:
                for work in self._work(deletes):
                    if self.cancel.is_set():
                        break
                    decision = work.decision
                    self.summary.plan(decision.action, decision.size)
                    self.progress.planned(decision)
                    if self.options.dry_run:
                        continue
                    while len(in_flight) >= limit:
                        _, pending = wait(in_flight, return_when=FIRST_COMPLETED)
                        in_flight = set(pending)
                    in_flight.add(pool.submit(self._act, work))
                self.progress.listing_done()
                wait(in_flight)
            if deletes and not self.cancel.is_set():
                self._delete(deletes)
        except SourceBucketMissingError as exc:
            self.summary.source_missing = str(exc)
        finally:
            self.reconciler.close()
            for keys in deletes.values():
                keys.remove()
        summary = self.summary.settle()
        summary.cancelled = self.cancel.is_set()
        summary.seconds = time.monotonic() - started
        return summary

    # -- listings ---------------------------------------------------------------------------------

    def _work(self, deletes: dict[str, KeySet]) -> Iterator[KeyWork]:
        """Each source key with work on some target; keys only on targets go to `deletes` (with
        --delete), or are differences (--check). Every listing is spilled to disk first; the
        per-target merges then run side by side, key by key, each reading the source's spill at
        its own pace. A target that cannot be listed is reported and left out."""
        with ExitStack() as spills:
            source = spills.enter_context(ListingSpill())  # listed once, for all
            listings, listed = self._list_all(
                source, [spills.enter_context(ListingSpill()) for _ in self.targets]
            )
            if self.cancel.is_set():
                return  # the listings may be partial: nothing is decided from them
            streams = [
                _keyed(
                    merge(
                        map(ObjectInfo.from_listing, source.rows()),
                        listing,
                        self.options.key_filter,
                        self.stats if index == 0 else MergeStats(),
                    ),
                    index,
                )
                for index, listing in enumerate(listings)
            ]
            groups = itertools.groupby(heapq.merge(*streams, key=lambda item: item[:2]), lambda i: i[0])
            for seen, (_, group) in enumerate(groups):
                if self.cancel.is_set():
                    return  # also in a long run of keys with nothing to do
                if seen % 1000 == 0:
                    self.summary.settle()  # events folded as they come: memory flat for any bucket
                work: dict[str, Decision] = {}
                skipped: ObjectInfo | None = None
                for _, index, decision in group:
                    name = listed[index].name
                    where = f"{name}: " if len(self.targets) > 1 else ""
                    if decision.action is Action.DELETE:
                        if self.options.check and decision.target is not None:
                            self.summary.differ(decision.key, f"{where}extra on target")
                        elif self.options.delete and decision.target is not None:
                            if name not in deletes:
                                deletes[name] = KeySet()
                            deletes[name].add(decision.key, decision.target.size)
                    elif decision.action is Action.SKIP:
                        skipped = decision.source
                    elif decision.source is not None:
                        work[name] = decision
                if work:
                    first = next(iter(work.values()))
                    assert first.source is not None
                    yield KeyWork(first.key, first.source, work)
                elif skipped is not None:
                    self.summary.skipped(1, skipped.size)
                    self.progress.skipped(1)

    def _list_all(
        self, source: ListingSpill, spills: list[ListingSpill]
    ) -> tuple[list[Iterator[ObjectInfo]], list[Target]]:
        """The source and every target listed at the same time, each into its spill: the first
        copy waits for the longest listing, not for all of them one after another (hours each
        at 10^8 keys). Returns each listed target's entries in byte order, and those targets; a
        target that cannot be listed is reported and left out. A failed source listing stops
        the others at their next page and raises."""
        halt = threading.Event()
        with ThreadPoolExecutor(1 + len(spills), thread_name_prefix="listing") as pool:
            source_listed = pool.submit(source.fill, self._source_entries(halt))
            filled = [
                pool.submit(self._fill, spill, target, halt)
                for spill, target in zip(spills, self.targets, strict=True)
            ]
            try:
                source_listed.result()
            except BaseException:
                halt.set()
                raise
        listings: list[Iterator[ObjectInfo]] = []
        listed: list[Target] = []
        for target, future in zip(self.targets, filled, strict=True):
            try:
                listings.append(future.result())
            except Exception as exc:
                log.error("target_listing_failed", target=target.name, error=describe(exc))
                self.summary.fail(f"(listing of target {target.name})", describe(exc))
                continue
            listed.append(target)
        return listings, listed

    def _pages(self, pages: Iterable[list[T]], halt: threading.Event) -> Iterator[T]:
        """The entries of `pages`, until the run is cancelled or `halt` is set (a listing of hours
        stops at once)."""
        pages = iter(pages)
        while not self.cancel.is_set() and not halt.is_set():
            page = next(pages, None)
            if page is None:
                return
            yield from page

    def _source_entries(self, halt: threading.Event) -> Iterator[dict[str, Any]]:
        settings = self.reader.settings
        lister = StoreLister(
            self.reader.source, lean_path(self.reader.source, settings), settings.max_attempts
        )
        return self._pages(lister.pages(self.options.key_filter.prefix, None), halt)

    def _fill(self, spill: ListingSpill, target: Target, halt: threading.Event) -> Iterator[ObjectInfo]:
        """The target's listing, spilled and read back in byte order: a store's own order need not
        be S3's (Azure's is by UTF-16 code unit, SeaweedFS's by path segment). A listing that
        fails takes its spill, perhaps large, with it at once."""
        prefix = self.options.key_filter.prefix
        try:
            if isinstance(target, S3Target):
                end, settings = target.engine.target, target.engine.settings
                lister = StoreLister(end, lean_path(end, settings), settings.max_attempts)
                entries: Iterator[dict[str, Any]] = self._pages(lister.pages(prefix, None), halt)
                spill.fill(entries)
                return map(ObjectInfo.from_listing, spill.rows())
            assert isinstance(target, StoreTarget)
            objects = iter(target.target.list(prefix))
            pages = iter(lambda: list(itertools.islice(objects, 1000)), [])
            spill.fill(
                {"Key": o.key, "Size": o.size, "ETag": o.etag, "LastModified": o.last_modified}
                for o in self._pages(pages, halt)
            )
            return _store_objects(spill)
        except BaseException:
            spill.close()
            raise

    # -- one key ----------------------------------------------------------------------------------

    def _act(self, work: KeyWork) -> None:
        try:
            if self.options.check:
                self._check(work)
            else:
                self._copy(work)
        except Exception as exc:  # a key's trouble is reported, never lost with its thread
            log.error("copy_failed", key=work.key, error=describe(exc))
            self.summary.fail(work.key, describe(exc))
            self.progress.done(work.decision, 0, failed=True)

    def _copy(self, work: KeyWork) -> None:
        decision = work.decision
        names = list(work.decisions)
        absent = [name for name, d in work.decisions.items() if d.action is Action.COPY]
        try:
            results = self.reconciler.reconcile_each(
                work.key, names, self.cancel, expected_size=work.source.size, absent=absent
            )
        except Exception as exc:  # the source could not be looked at: every target's failure
            results = dict.fromkeys(names, exc)
        failed = gone = False
        archived: ArchivedObjectError | None = None
        for name, result in results.items():
            where = f"{name}: " if len(self.targets) > 1 else ""
            if isinstance(result, CancelledError):
                failed = True
            elif isinstance(result, ArchivedObjectError):
                archived = result
            elif isinstance(result, PermanentError):
                self.summary.refuse_key(work.key, f"{where}{result}")
                failed = True
            elif isinstance(result, BaseException):
                log.error("copy_failed", key=work.key, target=name, error=describe(result))
                self.summary.fail(work.key, f"{where}{describe(result)}")
                failed = True
            elif result.outcome is Outcome.DELETED:
                gone = True
        if gone:
            self.summary.gone_since_listed(work.key)
        if archived is not None:
            self.summary.archive(work.key, str(archived))  # once, whatever the targets
        counted = not failed and archived is None and not gone
        if counted:
            self.summary.finish(decision.action, work.source.size)
        self.progress.done(decision, work.source.size if counted else 0, failed=failed)

    def _check(self, work: KeyWork) -> None:
        for name, decision in work.decisions.items():
            where = f"{name}: " if len(self.targets) > 1 else ""
            if decision.action is Action.ARCHIVED:
                self.summary.archive(work.key, decision.reason or "archived, not copied")
            elif decision.action is Action.COPY:
                self.summary.differ(work.key, f"{where}missing on target")
            elif decision.action is Action.REPLACE:
                self.summary.differ(work.key, f"{where}{decision.reason or 'size differs'}")
            else:
                target = self.reconciler.targets[name]
                existing = target.head(work.key)
                if existing is None or not target_matches(work.source, existing):
                    self.summary.differ(work.key, f"{where}content differs")
        self.progress.done(work.decision, 0)

    def _delete(self, candidates: dict[str, KeySet]) -> None:
        """Keys only on targets (with --delete): the source is looked at again, now, per key,
        and the key deleted on each of its targets right after; a key back at the source stays."""
        count = sum(keys.count for keys in candidates.values())
        limit = self.options.max_delete
        if self.stats.source_keys == 0 and not self.options.allow_empty_source:
            self.summary.deletes_refused = count
            self.summary.deletes_refused_reason = (
                "the source lists no object (--allow-empty-source mirrors an empty source)"
            )
            return
        if limit is not None and count > limit:
            self.summary.deletes_refused = count
            self.summary.deletes_refused_reason = f"more than --max-delete {limit}"
            return
        for key, on in _by_key(candidates):
            for _, size in on:
                self.summary.plan(Action.DELETE, size)
            if self.options.dry_run or self.cancel.is_set():
                continue
            if not source_absent(self.reader.source, key):
                self.summary.skip_delete(key)
                continue
            for name, size in on:
                try:
                    self.reconciler.targets[name].delete(key)
                except Exception as exc:
                    self.summary.fail(key, f"delete on {name}: {describe(exc)}")
                    continue
                self.summary.finish(Action.DELETE, size)
