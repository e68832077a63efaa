"""Make the target's copy of one key match the source as it is now.

Every queue message means "reconcile this key", so duplicated, reordered or lost intermediate
events all converge to the source's current state.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

from botocore.exceptions import ClientError

from replicator.clients import Endpoint
from replicator.errors import is_not_found, object_retrying
from replicator.objects import ObjectInfo, target_matches
from replicator.transfer import CopyResult, TransferEngine


class Outcome(enum.StrEnum):
    COPIED = "copied"
    DELETED = "deleted"
    UNCHANGED = "unchanged"


@dataclass(frozen=True)
class ReconcileResult:
    key: str
    outcome: Outcome
    size: int = 0
    copy: CopyResult | None = None


def head(endpoint: Endpoint, key: str) -> ObjectInfo | None:
    """HeadObject, or None when the key does not exist (or is a delete marker)."""
    try:
        response = endpoint.client.head_object(Bucket=endpoint.bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        raise
    return ObjectInfo.from_head(key, response)


class Reconciler:
    def __init__(self, engine: TransferEngine, attempts: int = 5) -> None:
        self.engine = engine
        self._retrying = object_retrying(attempts)

    def reconcile(self, key: str, cancel: threading.Event | None = None) -> ReconcileResult:
        result: ReconcileResult = self._retrying(lambda: self._reconcile_once(key, cancel))
        return result

    def _reconcile_once(self, key: str, cancel: threading.Event | None) -> ReconcileResult:
        source = head(self.engine.source, key)
        target_end = self.engine.target
        if source is None:
            # DeleteObject is idempotent: deleting a key that is not there succeeds.
            target_end.client.delete_object(Bucket=target_end.bucket, Key=key)
            return ReconcileResult(key, Outcome.DELETED)
        existing = head(target_end, key)
        if existing is not None and target_matches(source, existing):
            return ReconcileResult(key, Outcome.UNCHANGED, source.size)
        result = self.engine.copy(source, cancel)
        return ReconcileResult(key, Outcome.COPIED, source.size, result)
