"""Both sides' listings, range by range, merged into decisions by several threads at once.

The key space is cut into disjoint ranges (one, or a shard's share); each range is listed on both
sides and merged on its own, so no global order is needed and ranges run in parallel. Each side
of a range fetches its next page while the last one is merged. When a thread has nothing to do,
it splits a range still being listed: at the start of a folder between the range's position and
its end (learned with Delimiter listings, see `migrate.splitting`), or else at the first key a
probe of the source finds past a point a `Projection` of the keys seen puts midway (the probe's
page is the new range's first). Splits cost requests, so a walk spends on them a twentieth of
the pages it has listed: a flat prefix of millions of keys is listed by all threads at once,
without knowing its size in advance, and a shard of a few dozen pages is hardly split at all.

Memory holds a page or two per range in flight. Stores listing in a known order stream; a side
in no known order is sorted on disk, per range (its rows, and only those, are spilled), and its
ranges are not split: each split would list a superset on that side again.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from migrate.filters import KeyFilter
from migrate.keyspace import KeyRange, Order, Projection, known_order, ordered, start_after, unordered
from migrate.listing import (
    Lister,
    ListingOrderError,
    Pages,
    StoreLister,
    sorted_entries_on_disk,
)
from migrate.plan import Decision, MergeStats, compare_pair, identical_in_listings, source_only, target_only
from migrate.splitting import CUT_COST, PROBE_COST, FolderBoundaries, SplitBudget
from replicator.logs import get_logger
from replicator.objects import ObjectInfo

log = get_logger("migrate.walk")

LISTING_THREADS = 16  # ranges listed at once (rclone's --checkers is matched to it in the bench)
SAMPLES = 4000  # keys kept to place split points
SKIP_BATCH = 1000  # identical pairs counted together
# A range whose probes split nothing this many times in a row is left to its own thread: the
# projection does not see where its keys lie, and each probe costs a LIST request.
MAX_FAILED_SPLITS = 2
_DONE = object()


class Skipped(NamedTuple):
    """Identical pairs the listings settled: counted, no decision made for each."""

    keys: int
    size: int


def detect_order(lister: Lister, first: KeyRange | None = None, prefix: str = "") -> Order | None:
    """The order a side lists in: from the store's host or Server header; listings that are
    not stores (an inventory) are sorted. When the host does not tell, the first page of the
    range `first` is asked for now and kept for the walk, which then starts with it: no
    request is spent on the question (unless the range starts at a folder and the store turns
    out to list in byte order: StartAfter differs then, and the page goes unused). Without a
    range known yet, one 1-key page answers."""
    if not isinstance(lister, StoreLister):
        return Order.BYTE
    order = known_order(lister.endpoint, lister.server)
    if order is None and not lister.server:
        if first is None:
            next(lister.pages(prefix, None, max_keys=1), None)
        else:
            # Both orders list the same prefix (a shared prefix reads the same in either).
            lister.prime(first.listing_prefix(prefix, Order.BYTE), start_after(first.start, Order.TREE))
        order = known_order(lister.endpoint, lister.server)
    return order


@dataclass
class Plan:
    """How a pair is walked: the merge order and which sides are sorted on disk."""

    order: Order
    sort_source: bool = False
    sort_target: bool = False

    @property
    def splittable(self) -> bool:
        return not (self.sort_source or self.sort_target)

    @property
    def name(self) -> str:
        return "sorted" if not self.splittable else self.order.value

    @classmethod
    def for_pair(cls, source: Order | None, target: Order | None) -> Plan:
        if source is not None and source == target:
            return cls(source)
        # Different (or unknown) orders: merge in byte order, sorting what does not list in it.
        return cls(Order.BYTE, sort_source=source is not Order.BYTE, sort_target=target is not Order.BYTE)


class _Range:
    """A range being listed. `end` shrinks when the range is split; `position` is the highest
    key (in merge order) of any page fetched for it, on either side: a split point must lie
    above it, so that nothing already yielded belongs to the new range."""

    def __init__(self, bounds: KeyRange, order: Order, first_source: Pages | None = None):
        self.start = bounds.start
        self.end = bounds.end
        self.order = order
        self.start_key = ordered(bounds.start, order) if bounds.start is not None else None
        self.end_key = ordered(bounds.end, order) if bounds.end is not None else None
        self.position: str | None = None
        self.no_source_above: str | None = None  # a probe found no source key past this
        self.split_tried_at: str | None = None  # a split failed from here: wait for progress
        self.failed_splits = 0  # probes that split nothing: each one a LIST request wasted
        self.first_source = first_source
        self.splitting = False
        self.lock = threading.Lock()

    def bounds(self) -> KeyRange:
        return KeyRange(self.start, self.end)

    def fetched(self, last: str | None) -> str | None:
        """Record a page's last key; returns the range's end (in merge order) to filter with."""
        with self.lock:
            if last is not None and (self.position is None or last > self.position):
                self.position = last
            return self.end_key

    def reached(self, last: str | None) -> bool:
        """A side whose last page ended at `last` has listed the whole range."""
        with self.lock:
            return self.end_key is not None and last is not None and last >= self.end_key

    def cut_at(self, key: str) -> tuple[bool, str | None]:
        """End the range at `key` (raw) if nothing at or above it was fetched yet; returns
        whether it did, and the end the range had (the new range's end)."""
        point = ordered(key, self.order)
        with self.lock:
            if self.position is not None and point <= self.position:
                return False, None
            if self.start_key is not None and point <= self.start_key:
                return False, None
            if self.end_key is not None and point >= self.end_key:
                return False, None
            old_end = self.end
            self.end, self.end_key = key, point
            return True, old_end


@dataclass
class WalkStats:
    ranges: int = 0
    splits: int = 0
    probes: int = 0
    merge: MergeStats = field(default_factory=MergeStats)


class Walk:
    """Decisions for the ranges given, from LISTING_THREADS threads; `decisions()` yields them
    in the calling thread."""

    def __init__(
        self,
        source: Lister,
        target: Lister,
        plan: Plan,
        key_filter: KeyFilter,
        ranges: Iterable[KeyRange],
        threads: int = LISTING_THREADS,
        cancel: threading.Event | None = None,
    ) -> None:
        self.source, self.target, self.plan = source, target, plan
        self.key_filter = key_filter
        self.prefix = key_filter.prefix
        self.threads = threads
        self.cancel = cancel or threading.Event()
        self._stop = threading.Event()
        self.stats = WalkStats()
        self._pending: list[_Range] = [_Range(r, plan.order) for r in ranges]
        self._active: list[_Range] = []
        self._idle = 0
        self._finished = False
        self._cv = threading.Condition()
        self._out: queue.Queue[Any] = queue.Queue(maxsize=2_000)  # memory: decisions waiting
        self._samples: list[str] = []
        self._random = random.Random(0)
        self.budget = SplitBudget()
        self._folders = FolderBoundaries(source, plan.order, self.prefix)
        self._stats_lock = threading.Lock()

    # -- the consumer ---------------------------------------------------------------------------

    def decisions(self) -> Iterator[Decision | Skipped]:
        workers = [
            threading.Thread(target=self._worker, name=f"listing-{i}", daemon=True)
            for i in range(self.threads)
        ]
        for worker in workers:
            worker.start()
        running = len(workers)
        try:
            while running:
                item = self._out.get()
                if item is _DONE:
                    running -= 1
                elif isinstance(item, BaseException):
                    raise item
                else:
                    yield item
        finally:
            self._stop.set()  # the consumer is gone (done, failed or stopped): so are the workers
            with self._cv:
                self._finished = True
                self._cv.notify_all()
            while running:  # unblock producers waiting on a full queue
                try:
                    if self._out.get(timeout=0.1) is _DONE:
                        running -= 1
                except queue.Empty:
                    pass

    def _stopped(self) -> bool:
        return self._stop.is_set() or self.cancel.is_set()

    # -- the workers ----------------------------------------------------------------------------

    def _worker(self) -> None:
        try:
            while True:
                job = self._next_job()
                if job is None:
                    return
                if isinstance(job, tuple):
                    self._split(job[0])
                else:
                    try:
                        self._walk(job)
                    finally:
                        with self._cv:
                            self._active.remove(job)
                            self._cv.notify_all()
        except BaseException as exc:
            self._stop.set()
            self._out.put(exc)
        finally:
            self._out.put(_DONE)

    def _next_job(self) -> _Range | tuple[_Range] | None:
        with self._cv:
            while True:
                if self._finished or self._stopped():
                    return None
                if self._pending:
                    job = self._pending.pop(0)
                    self._active.append(job)
                    with self._stats_lock:
                        self.stats.ranges += 1
                    return job
                candidate = self._split_candidate()
                if candidate is not None:
                    candidate.splitting = True
                    return (candidate,)
                if not self._active:
                    self._finished = True
                    self._cv.notify_all()
                    return None
                self._cv.wait(timeout=0.05)

    def _split_candidate(self) -> _Range | None:
        if not self.plan.splittable or not self.budget.affords(CUT_COST):
            return None
        ready = [
            r
            for r in self._active
            if not r.splitting
            and r.position is not None
            and r.position != r.split_tried_at
            and r.failed_splits < MAX_FAILED_SPLITS
        ]
        return ready[0] if ready else None

    # -- one range ------------------------------------------------------------------------------

    def _walk(self, rng: _Range) -> None:
        stats = MergeStats()
        source = self._entries(self.source, rng, self.plan.sort_source, rng.first_source)
        target = self._entries(self.target, rng, self.plan.sort_target, None)
        try:
            for item in self._merge(source, target, stats):
                if self._stopped():
                    break
                self._out.put(item)
        finally:
            for side in (source, target):
                if isinstance(side, Generator):
                    side.close()  # stops the side's fetching now, not when collected
        with self._stats_lock:
            merged = self.stats.merge
            merged.source_keys += stats.source_keys
            merged.keys += stats.keys
            merged.digest ^= stats.digest

    def _merge(
        self, source: Iterator[dict[str, Any]], target: Iterator[dict[str, Any]], stats: MergeStats
    ) -> Iterator[Decision | Skipped]:
        """`plan.merge` over listing entries: a pair the listings settle as identical is counted
        in batches without building objects or decisions (most pairs of a check or a re-run);
        every other key gets plan's decision."""
        order, key_filter = self.plan.order, self.key_filter
        fast = not key_filter.filters_objects
        selected = key_filter.key_selected
        sources = ((ordered(e["Key"], order), e) for e in source if selected(e["Key"]))
        targets = ((ordered(e["Key"], order), e) for e in target if selected(e["Key"]))
        src, dst = next(sources, None), next(targets, None)
        skipped = skipped_bytes = 0
        while src is not None or dst is not None:
            decision: Decision | None = None
            if dst is None or (src is not None and src[0] < dst[0]):
                assert src is not None
                stats.source_keys += 1
                stats.compared(src[1]["Key"])
                decision = source_only(ObjectInfo.from_listing(src[1]), key_filter)
                src = next(sources, None)
            elif src is None or dst[0] < src[0]:
                stats.compared(dst[1]["Key"])
                decision = target_only(ObjectInfo.from_listing(dst[1]), key_filter)
                dst = next(targets, None)
            else:
                stats.source_keys += 1
                stats.compared(src[1]["Key"])
                if fast and identical_in_listings(src[1], dst[1]):
                    skipped += 1
                    skipped_bytes += int(src[1]["Size"])
                    if skipped == SKIP_BATCH:
                        yield Skipped(skipped, skipped_bytes)
                        skipped = skipped_bytes = 0
                else:
                    source_object = ObjectInfo.from_listing(src[1])
                    if key_filter.object_selected(source_object):
                        decision = compare_pair(source_object, ObjectInfo.from_listing(dst[1]))
                src, dst = next(sources, None), next(targets, None)
            if decision is not None:
                yield decision
        if skipped:
            yield Skipped(skipped, skipped_bytes)

    def _entries(
        self, lister: Lister, rng: _Range, sort: bool, first: Pages | None
    ) -> Iterator[dict[str, Any]]:
        if sort:
            order = self.plan.order
            return sorted_entries_on_disk(
                self._superset(lister, rng), order_key=lambda k: ordered(k, order).encode()
            )
        return self._stream(lister, rng, first)

    def _superset(self, lister: Lister, rng: _Range) -> Iterator[dict[str, Any]]:
        """Every key of the range from a store in no known order: all keys under the prefix the
        range's ends share, filtered (the caller sorts them)."""
        order = self.plan.order
        prefix = rng.bounds().listing_prefix(self.prefix, order)
        for page in lister.pages(prefix, None):
            if self._stopped():
                return
            for entry in page:
                key = ordered(entry["Key"], order)
                if (rng.start_key is None or key >= rng.start_key) and (
                    rng.end_key is None or key < rng.end_key
                ):
                    yield entry

    def _stream(self, lister: Lister, rng: _Range, first: Pages | None) -> Iterator[dict[str, Any]]:
        order = self.plan.order
        # Full pages from the first: a short first page costs a request more per range and side,
        # and gains some 10 ms on the first copy.
        pages = first or lister.pages(
            rng.bounds().listing_prefix(self.prefix, order), start_after(rng.start, order)
        )
        ahead = self._ahead(rng, pages)
        try:
            yield from self._in_range(lister, rng, ahead)
        finally:
            ahead.close()  # its fetching thread ends now, not when the generator is collected

    def _in_range(
        self, lister: Lister, rng: _Range, ahead: Iterator[tuple[list[dict[str, Any]], str | None]]
    ) -> Iterator[dict[str, Any]]:
        """The entries of the range, each page checked for order whole."""
        order = self.plan.order
        previous: str | None = None
        previous_raw = ""
        for page, end in ahead:
            past_end = False
            for entry in page:
                key = ordered(entry["Key"], order)
                # Every key the store sent is checked, in the range or not: a store out of the
                # order it was taken for must be caught, not lose a key between two ranges.
                if previous is not None and key <= previous:
                    raise ListingOrderError(lister.side, previous_raw, entry["Key"])
                previous, previous_raw = key, entry["Key"]
                if rng.start_key is not None and key < rng.start_key:
                    continue  # listed from just below the start (see keyspace.start_after)
                if end is not None and key >= end:
                    past_end = True  # the rest of the page is only checked for order
                    continue
                yield entry
            if past_end:
                return

    def _ahead(
        self, rng: _Range, pages: Pages
    ) -> Generator[tuple[list[dict[str, Any]], str | None], None, None]:
        """The side's pages of the range with the range's end as each was fetched; the next page
        is requested while this one is merged, so that a side's round trip and the merge overlap
        (one range then moves at the pace of the slower of the three, not of their sum). No
        request goes past a page that reached the range's end."""
        box: queue.Queue[Any] = queue.Queue(maxsize=1)
        done = threading.Event()
        turn = threading.Semaphore(1)  # a request only once the page before it was taken

        def put(item: Any) -> None:
            while not done.is_set():
                try:
                    box.put(item, timeout=0.1)
                    return
                except queue.Full:
                    pass

        def fetch() -> None:
            order = self.plan.order
            last: str | None = None  # this side's last key fetched: its own progress, not the other's
            try:
                while not done.is_set() and not self._stopped() and not rng.reached(last):
                    if not turn.acquire(timeout=0.1):
                        continue
                    page = next(pages, None)
                    if page is None:
                        break
                    if page:
                        last = ordered(page[-1]["Key"], order)
                    end = rng.fetched(last)  # before any split can be placed below this page
                    self.budget.listed()
                    self._sample(page)
                    put((page, end))
            except BaseException as exc:
                put(exc)
                return
            put(None)

        fetcher = threading.Thread(target=fetch, name=f"{threading.current_thread().name}-ahead", daemon=True)
        fetcher.start()
        try:
            while (item := box.get()) is not None:
                turn.release()
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            done.set()
            fetcher.join()  # ends with its request in flight: no listing outlives the walk

    # -- splitting ------------------------------------------------------------------------------

    def _sample(self, page: list[dict[str, Any]]) -> None:
        if not page:
            return
        order = self.plan.order
        step = max(1, len(page) // 20)
        picked = [ordered(page[i]["Key"], order) for i in range(0, len(page), step)]
        with self._stats_lock:
            for key in picked:
                if len(self._samples) < SAMPLES:
                    self._samples.append(key)
                else:
                    self._samples[self._random.randrange(SAMPLES)] = key

    def _split(self, rng: _Range) -> None:
        """Cut the range between its position and its end: at the start of a folder there if
        the store names one, else at the first key a probe of the source finds past a point the
        `Projection` of the keys seen so far puts midway (the probe's page is the new range's
        first). Each attempt is paid from the walk's budget."""
        cut = wasted = False  # wasted: a probe's request that neither split nor taught anything
        try:
            with rng.lock:
                low, high = rng.position, rng.end_key
                if rng.no_source_above is not None and (high is None or rng.no_source_above < high):
                    high = rng.no_source_above
                if low is not None:
                    rng.split_tried_at = low  # until a cut succeeds, not again before the range moves on
            # The cut is paid for first: no folder listing or probe is spent on a split that
            # could not then be made.
            if low is None or not self.budget.spend(CUT_COST):
                return
            self._forget_passed_folders()
            boundary = self._folders.between(low, high, self.budget)
            if boundary is not None:
                cut = self._cut(rng, boundary, None)
            else:
                cut, wasted = self._probe(rng, low, high)
            if not cut:
                self.budget.refund(CUT_COST)
        finally:
            with self._cv:
                rng.splitting = False
                if cut:
                    rng.failed_splits = 0
                    rng.split_tried_at = None
                elif wasted:
                    rng.failed_splits += 1
                self._cv.notify_all()

    def _forget_passed_folders(self) -> None:
        with self._cv:
            lows = [r.position or r.start_key for r in (*self._active, *self._pending)]
        if lows and None not in lows:
            self._folders.forget_below(min(k for k in lows if k is not None))

    def _probe(self, rng: _Range, low: str, high: str | None) -> tuple[bool, bool]:
        """A split inside one folder: (cut, wasted)."""
        order = self.plan.order
        folder = self._folders.innermost(unordered(low, order))
        with self._stats_lock:
            samples = list(self._samples)
        point = Projection(samples, ordered(folder, order)).between(low, high)
        if point is None:
            return False, False
        probe = unordered(point, order)
        prefix = rng.bounds().listing_prefix(self.prefix, order)
        if not probe.startswith(prefix) or not self.budget.spend(PROBE_COST):
            return False, False
        pages = self.source.pages(prefix, probe)
        with self._stats_lock:
            self.stats.probes += 1
        first = next(pages, [])
        if first and self._cut(rng, first[0]["Key"], _chain(first, pages)):
            self.budget.refund(PROBE_COST)  # the probe's page is the new range's first: not lost
            self._sample(first)
            return True, False
        if not first:
            with rng.lock:
                rng.no_source_above = point
            return False, False
        self._sample(first)
        new_start = first[0]["Key"]
        with rng.lock:
            if rng.end_key is not None and ordered(new_start, order) >= rng.end_key:
                rng.no_source_above = point  # the source has nothing more in the range
                return False, False
        return False, True

    def _cut(self, rng: _Range, start: str, first: Pages | None) -> bool:
        """End `rng` at `start` and queue the rest as a range of its own, if nothing at or above
        `start` was fetched for it yet (the caller has paid for it)."""
        with self._cv:  # cut and queued at once: the walk cannot end in between
            cut, old_end = rng.cut_at(start)
            if cut:
                rest = _Range(KeyRange(start, old_end), self.plan.order, first)
                rest.no_source_above = rng.no_source_above
                self._pending.append(rest)
                with self._stats_lock:
                    self.stats.splits += 1
                self._cv.notify_all()
        return cut


def _chain(
    first: list[dict[str, Any]], rest: Iterator[list[dict[str, Any]]]
) -> Iterator[list[dict[str, Any]]]:
    yield first
    yield from rest
