"""Any Store as a replication target (targets.Target), the source read through a Store too.

The engine here plans and verifies; the stores move bytes. An object below the multipart
threshold (and within the target's single-request limit) is read whole, pinned to the source
version looked at, and written with one put() carrying its MD5. A larger one is cut into parts
sized by the target (PlansParts, else its StoreLimits), read pinned and uploaded in parallel, each
with its MD5 for the store to check, and completed; the part buffers of every copy of this
target share one ByteBudget. Any failure or stop aborts the upload, so nothing is visible under
the key (on Azure Blob uncommitted blocks are no blob), and re-raises: CancelledError on a stop,
SourceChangedError / IntegrityError for the caller's start-over, anything else as raised. There
is no resuming here: an interrupted copy starts over.

What is written: the source's content headers and user metadata, plus our fields
(objects.OWN_METADATA): the source ETag, and the whole-object MD5 where known (computed for a
single put, the source's when it knows it, else streamed only with WHOLE_OBJECT_MD5). After a
multipart upload one HEAD checks the size and that the object records our source ETag; a single
put needs none (the store checked its MD5, and the metadata went in the same request).

Messages name keys and stores (Store.name), never a credential.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import threading
import time
from collections.abc import Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from replicator.errors import (
    ArchivedObjectError,
    CancelledError,
    IntegrityError,
    PermanentError,
    SourceChangedError,
    UnstorableKeyError,
    describe,
)
from replicator.logs import get_logger
from replicator.objects import META_MD5, META_SOURCE_ETAG, ObjectInfo, target_matches
from replicator.settings import MIB, Settings
from replicator.stores.base import (
    ContentHeaders,
    IncompleteUpload,
    ObjectVersion,
    Part,
    PlansParts,
    RefusesKeys,
    Store,
    StoredObject,
    StoreLimits,
    UpdatesMetadata,
    Upload,
)
from replicator.transfer import ByteBudget, CopyResult, MultipartProgress

log = get_logger(__name__)


# What a read holds at most, in multiples of its length (see StoreTarget._read_reservation).
READ_OVERHEAD = 2


class _ReadReservations:
    """The buffer space parts hold only while they are read, given back once each is, or by
    release_all() for parts that never ran."""

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self._held: dict[int, int] = {}
        self._lock = threading.Lock()

    def hold(self, number: int, amount: int) -> None:
        with self._lock:
            self._held[number] = amount

    def release(self, number: int) -> None:
        with self._lock:
            amount = self._held.pop(number, 0)
        self._budget.release(amount)

    def release_all(self) -> None:
        with self._lock:
            amounts, self._held = list(self._held.values()), {}
        for amount in amounts:
            self._budget.release(amount)


def part_size_for(size: int, configured: int, limits: StoreLimits) -> int:
    """max(configured, the store's minimum, ceil(size / max_parts)), rounded up to a whole MiB,
    at most the store's maximum (a larger configured size is brought down to it). For Azure
    Blob's limits this is azure.block_size_for."""
    if size > limits.max_object_size:
        raise ValueError(f"object of {size} bytes exceeds the store's {limits.max_object_size} byte limit")
    needed = max(
        min(configured, limits.max_part_size), limits.min_part_size, math.ceil(size / limits.max_parts)
    )
    rounded = min(math.ceil(needed / MIB) * MIB, limits.max_part_size)
    if math.ceil(size / rounded) > limits.max_parts:
        raise ValueError(f"object of {size} bytes needs more than {limits.max_parts} parts")
    return rounded


def stored_info(stored: StoredObject) -> ObjectInfo:
    """A store's HEAD as the engine's ObjectInfo (objects.target_matches, metadata_matches).
    Besides StoredObject.to_object_info(): an MD5 the store keeps for the whole object (Azure
    Blob's Content-MD5, as other tools write it) stands as a recorded MD5 where we recorded none,
    so that known_md5 compares it with the other side's."""
    info = stored.to_object_info()
    if stored.content_md5 and META_MD5 not in info.metadata:
        return dataclasses.replace(info, metadata={**info.metadata, META_MD5: stored.content_md5})
    return info


class StoreTarget:
    """One named target written through a Store, its source read through a Store.
    Thread-safe: keys are copied in parallel, and so are the parts of each."""

    def __init__(
        self,
        name: str,
        source: Store,
        target: Store,
        settings: Settings,
        *,
        budget: ByteBudget | None = None,
    ) -> None:
        """`budget`: buffer space shared with other targets of the process; by default this
        target's own, of MAX_BUFFER_MIB."""
        self._name = name
        self.source = source
        self.target = target
        self.settings = settings
        self.budget = budget or ByteBudget(settings.max_buffer_bytes)
        # The store's optional abilities, looked up once (a Protocol isinstance costs microseconds,
        # and refusal() runs several times per key).
        self._refuses = target if isinstance(target, RefusesKeys) else None
        self._updates = target if isinstance(target, UpdatesMetadata) else None
        self._parts = ThreadPoolExecutor(
            max_workers=settings.part_concurrency, thread_name_prefix=f"{name}-part"
        )

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"StoreTarget({self._name!r}, source={self.source.name!r}, target={self.target.name!r})"

    def check(self) -> None:
        """At start: the target store is there and our credentials reach it (a store without
        such a check is found out by its first request)."""
        check = getattr(self.target, "check", None)
        if check is not None:
            check()

    def close(self) -> None:
        self._parts.shutdown(wait=True, cancel_futures=True)

    # -- Target ------------------------------------------------------------------------------------

    def refusal(self, key: str) -> PermanentError | None:
        if self._refuses is not None:
            reason = self._refuses.key_refusal(key)
            if reason is not None:
                return UnstorableKeyError(
                    f"target {self._name!r} ({self.target.name}) cannot store {key!r}: {reason}"
                )
        return None

    def head(self, key: str) -> ObjectInfo | None:
        stored = self.target.head(key)
        return stored_info(stored) if stored is not None else None

    def copy(self, source: ObjectInfo, cancel: threading.Event | None = None) -> CopyResult:
        """Copy the source object to the same key (see the module docstring). Raises the
        target's UnstorableKeyError for a key it cannot hold, ArchivedObjectError for a source
        not restored, PermanentError for an object above the target's size limit."""
        self._refuse(source.key)
        cancel = cancel or threading.Event()
        if cancel.is_set():
            raise CancelledError(f"copy of {source.key!r} to {self._name!r} not started: stopping")
        started = time.monotonic()
        if not source.complete:
            # Listed: the headers, the metadata and the version to pin the reads to come from a HEAD.
            source = self._head_source(source.key)
        if source.archived:
            raise ArchivedObjectError(
                f"source object {source.key!r} is archived in {source.archive_tier} and not restored: "
                "restore it first"
            )
        limits = self.target.limits
        if source.size > limits.max_object_size:
            raise PermanentError(
                f"{source.key!r} has {source.size} bytes, above the {limits.max_object_size} bytes "
                f"{self.target.name} holds in one object",
                reason="object_too_large",
            )
        if source.size < self.settings.multipart_threshold and source.size <= limits.max_single_put:
            md5 = self._copy_whole(source, cancel)
            return CopyResult(source.key, source.size, md5, 1, time.monotonic() - started, source.etag)
        md5_or_none, parts = self._copy_parts(source, cancel)
        return CopyResult(
            source.key, source.size, md5_or_none, parts, time.monotonic() - started, source.etag
        )

    def copy_read(
        self, source: ObjectInfo, data: bytes, started: float, cancel: threading.Event | None = None
    ) -> CopyResult:
        """One put of bytes already read (whole, below the multipart threshold); `started`:
        time.monotonic() when the read began."""
        self._refuse(source.key)
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"copy of {source.key!r} to {self._name!r} not started: stopping")
        md5 = self._put_whole(source, data)
        return CopyResult(source.key, source.size, md5, 1, time.monotonic() - started, source.etag)

    def update_metadata(self, source: ObjectInfo, existing: ObjectInfo) -> None:
        """The source's content headers and user metadata onto the target's object, our recorded
        fields kept. In place where the target can (UpdatesMetadata), pinned to the version
        `existing` describes; otherwise the object is copied again. SourceChangedError when the
        target's object no longer holds the source's bytes (copy it instead)."""
        if not source.complete:
            source = self._head_source(source.key)
        key = source.key
        if not existing.complete:
            current = self.head(key)
            if current is None:
                raise SourceChangedError(f"{key!r} is no longer on target {self._name!r}: copy it")
            existing = current
        if not target_matches(source, existing):
            raise SourceChangedError(
                f"target {self._name!r} does not hold the source's bytes of {key!r}: copy it"
            )
        if self._updates is None:
            self.copy(source)
            log.info("metadata_updated", target=self._name, key=key, by="copy")
            return
        metadata = source.user_metadata()
        metadata[META_SOURCE_ETAG] = existing.recorded_source_etag or source.etag
        if existing.metadata.get(META_MD5):
            metadata[META_MD5] = existing.metadata[META_MD5]
        version = ObjectVersion(existing.etag, existing.version_id)
        self._updates.update_metadata(key, version, ContentHeaders.from_s3(source.headers), metadata)
        log.info("metadata_updated", target=self._name, key=key)

    def delete(self, key: str) -> int:
        """Delete the object (absent is fine) and the uploads of the key begun before the delete;
        returns how many uploads were discarded (those found just before the delete).

        The uploads are listed, the object is deleted, and each upload listed is aborted. Azure
        Blob has no abort: its documentation (Put Block, Put Block List) says uncommitted blocks
        are discarded a week after the last Put Block on the blob, or when the blob is next
        written (Put Block List drops every uncommitted block not in its list, Put Blob all of
        them). What Delete Blob does with them it does not say (the SDK's maintainers advise a
        delete to clear them; Azurite hides them from Get Block List, yet commits them
        afterwards), so AzureBlobStore.delete() commits an empty block list first where blocks
        are staged: no upload begun before the delete completes after it. Blocks staged between
        the listing and the delete go too, uncounted (that copy fails to complete and starts
        over). On an S3 store, an upload created after the listing is left to its copy.
        """
        uploads: list[IncompleteUpload] = list(self.target.incomplete_uploads(key))
        self.target.delete(key)
        for upload in uploads:
            self.target.abort(Upload(key, upload.upload_id))
        if uploads:
            log.info("uploads_discarded", target=self._name, key=key, count=len(uploads))
        return len(uploads)

    # -- whole objects -----------------------------------------------------------------------------

    def _copy_whole(self, source: ObjectInfo, cancel: threading.Event) -> str:
        reserved, extra = self._read_reservation(source.size)
        self.budget.acquire(reserved, cancel)
        try:
            try:
                data = self.source.read_range(source.key, 0, source.size, self._version(source))
            finally:
                self.budget.release(extra)
                reserved -= extra
            if cancel.is_set():
                raise CancelledError(f"copy of {source.key!r} to {self._name!r} stopped")
            return self._put_whole(source, data)
        finally:
            self.budget.release(reserved)

    def _put_whole(self, source: ObjectInfo, data: bytes | bytearray) -> str:
        """One put of the object's bytes, after checking them; returns their MD5."""
        if len(data) != source.size:
            raise IntegrityError(f"read {len(data)} bytes of {source.key!r}, expected {source.size}")
        md5 = hashlib.md5(data).hexdigest()  # noqa: S324 (the stores' integrity hash)
        known = source.known_md5
        if known and known != md5:
            raise IntegrityError(f"MD5 of {source.key!r} is {md5}, the source says {known}")
        headers = ContentHeaders.from_s3(source.headers)
        self.target.put(source.key, data, headers, self._metadata(source, md5), md5)
        return md5

    # -- parts -------------------------------------------------------------------------------------

    def _copy_parts(self, source: ObjectInfo, cancel: threading.Event) -> tuple[str | None, int]:
        """(MD5 recorded, number of parts)."""
        key, size = source.key, source.size
        if isinstance(self.target, PlansParts):
            part_size = self.target.part_size_for(size, self.settings.part_size)
        else:
            part_size = part_size_for(size, self.settings.part_size, self.target.limits)
        count = max(1, math.ceil(size / part_size))
        known = source.known_md5
        # With the source's MD5 known, the streamed one proves every byte read end to end.
        hashing = self.settings.whole_object_md5 or known is not None
        headers = ContentHeaders.from_s3(source.headers)
        upload = self.target.create_upload(key, headers, self._metadata(source, known))
        progress = MultipartProgress(self.budget, hashing)
        reading = _ReadReservations(self.budget)
        failed = threading.Event()
        futures: list[Future[Part]] = []
        try:
            for number in range(1, count + 1):
                if failed.is_set() or cancel.is_set():
                    break
                start = (number - 1) * part_size
                length = min(part_size, size - start)
                reserved, extra = self._read_reservation(length)
                self.budget.acquire(reserved, cancel)
                progress.track(number, reserved - extra)
                reading.hold(number, extra)
                future = self._parts.submit(
                    self._copy_part, source, upload, number, start, length, progress, reading, cancel, failed
                )
                future.add_done_callback(
                    lambda f: failed.set() if not f.cancelled() and f.exception() else None
                )
                futures.append(future)
            wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()]
            # The part that failed first explains it; the others merely stopped after it.
            errors.sort(key=lambda e: isinstance(e, CancelledError))
            if errors:
                raise errors[0]  # type: ignore[misc]
            wait(futures)
            if cancel.is_set():
                raise CancelledError(f"copy of {key!r} to {self._name!r} stopped")
            parts = [future.result() for future in futures]
            md5 = progress.hexdigest() if hashing else None
            if known and md5 != known:
                raise IntegrityError(f"MD5 of {key!r} is {md5}, the source says {known}")
            if md5 and not known:
                # Known only now: a store that takes the metadata at completion (Azure Blob)
                # records it there.
                upload = dataclasses.replace(upload, metadata={**upload.metadata, META_MD5: md5})
            if cancel.is_set():  # never completed once told to stop
                raise CancelledError(f"copy of {key!r} to {self._name!r} stopped")
            self.target.complete(upload, parts)
        except BaseException:
            failed.set()  # parts not yet started give up at once; those in flight finish
            for future in futures:
                future.cancel()
            wait(futures)
            progress.release_all()
            reading.release_all()  # parts cancelled before they ran
            self._abort(upload)
            raise
        written = self._verify(source)
        recorded = md5 or known
        if md5 and written.replica.md5 != md5:
            recorded = self._record_md5(source, written, md5)
        return recorded, count

    def _copy_part(
        self,
        source: ObjectInfo,
        upload: Upload,
        number: int,
        start: int,
        length: int,
        progress: MultipartProgress,
        reading: _ReadReservations,
        cancel: threading.Event,
        failed: threading.Event,
    ) -> Part:
        try:
            try:
                if cancel.is_set() or failed.is_set():
                    raise CancelledError("stopped")
                data = self.source.read_range(source.key, start, length, self._version(source))
            finally:
                reading.release(number)
            if len(data) != length:
                raise SourceChangedError(
                    f"part {number} of {source.key!r}: read {len(data)} bytes, expected {length}"
                )
            progress.fetched(number, data)
            if cancel.is_set() or failed.is_set():
                raise CancelledError("stopped")
            part = self.target.upload_part(upload, number, data, hashlib.md5(data).hexdigest())  # noqa: S324
            progress.uploaded(number, part.token)
            return part
        except BaseException:
            progress.abandon(number)
            raise

    def _verify(self, source: ObjectInfo) -> StoredObject:
        """One HEAD after completing: the object must record our source ETag and have its size."""
        key = source.key
        written = self.target.head(key)
        if written is None:
            raise SourceChangedError(f"{key!r} left target {self._name!r} right after its upload")
        if written.replica.source_etag != source.etag:
            # Another writer's object (a copy of a newer version, most likely): not ours to judge.
            raise SourceChangedError(f"{key!r} on target {self._name!r} was replaced right after its upload")
        if written.size != source.size:
            raise IntegrityError(
                f"target {self._name!r} holds {written.size} bytes of {key!r}, expected {source.size}"
            )
        return written

    def _record_md5(self, source: ObjectInfo, written: StoredObject, md5: str) -> str | None:
        """The streamed MD5 onto an object whose store took the metadata when the upload was
        created (S3), in place where it can, pinned to the version just checked."""
        if self._updates is None:
            log.info("md5_not_recorded", target=self._name, key=source.key, md5=md5)
            return None
        metadata = {**written.metadata, META_MD5: md5}
        self._updates.update_metadata(source.key, written.version, written.headers, metadata)
        return md5

    def _abort(self, upload: Upload) -> None:
        try:
            self.target.abort(upload)
        except Exception as exc:
            # The failure that brought us here is the one to raise; this one is only reported.
            log.warning(
                "abort_failed",
                target=self._name,
                key=upload.key,
                upload_id=upload.upload_id,
                error=describe(exc),
            )

    # -- helpers -----------------------------------------------------------------------------------

    def _read_reservation(self, length: int) -> tuple[int, int]:
        """(buffer space to hold while `length` bytes are read, the part of it given back once
        they are). A store's SDK may assemble a body from its chunks (Azure's joins them): for
        a moment a read holds twice its length. Within the budget's capacity, as it counts."""
        held = min(length, self.budget.capacity)
        reserved = min(READ_OVERHEAD * length, self.budget.capacity)
        return reserved, reserved - held

    def _refuse(self, key: str) -> None:
        refusal = self.refusal(key)
        if refusal is not None:
            raise refusal

    def _head_source(self, key: str) -> ObjectInfo:
        stored = self.source.head(key)
        if stored is None:
            raise SourceChangedError(f"{key!r} vanished from the source before the copy")
        return stored_info(stored)

    @staticmethod
    def _version(source: ObjectInfo) -> ObjectVersion:
        return ObjectVersion(source.etag, source.version_id)

    @staticmethod
    def _metadata(source: ObjectInfo, md5: str | None) -> Mapping[str, str]:
        metadata = source.user_metadata()
        metadata[META_SOURCE_ETAG] = source.etag
        if md5:
            metadata[META_MD5] = md5
        return metadata


if TYPE_CHECKING:
    from replicator.targets import Target

    def _is_a_target(target: StoreTarget) -> Target:
        return target  # mypy holds StoreTarget to the Target protocol here
