"""`--shard i/n` on SeaweedFS: each shard lists and compares only its own key range, the shards
together compare every key exactly once, and a shard stopped mid-way finishes when run again."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from local_stack.seaweed import SeaweedS3
from migrate.discovery import probe_budget

pytestmark = pytest.mark.integration


def key_set() -> list[str]:
    """Folders of several sizes and name patterns, a flat folder of 1,500, names where byte and
    directory order disagree, unicode, spaces and `+`."""
    keys = [f"logs/2026-11-{d:02d}/{i:04d}.json" for d in range(1, 15) for i in range(40 + 7 * d)]
    keys += [f"flat/{i:06d}.bin" for i in range(1500)]
    keys += [f"img/{n:02x}/{uuid.UUID(int=n * 7919).hex}.jpg" for n in range(400)]
    keys += [f"logs-archive/{i}.gz" for i in range(120)]
    keys += [f"sp ace/é+{i}%.txt" for i in range(80)] + ["top", "zz"]
    return keys


@pytest.fixture(scope="module")
def server() -> Iterator[SeaweedS3]:
    with SeaweedS3() as seaweed:
        yield seaweed


def fill(server: SeaweedS3, bucket: str, keys: list[str]) -> None:
    client = server.client(max_pool_connections=32)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        server.create_bucket(bucket)
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=k.encode()), keys))


def env(server: SeaweedS3, source: str, target: str) -> dict[str, str]:
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SOURCE_", "TARGET_"))},
        "SOURCE_BUCKET": source,
        "SOURCE_ENDPOINT_URL": server.endpoint_url,
        "SOURCE_ACCESS_KEY_ID": server.access_key,
        "SOURCE_SECRET_ACCESS_KEY": server.secret_key,
        "SOURCE_ADDRESSING_STYLE": "path",
        "SOURCE_REGION": "us-east-1",
        "TARGET_BUCKET": target,
        "TARGET_ENDPOINT_URL": server.endpoint_url,
        "TARGET_ACCESS_KEY_ID": server.access_key,
        "TARGET_SECRET_ACCESS_KEY": server.secret_key,
        "ALLOW_HTTP_ENDPOINTS": "true",
        "LOG_LEVEL": "WARNING",
    }


def run(server: SeaweedS3, source: str, target: str, tmp: Path, *args: str) -> tuple[int, dict[str, Any]]:
    report = tmp / f"{uuid.uuid4().hex}.json"
    done = subprocess.run(
        [sys.executable, "-m", "migrate", "--progress", "none", "--report", str(report), *args],
        env=env(server, source, target),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert report.exists(), done.stderr[-2000:]
    return done.returncode, json.loads(report.read_text())


def test_four_shards_compare_every_key_exactly_once(server: SeaweedS3, tmp_path: Path) -> None:
    keys = key_set()
    fill(server, "shard-src", keys)
    fill(server, "shard-dst", keys)
    code, whole = run(server, "shard-src", "shard-dst", tmp_path, "--check")
    assert code == 0
    assert whole["listing"]["order"] == "tree"
    assert whole["listing"]["keys_compared"] == len(keys)
    digest = 0
    compared = 0
    for index in range(4):
        code, part = run(server, "shard-src", "shard-dst", tmp_path, "--check", "--shard", f"{index}/4")
        assert code == 0, part["differences"][:5]
        listing = part["listing"]
        assert 0 < listing["discovery_requests"] <= probe_budget(4)
        compared += listing["keys_compared"]
        digest ^= int(listing["keys_digest"], 16)
        # A shard lists its own range, not both whole buckets (the whole run's requests).
        assert listing["keys_compared"] < 0.5 * len(keys)
    assert compared == len(keys)
    assert f"{digest:016x}" == whole["listing"]["keys_digest"]


def test_a_shard_stopped_mid_way_finishes_when_run_again(server: SeaweedS3, tmp_path: Path) -> None:
    keys = [f"batch/{i:05d}" for i in range(2400)]
    fill(server, "stop-src", keys)
    server.create_bucket("stop-dst")
    report = tmp_path / "stopped.json"
    process = subprocess.Popen(
        [sys.executable, "-m", "migrate", "--progress", "none", "--shard", "1/3", "--report", str(report)],
        env=env(server, "stop-src", "stop-dst"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    target = server.client()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not target.list_objects_v2(Bucket="stop-dst").get("KeyCount"):
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    stopped = json.loads(report.read_text())
    assert stopped["cancelled"] is True
    code, again = run(server, "stop-src", "stop-dst", tmp_path, "--shard", "1/3")
    assert code == 0
    # What the stopped run copied is skipped, the rest copied: nothing twice, nothing left out.
    copied_first = stopped["done"].get("copy", 0)
    assert copied_first > 0
    assert again["done"].get("skip", 0) >= copied_first
    assert again["done"].get("copy", 0) + again["done"].get("skip", 0) == again["listing"]["keys_compared"]
    assert run(server, "stop-src", "stop-dst", tmp_path, "--check", "--shard", "1/3")[0] == 0
    for index in (0, 2):
        assert run(server, "stop-src", "stop-dst", tmp_path, "--shard", f"{index}/3")[0] == 0
    code, check = run(server, "stop-src", "stop-dst", tmp_path, "--check")
    assert code == 0
    assert check["listing"]["keys_compared"] == len(keys)


def test_shards_given_the_same_split_points_cover_a_bucket_that_changed_meanwhile(
    server: SeaweedS3, tmp_path: Path
) -> None:
    """Split points found once (--plan-shards) and given to every shard (--splits): keys written
    after they were found still belong to exactly one shard."""
    keys = key_set()
    fill(server, "plan-src", keys)
    fill(server, "plan-dst", keys)
    found = subprocess.run(
        [sys.executable, "-m", "migrate", "--plan-shards", "4"],
        env=env(server, "plan-src", "plan-dst"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    plan = json.loads(found.stdout.strip().splitlines()[-1])
    assert plan["shards"] == 4 and len(plan["splits"]) == 3
    assert 0 < plan["discovery_requests"] <= probe_budget(4)
    later = [f"logs/2026-11-{d:02d}/late.json" for d in range(1, 30)] + ["aaa-first", "zzz-last"]
    fill(server, "plan-src", later)
    compared = 0
    missing: list[str] = []
    for index in range(4):
        code, part = run(
            server,
            "plan-src",
            "plan-dst",
            tmp_path,
            "--check",
            "--shard",
            f"{index}/4",
            "--splits",
            json.dumps(plan["splits"]),
        )
        assert code == (1 if part["differences"] else 0)
        assert part["listing"]["discovery_requests"] == 0
        compared += part["listing"]["keys_compared"]
        missing += [d["key"] for d in part["differences"]]
    assert compared == len(set(keys) | set(later))
    assert sorted(missing) == sorted(later)  # each found missing by exactly one shard


def test_split_points_that_do_not_match_the_shard_count_are_refused(
    server: SeaweedS3, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "migrate", "--check", "--shard", "0/3", "--splits", '["m"]'],
        env=env(server, "plan-src", "plan-dst"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "needs 2 --splits keys" in done.stderr


def test_a_shard_killed_outright_finishes_when_run_again(server: SeaweedS3, tmp_path: Path) -> None:
    """SIGKILL to the task's whole process group (no clean-up at all), then the same shard again
    with the same split points: it completes, and the bucket pair checks clean."""
    keys = [f"kill/{folder}/{i:04d}" for folder in "abcdef" for i in range(400)]
    fill(server, "kill-src", keys)
    server.create_bucket("kill-dst")
    found = subprocess.run(
        [sys.executable, "-m", "migrate", "--plan-shards", "3"],
        env=env(server, "kill-src", "kill-dst"),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    splits = json.loads(found.stdout.strip().splitlines()[-1])["splits"]
    shard = ["--shard", "1/3", "--splits", json.dumps(splits)]
    process = subprocess.Popen(
        [sys.executable, "-m", "migrate", "--progress", "none", *shard],
        env=env(server, "kill-src", "kill-dst"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    target = server.client()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not target.list_objects_v2(Bucket="kill-dst").get("KeyCount"):
        time.sleep(0.02)
    os.killpg(process.pid, signal.SIGKILL)
    assert process.wait(timeout=30) == -signal.SIGKILL
    code, again = run(server, "kill-src", "kill-dst", tmp_path, *shard)
    assert code == 0, again["failures"][:3]
    assert again["done"].get("skip", 0) > 0  # what the killed run finished is not copied again
    for index in (0, 2):
        assert (
            run(
                server,
                "kill-src",
                "kill-dst",
                tmp_path,
                "--shard",
                f"{index}/3",
                "--splits",
                json.dumps(splits),
            )[0]
            == 0
        )
    code, check = run(server, "kill-src", "kill-dst", tmp_path, "--check")
    assert code == 0
    assert check["listing"]["keys_compared"] == len(keys)
