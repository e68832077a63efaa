"""A named target the source is replicated to, as the reconciler and migrate see it.

Every target converges to the source on its own: the reconciler looks at the source once, then
asks each target for its copy (head), and has it copy, update metadata or delete. An S3-compatible
target is the TransferEngine (S3Target); any other store goes through the storage interface
(replicator.stores) behind StoreTarget (replicator.store_target).
"""

from __future__ import annotations

import threading
from typing import Protocol

from replicator.clients import Clients
from replicator.errors import PermanentError, describe, is_retryable
from replicator.logs import get_logger
from replicator.looks import head
from replicator.objects import ObjectInfo
from replicator.preflight import check_bucket
from replicator.target_rules import check_key
from replicator.transfer import CopyResult, TransferEngine, response_time

log = get_logger(__name__)


class Target(Protocol):
    """One target. Implementations are thread-safe: keys are reconciled in parallel."""

    @property
    def name(self) -> str:
        """The target's name in the configuration (logs, metrics, DLQ messages)."""
        ...

    def refusal(self, key: str) -> PermanentError | None:
        """Why this target can never hold `key` (UnstorableKeyError), or None; asks nothing of
        the store."""
        ...

    def head(self, key: str) -> ObjectInfo | None:
        """The target's object as ObjectInfo (metadata by S3 names, our recorded fields among
        them; `etag` the store's own), None when it holds none."""
        ...

    def copy(self, source: ObjectInfo, cancel: threading.Event | None = None) -> CopyResult:
        """Copy the source object (from a HEAD, or listed: complete=False) to the same key,
        reading the source itself. A failure leaves no partial object visible."""
        ...

    def copy_read(
        self, source: ObjectInfo, data: bytes, started: float, cancel: threading.Event | None = None
    ) -> CopyResult:
        """Write a small object whose bytes were read already (one GET for every target)."""
        ...

    def update_metadata(self, source: ObjectInfo, existing: ObjectInfo) -> None:
        """Give the target's object (which holds the source's bytes) the source's content
        headers and user metadata, keeping our recorded fields."""
        ...

    def delete(self, key: str) -> int:
        """Delete the object (absent is fine) and the uploads of the key begun before the
        delete; returns how many uploads were discarded."""
        ...

    def close(self) -> None: ...


class S3Target:
    """An S3-compatible target: the copy engine's target bucket."""

    def __init__(self, name: str, engine: TransferEngine, clients: Clients | None = None) -> None:
        """`clients`: the source's and this target's (migrate's child processes renew them)."""
        self._name = name
        self.engine = engine
        self.clients = clients

    @property
    def name(self) -> str:
        return self._name

    def refusal(self, key: str) -> PermanentError | None:
        return check_key(key, self.engine.target)

    def head(self, key: str) -> ObjectInfo | None:
        return head(self.engine.target, key)

    def copy(self, source: ObjectInfo, cancel: threading.Event | None = None) -> CopyResult:
        return self.engine.copy(source, cancel)

    def copy_read(
        self, source: ObjectInfo, data: bytes, started: float, cancel: threading.Event | None = None
    ) -> CopyResult:
        return self.engine.copy_read(source, data, started, cancel)

    def update_metadata(self, source: ObjectInfo, existing: ObjectInfo) -> None:
        self.engine.update_metadata(source, existing)

    def delete(self, key: str) -> int:
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
            return 0
        if aborted:
            log.info("uploads_aborted", key=key, count=aborted)
        return aborted

    def check(self) -> None:
        """At start: the bucket exists and our keys reach it (StartupError otherwise)."""
        check_bucket(self.engine.target)

    def close(self) -> None:
        self.engine.close()
