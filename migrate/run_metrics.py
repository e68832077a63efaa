"""A migration run's result as one CloudWatch Embedded Metric Format (EMF) document.

`python -m migrate --metrics` prints it as one JSON line on stdout at the end of the run; on ECS
the awslogs driver sends it to CloudWatch Logs, which turns it into metrics (no API call, no
permission). The scheduled drift repair (terraform/scheduler.tf) runs with it, and the alarms in
terraform/monitoring.tf watch it. Same namespace and `Queue` dimension as the worker's metrics
(replicator/metrics.py), so one dashboard shows both.

What the numbers mean, for a run that repairs (copies, replaces, rewrites metadata, deletes):

- DriftFound: what the run set out to change: planned copies, replacements, metadata updates and
  deletes (objects only on the target count even without --delete: the target is not a mirror
  of the source then). For --check: the differences it listed.
- DriftRepaired: the changes made.
- DriftFailed: failed copies or deletes, keys the target cannot store, deletes refused
  (--max-delete, an empty source), plus one for a run that did not look at everything (stopped
  early, or the source bucket went missing), so an incomplete run never reads as clean.
- DriftRemaining: found less repaired, less what settled itself meanwhile: keys deleted at the
  source since they were listed, deletes skipped because the source holds the key again, and
  sources found archived when looked at (reported apart, never copyable as they are).
- ObjectsCompared: keys the merge compared (the report's `listing.keys_compared`; left out
  without it).
- Seconds: the run's duration. One value per run and task, so its SampleCount counts runs
  (the "overdue" alarm).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Annotated, Any, TextIO

from pydantic import BaseModel, BeforeValidator, ConfigDict, NonNegativeFloat, NonNegativeInt, ValidationError

from migrate.records import as_count
from replicator.metrics import DIMENSION

EVENT = "migrate_run_metrics"
# Actions of the merge that change the target (migrate.plan.Action values).
REPAIRS = ("copy", "replace", "metadata", "delete")
UNITS = {
    "DriftFound": "Count",
    "DriftRepaired": "Count",
    "DriftFailed": "Count",
    "DriftRemaining": "Count",
    "ObjectsCompared": "Count",
    "Seconds": "Seconds",
}


# A list of findings, or a Records of them, as its length.
Found = Annotated[NonNegativeInt, BeforeValidator(as_count)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class _Listing(_Model):
    # Filled in as the run goes: a run stopped before its merge has none.
    keys_compared: NonNegativeInt | None = None


class RunReport(_Model):
    """The fields of `Summary.as_dict()` (migrate/runner.py) the metrics are made of."""

    planned: dict[str, NonNegativeInt]
    done: dict[str, NonNegativeInt]
    # Findings are counted: a report's lists, or a summary's Records (never read back from disk).
    failures: Found
    differences: Found
    seconds: NonNegativeFloat
    cancelled: bool = False
    source_bucket_missing: str = ""
    deletes_refused: NonNegativeInt = 0
    cannot_be_stored_on_target: Found = 0
    gone_since_listed: Found = 0
    deletes_skipped_source_has_key_again: Found = 0
    archived_not_copied: Found = 0
    listing: _Listing | None = None


def drift_values(report: RunReport, *, check: bool) -> dict[str, int | float]:
    """The metric values of one run (see the module's docstring)."""
    incomplete = int(report.cancelled or bool(report.source_bucket_missing))
    failed = report.failures + report.cannot_be_stored_on_target + report.deletes_refused + incomplete
    if check:
        found = report.differences
        repaired = 0
        remaining = found
    else:
        found = sum(report.planned.get(action, 0) for action in REPAIRS)
        repaired = sum(report.done.get(action, 0) for action in REPAIRS)
        # Archived sources the merge already knew are planned as "archived", outside `found`; the
        # rest were planned as copies and turned out archived when looked at.
        archived_on_a_look = max(0, report.archived_not_copied - report.planned.get("archived", 0))
        settled = report.gone_since_listed + report.deletes_skipped_source_has_key_again + archived_on_a_look
        remaining = max(0, found - repaired - settled)
    values: dict[str, int | float] = {
        "DriftFound": found,
        "DriftRepaired": repaired,
        "DriftFailed": failed,
        "DriftRemaining": remaining,
    }
    if report.listing is not None and report.listing.keys_compared is not None:
        values["ObjectsCompared"] = report.listing.keys_compared
    values["Seconds"] = round(report.seconds, 3)
    return values


def emf_document(
    report: dict[str, Any],
    *,
    namespace: str,
    dimensions: dict[str, str],
    check: bool = False,
    now_ms: int | None = None,
) -> dict[str, Any]:
    """One EMF document from a run's report (`Summary.as_dict()` plus `listing`); `check`: the
    run was a --check. ValueError, naming the field, for a report of another shape."""
    try:
        parsed = RunReport.model_validate(report)
    except ValidationError as exc:
        raise ValueError(f"not a migration run report: {exc}") from None
    if not namespace:
        raise ValueError("namespace must not be empty")
    if not dimensions or not all(name and value for name, value in dimensions.items()):
        raise ValueError(f"dimensions need at least one name and no empty name or value: {dimensions!r}")
    clash = set(dimensions) & (set(UNITS) | {"_aws", "event", "mode"})
    if clash:
        raise ValueError(f"dimension names clash with the document's fields: {sorted(clash)}")
    values = drift_values(parsed, check=check)
    return {
        "_aws": {
            "Timestamp": now_ms if now_ms is not None else int(time.time() * 1000),
            "CloudWatchMetrics": [
                {
                    "Namespace": namespace,
                    "Dimensions": [list(dimensions)],
                    "Metrics": [{"Name": name, "Unit": UNITS[name]} for name in values],
                }
            ],
        },
        "event": EVENT,
        "mode": "check" if check else "repair",
        **dimensions,
        **values,
    }


def run_dimensions(queue_url: str | None) -> dict[str, str]:
    """The worker's dimension: the queue's name (QUEUE_URL's last segment), "local" without one."""
    name = queue_url.rstrip("/").rsplit("/", 1)[-1] if queue_url else ""
    return {DIMENSION: name or "local"}


def emit(document: dict[str, Any], stream: TextIO | None = None) -> None:
    """Write the document as one JSON line (one write, so no other output can split it)."""
    out = stream if stream is not None else sys.stdout
    out.write(json.dumps(document, separators=(",", ":"), sort_keys=False) + "\n")
    out.flush()
