"""The copy bench's summary: the floors it reports, with and without our start-up."""

from __future__ import annotations

import argparse

import pytest

from bench import run
from bench.run import Measurement


def args(import_seconds: float | None) -> argparse.Namespace:
    namespace = argparse.Namespace(runs=1, small_count=2000, large_mib=1024)
    if import_seconds is not None:
        namespace.import_seconds = import_seconds
    return namespace


MEASURED = [
    # scenario, contender, run, seconds, RSS, own CPU, servers' CPU, objects, bytes, ok
    Measurement("large", "lyve-replicator", 0, 7.0, 200, 1.0, 12.0, 1, 2**30, True),
    Measurement("large", "rclone", 0, 7.8, 210, 3.3, 11.5, 1, 2**30, True),
]


def test_the_floor_after_our_imports_counts_them_on_one_core(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "CORES", 2)
    result = run.summarize(MEASURED, args(0.4))
    ours, rclone = result["medians"]["large"]["lyve-replicator"], result["medians"]["large"]["rclone"]
    assert ours["floor_seconds"] == pytest.approx((1.0 + 12.0) / 2)
    # 0.4 s of imports alone, then the other 12.6 CPU-seconds over two cores.
    assert ours["start_floor_seconds"] == pytest.approx(0.4 + 12.6 / 2)
    assert ours["ratio_at_start_floor"] == pytest.approx(7.8 / 6.7)
    assert "start_floor_seconds" not in rclone  # rclone is one Go binary: no such start-up
    text = run.markdown(result)
    assert "| 6.70 | 1.16 |" in text
    assert "took 0.40 s here" in text


def test_without_the_import_measurement_the_columns_are_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "CORES", 2)
    result = run.summarize(MEASURED, args(None))
    assert "start_floor_seconds" not in result["medians"]["large"]["lyve-replicator"]
    assert "took" not in run.markdown(result)
