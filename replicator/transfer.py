"""The copy engine shared by the worker and migrate: source GET -> target PUT, streamed.

Small objects go in one PUT with their Content-MD5. Larger ones are split into parts fetched with
parallel ranged GETs and sent with parallel UploadPart calls; a process-wide byte budget bounds
the part buffers in memory, whatever the object size or the number of objects in flight. A part
carries its Content-MD5, or, where the source's own part layout is replayed, the target's part
ETags must combine into the source's ETag before the upload is completed.

A copy that is interrupted, or fails on something a later attempt may get past (transport
errors, throttling, 5xx after the request retries), keeps its multipart upload, and the next copy
of the key resumes it: every upload we create holds a small marker part (number 10,000, never
part of the object) whose bytes name the source version and the part layout, so its MD5, which
the store returns as the part's ETag, tells whether the parts already there belong to the object
being copied. An upload nothing could resume, and one that failed on a changed source, bad bytes
or a permanent refusal, is aborted.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import math
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from replicator.clients import Endpoint
from replicator.errors import (
    ArchivedObjectError,
    CancelledError,
    CopyError,
    IntegrityError,
    SourceChangedError,
    describe,
    error_code,
    is_not_found,
    is_retryable,
    request_retrying,
    source_refusal,
)
from replicator.lean_http import LeanUnsupported
from replicator.lean_s3 import STREAM_CHUNK, LeanS3
from replicator.logs import get_logger
from replicator.objects import META_MD5, META_SOURCE_ETAG, ObjectInfo, clean_etag, target_matches
from replicator.settings import MIB, Settings
from replicator.stores.base import md5_base64
from replicator.stores.s3 import (
    MAX_OBJECT_SIZE,
    MAX_PART_SIZE,
    MAX_PARTS,
    MAX_SINGLE_PUT,  # noqa: F401  # S3's limits live with the store; still named here
    MIN_PART_SIZE,
    S3Store,
)
from replicator.stores.s3 import unless_cancelled as _unless_cancelled
from replicator.target_rules import check_key, explain_refusal

log = get_logger(__name__)

MARKER_PART = MAX_PARTS  # the resume marker's part number
MAX_DATA_PARTS = MAX_PARTS - 1  # our own layouts leave part 10,000 to the marker
SELF_COPY_LIMIT = 5 * 1024 * MIB  # CopyObject's limit; above it, UploadPartCopy
COPY_PART_SIZE = 1024 * MIB  # parts of a server-side multipart copy (no bytes pass through here)
MARKER_VERSION = "replica-resume v1"
# A copy looks at an object again when its size moved across the multipart threshold since it
# was listed; an object that keeps doing so is given up on (and reconciled again later).
SIZE_LOOKS = 3

T = TypeVar("T")


def part_size_for(size: int, configured: int) -> int:
    """max(configured, ceil(size / 9,999)), rounded up to a whole MiB, within the part limits."""
    if size > MAX_OBJECT_SIZE:
        raise ValueError(f"object of {size} bytes exceeds the 5 TiB object limit")
    needed = max(configured, MIN_PART_SIZE, math.ceil(size / MAX_DATA_PARTS))
    needed = math.ceil(needed / MIB) * MIB
    if needed > MAX_PART_SIZE:
        raise ValueError(f"object of {size} bytes needs parts above the {MAX_PART_SIZE} byte limit")
    return needed


def content_md5(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 (S3's own integrity hash)


def response_time(response: Any) -> datetime | None:
    """The store's clock at a boto3 response (its Date header), to compare with the times it
    reports (an upload's Initiated); None when it sent none that parses."""
    date = (response or {}).get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    try:
        moment = parsedate_to_datetime(date) if date else None
    except (TypeError, ValueError):
        return None
    # HTTP dates are GMT; "-0000" parses without a zone.
    return moment.replace(tzinfo=UTC) if moment is not None and moment.tzinfo is None else moment


_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-(\d+)$")
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


class _ChainBroken(Exception):
    """The source's part layout could not be replayed and verified on this target."""


class _GrewError(Exception):
    """The object is now above the multipart threshold: take the multipart path."""


class _LargerError(Exception):
    """The object is larger than the buffer space reserved for it (still below the threshold);
    its body was not read. `size`: what to reserve before reading it."""

    def __init__(self, size: int) -> None:
        super().__init__(size)
        self.size = size


def _succeeded(future: Future[Any]) -> bool:
    return future.done() and not future.cancelled() and future.exception() is None


class ByteBudget:
    """A counting semaphore in bytes: bounds the part buffers held in memory at once."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._available = capacity
        self.peak = 0  # most bytes held at once, for tests and the benchmark
        self._cond = threading.Condition()

    def acquire(self, amount: int, cancel: threading.Event | None = None) -> None:
        # A part larger than the whole budget still runs, alone.
        amount = min(amount, self.capacity)
        with self._cond:
            while self._available < amount:
                if cancel is not None and cancel.is_set():
                    raise CancelledError("stopped while waiting for buffer space")
                self._cond.wait(timeout=0.5)
            self._available -= amount
            self.peak = max(self.peak, self.capacity - self._available)

    def release(self, amount: int) -> None:
        amount = min(amount, self.capacity)
        with self._cond:
            self._available += amount
            self._cond.notify_all()

    @property
    def in_use(self) -> int:
        return self.capacity - self._available


@dataclass(frozen=True)
class CopyResult:
    key: str
    size: int
    # The whole-object MD5 recorded on the target: computed (single PUT, WHOLE_OBJECT_MD5) or
    # known from the source; None for a multipart copy whose MD5 nobody knows.
    md5: str | None
    parts: int
    seconds: float
    source_etag: str
    # Bytes an interrupted earlier copy had uploaded already, kept and not sent again.
    resumed_bytes: int = 0


@dataclass(frozen=True)
class _Layout:
    """How an object is cut into parts."""

    size: int
    part_size: int
    chained: bool  # the source's own layout, verified through the ETag chain

    @property
    def count(self) -> int:
        return math.ceil(self.size / self.part_size)

    def start(self, number: int) -> int:
        return (number - 1) * self.part_size

    def length(self, number: int) -> int:
        return min(self.part_size, self.size - self.start(number))


@dataclass(frozen=True)
class _Incomplete:
    """An incomplete upload of the key on the target, with its parts (number -> (size, ETag))
    when they could be listed."""

    upload_id: str
    parts: dict[int, tuple[int, str]] | None


class MultipartProgress:
    """Per-upload state: part ETags, the release of part buffers and, when asked for, the
    in-order whole-object MD5.

    A part's buffer is released once it is uploaded (and, when hashing, folded into the MD5),
    so a slow early part holds back at most the budget's worth of later ones.
    """

    def __init__(self, budget: ByteBudget, hashing: bool) -> None:
        self._budget = budget
        self.hashing = hashing
        self._md5 = hashlib.md5()  # noqa: S324
        self._next = 1
        self._pending: dict[int, bytes | bytearray] = {}
        self._uploaded: set[int] = set()
        self._hashed: set[int] = set()
        self._sizes: dict[int, int] = {}
        self._lock = threading.Lock()
        self._hash_lock = threading.Lock()
        self.etags: dict[int, str] = {}

    def track(self, number: int, size: int) -> None:
        with self._lock:
            self._sizes[number] = size

    def fetched(self, number: int, data: bytes | bytearray) -> None:
        if not self.hashing:
            return
        with self._lock:
            if number < self._next or number in self._pending:
                return  # a retried part: already counted
            self._pending[number] = data
        self._hash_in_order()

    def _hash_in_order(self) -> None:
        """Fold consecutive fetched parts into the MD5. One thread hashes at a time, outside the
        bookkeeping lock, so part threads never wait on another part's hashing."""
        while self._hash_lock.acquire(blocking=False):
            try:
                while True:
                    with self._lock:
                        number = self._next
                        chunk = self._pending.pop(number, None)
                    if chunk is None:
                        break
                    self._md5.update(chunk)  # releases the GIL for large buffers
                    with self._lock:
                        self._next = number + 1
                        self._hashed.add(number)
                        self._maybe_release(number)
            finally:
                self._hash_lock.release()
            with self._lock:
                if self._next not in self._pending:
                    return
            # A part arrived just as this thread stopped hashing: go round again.

    def uploaded(self, number: int, etag: str) -> None:
        with self._lock:
            self.etags[number] = etag
            self._uploaded.add(number)
            self._maybe_release(number)

    def abandon(self, number: int) -> None:
        """A part that failed gives its buffer back."""
        with self._lock:
            if number in self._sizes:
                self._budget.release(self._sizes.pop(number))

    def _maybe_release(self, number: int) -> None:
        done = number in self._uploaded and (number in self._hashed or not self.hashing)
        if done and number in self._sizes:
            self._budget.release(self._sizes.pop(number))

    def release_all(self) -> None:
        with self._lock:
            for size in self._sizes.values():
                self._budget.release(size)
            self._sizes.clear()
            self._pending.clear()

    def hexdigest(self) -> str:
        return self._md5.hexdigest()


def _acquire_unless(slots: threading.Semaphore, *stops: threading.Event) -> bool:
    """Take a slot, unless one of `stops` is set first (then False)."""
    while not slots.acquire(timeout=0.1):
        if any(stop.is_set() for stop in stops):
            return False
    return True


def _no_target() -> RuntimeError:
    return RuntimeError(
        "this engine was built without a target (it reads the source only): it cannot copy, "
        "update, look at or clean up anything on a target"
    )


class TransferEngine:
    """Copies objects from one Endpoint to another. Thread-safe; build one per process."""

    def __init__(self, source: Endpoint, target: Endpoint | None, settings: Settings) -> None:
        """`target` None: an engine that only reads the source (read_first, for targets that are
        not S3-compatible); nothing touches a target until something asks for it (engine.target)."""
        self.source = source
        self._target = target
        self.settings = settings
        self.budget = ByteBudget(settings.max_buffer_bytes)
        self._chain_usable = True
        # Off once the target answers a marker part with an ETag that is not its MD5.
        self._markers_usable = settings.resume_uploads
        # The S3 requests of either end, on the lean path or boto3 as each store decides.
        self.source_store = S3Store(source, settings)
        self._target_store = S3Store(target, settings) if target is not None else None
        self._parts = ThreadPoolExecutor(max_workers=settings.part_concurrency, thread_name_prefix="part")
        # Upload look-ups run here while the copy plans its layout: one per multipart copy in
        # flight (threads start only when needed).
        self._housekeeping = ThreadPoolExecutor(max_workers=32, thread_name_prefix="housekeeping")
        # Request-level retries happen once: botocore's own for boto3 calls, the stores' for their
        # lean requests, and this policy for a part streamed from one lean request into another.
        self._retry = request_retrying(settings.max_attempts)

    @property
    def target(self) -> Endpoint:
        if self._target is None:
            raise _no_target()
        return self._target

    @property
    def target_store(self) -> S3Store:
        if self._target_store is None:
            raise _no_target()
        return self._target_store

    @property
    def _lean_source(self) -> LeanS3 | None:
        return self.source_store.lean

    @property
    def _lean_target(self) -> LeanS3 | None:
        return self._target_store.lean if self._target_store is not None else None

    def close(self) -> None:
        self._parts.shutdown(wait=True, cancel_futures=True)
        self._housekeeping.shutdown(wait=True, cancel_futures=True)

    # -- public -------------------------------------------------------------------------------

    def copy(self, obj: ObjectInfo, cancel: threading.Event | None = None) -> CopyResult:
        """Copy one source object (as read by HeadObject, or listed) to the same key on the target.

        Raises PermanentError subclasses for what retrying cannot fix (a key the target cannot
        store, an archived or unreadable encrypted source), CancelledError when `cancel` is set
        (the multipart upload is kept for the next attempt to resume), and SourceChangedError /
        IntegrityError for the caller's object-level start-over.
        """
        refusal = check_key(obj.key, self.target)
        if refusal is not None:
            raise refusal
        cancel = cancel or threading.Event()
        if cancel.is_set():
            raise CancelledError(f"copy of {obj.key!r} not started: stopping")
        started = time.monotonic()
        threshold = self.settings.multipart_threshold
        for _ in range(SIZE_LOOKS):
            if obj.size >= threshold and not obj.complete:
                # Listed, not looked at: the multipart path needs headers and metadata up front.
                obj = self._head_source(obj.key, first_part=self._may_replay(obj.etag), known=obj)
            if obj.complete and obj.archived:
                raise ArchivedObjectError(
                    f"source object {obj.key!r} is archived in {obj.archive_tier} and not restored: "
                    "restore it first"
                )
            if obj.size < threshold:
                try:
                    obj, md5 = self._copy_single(obj)
                except _GrewError:
                    obj = self._head_source(obj.key)  # rewritten since it was listed: look again
                    continue
                return CopyResult(obj.key, obj.size, md5, 1, time.monotonic() - started, obj.etag)
            md5_or_none, parts, resumed = self._copy_multipart(obj, cancel)
            return CopyResult(
                obj.key, obj.size, md5_or_none, parts, time.monotonic() - started, obj.etag, resumed
            )
        raise SourceChangedError(f"{obj.key!r} keeps changing size across the multipart threshold")

    def update_metadata(self, source: ObjectInfo, target: ObjectInfo | None = None) -> None:
        """Give the target object the source's content headers and user metadata without sending
        its bytes again: a server-side copy of the target onto itself (CopyObject up to 5 GiB,
        UploadPartCopy above), pinned to the target's ETag. Our recorded fields are kept.

        `target` is the caller's HeadObject of the target object, when it holds one (the pin
        catches any change since); otherwise it is looked at here. The target must already hold
        the source's bytes (target_matches); otherwise SourceChangedError (the key is to be copied
        instead).
        """
        if not source.complete:
            source = self._head_source(source.key, known=source)
        key = source.key
        if target is None or not target.complete:
            target = self.target_store.look(key)
            if target is None:
                raise SourceChangedError(f"{key!r} is no longer on the target: copy it")
        if not target_matches(source, target):
            raise SourceChangedError(f"the target's {key!r} does not hold the source's bytes: copy it")
        metadata = source.user_metadata()
        metadata[META_SOURCE_ETAG] = target.recorded_source_etag or source.etag
        if target.metadata.get(META_MD5):
            metadata[META_MD5] = target.metadata[META_MD5]
        args: dict[str, Any] = {"Bucket": self.target.bucket, "Key": key, "Metadata": metadata}
        args.update(source.headers)
        pinned = f'"{target.etag}"'
        if target.size <= SELF_COPY_LIMIT:
            self._target_write(
                key,
                lambda: self.target.client.copy_object(
                    CopySource={"Bucket": self.target.bucket, "Key": key},
                    CopySourceIfMatch=pinned,
                    MetadataDirective="REPLACE",  # CopyObject keeps the tags (TaggingDirective COPY)
                    **args,
                ),
            )
        else:
            if self.settings.copy_tags:
                tagging = self._source_tagging(source)
                if tagging:
                    args["Tagging"] = tagging
            self._copy_in_place_by_parts(target, pinned, args)
        log.info("metadata_updated", key=key)

    def abort_uploads(
        self, key: str, keep: Collection[str] = (), started_before: datetime | None = None
    ) -> int:
        """Abort the incomplete uploads of exactly this key (not of keys it prefixes), except
        those in `keep`; returns how many.

        With `started_before` (the target's clock, e.g. response_time() of a delete), only
        uploads initiated before that instant: one begun later belongs to a new copy of the key.
        An upload whose start the store does not report is left alone then.
        """
        aborted = 0
        for upload_id, initiated in self._uploads(key):
            if upload_id in keep:
                continue
            if started_before is not None and (initiated is None or initiated >= started_before):
                continue
            self._abort(key, upload_id)
            aborted += 1
        return aborted

    # -- helpers ------------------------------------------------------------------------------

    def _put_args(self, obj: ObjectInfo, md5: str | None, with_tags: bool = True) -> dict[str, Any]:
        metadata = obj.user_metadata()
        metadata[META_SOURCE_ETAG] = obj.etag
        if md5:
            metadata[META_MD5] = md5
        args: dict[str, Any] = {"Bucket": self.target.bucket, "Key": obj.key, "Metadata": metadata}
        args.update(obj.headers)
        if with_tags and self.settings.copy_tags:
            tagging = self._source_tagging(obj)
            if tagging:
                args["Tagging"] = tagging
        return args

    def _source_tagging(self, obj: ObjectInfo) -> str:
        tags = self.source.client.get_object_tagging(Bucket=self.source.bucket, Key=obj.key)["TagSet"]
        return urlencode([(t["Key"], t["Value"]) for t in tags])

    def _source_failure(
        self, exc: ClientError, obj: ObjectInfo | None, key: str, operation: str
    ) -> CopyError | None:
        """What a refused source read means for the copy, or None: pass the error on."""
        refusal = source_refusal(exc, obj, operation, key, self.source)
        if refusal is not None:
            return refusal
        if is_not_found(exc) or error_code(exc) in ("PreconditionFailed", "412"):
            return SourceChangedError(f"{key!r} changed or vanished during the copy")
        return None

    def _target_write(self, key: str, write: Callable[[], T]) -> T:
        """A write to the target; a refusal of the key itself becomes the UnstorableKeyError that
        says why (never retried: the key will not fit however often it is sent)."""
        try:
            return write()
        except CopyError:
            raise
        except Exception as exc:
            refusal = explain_refusal(exc, key, self.target)
            if refusal is not None:
                raise refusal from exc
            raise

    def _read_range(
        self, obj: ObjectInfo, start: int, length: int, cancel: threading.Event | None = None
    ) -> bytes | bytearray:
        # Pin every read to the version we looked at: a concurrent overwrite fails the copy
        # (and the reconcile starts over) instead of mixing two versions' bytes.
        if_match = f'"{obj.etag}"' if obj.etag and not obj.version_id else None
        try:
            return self.source_store.get_range(obj.key, start, length, obj.version_id, if_match, cancel)
        except ClientError as exc:
            failure = self._source_failure(exc, obj, obj.key, "GetObject")
            if failure is not None:
                raise failure from exc
            raise

    def _upload_part(
        self,
        obj: ObjectInfo,
        upload_id: str,
        number: int,
        data: bytes | bytearray,
        content_md5: str | None,
        cancel: threading.Event | None = None,
    ) -> str:
        """UploadPart; returns the part's ETag."""
        return self._target_write(
            obj.key,
            lambda: self.target_store.send_part(obj.key, upload_id, number, data, content_md5, cancel),
        )

    def _may_replay(self, etag: str) -> bool:
        """Whether a copy could replay the source's part layout (see _source_part_size)."""
        return (
            self.settings.part_checksum == "auto" and self._chain_usable and bool(_MULTIPART_ETAG.match(etag))
        )

    def _head_first_part(self, key: str) -> ObjectInfo | None:
        """HeadObject of part 1 (the object's headers plus its part layout), or None when the
        store cannot answer for a part (then a plain HEAD says why, if anything is wrong)."""
        try:
            head = self.source_store.head_object(key, part_number=1)
        except ClientError as exc:
            if is_not_found(exc):
                raise SourceChangedError(f"{key!r} vanished before the copy") from exc
            return None
        try:
            return ObjectInfo.from_head(key, head)
        except ValueError:
            return None

    def _head_source(self, key: str, first_part: bool = False, known: ObjectInfo | None = None) -> ObjectInfo:
        """HeadObject on the source. With first_part, a HEAD of part 1: the same headers and
        metadata plus the part layout a replayed copy needs, in one round trip instead of two."""
        if first_part:
            part = self._head_first_part(key)
            match = _MULTIPART_ETAG.match(part.etag) if part else None
            # Only where the store answers as S3 does (the object's ETag, its size in the
            # Content-Range); anything else gets a plain HEAD.
            if part and match and part.first_part_size and part.parts_count in (None, int(match.group(1))):
                return part
        try:
            head = self.source_store.head_object(key)
        except ClientError as exc:
            failure = self._source_failure(exc, known, key, "HeadObject")
            if failure is not None:
                raise failure from exc
            raise
        return ObjectInfo.from_head(key, head)

    def _lean_failed(self, side: str, exc: LeanUnsupported) -> None:
        (self.source_store if side == "source" else self.target_store).lean_failed(exc)

    def _read_whole(
        self, listed: ObjectInfo, reserved: int | None = None, as_sent: bool = False
    ) -> tuple[ObjectInfo, bytes]:
        """One GET: an atomic read of one version, with its headers (no HEAD needed). A body at
        or above the multipart threshold is not read (_GrewError), nor one larger than the
        `reserved` buffer space (_LargerError, naming the space to reserve). `as_sent`: a refused
        GET raises the store's own error (a 404 included), not what it means for a copy."""
        key = listed.key
        threshold_limit = self.settings.multipart_threshold - 1
        limit = threshold_limit if reserved is None else min(reserved, threshold_limit)
        try:
            response, data = self.source_store.get_object(key, max_size=limit)
        except ClientError as exc:
            if as_sent:
                raise
            failure = self._source_failure(exc, listed, key, "GetObject")
            if failure is not None:
                raise failure from exc
            raise
        if data is None:
            length = int(response.get("ContentLength", -1))
            if length > threshold_limit or (length < 0 and limit == threshold_limit):
                raise _GrewError(key)
            # Unknown length (no Content-Length): as much as the whole-object path ever reads.
            raise _LargerError(length if length >= 0 else threshold_limit)
        return ObjectInfo.from_head(key, response), data

    def _write_whole(self, obj: ObjectInfo, data: bytes, md5_hex: str) -> None:
        args = self._put_args(obj, md5_hex)
        params = {k: v for k, v in args.items() if k not in ("Bucket", "Key", "Metadata")}
        self._target_write(
            obj.key,
            lambda: self.target_store.put_object(
                obj.key, data, args["Metadata"], md5_base64(md5_hex), **params
            ),
        )

    def _copy_single(self, listed: ObjectInfo) -> tuple[ObjectInfo, str]:
        with self._whole_read(listed) as (obj, data):
            return obj, self._put_whole(obj, data)

    @contextlib.contextmanager
    def _whole_read(self, listed: ObjectInfo, as_sent: bool = False) -> Iterator[tuple[ObjectInfo, bytes]]:
        """_read_whole under buffer space, held until the block ends: the space for the size
        looked at; an object that grew since is not read until its own size is reserved (the
        space held is given back first: no waiting while holding)."""
        reserved = listed.size
        self.budget.acquire(reserved)
        try:
            for _ in range(SIZE_LOOKS):
                try:
                    read = self._read_whole(listed, reserved, as_sent)
                    break
                except _LargerError as larger:
                    self.budget.release(reserved)
                    reserved = 0
                    self.budget.acquire(larger.size)
                    reserved = larger.size
            else:
                raise SourceChangedError(f"{listed.key!r} keeps growing while it is read")
            yield read
        finally:
            self.budget.release(reserved)

    def _put_whole(self, obj: ObjectInfo, data: bytes) -> str:
        """One PUT of bytes read whole, after checking them; returns their MD5."""
        if len(data) != obj.size:
            raise IntegrityError(f"read {len(data)} bytes of {obj.key!r}, expected {obj.size}")
        md5_hex = hashlib.md5(data).hexdigest()  # noqa: S324
        expected = obj.known_md5
        if expected and expected != md5_hex:
            raise IntegrityError(f"MD5 of {obj.key!r} is {md5_hex}, the source says {expected}")
        self._write_whole(obj, data, md5_hex)
        return md5_hex

    @contextlib.contextmanager
    def read_first(self, key: str, size: int) -> Iterator[tuple[ObjectInfo, bytes | None] | None]:
        """A GET in place of the source HEAD, for a key whose event reported `size` bytes, below
        the multipart threshold: its answer tells all a HEAD does (size, ETag, version, content
        headers, user metadata, encryption) and carries the bytes, of one version, so what the
        target is compared with is what gets written.

        Yields (the object as that answer describes it, its bytes), the bytes in buffer space
        held until the block ends; None when the key does not exist (a 404, which on its own
        proves nothing: see reconcile.source_absent). An object at or above the threshold by now
        is not read: a HEAD describes it and the bytes are None (the multipart path copies it).
        Any other refusal is raised as the store sent it: a HEAD says what it means (an archived,
        SSE-C or SSE-KMS object answers a GET without naming itself)."""
        listed = ObjectInfo(key=key, size=size, etag="", complete=False)
        with contextlib.ExitStack() as held:
            read: tuple[ObjectInfo, bytes | None] | None
            try:
                read = held.enter_context(self._whole_read(listed, as_sent=True))
            except ClientError as exc:
                if not is_not_found(exc):
                    raise
                read = None
            except _GrewError:
                read = (self._head_source(key), None)
            yield read

    def copy_read(
        self, obj: ObjectInfo, data: bytes, started: float, cancel: threading.Event | None = None
    ) -> CopyResult:
        """copy() of an object read_first has read (below the multipart threshold): one PUT of
        its bytes. `started`: time.monotonic() when the read began."""
        refusal = check_key(obj.key, self.target)
        if refusal is not None:
            raise refusal
        if cancel is not None and cancel.is_set():
            raise CancelledError(f"copy of {obj.key!r} not started: stopping")
        md5 = self._put_whole(obj, data)
        return CopyResult(obj.key, obj.size, md5, 1, time.monotonic() - started, obj.etag)

    # -- incomplete uploads ---------------------------------------------------------------------

    def _uploads(self, key: str) -> list[tuple[str, datetime | None]]:
        """The incomplete uploads of exactly this key, with their start times (Lyve Cloud needs
        the prefix)."""
        paginator = self.target.client.get_paginator("list_multipart_uploads")
        return [
            (upload["UploadId"], upload.get("Initiated"))
            for page in paginator.paginate(Bucket=self.target.bucket, Prefix=key)
            for upload in page.get("Uploads", [])
            if upload["Key"] == key
        ]

    def _list_parts(self, key: str, upload_id: str) -> dict[int, tuple[int, str]]:
        """number -> (size, ETag). A part number listed twice with different contents (SeaweedFS
        lists every upload of a part number until completion) holds no telling which counts:
        it is given no ETag, so it is never kept."""
        parts: dict[int, tuple[int, str]] = {}
        paginator = self.target.client.get_paginator("list_parts")
        for page in paginator.paginate(Bucket=self.target.bucket, Key=key, UploadId=upload_id):
            for part in page.get("Parts", []):
                number, entry = int(part["PartNumber"]), (int(part["Size"]), clean_etag(part.get("ETag")))
                parts[number] = entry if parts.get(number, entry) == entry else (0, "")
        return parts

    def _incomplete_uploads(self, key: str) -> list[_Incomplete] | None:
        """The key's incomplete uploads with their parts (when resuming is on); None when the
        target would not list them (some stores restrict ListMultipartUploads): then the copy
        starts over and nothing is cleaned up."""
        try:
            upload_ids = [upload_id for upload_id, _ in self._uploads(key)]
        except Exception as exc:
            log.warning("upload_lookup_failed", key=key, error=describe(exc))
            return None
        found = []
        for upload_id in upload_ids:
            parts = None
            if self._markers_usable:
                try:
                    parts = self._list_parts(key, upload_id)
                except Exception as exc:
                    log.info("upload_not_resumed", key=key, upload_id=upload_id, reason=describe(exc))
            found.append(_Incomplete(upload_id, parts))
        return found

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.target.client.abort_multipart_upload(Bucket=self.target.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc) not in ("NoSuchUpload", "404"):
                log.warning("abort_failed", key=key, upload_id=upload_id, error=describe(exc))

    def _abort_stale(self, key: str, upload_ids: list[str]) -> None:
        """Housekeeping only: earlier copies' uploads that will not be resumed."""
        try:
            for upload_id in upload_ids:
                self._abort(key, upload_id)
        except Exception as exc:
            log.warning("stale_upload_abort_failed", key=key, error=describe(exc))
            return
        log.info("stale_uploads_aborted", key=key, count=len(upload_ids))

    def _resume_marker(self, obj: ObjectInfo, layout: _Layout, create_args: dict[str, Any]) -> bytes | None:
        """The marker part's body: the source version, the layout and the headers and metadata
        the upload was created with. Equal bytes, equal MD5: the parts already uploaded hold
        this version's bytes cut this way. None when this upload gets no marker."""
        if not self._markers_usable or layout.count >= MAX_PARTS:
            return None  # a replayed 10,000-part layout: its ETag chain proves the bytes anyway
        created = {k: v for k, v in create_args.items() if k not in ("Bucket", "Key")}
        digest = hashlib.sha256(json.dumps(created, sort_keys=True, default=str).encode()).hexdigest()
        lines = [
            MARKER_VERSION,
            f"etag {obj.etag}",
            f"version {obj.version_id or ''}",
            f"size {obj.size}",
            f"part-size {layout.part_size}",
            f"chained {str(layout.chained).lower()}",
            f"created-with {digest}",
        ]
        return ("\n".join(lines) + "\n").encode()

    def _resumable(
        self, obj: ObjectInfo, layout: _Layout, marker: bytes | None, found: list[_Incomplete]
    ) -> tuple[str, dict[int, str]] | None:
        """The upload to resume and the parts of it to keep (number -> ETag), or None."""
        if not self.settings.resume_uploads or (marker is None and layout.count < MAX_PARTS):
            return None
        best: tuple[str, dict[int, str]] | None = None
        best_bytes = -1
        for upload in found:
            if upload.parts is None:
                continue
            if marker is not None:
                wanted = hashlib.md5(marker).hexdigest()  # noqa: S324
                size, etag = upload.parts.get(MARKER_PART, (0, ""))
                reason = None
                if not etag:
                    reason = "no resume marker"
                elif not _PLAIN_MD5.match(etag):
                    reason = "the target's part ETags are not MD5s"
                elif etag != wanted or size != len(marker):
                    reason = "another source version, part layout or metadata"
                if reason:
                    log.info("upload_not_resumed", key=obj.key, upload_id=upload.upload_id, reason=reason)
                    continue
            kept = {
                number: etag
                for number, (size, etag) in upload.parts.items()
                if number <= layout.count and etag and size == layout.length(number)
            }
            kept_bytes = sum(layout.length(number) for number in kept)
            if kept_bytes > best_bytes:
                best, best_bytes = (upload.upload_id, kept), kept_bytes
        return best

    # -- multipart ------------------------------------------------------------------------------

    def _source_part_size(self, obj: ObjectInfo) -> int | None:
        """The source's own part size, when its upload can be replayed part for part.

        Then each target part holds exactly the bytes of the source part with the same number,
        and the target's part ETags must combine into the source's ETag: every byte is checked
        end to end, before the upload is completed, without hashing anything here.
        """
        match = _MULTIPART_ETAG.match(obj.etag)
        if not self._may_replay(obj.etag) or obj.encrypted_etag or not match:
            return None
        # Known from the HEAD that found the object, or asked for now. No version check on the
        # answer (stores differ in the ETag they return for a part): the ranged reads are pinned
        # to obj.etag, and the chain is checked against it.
        layout = obj if obj.first_part_size is not None else self._head_first_part(obj.key)
        if layout is None or layout.first_part_size is None:
            return None  # the store cannot tell its part layout: copy with our own
        part_size, parts_count = layout.first_part_size, layout.parts_count
        if parts_count not in (None, int(match.group(1))):
            return None
        uniform = math.ceil(obj.size / part_size) == int(match.group(1)) if part_size else False
        fits = MIN_PART_SIZE <= part_size <= min(MAX_PART_SIZE, self.budget.capacity // 2)
        return part_size if uniform and fits else None

    def _copy_multipart(self, obj: ObjectInfo, cancel: threading.Event) -> tuple[str | None, int, int]:
        """(MD5 recorded, parts, bytes resumed)."""
        # The key's incomplete uploads are looked up while the layout is worked out.
        lookup = self._housekeeping.submit(self._incomplete_uploads, obj.key)
        try:
            source_part_size = self._source_part_size(obj)
        finally:
            found = lookup.result() or []
        if source_part_size:
            try:
                return self._upload_parts(obj, cancel, _Layout(obj.size, source_part_size, True), found)
            except _ChainBroken as exc:
                log.warning("etag_chain_unusable", key=obj.key, reason=str(exc))
                found = []  # dealt with by the attempt above
        layout = _Layout(obj.size, part_size_for(obj.size, self.settings.part_size), chained=False)
        return self._upload_parts(obj, cancel, layout, found)

    def _upload_parts(
        self, obj: ObjectInfo, cancel: threading.Event, layout: _Layout, found: list[_Incomplete]
    ) -> tuple[str | None, int, int]:
        create_args = self._put_args(obj, obj.known_md5)
        marker = self._resume_marker(obj, layout, create_args)
        resumable = self._resumable(obj, layout, marker, found)
        stale = [u.upload_id for u in found if resumable is None or u.upload_id != resumable[0]]
        # Off the critical path: earlier copies' leftovers go while the parts are sent.
        aborting = self._housekeeping.submit(self._abort_stale, obj.key, stale) if stale else None
        try:
            if resumable is not None:
                upload_id, kept = resumable
                kept_bytes = sum(layout.length(number) for number in kept)
                log.info(
                    "upload_resumed",
                    key=obj.key,
                    upload_id=upload_id,
                    parts=layout.count,
                    parts_kept=len(kept),
                    bytes_kept=kept_bytes,
                )
                try:
                    md5 = self._send_parts(obj, cancel, layout, create_args, upload_id, kept, None)
                    return md5, layout.count, kept_bytes
                except _ChainBroken as exc:
                    if not self._chain_usable:
                        raise
                    # The kept parts do not hold the source's bytes: start over with the same layout.
                    log.warning("resumed_upload_rejected", key=obj.key, upload_id=upload_id, reason=str(exc))
            md5 = self._send_parts(obj, cancel, layout, create_args, None, {}, marker)
            return md5, layout.count, 0
        finally:
            if aborting is not None:
                aborting.result()

    def _check_chain(self, obj: ObjectInfo, etags: list[str]) -> None:
        cleaned = [clean_etag(e) for e in etags]
        if not all(_PLAIN_MD5.match(e) for e in cleaned):
            self._chain_usable = False  # this store's part ETags are not MD5s: never again
            raise _ChainBroken("the target's part ETags are not MD5s")
        digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in cleaned)).hexdigest()  # noqa: S324
        combined = f"{digest}-{len(cleaned)}"
        if combined != obj.etag:
            raise _ChainBroken(f"target parts combine to {combined}, the source ETag is {obj.etag}")

    def _send_parts(
        self,
        obj: ObjectInfo,
        cancel: threading.Event,
        layout: _Layout,
        create_args: dict[str, Any],
        upload_id: str | None,
        kept: dict[int, str],
        marker: bytes | None,
    ) -> str | None:
        """Upload the parts not in `kept` (to a new upload when upload_id is None) and complete;
        returns the MD5 recorded on the target, if any.

        Interrupted (`cancel`), it stops submitting parts and lets those in flight finish. The
        upload is kept for the next attempt when that attempt could resume it and the failure
        was an interruption or one retrying may get past (see _keep_upload); otherwise aborted.
        """
        if cancel.is_set():
            raise CancelledError(f"copy of {obj.key!r} stopped before its upload began")
        resumed = upload_id is not None  # found with our marker (or a 10,000-part chain)
        known_md5 = obj.known_md5
        # Where the source's MD5 is known and no ETag chain covers the copy (a single-part
        # source), the streamed MD5 is the one end-to-end proof of the bytes read: keep it. A
        # resumed upload rests on its parts' Content-MD5 and the marker instead (re-reading the
        # kept parts to hash them would cost what resuming saves), unless WHOLE_OBJECT_MD5 asks.
        hashing = self.settings.whole_object_md5 or bool(known_md5 and not layout.chained and not kept)
        if upload_id is None:
            created = self._target_write(
                obj.key, lambda: self.target.client.create_multipart_upload(**create_args)
            )
            upload_id = created["UploadId"]
        progress = MultipartProgress(self.budget, hashing)
        # Chained and not hashed, a part needs its bytes only on their way through: it streams
        # from the source's GET into the target's UploadPart with one small buffer.
        streaming = (
            layout.chained
            and not hashing
            and self.source_store.lean_for(obj.key) is not None
            and self.target_store.lean_for(obj.key) is not None
        )
        streams = threading.Semaphore(self.settings.part_concurrency)  # streamed parts queued or running
        failed = threading.Event()
        futures: list[Future[None]] = []
        marker_put: Future[None] | None = None

        def watch(future: Future[None]) -> None:
            future.add_done_callback(lambda f: failed.set() if not f.cancelled() and f.exception() else None)
            futures.append(future)

        try:
            if marker is not None:
                marker_put = self._parts.submit(self._put_marker, obj, upload_id, marker)
                watch(marker_put)
            for number in range(1, layout.count + 1):
                if failed.is_set() or cancel.is_set():
                    break
                etag = kept.get(number)
                if etag is not None and not hashing:
                    progress.uploaded(number, etag)  # already on the target: nothing to read
                    continue
                length = layout.length(number)
                if streaming:
                    # A streamed part reserves only its chunk: without a cap of its own, one copy
                    # would queue a part per free MiB and take back every MiB freed, while other
                    # copies' whole parts and small objects waited for the budget.
                    if not _acquire_unless(streams, cancel, failed):
                        break
                    reserved = min(length, STREAM_CHUNK)
                else:
                    reserved = length
                try:
                    self.budget.acquire(reserved, cancel)
                except BaseException:
                    if streaming:
                        streams.release()
                    raise
                progress.track(number, reserved)
                copy = self._stream_part if streaming else self._copy_part
                future = self._parts.submit(
                    copy, obj, upload_id, layout, number, progress, cancel, failed, etag
                )
                if streaming:
                    future.add_done_callback(lambda _: streams.release())
                watch(future)
            wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()]
            # The part that failed first explains it; the others merely gave up after it.
            errors.sort(key=lambda e: isinstance(e, CancelledError))
            if errors:
                raise errors[0]  # type: ignore[misc]
            wait(futures)
            if cancel.is_set():
                raise CancelledError(f"copy of {obj.key!r} stopped")
            md5 = progress.hexdigest() if hashing else None
            if md5 and known_md5 and known_md5 != md5:
                raise IntegrityError(f"MD5 of {obj.key!r} is {md5}, the source says {known_md5}")
            etags = [progress.etags[number] for number in range(1, layout.count + 1)]
            if layout.chained:
                self._check_chain(obj, etags)
            parts = [{"PartNumber": number, "ETag": etag} for number, etag in enumerate(etags, 1)]
            if cancel.is_set():  # never completed once told to stop
                raise CancelledError(f"copy of {obj.key!r} stopped")
            completed = self._target_write(
                obj.key,
                lambda: self.target.client.complete_multipart_upload(
                    Bucket=self.target.bucket,
                    Key=obj.key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                ),
            )
        except BaseException as exc:
            failed.set()  # parts not yet started give up at once; those in flight finish
            for future in futures:
                future.cancel()
            wait(futures)
            progress.release_all()
            marked = marker_put is not None and _succeeded(marker_put)
            if self._keep_upload(exc, layout, resumed or marked):
                log.info("upload_kept", key=obj.key, upload_id=upload_id, reason=describe(exc))
            else:
                self._abort(obj.key, upload_id)
            raise
        written = clean_etag(completed.get("ETag")) or None
        self._verify_written(obj, written)
        if hashing and not known_md5:
            self._record_md5(obj, progress.hexdigest(), written)
        return md5 or known_md5

    def _keep_upload(self, exc: BaseException, layout: _Layout, marked: bool) -> bool:
        """Whether a failed upload is worth keeping for the next attempt to resume: only when
        that attempt could recognise it (it carries our marker, or a replayed 10,000-part layout's
        ETag chain proves its parts) and the failure does not condemn its parts. Interrupted, or
        failed on transport errors, throttling or 5xx beyond the request retries: kept. A changed
        source, bytes that did not verify, a broken ETag chain or a permanent refusal: aborted."""
        if not (self.settings.resume_uploads and self._markers_usable):
            return False
        if not (marked or layout.count >= MAX_PARTS):
            return False
        return isinstance(exc, CancelledError) or is_retryable(exc)

    def _put_marker(self, obj: ObjectInfo, upload_id: str, marker: bytes) -> None:
        etag = clean_etag(self._upload_part(obj, upload_id, MARKER_PART, marker, content_md5(marker)))
        if etag != hashlib.md5(marker).hexdigest():  # noqa: S324
            # The upload still completes; it just cannot be recognised later.
            self._markers_usable = False
            log.info("resume_off", side="target", reason="the target's part ETags are not MD5s")

    def _copy_part(
        self,
        obj: ObjectInfo,
        upload_id: str,
        layout: _Layout,
        number: int,
        progress: MultipartProgress,
        cancel: threading.Event,
        failed: threading.Event,
        kept_etag: str | None,
    ) -> None:
        """Read one part and upload it; a kept part (already on the target) is only read, for the
        whole-object MD5."""
        try:
            if cancel.is_set() or failed.is_set():
                raise CancelledError("stopped")
            length = layout.length(number)
            data = self._read_range(obj, layout.start(number), length, cancel)
            if len(data) != length:
                raise IntegrityError(f"part {number} of {obj.key!r}: {len(data)} bytes, expected {length}")
            progress.fetched(number, data)
            if kept_etag is not None:
                progress.uploaded(number, kept_etag)
                return
            if cancel.is_set() or failed.is_set():
                raise CancelledError("stopped")
            # Chained, the part ETags are checked against the source's ETag before completing;
            # otherwise the target checks each part against its Content-MD5.
            checksum = None if layout.chained else content_md5(data)
            progress.uploaded(number, self._upload_part(obj, upload_id, number, data, checksum, cancel))
        except BaseException:
            progress.abandon(number)
            raise

    def _stream_part(
        self,
        obj: ObjectInfo,
        upload_id: str,
        layout: _Layout,
        number: int,
        progress: MultipartProgress,
        cancel: threading.Event,
        failed: threading.Event,
        kept_etag: str | None,
    ) -> None:
        """Stream one part from the source's ranged GET into UploadPart, a chunk at a time; a
        retry reads the range again. Its proof is the ETag chain, checked before completing."""
        source, target = self.source_store.lean_for(obj.key), self.target_store.lean_for(obj.key)
        start, length = layout.start(number), layout.length(number)
        if source is None or target is None:  # turned off meanwhile by another request
            self._copy_part_whole(obj, upload_id, layout, number, progress, cancel, failed, kept_etag)
            return
        if_match = f'"{obj.etag}"' if obj.etag and not obj.version_id else None
        buffer = memoryview(bytearray(min(length, STREAM_CHUNK)))
        side = "source"

        def attempt() -> str:
            nonlocal side
            side = "source"
            try:
                body = source.open_range(obj.key, start, length, buffer, obj.version_id, if_match)
            except ClientError as exc:
                refusal = self._source_failure(exc, obj, obj.key, "GetObject")
                if refusal is not None:
                    raise refusal from exc
                raise
            with body:
                side = "target"
                return target.upload_part_stream(obj.key, upload_id, number, body)

        try:
            if cancel.is_set() or failed.is_set():
                raise CancelledError("stopped")
            etag = self._retry(_unless_cancelled(cancel, attempt))
        except LeanUnsupported as exc:
            # A redirect or the like, seen for the first time here: the buffered path (boto3)
            # takes this part over, with a reservation for the whole part.
            self._lean_failed(side, exc)
            self._copy_part_whole(obj, upload_id, layout, number, progress, cancel, failed, kept_etag)
            return
        except BaseException as exc:
            progress.abandon(number)
            if side == "target" and isinstance(exc, Exception) and not isinstance(exc, CopyError):
                refusal = explain_refusal(exc, obj.key, self.target)  # a key the target will not store
                if refusal is not None:
                    raise refusal from exc
            raise
        progress.uploaded(number, etag)

    def _copy_part_whole(
        self,
        obj: ObjectInfo,
        upload_id: str,
        layout: _Layout,
        number: int,
        progress: MultipartProgress,
        cancel: threading.Event,
        failed: threading.Event,
        kept_etag: str | None,
    ) -> None:
        """A part planned to stream, copied buffered instead: its chunk's reservation is swapped
        for the whole part's before the part is read."""
        progress.abandon(number)
        self.budget.acquire(layout.length(number), cancel)
        progress.track(number, layout.length(number))
        self._copy_part(obj, upload_id, layout, number, progress, cancel, failed, kept_etag)

    def _verify_written(self, obj: ObjectInfo, written: str | None) -> None:
        """After CompleteMultipartUpload (whose answer gave the object's ETag, `written`): the
        target must hold obj.size bytes. The size only: a target's multipart ETag follows its own
        rules (Lyve Cloud's differ), so it proves which object is there, not its bytes."""
        head = self.target_store.look(obj.key)
        if head is None:
            raise SourceChangedError(f"{obj.key!r} left the target right after its upload")
        size = head.size
        if size == obj.size:
            return
        if written is None or head.etag != written:
            # Most likely another writer's object (a concurrent copy of a newer version); with
            # nothing to prove it is this upload's, it is not ours to delete.
            raise SourceChangedError(
                f"{obj.key!r} on the target was replaced right after its upload completed: look again"
            )
        # Too late to abort: the object exists, and it is the one this upload wrote (compared
        # just now). Remove it so nothing wrong stays behind. If-Match closes the gap between that
        # HEAD and the delete where the store has conditional deletes (AWS, SeaweedFS); one
        # without them may ignore the header (the HEAD just before is the guard then) or refuse
        # the delete (the object is left for the start-over to overwrite).
        try:
            self.target.client.delete_object(Bucket=self.target.bucket, Key=obj.key, IfMatch=f'"{written}"')
        except ClientError as exc:
            if error_code(exc) in ("PreconditionFailed", "412"):
                raise SourceChangedError(
                    f"{obj.key!r} on the target was replaced right after its upload completed: look again"
                ) from exc
            log.warning("short_object_not_deleted", key=obj.key, error=describe(exc))
        raise IntegrityError(f"target holds {size} bytes of {obj.key!r}, expected {obj.size}")

    def _record_md5(self, obj: ObjectInfo, md5_hex: str, written: str | None) -> None:
        """Store the streamed MD5 on the target when it was not known before the upload began
        (WHOLE_OBJECT_MD5 only: the ETag chain or the parts' Content-MD5 already proved the bytes).

        Metadata is fixed when a multipart upload is created, so it takes a metadata-only copy
        of the object onto itself (CopyObject's 5 GiB limit applies), pinned to the ETag the
        upload's completion answered (`written`): a newer object written in between is never
        labelled with this one's source ETag and MD5.
        """
        if obj.size > SELF_COPY_LIMIT or written is None:
            reason = "above the CopyObject limit" if written else "the store named no ETag for the upload"
            log.info("md5_not_recorded", key=obj.key, reason=reason, md5=md5_hex)
            return
        args = self._put_args(obj, md5_hex, with_tags=False)  # CopyObject keeps the tags
        try:
            self.target.client.copy_object(
                CopySource={"Bucket": self.target.bucket, "Key": obj.key},
                CopySourceIfMatch=f'"{written}"',
                MetadataDirective="REPLACE",
                **args,
            )
        except ClientError as exc:
            if error_code(exc) in ("PreconditionFailed", "412"):
                raise SourceChangedError(
                    f"{obj.key!r} on the target was replaced before its MD5 was recorded: look again"
                ) from exc
            raise

    def _target_etag(self, key: str) -> str | None:
        """The target object's ETag now; None when it is gone."""
        head = self.target_store.look(key)
        return head.etag if head is not None else None

    def _copy_in_place_by_parts(self, target: ObjectInfo, pinned: str, args: dict[str, Any]) -> None:
        """Rewrite a target object above CopyObject's limit onto itself with new headers and
        metadata: a multipart upload whose parts are server-side copies of its own ranges."""
        key = target.key
        layout = _Layout(
            target.size, part_size_for(target.size, max(self.settings.part_size, COPY_PART_SIZE)), False
        )
        created = self._target_write(key, lambda: self.target.client.create_multipart_upload(**args))
        upload_id = created["UploadId"]

        def copy_part(number: int) -> dict[str, Any]:
            start = layout.start(number)
            response = self._target_write(
                key,
                lambda: self.target.client.upload_part_copy(
                    Bucket=self.target.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    CopySource={"Bucket": self.target.bucket, "Key": key},
                    CopySourceRange=f"bytes={start}-{start + layout.length(number) - 1}",
                    CopySourceIfMatch=pinned,
                ),
            )
            return {"PartNumber": number, "ETag": response["CopyPartResult"]["ETag"]}

        futures = [self._parts.submit(copy_part, number) for number in range(1, layout.count + 1)]
        try:
            parts = [future.result() for future in futures]
            # Each part copy was pinned, the completion cannot be (not every store takes If-Match
            # on it): look at the object once more, so that one written since the last part copy
            # is not replaced by the old bytes.
            if self._target_etag(key) != target.etag:
                raise SourceChangedError(f"{key!r} changed on the target during its metadata update")
            completed = self._target_write(
                key,
                lambda: self.target.client.complete_multipart_upload(
                    Bucket=self.target.bucket,
                    Key=key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                ),
            )
        except BaseException:
            for future in futures:
                future.cancel()
            wait(futures)
            self._abort(key, upload_id)
            raise
        self._verify_written(target, clean_etag(completed.get("ETag")) or None)
