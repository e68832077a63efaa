"""The event-path bench: a short run on the real local stack, and its parts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from bench import events

pytestmark = pytest.mark.integration


def _children() -> list[int]:
    """Live (not zombie) child processes of this one."""
    found = []
    for entry in os.listdir("/proc"):
        fields = events._stat(f"/proc/{entry}/stat") if entry.isdigit() else None
        if fields and int(fields[1]) == os.getpid() and fields[0] != "Z":
            found.append(int(entry))
    return found


def test_percentile_is_an_observed_value_by_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert events.percentile(values, 0.50) == 50.0
    assert events.percentile(values, 0.99) == 99.0
    assert events.percentile([3.0, 1.0, 2.0], 0.99) == 3.0
    assert events.percentile([], 0.5) is None


def test_worker_logs_keep_the_first_copy_of_a_key_and_wait_for_whole_lines(tmp_path: Path) -> None:
    log = tmp_path / "worker-0.log"
    line = {
        "event": "reconciled",
        "key": "a",
        "outcome": "copied",
        "latency_seconds": 0.25,
        "seconds": 0.01,
        "timestamp": "2030-01-02T03:04:05.500000Z",
        "level": "info",
    }
    later = line | {"latency_seconds": 9.0, "timestamp": "2030-01-02T03:04:15Z"}
    unchanged = line | {"key": "b", "outcome": "unchanged"}
    text = "\n".join(json.dumps(r) for r in (line, later, unchanged)) + "\nnot json\n"
    log.write_text(text + json.dumps(line | {"key": "c"})[:30])  # the last line half written
    logs = events.WorkerLogs([log])
    logs.poll()
    assert set(logs.arrivals) == {"a"}
    assert logs.arrivals["a"].latency == 0.25
    with log.open("a") as handle:
        handle.write(json.dumps(line | {"key": "c"})[30:] + "\n")
    logs.poll()
    assert set(logs.arrivals) == {"a", "c"}
    logs.close()


def test_a_short_run_counts_every_object_it_wrote() -> None:
    result = events.run(rates=[5], seconds=3, burst=30)

    assert _children() == []  # no worker, SeaweedFS, invoker or writer process left behind
    (steady,) = result["rates"]
    burst = result["burst"]
    for phase, written in ((steady, 15), (burst, 30)):
        assert phase["written"] == written
        assert phase["write_failures"] == 0
        assert not phase["called_off"]
        # Every object written was reported by a worker and is on the target with its size.
        assert phase["done"] == phase["on_target"] == written
        assert phase["complete"]
        assert phase["enqueue_times_noted"] == written
        latency = phase["latency"]
        assert 0 < latency["p50"] <= latency["p99"] <= latency["max"] < 60
        assert phase["event_to_enqueued"]["p99"] <= latency["max"]
        cpu = phase["cpu"]["ms_per_event"]
        assert cpu["workers"] > 0
        assert cpu["moto"] > 0
        assert cpu["invoker"] > 0
    assert steady["rate_kept"] == pytest.approx(5, rel=0.1)
    assert burst["first_event_to_last_object"] >= burst["latency"]["max"]
    assert result["invoker"]["errors"] == 0
    # Warm-up, rate and burst (and the s3:TestEvent S3 sends when the notification is set up).
    assert result["invoker"]["invocations"] >= 20 + 15 + 30
    assert result["highest_rate_held"] in (None, 5)
    text = "\n".join(events.markdown(result))
    assert "## Event path" in text
    assert "| 5 | 5.0 | 15 | 15 |" in text
    assert "| burst |" in text
