"""Replication metrics, published as CloudWatch Embedded Metric Format (EMF) log lines.

No CloudWatch API calls: every METRICS_INTERVAL_SECONDS the worker writes one JSON log line whose
`_aws` block tells CloudWatch Logs which top-level fields are metrics, plus one line per reason
for `PermanentFailures` (an EMF document carries one value per dimension). Spec:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html

The lines go through the `metrics` logger, which logs.configure_logging keeps at INFO whatever
LOG_LEVEL says: they are data for the dashboard, not diagnostics.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from replicator.logs import get_logger
from replicator.reconcile import Outcome, ReconcileResult

log = get_logger("metrics")

NAMESPACE = "LyveReplicator"
DIMENSION = "Queue"
REASON_DIMENSION = "Reason"
TARGET_DIMENSION = "Target"
# What each target reports on its own (dimensions Queue, Target): its progress and its failures.
TARGET_METRICS = ("ObjectsReplicated", "BytesReplicated", "ObjectsDeleted", "Failures")
PERMANENT_FAILURES = "PermanentFailures"
SOURCE_BUCKET_MISSING = "SourceBucketMissing"
MAX_VALUES = 100  # EMF: at most 100 values in one metric array
UNITS = {
    "ObjectsReplicated": "Count",
    "BytesReplicated": "Bytes",
    "ObjectsDeleted": "Count",
    "ObjectsUnchanged": "Count",
    # Same bytes, new content headers or user metadata: rewritten without re-sending the bytes.
    "MetadataUpdated": "Count",
    "Failures": "Count",
    # Copies stopped and put back on the queue as fresh messages (shutdown, 12-hour lease cap).
    "Interruptions": "Count",
    # Messages this worker lost hold of mid-copy (a heartbeat failed): another worker has them.
    "LeasesLost": "Count",
    # Messages backed off because the source bucket is missing or misrouted (configuration).
    SOURCE_BUCKET_MISSING: "Count",
    "ReplicationLatency": "Seconds",
}


class ReplicationMetrics:
    def __init__(self, queue_name: str = "local", namespace: str = NAMESPACE) -> None:
        self.queue_name = queue_name
        self.namespace = namespace
        self._lock = threading.Lock()
        self.counts: Counter[str] = Counter()
        self.permanent: Counter[str] = Counter()
        self.latencies: list[float] = []
        self.targets: dict[str, Counter[str]] = {}
        self.target_latencies: dict[str, list[float]] = {}

    def reconciled(self, result: ReconcileResult, latency: float | None, target: str | None = None) -> None:
        """One key reconciled (on `target`, when the deployment names its targets)."""
        with self._lock:
            counts = [self.counts] + ([self.targets.setdefault(target, Counter())] if target else [])
            for counter in counts:
                if result.outcome is Outcome.COPIED:
                    counter["ObjectsReplicated"] += 1
                    counter["BytesReplicated"] += result.size
                elif result.outcome is Outcome.DELETED:
                    counter["ObjectsDeleted"] += 1
                elif result.outcome is Outcome.METADATA_UPDATED:
                    counter["MetadataUpdated"] += 1
                else:
                    counter["ObjectsUnchanged"] += 1
            if latency is not None:
                self.latencies.append(round(latency, 3))
                if target:
                    self.target_latencies.setdefault(target, []).append(round(latency, 3))

    def failure(self, target: str | None = None) -> None:
        with self._lock:
            self.counts["Failures"] += 1
            if target:
                self.targets.setdefault(target, Counter())["Failures"] += 1

    def permanent_failure(self, reason: str, target: str | None = None) -> None:
        """A key that cannot be replicated as it is (sent to the DLQ at once); also a failure."""
        with self._lock:
            self.counts["Failures"] += 1
            self.permanent[reason] += 1
            if target:
                self.targets.setdefault(target, Counter())["Failures"] += 1

    def count(self, name: str, amount: int = 1) -> None:
        if name not in UNITS:
            raise ValueError(f"unknown metric {name!r}")
        with self._lock:
            self.counts[name] += amount

    def _document(
        self, dimensions: dict[str, str], values: dict[str, Any], now_ms: int | None
    ) -> dict[str, Any]:
        units = UNITS | {PERMANENT_FAILURES: "Count"}
        return {
            "_aws": {
                "Timestamp": now_ms if now_ms is not None else int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [list(dimensions)],
                        "Metrics": [{"Name": name, "Unit": units[name]} for name in values],
                    }
                ],
            },
            **dimensions,
            **values,
        }

    def emf(self, counts: Counter[str], latencies: list[float], now_ms: int | None = None) -> dict[str, Any]:
        """One EMF document: counters as values, latencies as a value array (sampled to 100)."""
        values: dict[str, Any] = {name: counts.get(name, 0) for name in UNITS if name != "ReplicationLatency"}
        if latencies:
            step = max(1, len(latencies) // MAX_VALUES)
            values["ReplicationLatency"] = latencies[::step][:MAX_VALUES]
        return self._document({DIMENSION: self.queue_name}, values, now_ms)

    def emf_target(
        self, target: str, counts: Counter[str], latencies: list[float], now_ms: int | None = None
    ) -> dict[str, Any]:
        """One target's own figures (dimensions Queue, Target)."""
        values: dict[str, Any] = {name: counts.get(name, 0) for name in TARGET_METRICS}
        if latencies:
            step = max(1, len(latencies) // MAX_VALUES)
            values["ReplicationLatency"] = latencies[::step][:MAX_VALUES]
        return self._document({DIMENSION: self.queue_name, TARGET_DIMENSION: target}, values, now_ms)

    def emf_permanent(self, reason: str, count: int, now_ms: int | None = None) -> dict[str, Any]:
        """`PermanentFailures` for one reason (unstorable_key, archived, encrypted, ...)."""
        return self._document(
            {DIMENSION: self.queue_name, REASON_DIMENSION: reason}, {PERMANENT_FAILURES: count}, now_ms
        )

    def flush(self) -> list[dict[str, Any]]:
        """Write the metrics gathered since the last flush as EMF log lines (none if nothing
        happened); returns the documents written."""
        with self._lock:
            counts, self.counts = self.counts, Counter()
            permanent, self.permanent = self.permanent, Counter()
            latencies, self.latencies = self.latencies, []
            targets, self.targets = self.targets, {}
            target_latencies, self.target_latencies = self.target_latencies, {}
        documents = []
        if counts or latencies:
            documents.append(self.emf(counts, latencies))
        documents += [
            self.emf_target(name, targets.get(name, Counter()), target_latencies.get(name, []))
            for name in sorted(set(targets) | set(target_latencies))
        ]
        documents += [self.emf_permanent(reason, count) for reason, count in sorted(permanent.items())]
        for document in documents:
            log.info("replication_metrics", **document)
        return documents

    def run_every(self, seconds: float, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(seconds):
                self.flush()

        thread = threading.Thread(target=loop, name="metrics", daemon=True)
        thread.start()
        return thread
