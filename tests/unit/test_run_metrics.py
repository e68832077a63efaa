"""A migration run's report as one EMF document: the drift numbers of a check, of a repair with
failures, of refused deletes, and of what settled itself during the run."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest

from migrate.plan import Action
from migrate.run_metrics import emf_document, emit, run_dimensions
from migrate.runner import Summary
from replicator.metrics import NAMESPACE
from tests.unit.test_metrics import validate_emf

DIMENSIONS = {"Queue": "lyve-replicator.fifo"}


def _report(summary: Summary, keys_compared: int | None = None, seconds: float = 12.5) -> dict[str, Any]:
    """What the CLI writes to --report: the summary's fields, plus the listing block."""
    summary.settle()
    summary.seconds = seconds
    report = summary.as_dict()
    if keys_compared is not None:
        report["listing"] = {"keys_compared": keys_compared, "source_requests": 3, "order": "bytes"}
    else:  # a run stopped before its merge, or a report from before the listing block
        report.pop("listing", None)
    return report


def _values(document: dict[str, Any]) -> dict[str, Any]:
    names = [m["Name"] for m in document["_aws"]["CloudWatchMetrics"][0]["Metrics"]]
    return {name: document[name] for name in names}


def _plan(summary: Summary, action: Action, count: int, done: int | None = None) -> None:
    for _ in range(count):
        summary.plan(action, 10)
    for _ in range(count if done is None else done):
        summary.finish(action, 10)


def test_a_check_counts_its_differences_as_found_and_remaining() -> None:
    summary = Summary()
    _plan(summary, Action.SKIP, 90)
    _plan(summary, Action.COPY, 3, done=0)  # --check plans, reports, changes nothing
    for key in ("a", "b", "c"):
        summary.differ(key, "missing on target")
    summary.differ("d", "content differs")
    summary.fail("e", "HEAD: AccessDenied")

    document = emf_document(
        _report(summary, keys_compared=97), namespace=NAMESPACE, dimensions=DIMENSIONS, check=True, now_ms=7
    )

    validate_emf(document)
    assert document["_aws"]["Timestamp"] == 7
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == NAMESPACE
    assert document["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Queue"]]
    assert document["Queue"] == "lyve-replicator.fifo"
    assert document["mode"] == "check"
    assert _values(document) == {
        "DriftFound": 4,
        "DriftRepaired": 0,
        "DriftFailed": 1,
        "DriftRemaining": 4,
        "ObjectsCompared": 97,
        "Seconds": 12.5,
    }


def test_a_repair_with_failures_leaves_what_failed_remaining() -> None:
    summary = Summary()
    _plan(summary, Action.SKIP, 1000)
    _plan(summary, Action.VERIFY, 50, done=0)  # same size: looked at, not drift by itself
    summary.finish(Action.SKIP, 10)
    _plan(summary, Action.COPY, 20, done=17)
    for key in ("x1", "x2"):
        summary.fail(key, "copy: SlowDown after 5 attempts")
    summary.refuse_key("x3", "a / segment over 255 bytes")
    _plan(summary, Action.REPLACE, 4)  # after a verify found other content
    _plan(summary, Action.METADATA, 2)
    _plan(summary, Action.DELETE, 5, done=4)
    summary.fail("gone-on-target", "delete: InternalError")

    document = emf_document(_report(summary, keys_compared=1081), namespace="NS", dimensions=DIMENSIONS)

    validate_emf(document)
    assert document["mode"] == "repair"
    values = _values(document)
    assert values == {
        "DriftFound": 20 + 4 + 2 + 5,
        "DriftRepaired": 17 + 4 + 2 + 4,
        "DriftFailed": 4,  # three failures and one unstorable key
        "DriftRemaining": 4,
        "ObjectsCompared": 1081,
        "Seconds": 12.5,
    }
    assert values["DriftFound"] - values["DriftRepaired"] == values["DriftRemaining"]


def test_refused_deletes_are_failures_and_stay_remaining() -> None:
    summary = Summary()
    _plan(summary, Action.COPY, 2)
    _plan(summary, Action.DELETE, 1500, done=0)
    summary.deletes_refused = 1500
    summary.deletes_refused_reason = "they exceed --max-delete 1000"

    values = _values(emf_document(_report(summary), namespace="NS", dimensions=DIMENSIONS))

    assert values == {
        "DriftFound": 1502,
        "DriftRepaired": 2,
        "DriftFailed": 1500,
        "DriftRemaining": 1500,
        "Seconds": 12.5,  # no `listing` in the report: no ObjectsCompared
    }


def test_what_settled_during_the_run_is_not_left_remaining() -> None:
    summary = Summary()
    _plan(summary, Action.COPY, 10, done=7)
    summary.gone_since_listed("deleted-at-the-source-meanwhile")
    summary.archive("tiered", "archived in ARCHIVE_ACCESS, not copied")  # a copy, archived on a look
    _plan(summary, Action.ARCHIVED, 2, done=0)  # known from the listing: not drift
    summary.archive("glacier-1", "archived in GLACIER, not copied")
    summary.archive("glacier-2", "archived in GLACIER, not copied")
    _plan(summary, Action.DELETE, 3, done=2)
    summary.skip_delete("back-at-the-source")

    values = _values(emf_document(_report(summary), namespace="NS", dimensions=DIMENSIONS))

    assert (values["DriftFound"], values["DriftRepaired"], values["DriftFailed"]) == (13, 9, 0)
    assert values["DriftRemaining"] == 13 - 9 - 1 - 1 - 1 == 1


@pytest.mark.parametrize("stopped", ["cancelled", "source_bucket_missing"])
def test_a_run_that_did_not_look_at_everything_never_reads_clean(stopped: str) -> None:
    summary = Summary()
    if stopped == "cancelled":
        summary.cancelled = True
    else:
        summary.source_missing = "NoSuchBucket: the-source"

    values = _values(emf_document(_report(summary), namespace="NS", dimensions=DIMENSIONS))

    assert (values["DriftFound"], values["DriftFailed"]) == (0, 1)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda r: r.pop("planned"), "planned"),
        (lambda r: r.update(done={"copy": -1}), "done"),
        (lambda r: r.update(seconds="soon"), "seconds"),
        (lambda r: r.update(listing={"keys_compared": -1}), "keys_compared"),
    ],
)
def test_a_report_of_another_shape_is_refused_naming_the_field(change: Any, named: str) -> None:
    report = _report(Summary(), keys_compared=1)
    change(report)

    with pytest.raises(ValueError, match="not a migration run report") as refused:
        emf_document(report, namespace="NS", dimensions=DIMENSIONS)

    assert named in str(refused.value)


@pytest.mark.parametrize(
    ("namespace", "dimensions", "message"),
    [
        ("", DIMENSIONS, "namespace"),
        ("NS", {}, "dimensions"),
        ("NS", {"Queue": ""}, "dimensions"),
        ("NS", {"DriftFound": "x"}, "clash"),
    ],
)
def test_a_bad_namespace_or_dimension_is_refused(
    namespace: str, dimensions: dict[str, str], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        emf_document(_report(Summary()), namespace=namespace, dimensions=dimensions)


def test_emit_writes_one_json_line_that_reads_back() -> None:
    document = emf_document(_report(Summary(), keys_compared=0), namespace="NS", dimensions=DIMENSIONS)
    stream = io.StringIO()
    stream.write("before\n")

    emit(document, stream)

    before, line = stream.getvalue().splitlines()
    assert before == "before"
    assert json.loads(line) == document
    assert stream.getvalue().endswith("\n")


def test_emit_writes_to_stdout_by_default(capsys: pytest.CaptureFixture[str]) -> None:
    document = emf_document(_report(Summary()), namespace="NS", dimensions=DIMENSIONS, now_ms=1)

    emit(document)

    assert json.loads(capsys.readouterr().out) == document


@pytest.mark.parametrize(
    ("queue_url", "name"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/lyve-replicator.fifo", "lyve-replicator.fifo"),
        ("http://127.0.0.1:5000/123456789012/q.fifo/", "q.fifo"),
        (None, "local"),
        ("", "local"),
    ],
)
def test_the_dimension_is_the_queue_name_as_the_worker_uses_it(queue_url: str | None, name: str) -> None:
    assert run_dimensions(queue_url) == {"Queue": name}


def test_a_listing_block_without_keys_compared_leaves_the_metric_out() -> None:
    report = _report(Summary())
    report["listing"] = {"first_copy_seconds": None, "source_requests": 2}

    values = _values(emf_document(report, namespace="NS", dimensions=DIMENSIONS))

    assert "ObjectsCompared" not in values
    assert values["DriftFound"] == 0
