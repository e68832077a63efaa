"""Migration and verification on the local stack: moto as S3, SeaweedFS as Lyve Cloud."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local_stack.compare import bucket_contents, differences
from local_stack.stack import LocalStack
from migrate.filters import KeyFilter
from migrate.runner import Migration, Options, Summary
from replicator.clients import build_clients
from replicator.settings import Settings
from replicator.transfer import TransferEngine

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


@pytest.fixture
def buckets(stack: LocalStack) -> tuple[str, str]:
    """A fresh source bucket (moto) and target bucket (SeaweedFS) for each test."""
    name = uuid.uuid4().hex[:10]
    source, target = f"src-{name}", f"dst-{name}"
    stack.source().create_bucket(Bucket=source)
    stack.target().create_bucket(Bucket=target)
    return source, target


def env_for(stack: LocalStack, buckets: tuple[str, str], **extra: str) -> dict[str, str]:
    return stack.env(SOURCE_BUCKET=buckets[0], TARGET_BUCKET=buckets[1], LOG_LEVEL="WARNING", **extra)


def settings_for(stack: LocalStack, buckets: tuple[str, str]) -> Settings:
    return Settings(
        source_bucket=buckets[0],
        source_endpoint_url=stack.aws.endpoint_url,
        target_bucket=buckets[1],
        target_endpoint_url=stack.lyve.endpoint_url,
        target_access_key_id=stack.lyve.access_key,
        target_secret_access_key=stack.lyve.secret_key,
        allow_http_endpoints=True,
        max_attempts=2,
    )


def migrate(stack: LocalStack, buckets: tuple[str, str], **options: Any) -> Summary:
    settings = settings_for(stack, buckets)
    clients = build_clients(settings)
    engine = TransferEngine(clients.source, clients.target, settings)
    try:
        return Migration(engine, Options(concurrency=8, processes=1, **options)).run()
    finally:
        engine.close()


def run_cli(
    stack: LocalStack, buckets: tuple[str, str], *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "migrate", "--progress", "none", *args],
        env=env_for(stack, buckets, **env),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def fill(stack: LocalStack, bucket: str, count: int, seed: int = 1) -> dict[str, bytes]:
    rng = random.Random(seed)
    s3 = stack.source()
    made: dict[str, bytes] = {}
    for i in range(count):
        size = rng.choice([0, 1, 700, 4096, 65_536, 300_000])
        key = rng.choice(["a/", "a-", "b/c/", "", "z\u00fc/", "sp ace/"]) + f"obj+{i}%.bin"
        made[key] = rng.randbytes(size)
        s3.put_object(Bucket=bucket, Key=key, Body=made[key])
    return made


def in_sync(stack: LocalStack, buckets: tuple[str, str]) -> list[str]:
    return differences(
        bucket_contents(stack.source(), buckets[0]), bucket_contents(stack.target(), buckets[1])
    )


def test_migration_of_mixed_sizes_then_check_passes_and_rerun_copies_nothing(
    stack: LocalStack, buckets: tuple[str, str], tmp_path: Path
) -> None:
    fill(stack, buckets[0], 300)
    stack.source().upload_fileobj(io.BytesIO(os.urandom(20 * MIB + 3)), buckets[0], "large/multipart.bin")
    first = run_cli(stack, buckets, "--report", str(tmp_path / "r.json"))
    assert first.returncode == 0, first.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["done"]["copy"] == 301
    assert in_sync(stack, buckets) == []
    check = run_cli(stack, buckets, "--check")
    assert check.returncode == 0, check.stderr[-2000:]
    again = run_cli(stack, buckets, "--report", str(tmp_path / "r2.json"))
    assert again.returncode == 0
    report = json.loads((tmp_path / "r2.json").read_text())
    assert report["done"].get("copy", 0) == 0
    assert report["done"].get("replace", 0) == 0
    assert report["done"]["skip"] == 301


def test_same_size_change_is_found_by_check_and_fixed_by_rerun(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    made = fill(stack, buckets[0], 20)
    stack.source().upload_fileobj(io.BytesIO(os.urandom(10 * MIB)), buckets[0], "mp.bin")
    assert run_cli(stack, buckets).returncode == 0
    key = next(k for k, v in made.items() if len(v) == 4096)
    stack.source().put_object(Bucket=buckets[0], Key=key, Body=os.urandom(4096))
    stack.source().upload_fileobj(
        io.BytesIO(os.urandom(10 * MIB)), buckets[0], "mp.bin"
    )  # multipart, same size
    check = run_cli(stack, buckets, "--check")
    assert check.returncode == 1
    assert f"DIFF content differs: {key!r}" in check.stderr
    assert "DIFF content differs: 'mp.bin'" in check.stderr
    assert run_cli(stack, buckets).returncode == 0
    assert run_cli(stack, buckets, "--check").returncode == 0
    assert in_sync(stack, buckets) == []


def test_check_reports_missing_extra_and_size_differences(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    fill(stack, buckets[0], 5)
    assert run_cli(stack, buckets).returncode == 0
    target = stack.target()
    target.put_object(Bucket=buckets[1], Key="only-on-target", Body=b"x")
    stack.source().put_object(Bucket=buckets[0], Key="only-on-source", Body=b"x")
    victim = target.list_objects_v2(Bucket=buckets[1])["Contents"][0]["Key"]
    target.put_object(Bucket=buckets[1], Key=victim, Body=b"truncated!")
    check = run_cli(stack, buckets, "--check")
    assert check.returncode == 1
    assert "DIFF extra on target: 'only-on-target'" in check.stderr
    assert "DIFF missing on target: 'only-on-source'" in check.stderr
    assert f"{victim!r}" in check.stderr


def test_delete_and_max_delete(stack: LocalStack, buckets: tuple[str, str]) -> None:
    fill(stack, buckets[0], 10)
    assert run_cli(stack, buckets).returncode == 0
    for i in range(3):
        stack.target().put_object(Bucket=buckets[1], Key=f"stale/{i}", Body=b"old")
    assert run_cli(stack, buckets).returncode == 0  # without --delete, extra objects stay
    assert len(bucket_contents(stack.target(), buckets[1])) == 13
    refused = run_cli(stack, buckets, "--delete", "--max-delete", "2")
    assert refused.returncode == 1
    assert "exceed --max-delete" in refused.stderr
    assert len(bucket_contents(stack.target(), buckets[1])) == 13
    assert run_cli(stack, buckets, "--delete", "--max-delete", "3").returncode == 0
    assert in_sync(stack, buckets) == []


def test_dry_run_changes_nothing_and_prints_the_plan(stack: LocalStack, buckets: tuple[str, str]) -> None:
    fill(stack, buckets[0], 12)
    stack.target().put_object(Bucket=buckets[1], Key="extra", Body=b"x")
    result = run_cli(stack, buckets, "--dry-run", "--delete")
    assert result.returncode == 0
    assert "Plan (dry run)" in result.stderr
    assert "│ copy   │      12" in result.stderr
    assert "│ delete │       1" in result.stderr
    assert list(bucket_contents(stack.target(), buckets[1])) == ["extra"]


def test_filters(stack: LocalStack, buckets: tuple[str, str]) -> None:
    s3 = stack.source()
    for key, size in {
        "logs/a.log": 10,
        "logs/b.txt": 10,
        "img/x.jpg": 2000,
        "img/y.jpg": 50,
        "top.log": 10,
    }.items():
        s3.put_object(Bucket=buckets[0], Key=key, Body=b"x" * size)

    def copied(**kw: Any) -> set[str]:
        return _planned_keys(stack, buckets, kw)

    assert copied(prefix="logs/") == {"logs/a.log", "logs/b.txt"}
    assert copied(include=("*.log",)) == {"logs/a.log", "top.log"}
    assert copied(exclude=("img/*",)) == {"logs/a.log", "logs/b.txt", "top.log"}
    assert copied(min_size=100) == {"img/x.jpg"}
    assert copied(max_size=10) == {"logs/a.log", "logs/b.txt", "top.log"}
    future = datetime.now(UTC) + timedelta(days=1)
    assert copied(newer_than=future) == set()
    assert copied(older_than=future) == {"logs/a.log", "logs/b.txt", "img/x.jpg", "img/y.jpg", "top.log"}
    assert copied(newer_than=datetime.now(UTC) - timedelta(hours=1), include=("img/*",)) == {
        "img/x.jpg",
        "img/y.jpg",
    }


def _planned_keys(stack: LocalStack, buckets: tuple[str, str], kw: dict[str, Any]) -> set[str]:
    """Migrate for real into a fresh target bucket and return what arrived there."""
    fresh = f"f-{uuid.uuid4().hex[:10]}"
    stack.target().create_bucket(Bucket=fresh)
    summary = migrate(stack, (buckets[0], fresh), key_filter=KeyFilter(**kw))
    assert not summary.failures
    return set(bucket_contents(stack.target(), fresh))


def test_filter_arguments_on_the_command_line(stack: LocalStack, buckets: tuple[str, str]) -> None:
    s3 = stack.source()
    s3.put_object(Bucket=buckets[0], Key="keep/small", Body=b"x")
    s3.put_object(Bucket=buckets[0], Key="keep/big", Body=b"x" * 5000)
    s3.put_object(Bucket=buckets[0], Key="drop/big", Body=b"x" * 5000)
    result = run_cli(
        stack,
        buckets,
        "--prefix",
        "keep/",
        "--min-size",
        "1K",
        "--newer-than",
        "1d",
        "--exclude",
        "*.tmp",
        "--include",
        "keep/*",
    )
    assert result.returncode == 0, result.stderr
    assert set(bucket_contents(stack.target(), buckets[1])) == {"keep/big"}
    bad = run_cli(stack, buckets, "--min-size", "lots")
    assert bad.returncode == 2
    assert "--min-size" in bad.stderr


def test_shards_cover_every_key_exactly_once(stack: LocalStack, buckets: tuple[str, str]) -> None:
    made = fill(stack, buckets[0], 90, seed=3)
    seen: list[str] = []
    for index in range(3):
        fresh = f"s{index}-{uuid.uuid4().hex[:8]}"
        stack.target().create_bucket(Bucket=fresh)
        summary = migrate(stack, (buckets[0], fresh), key_filter=KeyFilter(shard=(index, 3)))
        assert not summary.failures
        keys = list(bucket_contents(stack.target(), fresh))
        assert 0 < len(keys) < len(made)
        seen.extend(keys)
    assert sorted(seen) == sorted(made)


def test_killed_midway_then_rerun_ends_identical(stack: LocalStack, buckets: tuple[str, str]) -> None:
    fill(stack, buckets[0], 150, seed=5)
    for i in range(4):
        stack.source().upload_fileobj(io.BytesIO(os.urandom(24 * MIB)), buckets[0], f"large/{i}.bin")
    process = subprocess.Popen(
        [sys.executable, "-m", "migrate", "--progress", "none", "--concurrency", "2", "--processes", "1"],
        env=env_for(stack, buckets, PART_CONCURRENCY="2"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stack.target().list_objects_v2(Bucket=buckets[1]).get(
        "KeyCount"
    ):
        time.sleep(0.1)
    time.sleep(0.5)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=30)
    partial = bucket_contents(stack.target(), buckets[1])
    assert 0 < len(partial) < 154
    result = run_cli(stack, buckets)
    assert result.returncode == 0, result.stderr[-2000:]
    assert in_sync(stack, buckets) == []
    # the killed run's incomplete uploads were aborted by the re-run's copies of those keys
    assert stack.target().list_multipart_uploads(Bucket=buckets[1]).get("Uploads", []) == []


def test_sigterm_stops_cleanly_and_aborts_uploads(stack: LocalStack, buckets: tuple[str, str]) -> None:
    for i in range(3):
        stack.source().upload_fileobj(io.BytesIO(os.urandom(40 * MIB)), buckets[0], f"big/{i}.bin")
    process = subprocess.Popen(
        [sys.executable, "-m", "migrate", "--progress", "none", "--concurrency", "3"],
        env=env_for(stack, buckets, PART_CONCURRENCY="2", PART_SIZE_MIB="5"),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not stack.target().list_multipart_uploads(Bucket=buckets[1]).get(
        "Uploads"
    ):
        time.sleep(0.05)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=60) == 130
    assert stack.target().list_multipart_uploads(Bucket=buckets[1]).get("Uploads", []) == []


def test_reverse_direction(stack: LocalStack, buckets: tuple[str, str]) -> None:
    """Lyve Cloud back to S3: the same command with --reverse."""
    target = stack.target()
    for i in range(30):
        target.put_object(Bucket=buckets[1], Key=f"from-lyve/{i}.txt", Body=os.urandom(i * 100))
    target.upload_fileobj(io.BytesIO(os.urandom(12 * MIB)), buckets[1], "from-lyve/big.bin")
    result = run_cli(stack, buckets, "--reverse")
    assert result.returncode == 0, result.stderr[-2000:]
    assert in_sync(stack, buckets) == []
    assert run_cli(stack, buckets, "--reverse", "--check").returncode == 0
