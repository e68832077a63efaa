"""The copy engine shared by the worker and migrate: source GET -> target PUT, streamed.

Small objects go in one PUT. Larger ones are split into parts fetched with parallel ranged GETs
and sent with parallel UploadPart calls. A process-wide byte budget bounds the part buffers in
memory, whatever the object size or the number of objects in flight. Every part carries its
Content-MD5; the whole-object MD5 is computed in order while streaming and checked against the
source where the source knows it. Any failure aborts the multipart upload.
"""

from __future__ import annotations

import base64
import hashlib
import math
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from botocore.exceptions import ClientError

from replicator.clients import Endpoint
from replicator.errors import (
    CancelledError,
    IntegrityError,
    SourceChangedError,
    describe,
    error_code,
    is_not_found,
    request_retrying,
)
from replicator.lean_s3 import LeanS3, LeanUnsupported
from replicator.logs import get_logger
from replicator.objects import META_MD5, META_SOURCE_ETAG, ObjectInfo, clean_etag
from replicator.settings import MIB, Settings

log = get_logger(__name__)

MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 4 * 1024 * MIB  # Lyve Cloud's limit (AWS allows 5 GiB)
MAX_PARTS = 10_000
MAX_SINGLE_PUT = 5 * 1024 * MIB
MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MIB
SELF_COPY_LIMIT = 5 * 1024 * MIB  # CopyObject limit, for recording a streamed MD5 afterwards

T = TypeVar("T")


def part_size_for(size: int, configured: int) -> int:
    """max(configured, ceil(size / 10,000)), rounded up to a whole MiB, within the part limits."""
    if size > MAX_OBJECT_SIZE:
        raise ValueError(f"object of {size} bytes exceeds the 5 TiB object limit")
    needed = max(configured, MIN_PART_SIZE, math.ceil(size / MAX_PARTS))
    needed = math.ceil(needed / MIB) * MIB
    if needed > MAX_PART_SIZE:
        raise ValueError(f"object of {size} bytes needs parts above the {MAX_PART_SIZE} byte limit")
    return needed


def content_md5(data: bytes | bytearray | memoryview) -> str:
    return base64.b64encode(hashlib.md5(data).digest()).decode()  # noqa: S324 (S3's own integrity hash)


_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-(\d+)$")
_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")


class _ChainBroken(Exception):
    """The source's part layout could not be replayed and verified on this target."""


class _GrewError(Exception):
    """The object is now above the multipart threshold: take the multipart path."""


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
    md5: str
    parts: int
    seconds: float
    source_etag: str


class _MultipartProgress:
    """Per-upload state: the in-order whole-object MD5 and the release of part buffers.

    A part's buffer is released once it is both uploaded and folded into the MD5, so a slow
    early part holds back at most the budget's worth of later ones.
    """

    def __init__(self, budget: ByteBudget) -> None:
        self._budget = budget
        self._md5 = hashlib.md5()  # noqa: S324
        self._next = 0
        self._pending: dict[int, bytes | bytearray] = {}
        self._uploaded: set[int] = set()
        self._hashed: set[int] = set()
        self._sizes: dict[int, int] = {}
        self._lock = threading.Lock()
        self._hash_lock = threading.Lock()
        self.etags: dict[int, str] = {}

    def track(self, index: int, size: int) -> None:
        with self._lock:
            self._sizes[index] = size

    def fetched(self, index: int, data: bytes | bytearray) -> None:
        with self._lock:
            if index < self._next or index in self._pending:
                return  # a retried part: already counted
            self._pending[index] = data
        self._hash_in_order()

    def _hash_in_order(self) -> None:
        """Fold consecutive fetched parts into the MD5. One thread hashes at a time, outside the
        bookkeeping lock, so part threads never wait on another part's hashing."""
        while self._hash_lock.acquire(blocking=False):
            try:
                while True:
                    with self._lock:
                        index = self._next
                        chunk = self._pending.pop(index, None)
                    if chunk is None:
                        break
                    self._md5.update(chunk)  # releases the GIL for large buffers
                    with self._lock:
                        self._next = index + 1
                        self._hashed.add(index)
                        self._maybe_release(index)
            finally:
                self._hash_lock.release()
            with self._lock:
                if self._next not in self._pending:
                    return
            # A part arrived just as this thread stopped hashing: go round again.

    def uploaded(self, index: int, etag: str) -> None:
        with self._lock:
            self.etags[index] = etag
            self._uploaded.add(index)
            self._maybe_release(index)

    def abandon(self, index: int) -> None:
        """A part that failed gives its buffer back."""
        with self._lock:
            if index in self._sizes:
                self._budget.release(self._sizes.pop(index))

    def _maybe_release(self, index: int) -> None:
        if index in self._uploaded and index in self._hashed and index in self._sizes:
            self._budget.release(self._sizes.pop(index))

    def release_all(self) -> None:
        with self._lock:
            for size in self._sizes.values():
                self._budget.release(size)
            self._sizes.clear()
            self._pending.clear()

    def hexdigest(self) -> str:
        return self._md5.hexdigest()


class TransferEngine:
    """Copies objects from one Endpoint to another. Thread-safe; build one per process."""

    def __init__(self, source: Endpoint, target: Endpoint, settings: Settings) -> None:
        self.source = source
        self.target = target
        self.settings = settings
        self.budget = ByteBudget(settings.max_buffer_bytes)
        self._chain_usable = True
        self._lean_source = self._lean(source)
        self._lean_target = self._lean(target)
        self._parts = ThreadPoolExecutor(max_workers=settings.part_concurrency, thread_name_prefix="part")
        self._housekeeping = ThreadPoolExecutor(max_workers=2, thread_name_prefix="housekeeping")
        self._retrying = request_retrying(settings.max_attempts)

    def close(self) -> None:
        self._parts.shutdown(wait=True, cancel_futures=True)
        self._housekeeping.shutdown(wait=True, cancel_futures=True)

    # -- public -------------------------------------------------------------------------------

    def copy(self, obj: ObjectInfo, cancel: threading.Event | None = None) -> CopyResult:
        """Copy one source object (as read by HeadObject) to the same key on the target."""
        cancel = cancel or threading.Event()
        started = time.monotonic()
        if obj.size >= self.settings.multipart_threshold and not obj.complete:
            # Listed, not looked at: the multipart path needs headers and metadata up front.
            obj = self._head_source(obj.key, first_part=self._may_replay(obj.etag))
        if obj.size < self.settings.multipart_threshold:
            try:
                obj, md5, parts = *self._copy_single(obj), 1
            except _GrewError:
                obj = self._head_source(obj.key)  # rewritten larger since it was listed
        if obj.size >= self.settings.multipart_threshold:
            md5, parts = self._copy_multipart(obj, cancel)
        return CopyResult(obj.key, obj.size, md5, parts, time.monotonic() - started, obj.etag)

    # -- helpers ------------------------------------------------------------------------------

    def _retry(self, fn: Callable[[], T]) -> T:
        return self._retrying(fn)

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

    def _read_range(self, obj: ObjectInfo, start: int, length: int) -> bytes | bytearray:
        # Pin every read to the version we looked at: a concurrent overwrite fails the copy
        # (and the reconcile starts over) instead of mixing two versions' bytes.
        if_match = f'"{obj.etag}"' if obj.etag and not obj.version_id else None
        lean = self._lean_source
        try:
            if lean is not None:
                try:
                    return lean.get_range(obj.key, start, length, obj.version_id, if_match)
                except LeanUnsupported as exc:
                    self._lean_failed("source", exc)
            args: dict[str, Any] = {
                "Bucket": self.source.bucket,
                "Key": obj.key,
                "Range": f"bytes={start}-{start + length - 1}",
            }
            if obj.version_id:
                args["VersionId"] = obj.version_id
            elif if_match:
                args["IfMatch"] = if_match
            return self.source.client.get_object(**args)["Body"].read()
        except ClientError as exc:
            if is_not_found(exc) or error_code(exc) in ("PreconditionFailed", "412"):
                raise SourceChangedError(f"{obj.key!r} changed or vanished during the copy") from exc
            raise

    def _upload_part(
        self, obj: ObjectInfo, upload_id: str, number: int, data: bytes | bytearray, content_md5: str | None
    ) -> str:
        """UploadPart; returns the part's ETag."""
        lean = self._lean_target
        if lean is not None:
            try:
                return lean.upload_part(obj.key, upload_id, number, data, content_md5)
            except LeanUnsupported as exc:
                self._lean_failed("target", exc)
        integrity: dict[str, Any] = {"ContentMD5": content_md5} if content_md5 else {}
        response = self.target.client.upload_part(
            Bucket=self.target.bucket,
            Key=obj.key,
            UploadId=upload_id,
            PartNumber=number,
            Body=data,  # type: ignore[arg-type]  # botocore takes a bytearray; the stubs say bytes
            **integrity,
        )
        return response["ETag"]

    def _may_replay(self, etag: str) -> bool:
        """Whether a copy could replay the source's part layout (see _source_part_size)."""
        return (
            self.settings.part_checksum == "auto" and self._chain_usable and bool(_MULTIPART_ETAG.match(etag))
        )

    def _head_first_part(self, key: str) -> ObjectInfo | None:
        """HeadObject of part 1 (the object's headers plus its part layout), or None when the
        store cannot answer for a part."""
        try:
            head = self.source.client.head_object(Bucket=self.source.bucket, Key=key, PartNumber=1)
        except ClientError as exc:
            if is_not_found(exc):
                raise SourceChangedError(f"{key!r} vanished before the copy") from exc
            return None
        try:
            return ObjectInfo.from_head(key, head)
        except ValueError:
            return None

    def _head_source(self, key: str, first_part: bool = False) -> ObjectInfo:
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
            head = self.source.client.head_object(Bucket=self.source.bucket, Key=key)
        except ClientError as exc:
            if is_not_found(exc):
                raise SourceChangedError(f"{key!r} vanished before the copy") from exc
            raise
        return ObjectInfo.from_head(key, head)

    def _lean(self, end: Endpoint) -> LeanS3 | None:
        if not self.settings.lean_requests:
            return None
        try:
            return LeanS3(
                end.client,
                end.bucket,
                self.settings.connect_timeout_seconds,
                self.settings.read_timeout_seconds,
            )
        except LeanUnsupported as exc:
            log.debug("lean_path_off", side=end.name, reason=str(exc))
            return None

    def _lean_failed(self, side: str, exc: LeanUnsupported) -> None:
        if exc.endpoint_wide:
            log.info("lean_path_off", side=side, reason=str(exc))
            setattr(self, f"_lean_{side}", None)

    def _read_whole(self, key: str) -> tuple[ObjectInfo, bytes]:
        """One GET: an atomic read of one version, with its headers (no HEAD needed)."""
        lean = self._lean_source
        try:
            if lean is not None:
                try:
                    response, data = lean.get_object(key)
                    if int(response["ContentLength"]) >= self.settings.multipart_threshold:
                        raise _GrewError(key)
                    return ObjectInfo.from_head(key, response), data
                except LeanUnsupported as exc:
                    self._lean_failed("source", exc)
            got: Any = self.source.client.get_object(Bucket=self.source.bucket, Key=key)
            if int(got["ContentLength"]) >= self.settings.multipart_threshold:
                got["Body"].close()
                raise _GrewError(key)
            data = got["Body"].read()
        except ClientError as exc:
            if is_not_found(exc):
                raise SourceChangedError(f"{key!r} vanished before the copy") from exc
            raise
        return ObjectInfo.from_head(key, got), data

    def _write_whole(self, obj: ObjectInfo, data: bytes, md5_hex: str) -> None:
        args = self._put_args(obj, md5_hex)
        checksum = base64.b64encode(bytes.fromhex(md5_hex)).decode()
        lean = self._lean_target
        if lean is not None:
            params = {k: v for k, v in args.items() if k not in ("Bucket", "Key", "Metadata")}
            try:
                lean.put_object(obj.key, data, args["Metadata"], ContentMD5=checksum, **params)
                return
            except LeanUnsupported as exc:
                self._lean_failed("target", exc)
        self.target.client.put_object(Body=data, ContentMD5=checksum, **args)

    def _copy_single(self, listed: ObjectInfo) -> tuple[ObjectInfo, str]:
        self.budget.acquire(listed.size)
        try:
            obj, data = self._retry(lambda: self._read_whole(listed.key))
            if len(data) != obj.size:
                raise IntegrityError(f"read {len(data)} bytes of {obj.key!r}, expected {obj.size}")
            md5_hex = hashlib.md5(data).hexdigest()  # noqa: S324
            expected = obj.known_md5
            if expected and expected != md5_hex:
                raise IntegrityError(f"MD5 of {obj.key!r} is {md5_hex}, the source says {expected}")
            self._retry(lambda: self._write_whole(obj, data, md5_hex))
            return obj, md5_hex
        finally:
            self.budget.release(listed.size)

    def _abort_stale_quietly(self, key: str, keep: str) -> None:
        try:
            stale = self.abort_stale_uploads(key, keep)
        except Exception as exc:
            # Housekeeping only (some stores restrict ListMultipartUploads): the copy goes ahead.
            log.warning("stale_upload_check_failed", key=key, error=describe(exc))
            return
        if stale:
            log.info("stale_uploads_aborted", key=key, count=stale)

    def abort_stale_uploads(self, key: str, keep: str | None = None) -> int:
        """Abort incomplete uploads of exactly this key (earlier killed or failed copies)."""
        aborted = 0
        paginator = self.target.client.get_paginator("list_multipart_uploads")
        for page in paginator.paginate(Bucket=self.target.bucket, Prefix=key):
            for upload in page.get("Uploads", []):
                if upload["Key"] == key and upload["UploadId"] != keep:
                    self._abort(key, upload["UploadId"])
                    aborted += 1
        return aborted

    def _abort(self, key: str, upload_id: str) -> None:
        try:
            self.target.client.abort_multipart_upload(Bucket=self.target.bucket, Key=key, UploadId=upload_id)
        except ClientError as exc:
            if error_code(exc) not in ("NoSuchUpload", "404"):
                log.warning("abort_failed", key=key, upload_id=upload_id, error=describe(exc))

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

    def _copy_multipart(self, obj: ObjectInfo, cancel: threading.Event) -> tuple[str, int]:
        source_part_size = self._source_part_size(obj)
        if source_part_size:
            try:
                return self._upload_parts(obj, cancel, source_part_size, chained=True)
            except _ChainBroken as exc:
                log.warning("etag_chain_unusable", key=obj.key, reason=str(exc))
        return self._upload_parts(
            obj, cancel, part_size_for(obj.size, self.settings.part_size), chained=False
        )

    def _check_chain(self, obj: ObjectInfo, etags: list[str]) -> None:
        cleaned = [clean_etag(e) for e in etags]
        if not all(_PLAIN_MD5.match(e) for e in cleaned):
            self._chain_usable = False  # this store's part ETags are not MD5s: never again
            raise _ChainBroken("the target's part ETags are not MD5s")
        digest = hashlib.md5(b"".join(bytes.fromhex(e) for e in cleaned)).hexdigest()  # noqa: S324
        combined = f"{digest}-{len(cleaned)}"
        if combined != obj.etag:
            raise _ChainBroken(f"target parts combine to {combined}, the source ETag is {obj.etag}")

    def _upload_parts(
        self, obj: ObjectInfo, cancel: threading.Event, part_size: int, chained: bool
    ) -> tuple[str, int]:
        count = math.ceil(obj.size / part_size)
        known_md5 = obj.known_md5
        create_args = self._put_args(obj, known_md5)
        created = self._retry(lambda: self.target.client.create_multipart_upload(**create_args))
        upload_id = created["UploadId"]
        # Off the critical path: the parts start while earlier copies' leftovers are cleared.
        stale_check = self._housekeeping.submit(self._abort_stale_quietly, obj.key, upload_id)
        progress = _MultipartProgress(self.budget)
        failed = threading.Event()
        try:
            futures: list[Future[None]] = []
            for index in range(count):
                if failed.is_set() or cancel.is_set():
                    break
                start = index * part_size
                length = min(part_size, obj.size - start)
                self.budget.acquire(length, cancel)
                progress.track(index, length)
                future = self._parts.submit(
                    self._copy_part, obj, upload_id, index, start, length, progress, cancel, failed, chained
                )
                future.add_done_callback(
                    lambda f: failed.set() if not f.cancelled() and f.exception() else None
                )
                futures.append(future)
            wait(futures, return_when=FIRST_EXCEPTION)
            errors = [f.exception() for f in futures if f.done() and not f.cancelled() and f.exception()]
            # The part that failed first explains it; the others merely gave up after it.
            errors.sort(key=lambda e: isinstance(e, CancelledError))
            if errors:
                failed.set()  # parts not yet started give up at once
                for future in futures:
                    future.cancel()
                wait(futures)
                raise errors[0]  # type: ignore[misc]
            wait(futures)
            if cancel.is_set():
                raise CancelledError(f"copy of {obj.key!r} stopped by shutdown")
            md5_hex = progress.hexdigest()
            if known_md5 and known_md5 != md5_hex:
                raise IntegrityError(f"MD5 of {obj.key!r} is {md5_hex}, the source says {known_md5}")
            parts = [{"PartNumber": i + 1, "ETag": progress.etags[i]} for i in range(count)]
            if chained:
                self._check_chain(obj, [progress.etags[i] for i in range(count)])
            self._retry(
                lambda: self.target.client.complete_multipart_upload(
                    Bucket=self.target.bucket,
                    Key=obj.key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": parts},  # type: ignore[typeddict-item]
                )
            )
        except BaseException:
            progress.release_all()
            self._abort(obj.key, upload_id)
            raise
        finally:
            stale_check.result()
        self._verify_written(obj)
        if not known_md5:
            self._record_md5(obj, md5_hex)
        return md5_hex, count

    def _copy_part(
        self,
        obj: ObjectInfo,
        upload_id: str,
        index: int,
        start: int,
        length: int,
        progress: _MultipartProgress,
        cancel: threading.Event,
        failed: threading.Event,
        chained: bool,
    ) -> None:
        try:
            if cancel.is_set() or failed.is_set():
                raise CancelledError("stopped")
            data = self._retry(lambda: self._read_range(obj, start, length))
            if len(data) != length:
                raise IntegrityError(f"part {index + 1} of {obj.key!r}: {len(data)} bytes, expected {length}")
            progress.fetched(index, data)
            # Chained, the part ETags are checked against the source's ETag before completing;
            # otherwise the target checks each part against its Content-MD5.
            checksum = None if chained else content_md5(data)
            etag = self._retry(lambda: self._upload_part(obj, upload_id, index + 1, data, checksum))
            progress.uploaded(index, etag)
        except BaseException:
            progress.abandon(index)
            raise

    def _verify_written(self, obj: ObjectInfo) -> None:
        head = self.target.client.head_object(Bucket=self.target.bucket, Key=obj.key)
        if int(head["ContentLength"]) != obj.size:
            # Too late to abort: the object exists. Remove it so nothing wrong stays behind.
            self.target.client.delete_object(Bucket=self.target.bucket, Key=obj.key)
            raise IntegrityError(
                f"target holds {head['ContentLength']} bytes of {obj.key!r}, expected {obj.size}"
            )

    def _record_md5(self, obj: ObjectInfo, md5_hex: str) -> None:
        """Store the streamed MD5 on the target when it was not known before the upload began.

        Metadata is fixed when a multipart upload is created, so it takes a metadata-only copy
        of the object onto itself (CopyObject's 5 GiB limit applies).
        """
        if obj.size > SELF_COPY_LIMIT:
            log.info("md5_not_recorded", key=obj.key, reason="above the CopyObject limit", md5=md5_hex)
            return
        args = self._put_args(obj, md5_hex, with_tags=False)  # CopyObject keeps the tags
        self._retry(
            lambda: self.target.client.copy_object(
                CopySource={"Bucket": self.target.bucket, "Key": obj.key},
                MetadataDirective="REPLACE",
                **args,
            )
        )
