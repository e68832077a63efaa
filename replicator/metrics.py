"""Replication metrics, published as CloudWatch Embedded Metric Format (EMF) log lines.

No CloudWatch API calls: every METRICS_INTERVAL_SECONDS the worker writes one JSON log line whose
`_aws` block tells CloudWatch Logs which top-level fields are metrics. Spec:
https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html
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
MAX_VALUES = 100  # EMF: at most 100 values in one metric array
UNITS = {
    "ObjectsReplicated": "Count",
    "BytesReplicated": "Bytes",
    "ObjectsDeleted": "Count",
    "ObjectsUnchanged": "Count",
    "Failures": "Count",
    "ReplicationLatency": "Seconds",
}


class ReplicationMetrics:
    def __init__(self, queue_name: str = "local", namespace: str = NAMESPACE) -> None:
        self.queue_name = queue_name
        self.namespace = namespace
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
                self.latencies.append(round(latency, 3))

    def failure(self) -> None:
        with self._lock:
            self.counts["Failures"] += 1

    def emf(self, counts: Counter[str], latencies: list[float], now_ms: int | None = None) -> dict[str, Any]:
        """One EMF document: counters as values, latencies as a value array (sampled to 100)."""
        values: dict[str, Any] = {name: counts.get(name, 0) for name in UNITS if name != "ReplicationLatency"}
        if latencies:
            step = max(1, len(latencies) // MAX_VALUES)
            values["ReplicationLatency"] = latencies[::step][:MAX_VALUES]
        return {
            "_aws": {
                "Timestamp": now_ms if now_ms is not None else int(time.time() * 1000),
                "CloudWatchMetrics": [
                    {
                        "Namespace": self.namespace,
                        "Dimensions": [[DIMENSION]],
                        "Metrics": [{"Name": name, "Unit": UNITS[name]} for name in values],
                    }
                ],
            },
            DIMENSION: self.queue_name,
            **values,
        }

    def flush(self) -> dict[str, Any] | None:
        """Write the metrics gathered since the last flush as one EMF log line."""
        with self._lock:
            counts, self.counts = self.counts, Counter()
            latencies, self.latencies = self.latencies, []
        if not counts and not latencies:
            return None
        document = self.emf(counts, latencies)
        log.info("replication_metrics", **document)
        return document

    def run_every(self, seconds: float, stop: threading.Event) -> threading.Thread:
        def loop() -> None:
            while not stop.wait(seconds):
                self.flush()

        thread = threading.Thread(target=loop, name="metrics", daemon=True)
        thread.start()
        return thread
