"""A run's findings per key: counted, the first ones in memory, all of them on disk past that."""

from __future__ import annotations

import io
import json
import tempfile
import tracemalloc
from pathlib import Path
from types import SimpleNamespace

import pytest

from migrate import cli
from migrate.records import Records
from migrate.runner import Options, Summary


def findings(count: int) -> list[dict[str, str]]:
    return [{"key": f"k{i:06d}/é+%", "difference": "missing on target"} for i in range(count)]


def test_findings_past_the_kept_ones_go_to_disk_and_come_back_in_order(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    records: Records[dict[str, str]] = Records(kept=5)
    expected = findings(12)
    for item in expected[:5]:
        records.append(item)
    assert records._spill is None and records == expected[:5]
    for item in expected[5:]:
        records.append(item)
    assert len(records) == 12 and records._spill is not None
    assert list(records) == expected and records == expected
    assert records.head(3) == expected[:3] and records.head(8) == expected[:8]
    assert records[0] == expected[0] and records[10] == expected[10] and records[-1] == expected[-1]
    assert not list(tmp_path.iterdir())  # an unlinked file: nothing left behind, whatever happens
    records.clear()
    assert not records and list(records) == [] and records._spill is None


def test_an_append_after_a_read_stopped_halfway_goes_to_the_end() -> None:
    records: Records[str] = Records(kept=2)
    for key in "abcde":
        records.append(key)
    reading = iter(records)
    assert [next(reading), next(reading), next(reading)] == ["a", "b", "c"]
    records.append("f")
    assert next(reading) == "d"  # the read goes on where it was
    assert list(records) == ["a", "b", "c", "d", "e", "f"]
    records.close()


@pytest.mark.parametrize("count", [0, 3, 40])
def test_written_as_a_json_array_whatever_the_count(count: int) -> None:
    records: Records[dict[str, str]] = Records(kept=10)
    for item in findings(count):
        records.append(item)
    out = io.StringIO()
    records.write_json(out)
    assert json.loads(out.getvalue()) == findings(count)
    records.close()


def test_a_summary_of_many_differences_holds_only_the_first_ones() -> None:
    summary = Summary()
    tracemalloc.start()
    try:
        for i in range(100_000):
            summary.differ(f"prefix/some/longer/key-{i:08d}.bin", "missing on target")
            if i % 1000 == 0:
                summary.settle()  # as the runs do
        summary.settle()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(summary.differences) == 100_000
    assert peak < 4 * 1024 * 1024  # a list of 100,000 dicts: about 30 MiB
    assert sum(1 for _ in summary.differences) == 100_000
    summary.close()


def test_the_printed_summary_lists_a_few_differences_and_the_report_has_them_all(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    summary = Summary()
    for item in findings(2500):
        summary.differ(item["key"], item["difference"])
    summary.settle()
    options = Options(check=True)
    args = SimpleNamespace(
        report=tmp_path / "report.json",
        metrics=False,
        check=True,
        dry_run=False,
        delete=False,
        max_delete=None,
        allow_empty_source=False,
        prefix="",
        shard=(0, 1),
        reverse=False,
    )
    assert cli._conclude(args, summary, options, settings=None) == cli.EXIT_DIFFERENT  # type: ignore[arg-type]
    printed = capsys.readouterr().err
    assert printed.count("DIFF missing on target") == cli.LISTED
    assert f"... and {2500 - cli.LISTED} more differences (see --report)" in printed
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["differences"] == findings(2500)
    assert report["options"]["check"] is True and report["failures"] == []
    assert summary.differences._spill is None  # the findings' file went with the run
