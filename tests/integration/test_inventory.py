"""`python -m migrate --source-inventory`: an S3 Inventory report instead of listing the source.

moto (over HTTP) is the AWS source and holds the report, written as S3 writes one; SeaweedFS is
the target. A proxy in front of the source records every request the migration makes."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import boto3
import pytest

from local_stack.aws import FAKE_KEY, REGION
from local_stack.compare import bucket_contents
from local_stack.fault_proxy import FaultPlan, FaultProxy
from local_stack.stack import LocalStack
from migrate import cli
from migrate.inventory import open_inventory
from tests.unit.test_inventory import Report, Row, csv_gz

pytestmark = pytest.mark.integration
MIB = 1024 * 1024
SCHEMA = "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded"


class RecordingProxy(FaultProxy):
    """Forwards every request unchanged and records (method, path with query)."""

    def __init__(self, upstream: str) -> None:
        super().__init__(upstream, FaultPlan())
        self.seen: list[tuple[str, str]] = []

    def handle(self, request: Any) -> None:
        self.seen.append((request.command, request.path))
        super().handle(request)

    def listings_of(self, bucket: str) -> list[str]:
        return [
            path
            for method, path in self.seen
            if method == "GET" and path.split("?")[0].rstrip("/") == f"/{bucket}" and "list-type=2" in path
        ]


@pytest.fixture
def buckets(stack: LocalStack) -> tuple[str, str, str]:
    """A source bucket and the bucket its inventory reports go to (moto), a target (SeaweedFS)."""
    name = uuid.uuid4().hex[:10]
    source, reports, target = f"src-{name}", f"inv-{name}", f"dst-{name}"
    stack.source().create_bucket(Bucket=source)
    stack.source().create_bucket(Bucket=reports)
    stack.target().create_bucket(Bucket=target)
    return source, reports, target


@pytest.fixture
def proxy(stack: LocalStack) -> Iterator[RecordingProxy]:
    with RecordingProxy(stack.aws.endpoint_url) as recording:
        yield recording


def publish_inventory(stack: LocalStack, source: str, reports: str, keys: list[str] | None = None) -> str:
    """The source's objects now (or those of `keys`), as an inventory report in two data files
    (rows shuffled, as S3's files are not in key order relative to each other); returns the
    manifest's URI."""
    s3 = stack.source()
    rows = [
        Row(
            entry["Key"],
            entry["Size"],
            entry["ETag"].strip('"'),
            entry["LastModified"],
            entry.get("StorageClass", "STANDARD"),
            bucket=source,
        )
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=source)
        for entry in page.get("Contents", [])
        if keys is None or entry["Key"] in keys
    ]
    random.Random(3).shuffle(rows)
    half = len(rows) // 2
    report = Report(
        [csv_gz(rows[:half], SCHEMA), csv_gz(rows[half:], SCHEMA, encode_slash=True)],
        schema=SCHEMA,
        source_bucket=source,
        destination=reports,
        prefix="reports",
        config="daily",
        created=datetime.now(UTC),
    )
    return report.put(s3)


def fill(stack: LocalStack, bucket: str) -> dict[str, bytes]:
    rng = random.Random(5)
    s3 = stack.source()
    made: dict[str, bytes] = {}
    for i in range(40):
        key = rng.choice(["a/", "a-", "b/c/", "", "z\u00fc/", "sp ace/"]) + f"obj+{i}%.bin"
        made[key] = rng.randbytes(rng.choice([0, 1, 700, 65_536]))
        s3.put_object(Bucket=bucket, Key=key, Body=made[key])
    made["large/multipart.bin"] = os.urandom(9 * MIB + 5)
    s3.upload_fileobj(io.BytesIO(made["large/multipart.bin"]), bucket, "large/multipart.bin")
    return made


def migrate(
    stack: LocalStack,
    buckets: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
    *args: str,
    source_endpoint: str | None = None,
) -> int:
    """`python -m migrate ARGS` in this process, the source reached through `source_endpoint`."""
    for name in list(os.environ):
        if name.startswith(("AWS_", "SOURCE_", "TARGET_")):
            monkeypatch.delenv(name)
    env = stack.env(SOURCE_BUCKET=buckets[0], TARGET_BUCKET=buckets[2], LOG_LEVEL="WARNING")
    if source_endpoint:
        env["SOURCE_ENDPOINT_URL"] = source_endpoint
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        return cli.main(["--progress", "none", "--processes", "1", *args])
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


def test_a_migration_from_an_inventory_copies_what_it_lists_without_listing_the_source(
    stack: LocalStack,
    buckets: tuple[str, str, str],
    proxy: RecordingProxy,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    source, reports, target = buckets
    s3 = stack.source()
    made = fill(stack, source)
    s3.put_object(Bucket=source, Key="gone/deleted-since", Body=b"soon gone")
    manifest = publish_inventory(stack, source, reports)
    # The bucket moves on after the report: one key deleted, one created, one rewritten.
    s3.delete_object(Bucket=source, Key="gone/deleted-since")
    s3.put_object(Bucket=source, Key="new/after-inventory", Body=b"fresh")
    rewritten = next(key for key in made if key.startswith("a/"))
    made[rewritten] = b"rewritten after the report"
    s3.put_object(Bucket=source, Key=rewritten, Body=made[rewritten])

    report = tmp_path / "report.json"
    code = migrate(
        stack,
        buckets,
        monkeypatch,
        "--source-inventory",
        manifest,
        "--report",
        str(report),
        source_endpoint=proxy.endpoint_url,
    )
    data = json.loads(report.read_text())
    assert code == 0, data
    assert data["failures"] == []
    assert data["gone_since_listed"] == ["gone/deleted-since"]
    assert data["done"] == {"copy": len(made)}
    # The inventory is the listing: the source saw no LIST request but the one-key look that
    # confirmed the deleted key gone.
    probes = [parse_qs(urlsplit(path).query) for path in proxy.listings_of(source)]
    assert [(probe["prefix"], probe["max-keys"]) for probe in probes] == [(["gone/deleted-since"], ["1"])]
    assert data["listing"]["source_requests"] == 0
    assert data["listing"]["inventory_created"] is not None

    copied = stack.target()
    assert set(bucket_contents(copied, target)) == set(made)
    for key, body in made.items():
        assert copied.get_object(Bucket=target, Key=key)["Body"].read() == body, key

    # A check that lists the source now finds exactly the key created after the report.
    check = tmp_path / "check.json"
    assert migrate(stack, buckets, monkeypatch, "--check", "--report", str(check)) == 1
    assert json.loads(check.read_text())["differences"] == [
        {"key": "new/after-inventory", "difference": "missing on target"}
    ]


def test_with_delete_a_key_the_source_holds_now_is_kept_though_the_inventory_lacks_it(
    stack: LocalStack,
    buckets: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    source, reports, target = buckets
    s3 = stack.source()
    lyve = stack.target()
    for key in ("keep/1", "keep/2", "kept/source-again"):
        s3.put_object(Bucket=source, Key=key, Body=key.encode())
    lyve.put_object(Bucket=target, Key="stale/target-only", Body=b"old")
    lyve.put_object(Bucket=target, Key="kept/source-again", Body=b"kept/source-again")
    time.sleep(1.1)  # listings tell time to the second: the report is taken clearly after
    manifest = publish_inventory(stack, source, reports, keys=["keep/1", "keep/2"])
    time.sleep(1.1)
    # Created at the source after the report, and already replicated by the event pipeline.
    s3.put_object(Bucket=source, Key="later/created", Body=b"new")
    lyve.put_object(Bucket=target, Key="later/created", Body=b"new")

    report = tmp_path / "report.json"
    code = migrate(
        stack, buckets, monkeypatch, "--source-inventory", manifest, "--delete", "--report", str(report)
    )
    data = json.loads(report.read_text())
    assert code == 0, data
    # Older than the report and not in it, but at the source now: checked there, kept.
    assert data["deletes_skipped_source_has_key_again"] == ["kept/source-again"]
    # Written after the report: the pipeline's, not even a delete candidate.
    assert data["listing"]["newer_than_inventory"] == 1
    assert data["done"] == {"copy": 2, "delete": 1}
    assert set(bucket_contents(lyve, target)) == {"keep/1", "keep/2", "later/created", "kept/source-again"}
    assert lyve.get_object(Bucket=target, Key="later/created")["Body"].read() == b"new"


def test_an_inventory_of_another_bucket_is_refused_before_anything_is_copied(
    stack: LocalStack,
    buckets: tuple[str, str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    source, reports, target = buckets
    stack.source().put_object(Bucket=reports, Key="x", Body=b"x")  # a bucket with one object
    manifest = publish_inventory(stack, reports, reports)  # the report of the wrong bucket
    code = migrate(stack, buckets, monkeypatch, "--source-inventory", manifest)
    assert code == 2
    err = capsys.readouterr().err
    assert f"is of bucket {reports!r}, not of the migration's source bucket {source!r}" in err
    assert "Traceback" not in err
    assert bucket_contents(stack.target(), target) == {}


def test_inventory_entries_equal_the_sources_own_listing(
    stack: LocalStack, buckets: tuple[str, str, str], proxy: RecordingProxy, tmp_path: Path
) -> None:
    """The report read over HTTP gives what ListObjectsV2 gives for the same objects, in the
    same order, page for page."""
    source, reports, _ = buckets
    fill(stack, source)
    manifest = publish_inventory(stack, source, reports)
    listed = stack.source().list_objects_v2(Bucket=source)["Contents"]
    fields = ("Key", "Size", "ETag", "LastModified", "StorageClass")
    client = boto3.client(
        "s3",
        endpoint_url=proxy.endpoint_url,
        region_name=REGION,
        aws_access_key_id=FAKE_KEY,
        aws_secret_access_key=FAKE_KEY,
    )
    with open_inventory(manifest, client, source, directory=str(tmp_path)) as inventory:
        pages = list(inventory.pages("", None, max_keys=7))
        assert (inventory.keys, inventory.requests, inventory.files_read) == (len(listed), 0, 3)
    assert [len(page) for page in pages] == [7] * (len(listed) // 7) + [len(listed) % 7]
    assert [{f: e[f] for f in fields} for page in pages for e in page] == [
        {f: e[f] for f in fields} for e in listed
    ]
    assert proxy.listings_of(source) == []
    assert list(tmp_path.iterdir()) == []
