"""The Azure Blob bench: a short run of both scenario sets on its own servers, and its summary."""

from __future__ import annotations

import os

import pytest

from bench import azure

pytestmark = pytest.mark.integration

SMALL = 3
LARGE_MIB = 20  # above the 16 MiB part size: the source object is multipart, the copies in blocks


def _children() -> list[int]:
    """Live (not zombie) child processes of this one."""
    return list(azure._children_of(os.getpid()))


def test_a_short_run_of_both_scenarios_copies_every_object() -> None:
    result = azure.run(list(azure.GROUPS), runs=1, small_count=SMALL, large_mib=LARGE_MIB)

    assert _children() == []  # no SeaweedFS, Azurite, migrate or rclone process left behind
    assert result["settings"]["groups"] == ["azure", "two-targets"]
    runs = result["measurements"]
    # One run of each contender on each load, every one of them complete on every target.
    contenders = azure.AZURE_CONTENDERS + azure.TWO_TARGET_CONTENDERS
    assert sorted((m["load"], m["contender"]) for m in runs) == sorted(
        (load, c) for load in ("large", "small") for c in contenders
    )
    failed = [(m["load"], m["contender"], m["error"]) for m in runs if not m["ok"]]
    assert failed == []
    for m in runs:
        assert m["objects"] == (1 if m["load"] == "large" else SMALL)
        if m["load"] == "large":
            assert m["bytes"] == LARGE_MIB * 2**20
        assert m["seconds"] > 0
        assert m["peak_rss_mib"] > 0
        assert m["cpu_seconds"] > 0
        if m["load"] == "large":  # CPU comes in clock ticks: a few small objects may cost none
            assert m["source_cpu_seconds"] > 0
            if m["contender"] != "s3-only":
                assert m["azurite_cpu_seconds"] > 0
        if m["scenario"] == "azure":  # Azurite's first work for the contender, within its run
            assert 0 < m["first_request_seconds"] < m["seconds"]
        else:
            assert m["first_request_seconds"] is None

    for load in ("large", "small"):
        rows = result["azure"]["medians"][load]
        assert set(rows) == {"lyve-replicator", "rclone"}
        ours = rows["lyve-replicator"]
        assert ours["runs"] == 1
        assert ours["failed_runs"] == 0
        assert ours["paired_runs"] == 1
        assert ours["ratio_to_rclone"] > 0
        assert ours["cpu_per_unit"] > 0
        assert isinstance(ours["rss_within_goal"], bool)
        for contender in rows.values():  # medians of their own, each within the run
            assert 0 < contender["first_request_seconds"] < contender["seconds"]
            assert 0 < contender["after_first_request_seconds"] < contender["seconds"]
        two = result["two_targets"]
        assert set(two["medians"][load]) == {"s3-only", "azure-only", "both"}
        ratio = two["ratios"][load]
        assert ratio["both_over_slower_single"] > 0
        assert ratio["both_over_sum_of_singles"] > 0

    assert 0 < result["settings"]["library_import_seconds"] < 10
    text = "\n".join(azure.markdown(result))
    assert "## S3 -> Azure Blob" in text
    assert "took" in text and "importing the libraries" in text
    assert "## Two targets" in text
    assert "Failed runs" not in text


def test_one_scenario_set_alone_and_a_failed_run_reported() -> None:
    measured = [
        azure.Run("azure", "small", "lyve-replicator", 0, 2.0, 100, 1.0, 0.5, 0.5, 0.0, 10, 1000, True),
        azure.Run("azure", "small", "rclone", 0, 1.0, 50, 2.0, 0.5, 0.5, 0.0, 10, 1000, True),
        azure.Run(
            "azure", "small", "lyve-replicator", 1, 9.0, 90, 1.0, 0.5, 0.5, 0.0, 10, 1000, False, "exit 1"
        ),
    ]
    settings = {"runs": 2, "small_count": 10, "large_mib": 1, "azurite": "x"}
    settings |= {"objects_in_flight": 32, "parts_in_flight": 8, "part_mib": 16}
    result = azure.summarize(measured, settings)

    assert "two_targets" not in result
    ours = result["azure"]["medians"]["small"]["lyve-replicator"]
    assert ours["runs"] == 1
    assert ours["failed_runs"] == 1
    assert ours["first_error"] == "exit 1"
    assert ours["ratio_to_rclone"] == pytest.approx(0.5)
    assert ours["cpu_per_unit"] == pytest.approx(100.0)  # 1 s for 10 objects: 100 s per 1,000
    assert (ours["runs_ahead_of_rclone"], ours["paired_runs"]) == (0, 1)
    text = "\n".join(azure.markdown(result))
    assert "small, lyve-replicator: 1 failed run(s); first: `exit 1`" in text
