"""Runs a migration (or a check): listings -> merge -> copies, verifications, deletes.

Small objects are copied in batches by a pool of processes (the GIL limits one process's request
rate); large ones by the parent's multipart engine, whose part threads are I/O bound. Deletes are
collected during the merge and carried out only after it completed, guarded by --max-delete.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError

from migrate.filters import KeyFilter
from migrate.listing import ListingOrderError, in_byte_order, list_bucket, sorted_on_disk
from migrate.plan import Action, Decision, merge
from migrate.progress import Progress
from replicator.clients import Clients, Endpoint, build_clients
from replicator.errors import CancelledError, describe, error_code, object_retrying
from replicator.logs import configure_logging, get_logger
from replicator.objects import ObjectInfo, target_matches
from replicator.reconcile import head
from replicator.runtime import quiet_garbage_collector
from replicator.settings import Settings
from replicator.transfer import TransferEngine

log = get_logger("migrate")

SMALL_BATCH = 64  # small objects per task sent to a child process


@dataclass(frozen=True)
class Options:
    key_filter: KeyFilter = field(default_factory=KeyFilter)
    delete: bool = False
    max_delete: int | None = None
    dry_run: bool = False
    check: bool = False
    concurrency: int = 32
    processes: int = 1
    stream_target_listing: bool = False


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
    failures: list[dict[str, str]] = field(default_factory=list)
    differences: list[dict[str, str]] = field(default_factory=list)
    unverified: int = 0
    listing_restarts: int = 0
    deletes_refused: int = 0
    seconds: float = 0.0
    cancelled: bool = False
    _events: queue.SimpleQueue[tuple[str, str, Any]] = field(default_factory=queue.SimpleQueue, repr=False)

    def plan(self, action: Action, size: int) -> None:
        self._events.put(("plan", action.value, size))

    def finish(self, action: Action, size: int) -> None:
        self._events.put(("done", action.value, size))

    def fail(self, key: str, error: str) -> None:
        self._events.put(("fail", key, error))

    def differ(self, key: str, what: str) -> None:
        self._events.put(("differ", key, what))

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
            elif kind == "done":
                self.done[name] += 1
                self.done_bytes[name] += value
            elif kind == "fail":
                self.failures.append({"key": name, "error": value})
            elif kind == "differ":
                self.differences.append({"key": name, "difference": value})
            else:
                self.unverified += 1

    def as_dict(self) -> dict[str, Any]:
        return {
            "planned": dict(self.planned),
            "planned_bytes": dict(self.planned_bytes),
            "done": dict(self.done),
            "done_bytes": dict(self.done_bytes),
            "failures": self.failures,
            "differences": self.differences,
            "unverified_same_size": self.unverified,
            "deletes_refused": self.deletes_refused,
            "listing_restarts": self.listing_restarts,
            "seconds": round(self.seconds, 3),
            "cancelled": self.cancelled,
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
    _child["engine"] = TransferEngine(clients.source, clients.target, settings)
    _child["threads"] = ThreadPoolExecutor(threads)
    _child["retrying"] = object_retrying(settings.max_attempts)


def _child_copy(batch: list[tuple[str, int, str]]) -> list[tuple[str, int, str | None]]:
    engine: TransferEngine = _child["engine"]
    pool: ThreadPoolExecutor = _child["threads"]

    def one(item: tuple[str, int, str]) -> tuple[str, int, str | None]:
        key, size, etag = item
        try:
            listed = ObjectInfo(key=key, size=size, etag=etag, complete=False)
            result = _child["retrying"](lambda: engine.copy(listed))
            return key, result.size, None
        except Exception as exc:
            return key, size, describe(exc)

    return list(pool.map(one, batch))


class Migration:
    def __init__(
        self,
        engine: TransferEngine,
        options: Options,
        progress: Progress | None = None,
        clients: Clients | None = None,
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
        self._retrying = object_retrying(engine.settings.max_attempts)

    # -- entry point --------------------------------------------------------------------------

    def run(self) -> Summary:
        started = time.monotonic()
        sort_source = False
        try:
            while True:
                deletes_path = Path(tempfile.mkstemp(prefix="deletes-", suffix=".txt")[1])
                try:
                    self._pass(sort_source, deletes_path)
                    if not self.cancel.is_set():
                        self._deletes(deletes_path)
                    break
                except ListingOrderError as exc:
                    if exc.side != "source" or sort_source:
                        raise
                    # Decisions so far were copies of truly missing keys (the target side is
                    # sorted) and deferred deletes, which are dropped: start over, sorted.
                    log.warning("listing_not_in_byte_order", side=exc.side, detail=str(exc))
                    self._wait_all()
                    self.summary.settle().listing_restarts += 1
                    self.summary.planned.clear()
                    self.summary.planned_bytes.clear()
                    sort_source = True
                finally:
                    deletes_path.unlink(missing_ok=True)
        finally:
            self._wait_all()
            self._threads.shutdown(wait=True)
            if self._processes is not None:
                self._processes.shutdown(wait=True, cancel_futures=True)
            self.summary.settle()
            self.summary.seconds = time.monotonic() - started
            self.summary.cancelled = self.cancel.is_set()
        return self.summary

    def stop(self, *_: Any) -> None:
        if not self.cancel.is_set():
            log.warning("migration_stopping")
        self.cancel.set()

    # -- one pass over the listings -----------------------------------------------------------

    def _listings(self, sort_source: bool) -> tuple[Iterator[ObjectInfo], Iterator[ObjectInfo]]:
        prefix = self.options.key_filter.prefix
        source: Iterable[ObjectInfo] = list_bucket(self.source, prefix)
        source = sorted_on_disk(source) if sort_source else in_byte_order(source, "source")
        target: Iterable[ObjectInfo] = list_bucket(self.target, prefix)
        if self.options.stream_target_listing:
            target = in_byte_order(target, "target")
        else:
            # Stores differ in listing order; sorting the target on disk costs no memory and
            # means a wrong order can never make us copy what is already there.
            target = sorted_on_disk(target)
        return _prefetch(source), _prefetch(target)

    def _pass(self, sort_source: bool, deletes_path: Path) -> None:
        source, target = self._listings(sort_source)
        with open(deletes_path, "w", encoding="utf-8") as deletes:
            for decision in merge(source, target, self.options.key_filter):
                if self.cancel.is_set():
                    break
                self.summary.plan(decision.action, decision.size)
                self.progress.planned(decision)
                if decision.action is Action.SKIP:
                    self.summary.finish(Action.SKIP, decision.size)
                    self.progress.done(decision, 0)
                elif decision.action is Action.DELETE:
                    deletes.write(decision.key.encode("unicode_escape").decode("ascii") + "\n")
                    if self.options.check:
                        self.summary.differ(decision.key, "extra on target")
                else:
                    self._handle(decision)
            self._flush_small()
            self._wait_all()
        self.progress.listing_done()

    # -- copies and verifications -------------------------------------------------------------

    def _handle(self, decision: Decision) -> None:
        if decision.action is Action.VERIFY:
            self._submit(self._verify, decision)
        elif self.options.check:
            what = "missing on target" if decision.action is Action.COPY else decision.reason
            self.summary.differ(decision.key, what)
            self.progress.done(decision, 0)
        elif self.options.dry_run:
            self.progress.done(decision, 0)
        elif decision.size < self.engine.settings.multipart_threshold and self.options.processes > 1:
            self._small_batch.append(decision)
            if len(self._small_batch) >= SMALL_BATCH:
                self._flush_small()
        else:
            self._submit(self._copy, decision)

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

    def _copy(self, decision: Decision) -> None:
        assert decision.source is not None
        source = decision.source
        try:
            result = self._retrying(lambda: self.engine.copy(source, self.cancel))
        except CancelledError:
            return
        except Exception as exc:
            self.summary.fail(decision.key, describe(exc))
            log.error("copy_failed", key=decision.key, error=describe(exc))
            self.progress.done(decision, 0, failed=True)
            return
        self.summary.finish(decision.action, result.size)
        self.progress.done(decision, result.size)

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
            self.summary.finish(Action.SKIP, decision.size)
            self.progress.done(decision, 0)
            return
        if target is not None and self.options.check and not self._checksum_known(source, target):
            # Same size and nothing to compare the content with: counted, not a difference.
            self.summary.size_only()
            self.summary.finish(Action.SKIP, decision.size)
            self.progress.done(decision, 0)
            return
        replace = Decision(Action.REPLACE, decision.key, source, target, "content differs")
        if self.options.check:
            self.summary.differ(decision.key, "content differs")
            self.progress.done(decision, 0)
        elif self.options.dry_run:
            self.summary.plan(Action.REPLACE, decision.size)
            self.progress.done(decision, 0)
        else:
            self.summary.plan(Action.REPLACE, decision.size)
            self._copy(replace)

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

        def collect(f: Future[list[tuple[str, int, str | None]]]) -> None:
            try:
                results = f.result()
            except Exception as exc:
                results = [(d.key, d.size, describe(exc)) for d in batch]
            for key, size, error in results:
                decision = by_key[key]
                if error:
                    self.summary.fail(key, error)
                    log.error("copy_failed", key=key, error=error)
                    self.progress.done(decision, 0, failed=True)
                else:
                    self.summary.finish(decision.action, size)
                    self.progress.done(decision, size)

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

    def _deletes(self, path: Path) -> None:
        if self.options.check or self.options.dry_run or not self.options.delete:
            return
        with open(path, encoding="utf-8") as lines:
            count = sum(1 for _ in lines)
        limit = self.options.max_delete
        if limit is not None and count > limit:
            self.summary.deletes_refused = count
            log.error("max_delete_exceeded", would_delete=count, max_delete=limit)
            return
        batch: list[str] = []
        with open(path, encoding="utf-8") as lines:
            for line in lines:
                batch.append(line.rstrip("\n").encode("ascii").decode("unicode_escape"))
                if len(batch) == 1000:
                    self._delete_batch(batch)
                    batch = []
                if self.cancel.is_set():
                    return
        if batch:
            self._delete_batch(batch)

    def _delete_batch(self, keys: list[str]) -> None:
        client, bucket = self.target.client, self.target.bucket
        try:
            response = client.delete_objects(
                Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys], "Quiet": True}
            )
            failed = {e["Key"]: e.get("Code", "error") for e in response.get("Errors", [])}
        except ClientError as exc:
            # Some stores reject the batch call (checksum headers); delete one by one instead.
            log.warning("delete_objects_unsupported", error=describe(exc))
            failed = {}
            for key in keys:
                try:
                    client.delete_object(Bucket=bucket, Key=key)
                except ClientError as one:
                    failed[key] = error_code(one) or "error"
        for key in keys:
            if key in failed:
                self.summary.fail(key, f"delete: {failed[key]}")
            else:
                self.summary.finish(Action.DELETE, 0)


def default_processes() -> int:
    return max(1, min(4, os.cpu_count() or 1))
