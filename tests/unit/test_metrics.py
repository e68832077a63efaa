"""EMF documents validate against the Embedded Metric Format specification."""

from __future__ import annotations

import io
import json
from collections import Counter
from typing import Any

import jsonschema
import pytest

from replicator.logs import configure_logging, get_logger
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
    assert metrics.flush() == []  # counters reset: nothing new, no line
    assert len(stream.getvalue().splitlines()) == 1


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


def test_emf_lines_are_written_whatever_the_log_level() -> None:
    """The dashboard reads these lines: LOG_LEVEL=ERROR must not blank it."""
    stream = io.StringIO()
    configure_logging("ERROR", "json", stream=stream)
    metrics = ReplicationMetrics("replication.fifo")
    metrics.reconciled(_result(Outcome.COPIED, 10), 0.25)
    metrics.flush()
    get_logger("worker").info("ordinary_info_line")  # still filtered out
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["replication_metrics"]
    validate_emf(lines[0])
    assert lines[0]["ObjectsReplicated"] == 1


def test_permanent_failures_are_counted_per_reason_as_a_dimension() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    metrics = ReplicationMetrics("replication.fifo")
    metrics.permanent_failure("unstorable_key")
    metrics.permanent_failure("archived")
    metrics.permanent_failure("archived")
    metrics.count("LeasesLost")
    documents = metrics.flush()
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert [
        {k: line[k] for k in document} for line, document in zip(lines, documents, strict=True)
    ] == documents
    for line in lines:
        validate_emf(line)
    main, *per_reason = lines
    assert main["Failures"] == 3  # permanent failures are failures too
    assert main["LeasesLost"] == 1
    assert "Reason" not in main
    assert {(d["Reason"], d["PermanentFailures"]) for d in per_reason} == {
        ("archived", 2),
        ("unstorable_key", 1),
    }
    for document in per_reason:
        [directive] = document["_aws"]["CloudWatchMetrics"]
        assert directive["Dimensions"] == [["Queue", "Reason"]]
        assert directive["Metrics"] == [{"Name": "PermanentFailures", "Unit": "Count"}]
        assert document["Queue"] == "replication.fifo"


def test_an_unknown_metric_name_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        ReplicationMetrics("q").count("LeaseLost")
