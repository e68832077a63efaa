"""Runs a migration (or a check): listings -> merge -> copies, verifications, deletes.

Small objects are copied in batches by a pool of processes (the GIL limits one process's request
rate); large ones by the parent's multipart engine, whose part threads are I/O bound. Deletes are
collected during the merge and carried out only after it completed, guarded by --max-delete, by
a refusal to mirror an empty source, and by a fresh look at the source just before each batch:
a key the source holds again by then is not deleted.
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, NamedTuple

from botocore.exceptions import ClientError

from migrate.discovery import shard_ranges
from migrate.filters import KeyFilter
from migrate.keyspace import KeyRange, Order, ordered, ranges_between
from migrate.listing import KeySet, Lister, ListingOrderError, StoreLister, listed_now
from migrate.plan import Action, Decision, MergeStats, source_newer
from migrate.progress import Progress
from migrate.records import Records
from migrate.uploads import abort_uploads_of
from migrate.walk import Plan, Skipped, Walk, detect_order
from replicator.clients import Clients, Endpoint, build_clients
from replicator.errors import (
    ArchivedObjectError,
    CancelledError,
    SourceBucketMissingError,
    SourceChangedError,
    UnstorableKeyError,
    describe,
    error_code,
    is_not_found,
    object_retrying,
    self_copy_refused,
)
from replicator.lean_s3 import lean_path
from replicator.logs import configure_logging, get_logger
from replicator.objects import ObjectInfo, metadata_matches, target_matches
from replicator.reconcile import head, source_absent
from replicator.runtime import quiet_garbage_collector
from replicator.settings import Settings
from replicator.transfer import TransferEngine, response_time

log = get_logger("migrate")

SMALL_BATCH = 64  # small objects per task sent to a child process
DELETE_BATCH = 1000  # keys per DeleteObjects call (S3's maximum) and per look at the source
ABORT_CHUNK = 10_000  # deleted keys whose incomplete uploads are looked up in one listing
DEFAULT_MAX_DELETE = 1000


class ShardSplitsError(ValueError):
    """--splits that do not cut the key space into --shard's N ranges."""


@dataclass(frozen=True)
class Options:
    key_filter: KeyFilter = field(default_factory=KeyFilter)
    delete: bool = False
    max_delete: int | None = DEFAULT_MAX_DELETE  # None: no limit
    allow_empty_source: bool = False
    dry_run: bool = False
    check: bool = False
    concurrency: int = 32
    processes: int = 1
    stream_target_listing: bool = False
    # Split points shared by every shard (from --plan-shards): None, each shard finds its own.
    splits: tuple[str, ...] | None = None


OutcomeKind = Literal["done", "archived", "unstorable", "gone", "failed"]
GONE = "deleted at the source since it was listed"


class CopyOutcome(NamedTuple):
    """How one copy ended; also what a child process sends back for each object."""

    key: str
    size: int
    kind: OutcomeKind
    detail: str = ""


def outcome_of(key: str, size: int, exc: BaseException, source: Endpoint | None = None) -> CopyOutcome:
    """The one place that sorts copy errors into what the summary reports apart. With `source`,
    a copy that failed because the object vanished is checked: a key the source no longer holds
    was deleted there during the run (the event pipeline deletes it on the target), not a
    failure."""
    if isinstance(exc, ArchivedObjectError):
        return CopyOutcome(key, size, "archived", str(exc))
    if isinstance(exc, UnstorableKeyError):
        return CopyOutcome(key, size, "unstorable", str(exc))
    if source is not None and (isinstance(exc, SourceChangedError) or is_not_found(exc)):
        try:
            if source_absent(source, key):
                return CopyOutcome(key, size, "gone", GONE)
        except Exception as probe:  # unconfirmed (a missing bucket included): the failure stands
            log.debug("source_look_failed", key=key, error=describe(probe))
    return CopyOutcome(key, size, "failed", describe(exc) or repr(exc))


def tier_unknown(source: ObjectInfo | None) -> bool:
    """Listed in INTELLIGENT_TIERING: the listing does not say whether it sits in an archive
    tier, only a HEAD (ArchiveStatus) does. Only these are looked at, so nothing else costs a
    request."""
    return source is not None and not source.complete and source.storage_class == "INTELLIGENT_TIERING"


@dataclass
class Summary:
    """Counts and bytes per outcome; `differences` lists what --check found.

    Worker threads only append events to a SimpleQueue; `settle()` folds them into the counters
    from one thread. A shared lock here made every copy thread queue behind the GIL.
    """

    planned: Counter[str] = field(default_factory=Counter)
    planned_bytes: Counter[str] = field(default_factory=Counter)
    done: Counter[str] = field(default_factory=Counter)
    done_bytes: Counter[str] = field(default_factory=Counter)
    # Per-key findings: counted, the first ones in memory, all of them on disk past that
    # (migrate/records.py): a --check can find as many differences as the bucket has keys.
    failures: Records[dict[str, str]] = field(default_factory=Records)
    differences: Records[dict[str, str]] = field(default_factory=Records)
    # Sources in an archive storage class or tier: not copied, not failures.
    archived: Records[dict[str, str]] = field(default_factory=Records)
    # Keys the target refuses for good: not retried, reported with the target's reason.
    unstorable: Records[dict[str, str]] = field(default_factory=Records)
    # Deletes not made because the source held the key again when they were due.
    deletes_skipped: Records[str] = field(default_factory=Records)
    # Keys deleted at the source between the listing and their copy: not failures.
    gone: Records[str] = field(default_factory=Records)
    unverified: int = 0
    listing_restarts: int = 0
    deletes_refused: int = 0
    deletes_refused_reason: str = ""
    source_missing: str = ""
    seconds: float = 0.0
    cancelled: bool = False
    listing: dict[str, Any] = field(default_factory=dict)
    _events: queue.SimpleQueue[tuple[str, str, Any]] = field(default_factory=queue.SimpleQueue, repr=False)

    def plan(self, action: Action, size: int) -> None:
        self._events.put(("plan", action.value, size))

    def unplan(self, action: Action, size: int) -> None:
        """Take back a plan that turned into another action (one key, one planned action)."""
        self._events.put(("unplan", action.value, size))

    def skipped(self, count: int, size: int) -> None:
        """`count` identical pairs, planned and done at once."""
        self._events.put(("skipped", str(count), size))

    def finish(self, action: Action, size: int) -> None:
        self._events.put(("done", action.value, size))

    def fail(self, key: str, error: str) -> None:
        self._events.put(("fail", key, error))

    def differ(self, key: str, what: str) -> None:
        self._events.put(("differ", key, what))

    def archive(self, key: str, reason: str) -> None:
        self._events.put(("archived", key, reason))

    def refuse_key(self, key: str, reason: str) -> None:
        self._events.put(("unstorable", key, reason))

    def skip_delete(self, key: str) -> None:
        self._events.put(("delete_skipped", key, None))

    def gone_since_listed(self, key: str) -> None:
        self._events.put(("gone", key, None))

    def size_only(self) -> None:
        self._events.put(("unverified", "", 0))

    def settle(self) -> Summary:
        while True:
            try:
                kind, name, value = self._events.get_nowait()
            except queue.Empty:
                return self
            if kind == "plan":
                self.planned[name] += 1
                self.planned_bytes[name] += value
            elif kind == "skipped":
                for counter, amount in ((self.planned, int(name)), (self.done, int(name))):
                    counter[Action.SKIP.value] += amount
                self.planned_bytes[Action.SKIP.value] += value
                self.done_bytes[Action.SKIP.value] += value
            elif kind == "unplan":
                self.planned[name] -= 1
                self.planned_bytes[name] -= value
                if not self.planned[name]:
                    del self.planned[name], self.planned_bytes[name]
            elif kind == "done":
                self.done[name] += 1
                self.done_bytes[name] += value
            elif kind == "fail":
                self.failures.append({"key": name, "error": value})
            elif kind == "differ":
                self.differences.append({"key": name, "difference": value})
            elif kind == "archived":
                self.archived.append({"key": name, "reason": value})
            elif kind == "unstorable":
                self.unstorable.append({"key": name, "reason": value})
            elif kind == "delete_skipped":
                self.deletes_skipped.append(name)
            elif kind == "gone":
                self.gone.append(name)
            else:
                self.unverified += 1

    def start_over(self) -> None:
        """Before a second pass over sorted listings, which decides every key afresh: only the
        copies made stay counted (the second pass finds them on the target, as skipped);
        everything else, failures included, is forgotten and decided again."""
        self.listing_restarts += 1
        made = {Action.COPY.value, Action.REPLACE.value, Action.METADATA.value}
        for counter in (self.done, self.done_bytes):
            for name in [name for name in counter if name not in made]:
                del counter[name]
        self.planned = Counter({name: self.done[name] for name in made if self.done.get(name)})
        self.planned_bytes = Counter({name: self.done_bytes[name] for name in self.planned})
        for records in self._records():
            records.clear()
        self.unverified = 0

    def _records(self) -> tuple[Records[Any], ...]:
        return (
            self.failures,
            self.differences,
            self.archived,
            self.unstorable,
            self.deletes_skipped,
            self.gone,
        )

    def close(self) -> None:
        """Remove the findings' files (once the report is written)."""
        for records in self._records():
            records.close()

    def as_dict(self) -> dict[str, Any]:
        return {
            "planned": dict(self.planned),
            "planned_bytes": dict(self.planned_bytes),
            "done": dict(self.done),
            "done_bytes": dict(self.done_bytes),
            "failures": self.failures,
            "differences": self.differences,
            "archived_not_copied": self.archived,
            "cannot_be_stored_on_target": self.unstorable,
            "deletes_skipped_source_has_key_again": self.deletes_skipped,
            "gone_since_listed": self.gone,
            "unverified_same_size": self.unverified,
            "deletes_refused": self.deletes_refused,
            "deletes_refused_reason": self.deletes_refused_reason,
            "source_bucket_missing": self.source_missing,
            "listing_restarts": self.listing_restarts,
            "seconds": round(self.seconds, 3),
            "cancelled": self.cancelled,
            "listing": self.listing,
        }


def _prefetch(items: Iterable[ObjectInfo], depth: int = 10_000) -> Iterator[ObjectInfo]:
    """Run a listing in its own thread, started now, so both sides are listed concurrently."""
    buffer: queue.Queue[Any] = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in items:
                buffer.put(item)
        except BaseException as exc:
            buffer.put(exc)
        buffer.put(done)

    threading.Thread(target=produce, name="listing", daemon=True).start()

    def consume() -> Iterator[ObjectInfo]:
        while True:
            item = buffer.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    return consume()


# -- child processes for small objects -----------------------------------------------------------

_child: dict[str, Any] = {}


def _child_init(settings: Settings, parent: Clients | None, threads: int) -> None:
    configure_logging(settings.log_level, settings.log_format)
    clients = parent.renewed(settings) if parent is not None else build_clients(settings)
    quiet_garbage_collector()
    assert clients.target is not None  # settings for one S3 target (Settings.for_target)
    _child["engine"] = TransferEngine(clients.source, clients.target, settings)
    _child["threads"] = ThreadPoolExecutor(threads)
    _child["retrying"] = object_retrying(settings.source_changed_restarts, settings.integrity_restarts)


def _child_copy(batch: list[tuple[str, int, str]]) -> list[CopyOutcome]:
    engine: TransferEngine = _child["engine"]
    pool: ThreadPoolExecutor = _child["threads"]

    def one(item: tuple[str, int, str]) -> CopyOutcome:
        key, size, etag = item
        try:
            listed = ObjectInfo(key=key, size=size, etag=etag, complete=False)
            result = _child["retrying"](lambda: engine.copy(listed))
            return CopyOutcome(key, result.size, "done")
        except Exception as exc:
            return outcome_of(key, size, exc, engine.source)

    return list(pool.map(one, batch))


class Migration:
    def __init__(
        self,
        engine: TransferEngine,
        options: Options,
        progress: Progress | None = None,
        clients: Clients | None = None,
        source_listing: Lister | None = None,
    ) -> None:
        self.engine = engine
        self.clients = clients  # handed to child processes, which renew them
        self.source: Endpoint = engine.source
        self.target: Endpoint = engine.target
        self.options = options
        self.summary = Summary()
        self.cancel = threading.Event()
        self.progress = progress or Progress.quiet()
        self._threads = ThreadPoolExecutor(options.concurrency, thread_name_prefix="migrate")
        # Work handed to the pools and not known to be finished; only the merge thread touches it
        # (a lock or semaphore shared with the copy threads convoys under the GIL).
        self._active: list[Future[Any]] = []
        self._max_active = options.concurrency * 4
        self._processes: ProcessPoolExecutor | None = None
        self._small_batch: list[Decision] = []
        settings = engine.settings
        self._retrying = object_retrying(settings.source_changed_restarts, settings.integrity_restarts)
        self._listing_proves_absence = True  # until the source answers a listing out of order
        self._listers: tuple[Lister, Lister] | None = None
        self._source_listing = source_listing  # an S3 Inventory in place of LIST requests
        self._shard_range: KeyRange | None = None  # found once: a pass started over keeps it
        self._first_plan: Plan | None = None
        self._started = time.monotonic() - process_age()
        self._first_copy: float | None = None
        self.summary.listing["first_copy_seconds"] = None
        self.summary.listing["discovery_requests"] = 0
        self.summary.listing["newer_than_inventory"] = 0

    # -- entry point --------------------------------------------------------------------------

    def run(self) -> Summary:
        started = time.monotonic()
        force_sorted = False
        try:
            while True:
                deletes = KeySet()
                try:
                    stats = self._pass(force_sorted, deletes)
                    if not self.cancel.is_set():
                        self._plan_deletes(deletes)
                        self._deletes(deletes, stats)
                    break
                except ListingOrderError as exc:
                    if force_sorted:
                        raise
                    # A store answered out of the order it is known for: start over with both
                    # sides sorted on disk, once what is queued has finished. The deletes
                    # collected are dropped (not counted yet); copies made stand, and the
                    # second pass finds them on the target (counted again, as skipped).
                    log.warning("listing_not_in_expected_order", side=exc.side, detail=str(exc))
                    self._flush_small()
                    self._wait_all()
                    self.summary.settle().start_over()
                    force_sorted = True
                finally:
                    deletes.remove()
        except SourceBucketMissingError as exc:
            # Nothing (more) is deleted: a missing bucket lists nothing and every key looks gone.
            self.summary.source_missing = str(exc)
            log.error("source_bucket_missing", error=str(exc))
        finally:
            self._wait_all()
            self._threads.shutdown(wait=True)
            if self._processes is not None:
                self._processes.shutdown(wait=True, cancel_futures=True)
            self.summary.settle()
            self.summary.seconds = time.monotonic() - started
            self.summary.cancelled = self.cancel.is_set()
            if self._listers is not None:
                source, target = self._listers
                self.summary.listing.update(source_requests=source.requests, target_requests=target.requests)
        return self.summary

    def stop(self, *_: Any) -> None:
        if not self.cancel.is_set():
            log.warning("migration_stopping")
        self.cancel.set()

    # -- one pass over the listings -----------------------------------------------------------

    def _sides(self) -> tuple[Lister, Lister]:
        if self._listers is None:
            settings = self.engine.settings
            attempts = settings.max_attempts
            # An S3 Inventory stands in for the source's listing: no LIST request there.
            source = self._source_listing or StoreLister(
                self.source, lean_path(self.source, settings), attempts
            )
            self._listers = (source, StoreLister(self.target, lean_path(self.target, settings), attempts))
        return self._listers

    def _plan(self, force_sorted: bool) -> Plan:
        if self._first_plan is None:
            source, target = self._sides()
            first, prefix = self._first_range(), self.options.key_filter.prefix
            target_order = (
                Order.BYTE if self.options.stream_target_listing else detect_order(target, first, prefix)
            )
            # Split points are found by listing the source's top: its first page is that one.
            source_first = first or KeyRange()
            self._first_plan = Plan.for_pair(detect_order(source, source_first, prefix), target_order)
        if force_sorted:
            # Sorted on disk, but in the first pass's order: a shard's range keeps its keys.
            return Plan(self._first_plan.order, sort_source=True, sort_target=True)
        return self._first_plan

    def _first_range(self) -> KeyRange | None:
        """The range this run lists first, if it is known before the listing order."""
        index, count = self.options.key_filter.shard
        if count == 1:
            return KeyRange()
        splits = self.options.splits
        if splits is None or len(splits) != count - 1:
            return None  # found by discovery, after the order
        return ranges_between(list(splits))[index]

    def _ranges(self, plan: Plan) -> list[KeyRange]:
        """The key ranges this run lists: all of them, or its shard's."""
        index, count = self.options.key_filter.shard
        if count == 1:
            return [KeyRange()]
        if self._shard_range is None:
            splits = self.options.splits
            if splits is None:
                splits = self.plan_shards(count, plan)
            elif len(splits) != count - 1 or any(
                ordered(b, plan.order) < ordered(a, plan.order) for a, b in itertools.pairwise(splits)
            ):
                raise ShardSplitsError(
                    f"--splits needs {count - 1} keys in the listing order of these stores "
                    f"({plan.order.value}); run --plan-shards {count} again"
                )
            self._shard_range = ranges_between(list(splits))[index]
            self.summary.listing["shard_range"] = [self._shard_range.start, self._shard_range.end]
            log.info("shard_range", shard=f"{index}/{count}", range=self._shard_range.describe())
        return [self._shard_range]

    def plan_shards(self, count: int, plan: Plan | None = None) -> tuple[str, ...]:
        """Split points for `count` shards, found with a few requests to the source. Shards of a
        bucket being written to must share one set (--splits): found apart, minutes apart, they
        may differ, and keys between the two answers would belong to no shard, or to two."""
        plan = plan or self._plan(False)
        ranges, requests = shard_ranges(self._sides()[0], plan.order, self.options.key_filter.prefix, count)
        self.summary.listing["discovery_requests"] = requests
        return tuple(r.start for r in ranges[1:] if r.start is not None)

    def _pass(self, force_sorted: bool, deletes: KeySet) -> MergeStats:
        plan = self._plan(force_sorted)
        if self._copies_small_in_processes() and self._processes is None:
            # Fork the copy processes now, before the 16 listing threads start: a child forked
            # while a thread holds a lock (a connection pool's, the logger's) inherits it held.
            # Only the progress ticker runs this early, and it holds none of the children's.
            self._processes = self._start_processes()
            self._processes.submit(int).result()
        walk = Walk(*self._sides(), plan, self.options.key_filter, self._ranges(plan), cancel=self.cancel)
        for seen, decision in enumerate(walk.decisions()):
            if self.cancel.is_set():
                break
            if seen % 1000 == 0:
                self.summary.settle()  # events folded as they come: memory flat for any bucket
            if isinstance(decision, Skipped):
                self.summary.skipped(decision.keys, decision.size)
                self.progress.skipped(decision.keys)
                continue
            if decision.action is Action.DELETE:
                if self._newer_than_inventory(decision.target):
                    # Written after the inventory was taken: the event pipeline's, not extra.
                    self.summary.listing["newer_than_inventory"] += 1
                    continue
                deletes.add(decision.key, decision.size)  # planned once the pass is complete
                continue
            self.summary.plan(decision.action, decision.size)
            self.progress.planned(decision)
            if decision.action is Action.SKIP:
                self.summary.finish(Action.SKIP, decision.size)
                self.progress.done(decision, 0)
            elif decision.action is Action.ARCHIVED:
                self._archived(decision)
            else:
                self._handle(decision)
        self._flush_small()
        self._wait_all()
        stats = walk.stats
        self.summary.listing.update(
            order=plan.name,
            ranges=stats.ranges,
            splits=stats.splits,
            split_probes=stats.probes,
            keys_compared=stats.merge.keys,
            keys_digest=f"{stats.merge.digest:016x}",
        )
        return stats.merge

    def _plan_deletes(self, deletes: KeySet) -> None:
        for key, size in deletes:
            decision = Decision(Action.DELETE, key, None, None, "not in source")
            self.summary.plan(Action.DELETE, size)
            self.progress.planned(decision)
            if self.options.check:
                self.summary.differ(key, "extra on target")
        self.progress.listing_done()

    def _archived(self, decision: Decision) -> None:
        assert decision.source is not None
        source = decision.source
        where = source.archive_tier or source.storage_class or "an archive tier"
        self.summary.archive(decision.key, f"archived in {where}, not copied")
        self.progress.done(decision, 0)

    # -- copies and verifications -------------------------------------------------------------

    def _handle(self, decision: Decision) -> None:
        if decision.action is Action.VERIFY:
            self._submit(self._verify, decision)
        elif tier_unknown(decision.source):
            self._submit(self._copy_after_a_look, decision)
        elif self.options.check or self.options.dry_run:
            self._report(decision)
        elif decision.size < self.engine.settings.multipart_threshold and self.options.processes > 1:
            self._small_batch.append(decision)
            if len(self._small_batch) >= SMALL_BATCH:
                self._flush_small()
        else:
            self._submit(self._copy, decision)

    def _newer_than_inventory(self, target: ObjectInfo | None) -> bool:
        created = getattr(self._source_listing, "created", None)
        modified = target.last_modified if target is not None else None
        return created is not None and modified is not None and modified >= created

    def _copies_small_in_processes(self) -> bool:
        return self.options.processes > 1 and not (self.options.check or self.options.dry_run)

    def _submit(self, fn: Callable[[Decision], None], decision: Decision) -> None:
        self._make_room()
        self._active.append(self._threads.submit(fn, decision))

    def _make_room(self) -> None:
        """Bound the work queued ahead of the copy threads (memory stays flat for any bucket)."""
        if len(self._active) < self._max_active:
            return
        self._active = [f for f in self._active if not f.done()]
        while len(self._active) >= self._max_active:
            wait(self._active, return_when=FIRST_COMPLETED)
            self._active = [f for f in self._active if not f.done()]

    def _wait_all(self) -> None:
        wait(self._active)
        self._active = []

    def _report(self, decision: Decision) -> None:
        """--check or --dry-run: what would be copied, nothing written."""
        if self.options.check:
            what = "missing on target" if decision.action is Action.COPY else decision.reason
            self.summary.differ(decision.key, what)
        self.progress.done(decision, 0)

    def _copy_after_a_look(self, decision: Decision) -> None:
        source = self._look_at_source(decision)
        if source is None:
            return
        decision = replace(decision, source=source)
        if source.archived:
            self._archived(decision)
        elif self.options.check or self.options.dry_run:
            self._report(decision)
        else:
            self._copy(decision)

    def _look_at_source(self, decision: Decision) -> ObjectInfo | None:
        """A HEAD of the source (its archive tier, headers and metadata); None once the outcome
        is recorded: gone since listed, or the look failed."""
        try:
            source = head(self.source, decision.key)
        except Exception as exc:
            self._record(decision, outcome_of(decision.key, decision.size, exc))
            return None
        if source is None:
            self._record(decision, CopyOutcome(decision.key, decision.size, "gone", GONE))
        return source

    def _record(self, decision: Decision, outcome: CopyOutcome) -> None:
        if outcome.kind == "done" and self._first_copy is None and decision.action is Action.COPY:
            self._first_copy = time.monotonic() - self._started
            self.summary.listing["first_copy_seconds"] = round(self._first_copy, 3)
        if outcome.kind == "done":
            self.summary.finish(decision.action, outcome.size)
            self.progress.done(decision, outcome.size)
        elif outcome.kind == "archived":
            self.summary.archive(outcome.key, outcome.detail)
            self.progress.done(decision, 0)
        elif outcome.kind == "gone":
            self.summary.gone_since_listed(outcome.key)
            log.info("gone_since_listed", key=outcome.key)
            self.progress.done(decision, 0)
        elif outcome.kind == "unstorable":
            self.summary.refuse_key(outcome.key, outcome.detail)
            log.error("key_unstorable", key=outcome.key, reason=outcome.detail)
            self.progress.done(decision, 0, failed=True)
        else:
            self.summary.fail(outcome.key, outcome.detail)
            log.error("copy_failed", key=outcome.key, error=outcome.detail)
            self.progress.done(decision, 0, failed=True)

    def _copy(self, decision: Decision) -> None:
        assert decision.source is not None
        source = decision.source
        try:
            result = self._retrying(lambda: self.engine.copy(source, self.cancel))
        except CancelledError:
            return
        except Exception as exc:
            self._record(decision, outcome_of(decision.key, decision.size, exc, self.source))
            return
        self._record(decision, CopyOutcome(decision.key, result.size, "done"))

    def _verify(self, decision: Decision) -> None:
        assert decision.source is not None
        try:
            target = head(self.target, decision.key)
        except Exception as exc:
            self.summary.fail(decision.key, describe(exc))
            self.progress.done(decision, 0, failed=True)
            return
        source = decision.source
        if target is not None and target_matches(source, target):
            if source_newer(source, target):
                self._check_metadata(decision, target)
            else:
                self.summary.finish(Action.SKIP, decision.size)
                self.progress.done(decision, 0)
            return
        if target is not None and self.options.check and not self._checksum_known(source, target):
            # Same size and nothing to compare the content with: counted, not a difference.
            self.summary.size_only()
            self.summary.finish(Action.SKIP, decision.size)
            self.progress.done(decision, 0)
            return
        self._replace(decision, source, target)

    def _replace(self, decision: Decision, source: ObjectInfo, target: ObjectInfo | None) -> None:
        if tier_unknown(source):
            looked = self._look_at_source(decision)
            if looked is None:
                return
            source = looked
        if source.archived:
            self._archived(Decision(Action.ARCHIVED, decision.key, source, target))
        elif self.options.check:
            self.summary.differ(decision.key, "content differs")
            self.progress.done(decision, 0)
        elif self.options.dry_run:
            self.summary.plan(Action.REPLACE, decision.size)
            self.progress.done(decision, 0)
        else:
            self.summary.plan(Action.REPLACE, decision.size)
            self._copy(Decision(Action.REPLACE, decision.key, source, target, "content differs"))

    def _check_metadata(self, decision: Decision, target: ObjectInfo) -> None:
        """Same bytes, but the source changed after the copy: compare headers and metadata."""
        try:
            source = head(self.source, decision.key)
        except Exception as exc:
            self.summary.fail(decision.key, describe(exc))
            self.progress.done(decision, 0, failed=True)
            return
        if source is not None and not target_matches(source, target):  # rewritten since listed
            self._replace(decision, source, target)
            return
        if source is None or metadata_matches(source, target):
            # None: gone since the listing; the event pipeline (or the next run) settles it.
            self.summary.finish(Action.SKIP, decision.size)
            self.progress.done(decision, 0)
            return
        if self.options.check:
            self.summary.differ(decision.key, "metadata differs")
            self.progress.done(decision, 0)
            return
        self.summary.plan(Action.METADATA, decision.size)
        if self.options.dry_run:
            self.progress.done(decision, 0)
            return
        try:
            self.engine.update_metadata(source, target)  # the HEAD just made: no second look
        except Exception as exc:
            if not self_copy_refused(exc):
                self._record(decision, outcome_of(decision.key, decision.size, exc, self.source))
                return
            # The target will not copy an object onto itself: send the bytes instead.
            log.warning("metadata_update_refused", key=decision.key, error=describe(exc))
            self.summary.unplan(Action.METADATA, decision.size)
            self.summary.plan(Action.REPLACE, decision.size)
            self._copy(Decision(Action.REPLACE, decision.key, source, target, "metadata update refused"))
            return
        self.summary.finish(Action.METADATA, 0)  # no bytes sent
        self.progress.done(decision, 0)

    @staticmethod
    def _checksum_known(source: ObjectInfo, target: ObjectInfo) -> bool:
        return bool(target.recorded_source_etag) or (
            source.known_md5 is not None and target.known_md5 is not None
        )

    def _flush_small(self) -> None:
        if not self._small_batch:
            return
        batch, self._small_batch = self._small_batch, []
        if self._processes is None:
            self._processes = self._start_processes()
        by_key = {d.key: d for d in batch}
        self._make_room()
        future = self._processes.submit(
            _child_copy, [(d.key, d.size, d.source.etag if d.source else "") for d in batch]
        )

        def collect(f: Future[list[CopyOutcome]]) -> None:
            try:
                outcomes = f.result()
            except Exception as exc:
                outcomes = [CopyOutcome(d.key, d.size, "failed", describe(exc)) for d in batch]
            for outcome in outcomes:
                self._record(by_key[outcome.key], outcome)

        future.add_done_callback(collect)
        self._active.append(future)

    def _start_processes(self) -> ProcessPoolExecutor:
        # Forked children start from this process's state: the settings, and the session with
        # its service models loaded, so a child is copying within milliseconds. Elsewhere they
        # are spawned and build their clients from the settings.
        forked = "fork" in multiprocessing.get_all_start_methods()
        return ProcessPoolExecutor(
            self.options.processes,
            mp_context=multiprocessing.get_context("fork" if forked else "spawn"),
            initializer=_child_init,
            initargs=(
                self.engine.settings,
                self.clients if forked else None,
                # --concurrency is objects in flight in all: shared among the processes.
                max(1, -(-self.options.concurrency // self.options.processes)),
            ),
        )

    # -- deletes ------------------------------------------------------------------------------

    def _deletes(self, deletes: KeySet, stats: MergeStats) -> None:
        if self.options.check or self.options.dry_run or not self.options.delete or not deletes.count:
            return
        count = deletes.count
        if stats.source_keys == 0 and not self.options.allow_empty_source:
            self._refuse_deletes(
                count,
                f"the source lists no object under the selected keys while the target holds "
                f"{count}: a wrong bucket, endpoint or --reverse? (--allow-empty-source to mirror "
                "an empty source)",
            )
            return
        limit = self.options.max_delete
        if limit is not None and count > limit:
            self._refuse_deletes(count, f"they exceed --max-delete {limit} (raise it, or 'unlimited')")
            return
        batch: list[str] = []
        deleted: dict[str, datetime] = {}
        try:
            for key, _ in deletes:
                batch.append(key)
                if len(batch) == DELETE_BATCH:
                    deleted.update(self._delete_batch(batch))
                    batch = []
                if len(deleted) >= ABORT_CHUNK:
                    self._abort_uploads(deleted)
                if self.cancel.is_set():
                    return
            if batch:
                deleted.update(self._delete_batch(batch))
        finally:
            self._abort_uploads(deleted)

    def _refuse_deletes(self, count: int, reason: str) -> None:
        self.summary.deletes_refused = count
        self.summary.deletes_refused_reason = reason
        log.error("deletes_refused", would_delete=count, reason=reason)

    def _still_at_source(self, keys: list[str]) -> set[str]:
        """The keys the source holds now (raises SourceBucketMissingError when it is gone)."""
        if self._listing_proves_absence:
            try:
                return listed_now(self.source, keys)
            except ListingOrderError as exc:
                log.warning("source_listing_not_in_byte_order", detail=str(exc))
                self._listing_proves_absence = False
        return {key for key in keys if not source_absent(self.source, key)}

    def _delete_batch(self, keys: list[str]) -> dict[str, datetime]:
        """Delete the keys the source still does not hold; returns them with the target's time
        of their delete."""
        present = self._still_at_source(keys)
        for key in keys:
            if key in present:
                log.warning("delete_skipped", key=key, reason="source has the key again")
                self.summary.skip_delete(key)
        keys = [key for key in keys if key not in present]
        if not keys:
            return {}
        client, bucket = self.target.client, self.target.bucket
        when: dict[str, datetime] = {}
        try:
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
            failed = {e["Key"]: e.get("Code", "error") for e in response.get("Errors", [])}
            when = dict.fromkeys(keys, _target_clock(response))
        except ClientError as exc:
            # Some stores reject the batch call (checksum headers); delete one by one instead.
            log.warning("delete_objects_unsupported", error=describe(exc))
            failed = {}
            for key in keys:
                try:
                    when[key] = _target_clock(client.delete_object(Bucket=bucket, Key=key))
                except ClientError as one:
                    failed[key] = error_code(one) or "error"
        for key in keys:
            if key in failed:
                self.summary.fail(key, f"delete: {failed[key]}")
            else:
                self.summary.finish(Action.DELETE, 0)
        return {key: at for key, at in when.items() if key not in failed}

    def _abort_uploads(self, deleted: dict[str, datetime]) -> None:
        """Abort the deleted keys' incomplete uploads: their parts are billed, invisibly."""
        if not deleted:
            return
        try:
            aborted = abort_uploads_of(self.target, deleted)
        except ClientError as exc:
            log.error("abort_uploads_failed", error=describe(exc))
        else:
            if aborted:
                log.info("uploads_of_deleted_keys_aborted", count=len(aborted))
        deleted.clear()


def _target_clock(response: Any) -> datetime:
    """The target's clock at a response, to compare with its upload times (ours if it sent none)."""
    return response_time(response) or datetime.now(UTC)


def process_age() -> float:
    """Seconds since this process started (interpreter start-up included), from /proc; 0 elsewhere."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return max(0.0, uptime - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


def default_processes() -> int:
    return max(1, min(4, os.cpu_count() or 1))
