"""Make the target's copy of one key match the source as it is now.

Every queue message means "reconcile this key", so duplicated, reordered or lost intermediate
events all converge to the source's current state. Nothing is deleted on the target unless the
source is known, at that moment, not to hold the key.
"""

from __future__ import annotations

import contextlib
import enum
import threading
import time
from dataclasses import dataclass

from botocore.exceptions import ClientError

from replicator import objects
from replicator.clients import Endpoint
from replicator.errors import (
    SourceBucketMissingError,
    SourceChangedError,
    describe,
    error_code,
    is_not_found,
    is_retryable,
    object_retrying,
    self_copy_refused,
    source_refusal,
)
from replicator.logs import get_logger
from replicator.objects import ObjectInfo, target_matches
from replicator.settings import Settings
from replicator.target_rules import check_key
from replicator.transfer import CopyResult, TransferEngine, response_time

log = get_logger(__name__)


class Outcome(enum.StrEnum):
    COPIED = "copied"
    DELETED = "deleted"
    UNCHANGED = "unchanged"
    # Same bytes, new content headers or user metadata (an in-place CopyObject on the source).
    METADATA_UPDATED = "metadata_updated"


@dataclass(frozen=True)
class ReconcileResult:
    key: str
    outcome: Outcome
    size: int = 0
    copy: CopyResult | None = None


def head(endpoint: Endpoint, key: str) -> ObjectInfo | None:
    """HeadObject, or None when the key does not exist (or is a delete marker).

    On the source, a refusal retrying cannot fix (an SSE-C object answers a bare 400) is raised
    as the PermanentError that says so.
    """
    try:
        response = endpoint.client.head_object(Bucket=endpoint.bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        if endpoint.name == "source":
            refusal = source_refusal(exc, None, "HeadObject", key, endpoint)
            if refusal is not None:
                raise refusal from exc
        raise
    return ObjectInfo.from_head(key, response)


def source_absent(endpoint: Endpoint, key: str) -> bool:
    """True only when the source bucket is known, now, not to hold the key.

    HEAD answers a bare 404 both for a deleted key and for a missing bucket. A one-key listing
    from the key tells the two apart (NoSuchBucket) and shows whether the key is there at this
    moment (a key is the first of the keys it prefixes).
    """
    try:
        listing = endpoint.client.list_objects_v2(Bucket=endpoint.bucket, Prefix=key, MaxKeys=1)
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            raise SourceBucketMissingError(
                f"source bucket {endpoint.bucket!r} does not exist at {endpoint.url}: a 404 from it "
                "proves nothing, so nothing is deleted on the target (check SOURCE_BUCKET and "
                "SOURCE_ENDPOINT_URL / SOURCE_REGION)"
            ) from None
        raise
    return not any(entry.get("Key") == key for entry in listing.get("Contents", []))


class Reconciler:
    def __init__(self, engine: TransferEngine, settings: Settings | None = None) -> None:
        self.engine = engine
        settings = settings or engine.settings
        self._retrying = object_retrying(settings.source_changed_restarts, settings.integrity_restarts)

    def reconcile(
        self, key: str, cancel: threading.Event | None = None, expected_size: int | None = None
    ) -> ReconcileResult:
        """`expected_size`: the object's size as its newest event reported it, when one did.
        Below the multipart threshold, one GET of the source stands in for its HEAD and carries
        the bytes (see _reconcile_from_get): one source request per copy instead of two."""
        threshold = self.engine.settings.multipart_threshold

        def attempt() -> ReconcileResult:
            if expected_size is not None and expected_size < threshold:
                return self._reconcile_from_get(key, cancel, expected_size)
            return self._reconcile_once(key, cancel)

        result: ReconcileResult = self._retrying(attempt)
        return result

    def _reconcile_once(self, key: str, cancel: threading.Event | None) -> ReconcileResult:
        source = head(self.engine.source, key)
        if source is None:
            source = self._listed_after_404(key)
            if source is None:
                return self._delete(key)
        return self._converge(source, cancel)

    def _reconcile_from_get(self, key: str, cancel: threading.Event | None, size: int) -> ReconcileResult:
        """_reconcile_once with a GET where the HEAD was. Its 404 is taken as a HEAD's (a
        listing decides); a refusal other than a 404 or a retryable one is left to the HEAD path,
        which tells the archived, SSE-C and SSE-KMS cases apart and answers them as always. If
        the target already holds the object the bytes were read for nothing, at the cost of the
        HEAD they replace."""
        if check_key(key, self.engine.target) is not None:
            return self._reconcile_once(key, cancel)  # refused, unless the key is gone: no bytes
        started = time.monotonic()
        with contextlib.ExitStack() as held:
            try:
                read = held.enter_context(self.engine.read_first(key, size))
            except ClientError as exc:
                if is_retryable(exc):
                    raise
                log.info("source_get_refused", key=key, error=describe(exc), then="head")
                return self._reconcile_once(key, cancel)
            if read is not None:
                source, data = read
                return self._converge(source, cancel, data, started)
        listed = self._listed_after_404(key)
        if listed is None:
            return self._delete(key)
        return self._converge(listed, cancel)

    def _listed_after_404(self, key: str) -> ObjectInfo | None:
        """After the source answered 404 for the key: None when a one-key listing proves it
        absent now (the target's copy goes); its HEAD when it is listed after all."""
        source_end = self.engine.source
        if source_absent(source_end, key):
            return None
        # Listed although the source said 404: written in between. Look at it again.
        source = head(source_end, key)
        if source is None:
            raise SourceChangedError(f"{key!r}: HEAD finds nothing but the listing shows the key")
        return source

    def _converge(
        self,
        source: ObjectInfo,
        cancel: threading.Event | None,
        data: bytes | None = None,
        started: float = 0.0,
    ) -> ReconcileResult:
        """Make the target hold `source` (its bytes in `data` when already read)."""
        key = source.key
        # A key the target cannot hold fails here, before anything is asked of the target.
        refusal = check_key(key, self.engine.target)
        if refusal is not None:
            raise refusal
        existing = head(self.engine.target, key)
        if existing is not None and target_matches(source, existing):
            if objects.metadata_matches(source, existing):
                return ReconcileResult(key, Outcome.UNCHANGED, source.size)
            try:
                self.engine.update_metadata(source, existing)
                return ReconcileResult(key, Outcome.METADATA_UPDATED, source.size)
            except ClientError as exc:
                if not self_copy_refused(exc):
                    raise
                # Some stores refuse a copy of an object onto itself (or UploadPartCopy): send
                # the bytes again instead, which carries the new headers and metadata too.
                log.info("metadata_update_refused", key=key, error=describe(exc), fallback="copy")
        if data is not None:
            result = self.engine.copy_read(source, data, started, cancel)
        else:
            result = self.engine.copy(source, cancel)
        return ReconcileResult(key, Outcome.COPIED, source.size, result)

    def _delete(self, key: str) -> ReconcileResult:
        target = self.engine.target
        # DeleteObject is idempotent: deleting a key that is not there succeeds.
        deleted = target.client.delete_object(Bucket=target.bucket, Key=key)
        # Parts of interrupted copies of the key are billed and invisible: they go with it. Only
        # those begun before the delete (the target's clock): a later one belongs to a copy of
        # the key written again since. Without a Date on the answer, all of them.
        try:
            aborted = self.engine.abort_uploads(key, started_before=response_time(deleted))
        except Exception as exc:
            if is_retryable(exc):
                raise  # the message comes back and the (idempotent) delete runs again
            # Some stores restrict ListMultipartUploads; the object itself is gone, and
            # `migrate --cleanup-uploads` clears what is left.
            log.warning("uploads_not_aborted", key=key, error=describe(exc))
        else:
            if aborted:
                log.info("uploads_aborted", key=key, count=aborted)
        return ReconcileResult(key, Outcome.DELETED)
