"""Replication counters kept by the worker (published as CloudWatch EMF log lines)."""

from __future__ import annotations

import threading
from collections import Counter

from replicator.logs import get_logger
from replicator.reconcile import Outcome, ReconcileResult

log = get_logger("metrics")


class ReplicationMetrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.latencies: list[float] = []

    def reconciled(self, result: ReconcileResult, latency: float | None) -> None:
        with self._lock:
            if result.outcome is Outcome.COPIED:
                self.counts["ObjectsReplicated"] += 1
                self.counts["BytesReplicated"] += result.size
            elif result.outcome is Outcome.DELETED:
                self.counts["ObjectsDeleted"] += 1
            else:
                self.counts["ObjectsUnchanged"] += 1
            if latency is not None:
                self.latencies.append(latency)

    def failure(self) -> None:
        with self._lock:
            self.counts["Failures"] += 1

    def flush(self) -> None:
        with self._lock:
            counts, self.counts = self.counts, Counter()
            self.latencies = []
        if counts:
            log.info("replication_totals", **dict(counts))
