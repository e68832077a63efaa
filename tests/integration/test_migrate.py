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
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from local_stack.compare import bucket_contents, differences, list_keys
from local_stack.fault_proxy import FaultPlan, FaultProxy
from local_stack.stack import LocalStack
from migrate import cli
from migrate.filters import KeyFilter
from migrate.progress import Progress
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
    return migrate_with(settings_for(stack, buckets), concurrency=8, **options)


def migrate_with(
    settings: Settings,
    engine_class: type[TransferEngine] = TransferEngine,
    concurrency: int = 4,
    **options: Any,
) -> Summary:
    clients = build_clients(settings)
    engine = engine_class(clients.source, clients.target, settings)
    try:
        return Migration(engine, Options(concurrency=concurrency, processes=1, **options)).run()
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
    assert refused.returncode == 4
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


def test_sigterm_stops_cleanly_keeping_uploads_that_the_next_run_resumes(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
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
    # An interrupted copy keeps its upload (at most one per key in flight) for the next run.
    kept = stack.target().list_multipart_uploads(Bucket=buckets[1]).get("Uploads", [])
    assert 0 < len(kept) <= 3
    assert len({u["Key"] for u in kept}) == len(kept)
    result = run_cli(stack, buckets)
    assert result.returncode == 0, result.stderr[-2000:]
    assert in_sync(stack, buckets) == []
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


# -- deletes: only what the source is known, now, not to hold ------------------------------------


class HookedProgress(Progress):
    """Runs `hook` when the listings are done, before any delete: the source changing while a
    long migration runs."""

    def __init__(self, mode: str, hook: Callable[[], None]) -> None:
        super().__init__(mode)
        self.hook = hook

    def listing_done(self) -> None:
        super().listing_done()
        self.hook()


def cli_in_process(
    stack: LocalStack,
    buckets: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    hook: Callable[[], None] | None = None,
) -> int:
    """`python -m migrate ARGS` in this process, so that a hook can act between the listing and
    the deletes."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "SOURCE_", "TARGET_")):
            monkeypatch.delenv(name)
    for name, value in env_for(stack, buckets).items():
        monkeypatch.setenv(name, value)
    if hook is not None:
        monkeypatch.setattr(cli, "Progress", lambda mode: HookedProgress(mode, hook))
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return cli.main(["--progress", "none", "--processes", "1", *args])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_a_key_recreated_at_the_source_before_its_delete_is_kept(
    stack: LocalStack,
    buckets: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    fill(stack, buckets[0], 5)
    target = stack.target()
    for key in ("again", "gone/1", "gone/2", "zz-again"):
        target.put_object(Bucket=buckets[1], Key=key, Body=b"old")

    def recreate() -> None:  # the event pipeline is live: these come back during the run
        for key in ("again", "zz-again"):
            stack.source().put_object(Bucket=buckets[0], Key=key, Body=b"new")

    report = tmp_path / "report.json"
    code = cli_in_process(stack, buckets, monkeypatch, "--delete", "--report", str(report), hook=recreate)
    assert code == 0
    left = bucket_contents(stack.target(), buckets[1])
    assert "gone/1" not in left
    assert "gone/2" not in left
    assert {"again", "zz-again"} <= set(left)
    data = json.loads(report.read_text())
    assert data["deletes_skipped_source_has_key_again"] == ["again", "zz-again"]
    assert data["done"]["delete"] == 2
    err = capsys.readouterr().err
    assert "2 deletes skipped: source has the key again" in err
    assert "deletes skipped: source has the key again: 'zz-again'" in err
    # the next run copies the re-created keys: the target converges
    assert run_cli(stack, buckets).returncode == 0
    assert in_sync(stack, buckets) == []


def test_a_source_bucket_gone_before_the_deletes_deletes_nothing_and_exits_3(
    stack: LocalStack,
    buckets: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    fill(stack, buckets[0], 3)
    for i in range(3):
        stack.target().put_object(Bucket=buckets[1], Key=f"extra/{i}", Body=b"x")

    def remove_source_bucket() -> None:
        s3 = stack.source()
        for entry in s3.list_objects_v2(Bucket=buckets[0]).get("Contents", []):
            s3.delete_object(Bucket=buckets[0], Key=entry["Key"])
        s3.delete_bucket(Bucket=buckets[0])

    code = cli_in_process(stack, buckets, monkeypatch, "--delete", hook=remove_source_bucket)
    assert code == 3
    err = capsys.readouterr().err
    assert f"the source bucket '{buckets[0]}'" in err
    assert "does not exist" in err
    assert "Traceback" not in err
    assert {f"extra/{i}" for i in range(3)} <= set(bucket_contents(stack.target(), buckets[1]))


def test_a_missing_source_bucket_is_an_error_not_an_empty_listing(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    stack.target().put_object(Bucket=buckets[1], Key="precious", Body=b"x")
    missing = (f"gone-{uuid.uuid4().hex[:8]}", buckets[1])
    summary = migrate(stack, missing, delete=True, allow_empty_source=True)
    assert "does not exist" in summary.source_missing
    assert summary.done.get("delete", 0) == 0
    assert list(bucket_contents(stack.target(), buckets[1])) == ["precious"]


def test_an_empty_source_never_empties_the_target_unless_allowed(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    for i in range(4):
        stack.target().put_object(Bucket=buckets[1], Key=f"keep/{i}", Body=b"x")
    refused = run_cli(stack, buckets, "--delete")
    assert refused.returncode == 4, refused.stderr[-2000:]
    assert "the source lists no object" in refused.stderr
    assert "--allow-empty-source" in refused.stderr
    assert len(bucket_contents(stack.target(), buckets[1])) == 4
    allowed = run_cli(stack, buckets, "--delete", "--allow-empty-source")
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert bucket_contents(stack.target(), buckets[1]) == {}


def test_max_delete_has_a_safe_default_that_can_be_lifted(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    stack.source().put_object(Bucket=buckets[0], Key="kept", Body=b"x")
    target = stack.target()
    with ThreadPoolExecutor(16) as pool:
        list(
            pool.map(
                lambda i: target.put_object(Bucket=buckets[1], Key=f"old/{i:04d}", Body=b""), range(1001)
            )
        )
    refused = run_cli(stack, buckets, "--delete")
    assert refused.returncode == 4, refused.stderr[-2000:]
    assert "exceed --max-delete 1000" in refused.stderr
    assert len(list_keys(target, buckets[1])) == 1002
    lifted = run_cli(stack, buckets, "--delete", "--max-delete", "unlimited")
    assert lifted.returncode == 0, lifted.stderr[-2000:]
    assert in_sync(stack, buckets) == []
    assert "'unlimited' lifts the cap" in " ".join(run_cli(stack, buckets, "--help").stdout.split())


def test_deleting_a_key_aborts_its_incomplete_uploads(stack: LocalStack, buckets: tuple[str, str]) -> None:
    stack.source().put_object(Bucket=buckets[0], Key="keep/x", Body=b"x")
    target = stack.target()
    target.put_object(Bucket=buckets[1], Key="old/big", Body=b"x")
    stale = target.create_multipart_upload(Bucket=buckets[1], Key="old/big")["UploadId"]
    other = target.create_multipart_upload(Bucket=buckets[1], Key="keep/x")["UploadId"]
    time.sleep(1.1)  # upload times are compared with the target's clock, in whole seconds
    result = run_cli(stack, buckets, "--delete")
    assert result.returncode == 0, result.stderr[-2000:]
    uploads = {u["UploadId"] for u in target.list_multipart_uploads(Bucket=buckets[1]).get("Uploads", [])}
    assert stale not in uploads
    assert other in uploads  # not deleted: its uploads are none of the delete's business
    target.abort_multipart_upload(Bucket=buckets[1], Key="keep/x", UploadId=other)


def test_time_filters_apply_to_the_sorted_target_listing_and_so_to_deletes(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    stack.source().put_object(Bucket=buckets[0], Key="kept", Body=b"x")
    for key in ("extra/1", "extra/2"):
        stack.target().put_object(Bucket=buckets[1], Key=key, Body=b"x")
    future = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    # Both extra objects were modified before `future`: outside --newer-than, left alone.
    result = run_cli(stack, buckets, "--delete", "--newer-than", future)
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"extra/1", "extra/2"} <= set(bucket_contents(stack.target(), buckets[1]))
    result = run_cli(stack, buckets, "--delete", "--older-than", "2001-01-01")
    assert result.returncode == 0, result.stderr[-2000:]
    assert {"extra/1", "extra/2"} <= set(bucket_contents(stack.target(), buckets[1]))
    result = run_cli(stack, buckets, "--delete", "--older-than", future)
    assert result.returncode == 0, result.stderr[-2000:]
    assert in_sync(stack, buckets) == []


# -- what migrate reports apart -------------------------------------------------------------------


def test_a_metadata_only_change_is_found_by_check_and_applied_without_the_bytes(
    stack: LocalStack, buckets: tuple[str, str], tmp_path: Path
) -> None:
    s3 = stack.source()
    s3.put_object(
        Bucket=buckets[0], Key="doc.txt", Body=b"same bytes", ContentType="text/plain", Metadata={"v": "1"}
    )
    s3.put_object(Bucket=buckets[0], Key="other.bin", Body=b"untouched")
    assert run_cli(stack, buckets).returncode == 0
    time.sleep(1.1)  # the source's change must be in a later second than the target's copy
    before = s3.head_object(Bucket=buckets[0], Key="doc.txt")
    s3.copy_object(
        Bucket=buckets[0],
        Key="doc.txt",
        CopySource={"Bucket": buckets[0], "Key": "doc.txt"},
        MetadataDirective="REPLACE",
        ContentType="text/markdown",
        CacheControl="max-age=60",
        Metadata={"v": "2"},
    )
    after = s3.head_object(Bucket=buckets[0], Key="doc.txt")
    assert (after["ETag"], after["ContentLength"]) == (before["ETag"], before["ContentLength"])
    check = run_cli(stack, buckets, "--check")
    assert check.returncode == 1
    assert "DIFF metadata differs: 'doc.txt'" in check.stderr
    assert "other.bin" not in check.stderr
    result = run_cli(stack, buckets, "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["done"]["metadata"] == 1
    assert report["done"].get("replace", 0) == 0
    assert "1 object(s): metadata updated" in result.stderr
    copied = stack.target().head_object(Bucket=buckets[1], Key="doc.txt")
    assert copied["ContentType"] == "text/markdown"
    assert copied["CacheControl"] == "max-age=60"
    assert copied["Metadata"]["v"] == "2"
    assert run_cli(stack, buckets, "--check").returncode == 0


def test_archived_sources_are_reported_apart_and_do_not_fail_the_run(
    stack: LocalStack, buckets: tuple[str, str], tmp_path: Path
) -> None:
    s3 = stack.source()
    fill(stack, buckets[0], 5)
    s3.put_object(Bucket=buckets[0], Key="cold/glacier", Body=b"g", StorageClass="GLACIER")
    s3.put_object(Bucket=buckets[0], Key="cold/deep", Body=b"d", StorageClass="DEEP_ARCHIVE")
    s3.put_object(Bucket=buckets[0], Key="cold/instant", Body=b"i", StorageClass="GLACIER_IR")
    check = run_cli(stack, buckets, "--check")
    assert check.returncode == 1  # the 6 readable objects are missing
    assert "archived, not copied: 'cold/deep'" in check.stderr
    assert "archived, not copied: 'cold/glacier'" in check.stderr
    assert "DIFF missing on target: 'cold/instant'" in check.stderr
    assert "DIFF missing on target: 'cold/glacier'" not in check.stderr
    result = run_cli(stack, buckets, "--report", str(tmp_path / "r.json"))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "2 object(s) archived, not copied" in result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert sorted(a["key"] for a in report["archived_not_copied"]) == ["cold/deep", "cold/glacier"]
    assert report["failures"] == []
    copied = set(bucket_contents(stack.target(), buckets[1]))
    assert "cold/instant" in copied
    assert not {"cold/glacier", "cold/deep"} & copied
    again = run_cli(stack, buckets, "--check")
    assert again.returncode == 0, again.stderr[-2000:]  # archived alone: exit 0
    assert "archived, not copied: 'cold/glacier'" in again.stderr


def test_keys_the_target_cannot_store_are_listed_apart_and_the_rest_is_copied(
    stack: LocalStack, buckets: tuple[str, str], tmp_path: Path
) -> None:
    s3 = stack.source()
    made = fill(stack, buckets[0], 40, seed=7)
    too_long = "long/" + "x" * 256 + "/end.txt"  # one segment of 256 bytes
    s3.put_object(Bucket=buckets[0], Key=too_long, Body=b"x")
    s3.upload_fileobj(io.BytesIO(os.urandom(9 * MIB)), buckets[0], "a")  # an object and ...
    s3.put_object(Bucket=buckets[0], Key="a/b", Body=b"b")  # ... a prefix of the same name
    # The CLI's default --processes: small objects go through child processes.
    result = subprocess.run(
        [sys.executable, "-m", "migrate", "--progress", "none", "--report", str(tmp_path / "r.json")],
        env=env_for(stack, buckets, COLUMNS="400"),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 1, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["failures"] == []
    refused = {item["key"]: item["reason"] for item in report["cannot_be_stored_on_target"]}
    assert too_long in refused
    assert "255" in refused[too_long]
    assert "object(s) cannot be stored on the target" in result.stderr
    assert f"cannot be stored on the target: '{too_long[:20]}" in result.stderr
    copied = bucket_contents(stack.target(), buckets[1])
    assert set(made) <= set(copied)
    # SeaweedFS, like Lyve Cloud, may refuse one of `a` and `a/b`: then it is reported with the
    # reason, never as a plain failure; whatever it stores arrives whole.
    for key in ("a", "a/b"):
        assert key in copied or "cannot coexist" in refused[key]
    assert too_long not in copied


# -- a source listing out of byte order -----------------------------------------------------------


def _out_of_order_source(stack: LocalStack, lyve_bucket: str) -> list[str]:
    """SeaweedFS lists `a/...` before `a-c` (directory order): out of byte order at `a-c`, after
    the first 41 keys were decided."""
    keys = ["a", *(f"a/{i:02d}" for i in range(40)), "a-c", "b"]
    target = stack.target()
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda k: target.put_object(Bucket=lyve_bucket, Key=k, Body=k.encode()), keys))
    listed = [e["Key"] for e in target.list_objects_v2(Bucket=lyve_bucket)["Contents"]]
    assert listed.index("a-c") > listed.index("a/39"), "SeaweedFS lists in byte order now"
    return keys


@pytest.mark.parametrize("processes", ["1", "2"])
def test_a_source_listing_in_tree_order_is_detected_and_copies_each_key_once(
    stack: LocalStack, buckets: tuple[str, str], tmp_path: Path, processes: str
) -> None:
    """SeaweedFS (its Server header says so) lists in directory order and moto in byte order:
    the pair is merged with SeaweedFS's side sorted, without starting over."""
    keys = _out_of_order_source(stack, buckets[1])
    result = run_cli(
        stack, buckets, "--reverse", "--processes", processes, "--report", str(tmp_path / "r.json")
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["listing_restarts"] == 0
    assert report["listing"]["order"] == "sorted"
    assert report["planned"] == {"copy": len(keys)}
    assert report["done"] == {"copy": len(keys)}
    assert in_sync(stack, buckets) == []


def test_time_filters_apply_to_a_sorted_source_listing(stack: LocalStack, buckets: tuple[str, str]) -> None:
    keys = _out_of_order_source(stack, buckets[1])
    future = (datetime.now(UTC) + timedelta(days=1)).date().isoformat()
    result = run_cli(stack, buckets, "--reverse", "--newer-than", future)
    assert result.returncode == 0, result.stderr[-2000:]
    assert bucket_contents(stack.source(), buckets[0]) == {}
    result = run_cli(stack, buckets, "--reverse", "--older-than", future)
    assert result.returncode == 0, result.stderr[-2000:]
    assert set(bucket_contents(stack.source(), buckets[0])) == set(keys)


def test_listed_now_finds_keys_across_directories_on_seaweedfs(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    """SeaweedFS's own order differs from byte order across `/` levels; the check before a delete
    must find a key wherever it sits."""
    target = stack.target()
    present = ["a", "a/b", "a/c/d", "a-c", "a0", "b", "sp ace/k", "z\u00fc/k"]
    for key in present:
        target.put_object(Bucket=buckets[1], Key=key, Body=b"x")
    absent = ["a/a", "a/c/e", "a-b", "a00", "c", "z\u00fc/j"]
    from migrate.listing import listed_now

    asked = sorted(present + absent, key=lambda k: k.encode())
    endpoint = build_clients(settings_for(stack, buckets)).target
    assert listed_now(endpoint, asked) == set(present)


def test_a_rerun_after_a_migration_heads_nothing(stack: LocalStack, buckets: tuple[str, str]) -> None:
    """The look at metadata costs HEADs only where a source is newer than its copy: after a
    migration, none is."""
    fill(stack, buckets[0], 60, seed=11)
    assert not migrate(stack, buckets).failures
    settings = settings_for(stack, buckets)
    clients = build_clients(settings)
    heads: list[str] = []
    for end in (clients.source, clients.target):
        end.client.meta.events.register(
            "before-call.s3.HeadObject", lambda params, **_: heads.append(params["Key"])
        )
    engine = TransferEngine(clients.source, clients.target, settings)
    try:
        summary = Migration(engine, Options(concurrency=8, processes=1)).run()
    finally:
        engine.close()
    assert summary.done == {"skip": 60}
    assert heads == []


@pytest.mark.parametrize("page_keys", [1, 2, 3, 4, 5])
def test_listed_now_never_settles_a_key_listed_after_a_directory_on_seaweedfs(
    stack: LocalStack, buckets: tuple[str, str], monkeypatch: pytest.MonkeyPatch, page_keys: int
) -> None:
    """SeaweedFS lists a directory's entries by name: `d/sub/` (the directory `sub`) before the
    file `d/sub-a`, the other way round from byte order. A page that ends on that directory
    settles nothing after `d/sub`, so the file is still looked for (and so never deleted)."""
    from migrate import listing

    monkeypatch.setattr(listing, "PAGE_KEYS", page_keys)
    target = stack.target()
    present = ["d/a", "d/b", "d/sub/x", "d/sub-a", "d/sub.txt", "d/subz"]
    for key in present:
        target.put_object(Bucket=buckets[1], Key=key, Body=b"x")
    endpoint = build_clients(settings_for(stack, buckets)).target
    assert listing.listed_now(endpoint, ["d/a", "d/sub-a"]) == {"d/a", "d/sub-a"}
    asked = sorted(["d/a", "d/a0", "d/sub", "d/sub!", "d/sub-a", "d/sub.txt", "d/subz"], key=str.encode)
    assert listing.listed_now(endpoint, asked) == {"d/a", "d/sub-a", "d/sub.txt", "d/subz"}


def test_a_delete_checks_the_seaweedfs_source_past_a_page_ending_on_a_directory(
    stack: LocalStack, buckets: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """--reverse (SeaweedFS as the source): a key the source holds is never deleted because a
    listing page ended on a directory that SeaweedFS lists before it."""
    from migrate import listing

    monkeypatch.setattr(listing, "PAGE_KEYS", 3)
    lyve, aws = stack.target(), stack.source()
    for key in ("d/a", "d/b", "d/sub/x", "d/sub-a"):
        lyve.put_object(Bucket=buckets[1], Key=key, Body=b"x")
    for key in ("d/0", "d/sub-a"):
        aws.put_object(Bucket=buckets[0], Key=key, Body=b"x")
    settings = settings_for(stack, buckets)
    clients = build_clients(settings)
    engine = TransferEngine(clients.target, clients.source, settings)  # reversed ends
    try:
        migration = Migration(engine, Options(concurrency=1, processes=1, delete=True))
        migration._delete_batch(["d/0", "d/sub-a"])
    finally:
        engine.close()
    assert migration.summary.settle().deletes_skipped == ["d/sub-a"]
    assert list_keys(aws, buckets[0]) == ["d/sub-a"]


def test_a_bare_400_from_seaweedfs_is_called_sse_c_only_once_a_read_confirms_it(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    """SeaweedFS as the source (--reverse): a HEAD of an SSE-C object without its key answers a
    bare 400, as an expired token would; a one-byte GET tells the two apart."""
    from botocore.exceptions import ClientError

    from replicator.errors import EncryptedSourceError, source_refusal

    lyve = stack.target()
    customer_key = os.urandom(32)
    for key, body in (("vault/secret", b"ciphertext"), ("vault/empty", b"")):
        lyve.put_object(
            Bucket=buckets[1], Key=key, Body=body, SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key
        )
    lyve.put_object(Bucket=buckets[1], Key="open/file", Body=b"plain")
    source = build_clients(settings_for(stack, buckets)).target
    for key in ("vault/secret", "vault/empty"):
        with pytest.raises(ClientError) as caught:
            source.client.head_object(Bucket=source.bucket, Key=key)
        bare = caught.value
        assert (bare.response["Error"]["Code"], bare.response["ResponseMetadata"]["HTTPStatusCode"]) == (
            "400",
            400,
        )
        refusal = source_refusal(bare, None, "HeadObject", key, source=source)
        assert isinstance(refusal, EncryptedSourceError), key
        assert f"{key!r} is encrypted with a customer key" in str(refusal)
    # The same bare 400 for an object that reads fine: passing trouble, not SSE-C.
    assert source_refusal(bare, None, "HeadObject", "open/file", source=source) is None


# -- what a copy meets on the way ------------------------------------------------------------------


class RewritingProxy(FaultProxy):
    """Forwards to the server, except where `rule(method, path, headers)` says otherwise: ("refuse",
    status, code) answers the request itself with that S3 error; ("add", headers) forwards it and
    adds those headers to the answer. Records every request, and each rule that applied."""

    def __init__(self, upstream: str, rule: Callable[[str, str, Any], tuple[Any, ...] | None]) -> None:
        super().__init__(upstream, FaultPlan())
        self.rule = rule
        self.applied: list[tuple[str, str, str]] = []
        self.seen: list[tuple[str, str]] = []

    def __enter__(self) -> RewritingProxy:
        self.start()
        return self

    def handle(self, request: Any) -> None:
        self.seen.append((request.command, request.path))
        verdict = self.rule(request.command, request.path, request.headers)
        if verdict is None:
            super().handle(request)
            return
        self.applied.append((verdict[0], request.command, request.path))
        if verdict[0] == "add":
            send_rest = request.end_headers

            def end_headers() -> None:
                for name, value in verdict[1].items():
                    request.send_header(name, value)
                send_rest()

            request.end_headers = end_headers
            super().handle(request)
            return
        _, status, code = verdict
        length = int(request.headers.get("Content-Length") or 0)
        if length:
            request.rfile.read(length)
        payload = (
            f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>refused</Message></Error>".encode()
        )
        request.send_response(status)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)


def test_intelligent_tiering_archive_tiers_are_archived_not_missing(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    """The listing says only INTELLIGENT_TIERING; AWS tells the archive tiers apart on a HEAD
    (x-amz-archive-status) and refuses their GET (InvalidObjectState). moto has no tiers: a proxy
    answers as AWS does for the objects under cold/."""
    s3 = stack.source()
    for key in ("cold/it", "warm/it"):
        s3.put_object(Bucket=buckets[0], Key=key, Body=b"tiered", StorageClass="INTELLIGENT_TIERING")
    s3.put_object(Bucket=buckets[0], Key="plain", Body=b"standard")

    def as_aws(method: str, path: str, headers: Any) -> tuple[Any, ...] | None:
        if "/cold/" not in path:
            return None
        if method == "HEAD":
            return ("add", {"x-amz-archive-status": "DEEP_ARCHIVE_ACCESS"})
        return ("refuse", 403, "InvalidObjectState") if method == "GET" else None

    with RewritingProxy(stack.aws.endpoint_url, as_aws) as proxy:
        settings = settings_for(stack, buckets).model_copy(update={"source_endpoint_url": proxy.endpoint_url})
        check = migrate_with(settings, check=True)
        assert check.archived == [{"key": "cold/it", "reason": "archived in DEEP_ARCHIVE_ACCESS, not copied"}]
        assert sorted(d["key"] for d in check.differences) == ["plain", "warm/it"]
        heads = sorted(path.split("?")[0] for method, path in proxy.seen if method == "HEAD")
        # Only the Intelligent-Tiering objects are looked at.
        assert heads == [f"/{buckets[0]}/cold/it", f"/{buckets[0]}/warm/it"]
        copied = migrate_with(settings)
    assert copied.failures == []
    assert [a["key"] for a in copied.archived] == ["cold/it"]
    assert set(bucket_contents(stack.target(), buckets[1])) == {"plain", "warm/it"}
    assert ("refuse", "GET", f"/{buckets[0]}/cold/it") not in proxy.applied  # never read


def test_a_target_refusing_a_self_copy_gets_the_bytes_instead(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    s3 = stack.source()
    s3.put_object(
        Bucket=buckets[0], Key="doc.txt", Body=b"same bytes", ContentType="text/plain", Metadata={"v": "1"}
    )
    assert migrate(stack, buckets).done == {"copy": 1}
    time.sleep(1.1)  # the source's change must be in a later second than the target's copy
    s3.copy_object(
        Bucket=buckets[0],
        Key="doc.txt",
        CopySource={"Bucket": buckets[0], "Key": "doc.txt"},
        MetadataDirective="REPLACE",
        ContentType="text/markdown",
        Metadata={"v": "2"},
    )

    def no_self_copy(method: str, path: str, headers: Any) -> tuple[Any, ...] | None:
        copy_source = headers.get("x-amz-copy-source") or ""
        return ("refuse", 501, "NotImplemented") if method == "PUT" and buckets[1] in copy_source else None

    with RewritingProxy(stack.lyve.endpoint_url, no_self_copy) as proxy:
        settings = settings_for(stack, buckets).model_copy(update={"target_endpoint_url": proxy.endpoint_url})
        summary = migrate_with(settings)
    assert summary.failures == []
    assert summary.done == {"replace": 1}
    assert [kind for kind, _, _ in proxy.applied] == ["refuse"]  # a 501 is not asked again
    copied = stack.target().head_object(Bucket=buckets[1], Key="doc.txt")
    assert (copied["ContentType"], copied["Metadata"]["v"]) == ("text/markdown", "2")
    assert in_sync(stack, buckets) == []


def test_a_key_deleted_at_the_source_during_the_run_is_not_a_failure(
    stack: LocalStack, buckets: tuple[str, str]
) -> None:
    s3 = stack.source()
    s3.put_object(Bucket=buckets[0], Key="doomed/small", Body=b"x" * 100)
    s3.upload_fileobj(io.BytesIO(os.urandom(9 * MIB)), buckets[0], "doomed/large")
    s3.put_object(Bucket=buckets[0], Key="kept", Body=b"k")

    class DeletedAtTheSourceFirst(TransferEngine):
        """A user deletes the object between the listing and its copy."""

        def copy(self, obj: Any, cancel: Any = None) -> Any:
            if obj.key.startswith("doomed/"):
                s3.delete_object(Bucket=buckets[0], Key=obj.key)
            return super().copy(obj, cancel)

    settings = settings_for(stack, buckets).model_copy(update={"source_changed_restarts": 1})
    summary = migrate_with(settings, DeletedAtTheSourceFirst)
    assert summary.failures == []
    assert sorted(summary.gone) == ["doomed/large", "doomed/small"]
    assert summary.done == {"copy": 1}
    assert cli.exit_code(summary) == 0
    assert set(bucket_contents(stack.target(), buckets[1])) == {"kept"}


def test_metrics_print_the_runs_result_as_one_emf_line(stack: LocalStack, buckets: tuple[str, str]) -> None:
    """What the scheduled repair's alarm reads: one EMF document on stdout, with the repair's
    numbers (two keys missing on the target, both copied)."""
    fill(stack, buckets[0], 2)
    result = run_cli(stack, buckets, "--metrics")
    assert result.returncode == 0, result.stderr[-2000:]
    documents = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(documents) == 1
    document = documents[0]
    assert document["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "LyveReplicator"
    assert (document["DriftFound"], document["DriftRepaired"], document["DriftRemaining"]) == (2, 2, 0)
    assert document["ObjectsCompared"] == 2
