"""EMF documents validate against the Embedded Metric Format specification."""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import jsonschema
import pytest

from replicator.logs import configure_logging
from replicator.metrics import NAMESPACE, ReplicationMetrics
from replicator.reconcile import Outcome, ReconcileResult

# The EMF specification's rules, as a JSON schema (root node, metric directive, definitions).
EMF_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["_aws"],
    "properties": {
        "_aws": {
            "type": "object",
            "required": ["Timestamp", "CloudWatchMetrics"],
            "properties": {
                "Timestamp": {"type": "integer", "minimum": 0},
                "CloudWatchMetrics": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["Namespace", "Dimensions", "Metrics"],
                        "properties": {
                            "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
                            "Dimensions": {
                                "type": "array",
                                "items": {
                                    "type": "array",
                                    "items": {"type": "string", "minLength": 1},
                                    "maxItems": 30,
                                },
                            },
                            "Metrics": {
                                "type": "array",
                                "maxItems": 100,
                                "items": {
                                    "type": "object",
                                    "required": ["Name"],
                                    "properties": {
                                        "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                                        "Unit": {
                                            "enum": [
                                                "Seconds",
                                                "Microseconds",
                                                "Milliseconds",
                                                "Bytes",
                                                "Kilobytes",
                                                "Megabytes",
                                                "Count",
                                                "None",
                                            ]
                                        },
                                    },
                                },
                            },
                        },
                    },
                },
            },
        }
    },
}


def validate_emf(document: dict[str, Any]) -> None:
    jsonschema.validate(document, EMF_SCHEMA)
    for directive in document["_aws"]["CloudWatchMetrics"]:
        for dimension_set in directive["Dimensions"]:
            for name in dimension_set:
                assert isinstance(document[name], str), f"dimension {name} must be a top-level string"
        for metric in directive["Metrics"]:
            value = document[metric["Name"]]
            values = value if isinstance(value, list) else [value]
            assert 1 <= len(values) <= 100
            assert all(isinstance(v, int | float) for v in values)


def _result(outcome: Outcome, size: int = 0) -> ReconcileResult:
    return ReconcileResult("k", outcome, size)


def test_flushed_line_is_valid_emf_with_the_right_values() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    metrics = ReplicationMetrics("replication.fifo")
    metrics.reconciled(_result(Outcome.COPIED, 1000), 1.5)
    metrics.reconciled(_result(Outcome.COPIED, 24), 0.5)
    metrics.reconciled(_result(Outcome.DELETED), 2.0)
    metrics.failure()
    metrics.flush()
    [line] = [json.loads(x) for x in stream.getvalue().splitlines()]
    validate_emf(line)
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    assert line["Queue"] == "replication.fifo"
    assert (line["ObjectsReplicated"], line["BytesReplicated"], line["ObjectsDeleted"], line["Failures"]) == (
        2,
        1024,
        1,
        1,
    )
    assert sorted(line["ReplicationLatency"]) == [0.5, 1.5, 2.0]
    assert metrics.flush() is None  # counters reset: nothing new, no line


def test_latency_arrays_are_capped_at_100_values() -> None:
    metrics = ReplicationMetrics("q")
    document = metrics.emf(Counter({"ObjectsReplicated": 5000}), [float(i) for i in range(5000)], now_ms=1)
    validate_emf(document)
    assert len(document["ReplicationLatency"]) == 100


def test_a_broken_document_fails_validation() -> None:
    document = ReplicationMetrics("q").emf(Counter({"Failures": 1}), [], now_ms=1)
    del document["Queue"]
    with pytest.raises((AssertionError, KeyError)):
        validate_emf(document)
