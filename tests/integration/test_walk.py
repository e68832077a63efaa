"""The listing core against real servers: SeaweedFS (tree order, its StartAfter quirk, the lean
ListObjectsV2 path) and moto's S3 (byte order, boto3), through `python -m migrate` and through
the walk itself with ranges split while listed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from local_stack.compare import list_keys
from local_stack.seaweed import SeaweedS3
from migrate import listing
from migrate.filters import KeyFilter
from migrate.keyspace import KeyRange, Order, key_before, start_after
from migrate.listing import StoreLister
from migrate.plan import Action, merge
from migrate.splitting import SplitBudget
from migrate.walk import Plan, Skipped, Walk, detect_order
from replicator.clients import Endpoint, build_clients
from replicator.lean_s3 import lean_path
from replicator.objects import ObjectInfo, timestamp
from replicator.settings import Settings
from tests.integration.support import moto_client, settings_for, settings_through
from tests.unit.test_keyspace import listed_after
from tests.unit.test_walk import assert_no_listing_threads, blake64, infos

pytestmark = pytest.mark.integration

# Names where tree and byte order disagree, a file beside a directory of its name, characters
# beyond one UTF-8 byte, spaces and "+" (both mean something in an encoded listing).
AWKWARD = [
    "a",
    "a/b",
    "a/b/c",
    "a-b",
    "a.b",
    "a b",
    "a+b",
    "a%2Bb",
    "d/sub",
    "d/sub/x",
    "d/sub/y/z",
    "d/sub-a",
    "d/sub.b",
    "d/suba",
    "zü/ä",
    "中文/文件",
    "😀/😀",
    "sp ace/k+1",
    "sp ace/k 2",
]


def clustered_keys() -> list[str]:
    """About 2,000 keys in the clusters buckets have: a flat run of sequential names, dated
    logs, siblings tree order puts apart, unicode, spaces and "+", long names."""
    keys = set(AWKWARD)
    keys.update(f"flat/{i:05d}.bin" for i in range(700))
    keys.update(f"logs/2025/{i % 12 + 1:02d}/{i % 28 + 1:02d}/{i}.json" for i in range(400))
    for j in range(40):
        keys.update((f"d/sub{j}", f"d/sub{j}/x{j}", f"d/sub{j}-{j}", f"d/sub{j}.{j}", f"d/sub{j}/y/{j}"))
    keys.update(f"{d}/{i}" for d in ("zü", "中文", "😀", "sp ace", "plus+") for i in range(60))
    keys.update(f"long/{'n' * 200}/{'m' * 200}/{i}" for i in range(50))
    return sorted(keys)


def body_of(key: str, version: str = "") -> bytes:
    return hashlib.sha256(f"{version}{key}".encode()).digest()[: len(key) % 37]


def put_all(client: Any, bucket: str, objects: dict[str, bytes]) -> None:
    """PUTs, 16 at a time; keys that name another key's folder one by one, after the others:
    SeaweedFS may keep only one of "a" and "a/b" when both are written at the same moment."""
    folders = {key[:i] for key in objects for i, char in enumerate(key) if char == "/"}

    def put(key: str) -> None:
        client.put_object(Bucket=bucket, Key=key, Body=objects[key])

    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, [key for key in objects if key not in folders]))
    for key in objects.keys() & folders:
        put(key)


@pytest.fixture(scope="module")
def pair(lyve: SeaweedS3) -> tuple[str, str, list[str]]:
    """Two SeaweedFS buckets holding the same clustered keys (the server goes with the module)."""
    name = uuid.uuid4().hex[:10]
    source, target = f"src-{name}", f"dst-{name}"
    client = lyve.client(max_pool_connections=32)
    keys = clustered_keys()
    objects = {key: body_of(key) for key in keys}
    for bucket in (source, target):
        client.create_bucket(Bucket=bucket)
        put_all(client, bucket, objects)
        assert sorted(list_keys(client, bucket)) == keys
    return source, target, keys


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of `python -m migrate` for these settings' ends."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SOURCE_", "TARGET_"))}
    secret = settings.source_secret_access_key
    target_secret = settings.target_secret_access_key
    assert settings.source_access_key_id and secret and settings.target_access_key_id and target_secret
    env.update(
        SOURCE_BUCKET=settings.source_bucket,
        SOURCE_ENDPOINT_URL=str(settings.source_endpoint_url),
        SOURCE_REGION="us-east-1",
        SOURCE_ACCESS_KEY_ID=settings.source_access_key_id.get_secret_value(),
        SOURCE_SECRET_ACCESS_KEY=secret.get_secret_value(),
        SOURCE_ADDRESSING_STYLE="path",
        TARGET_BUCKET=settings.target_bucket,
        TARGET_ENDPOINT_URL=str(settings.target_endpoint_url),
        TARGET_ACCESS_KEY_ID=settings.target_access_key_id.get_secret_value(),
        TARGET_SECRET_ACCESS_KEY=target_secret.get_secret_value(),
        ALLOW_HTTP_ENDPOINTS="true",
        LOG_LEVEL="WARNING",
        AWS_EC2_METADATA_DISABLED="true",
        **extra,
    )
    return env


def run_cli(settings: Settings, report: Path, *args: str, **extra: str) -> tuple[int, dict[str, Any], str]:
    result = subprocess.run(
        [sys.executable, "-m", "migrate", "--progress", "none", "--report", str(report), *args],
        env=cli_env(settings, **extra),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert report.exists(), result.stderr[-3000:]
    return result.returncode, json.loads(report.read_text()), result.stderr


def differences(report: dict[str, Any]) -> dict[str, str]:
    found = {d["key"]: d["difference"] for d in report["differences"]}
    assert len(found) == len(report["differences"]), "a key reported twice"
    return found


# -- SeaweedFS's listing, as the unit tests model it ---------------------------------------------


@pytest.fixture(scope="module")
def small(lyve: SeaweedS3) -> tuple[Settings, Endpoint]:
    """A bucket of the awkward keys only, reached as a migration's source."""
    name = uuid.uuid4().hex[:10]
    client = lyve.client()
    for bucket in (f"aw-{name}", f"aw2-{name}"):
        client.create_bucket(Bucket=bucket)
    put_all(client, f"aw-{name}", {key: body_of(key) for key in AWKWARD})
    settings = settings_for(lyve, f"aw-{name}", f"aw2-{name}")
    return settings, build_clients(settings).source


def store_listers(small: tuple[Settings, Endpoint]) -> list[StoreLister]:
    """The bucket's listing on the lean path, and through boto3."""
    settings, end = small
    lean = lean_path(end, settings)
    assert lean is not None
    return [StoreLister(end, lean), StoreLister(end)]


@pytest.mark.parametrize(
    "after",
    [
        None,
        "d/sub",  # a directory named exactly: SeaweedFS skips its keys
        "d/sub/",
        "a",
        "a/b",
        "d",
        key_before("d/sub"),
        start_after("d/sub", Order.TREE),
        start_after("d/sub/x", Order.TREE),
        start_after("a/b", Order.TREE),
        "zü",
        "😀",
    ],
)
@pytest.mark.parametrize("prefix", ["", "d/", "d/s", "d/sub", "a"])
def test_seaweedfs_lists_in_tree_order_with_its_start_after_quirk(
    small: tuple[Settings, Endpoint], prefix: str, after: str | None
) -> None:
    """The store the unit tests stand in for: the same keys, in the same order, from every
    StartAfter (three keys a page: continuation tokens too), on the lean path and through
    boto3."""
    expected = listed_after(AWKWARD, after, Order.TREE, prefix)
    for lister in store_listers(small):
        got = [e["Key"] for page in lister.pages(prefix, after, max_keys=3) for e in page]
        assert got == expected


def test_seaweedfs_is_known_to_list_in_tree_order(small: tuple[Settings, Endpoint]) -> None:
    for lister in store_listers(small):
        assert detect_order(lister) is Order.TREE
        assert lister.requests == 1  # a loopback host says nothing: one 1-key listing asked


@pytest.mark.parametrize("prefix", ["", "d/", "sp ace/", "zü/"])
def test_the_lean_listing_returns_what_boto3_returns(small: tuple[Settings, Endpoint], prefix: str) -> None:
    settings, end = small
    lean = lean_path(end, settings)
    assert lean is not None
    fields = ("Key", "Size", "ETag", "LastModified", "StorageClass")
    lean_pages: list[list[dict[str, Any]]] = []
    boto_pages: list[list[dict[str, Any]]] = []
    token: str | None = None
    while True:
        page = lean.list_objects(prefix, None, token, 4)
        lean_pages.append([{f: _normal(f, c.get(f)) for f in fields} for c in page["Contents"]])
        token = page.get("NextContinuationToken")
        assert bool(page["IsTruncated"]) == bool(token)
        assert page["Server"].startswith("SeaweedFS")
        if not token:
            break
    args: dict[str, Any] = {"Bucket": end.bucket, "Prefix": prefix, "MaxKeys": 4}
    while True:
        answer = end.client.list_objects_v2(**args)
        boto_pages.append([{f: _normal(f, c.get(f)) for f in fields} for c in answer.get("Contents", [])])
        if not answer.get("IsTruncated"):
            break
        args["ContinuationToken"] = answer["NextContinuationToken"]
    assert lean_pages == boto_pages
    assert sum(map(len, lean_pages)) == sum(1 for k in AWKWARD if k.startswith(prefix))


def _normal(field: str, value: Any) -> Any:
    """LastModified: text on the lean path, a datetime from boto3; the same instant."""
    return timestamp(value) if field == "LastModified" and value is not None else value


# -- a check of two SeaweedFS buckets --------------------------------------------------------------


def test_check_of_identical_buckets_then_of_exactly_the_differences_made(
    lyve: SeaweedS3, pair: tuple[str, str, list[str]], tmp_path: Path
) -> None:
    source, target, keys = pair
    settings = settings_for(lyve, source, target)
    code, report, stderr = run_cli(settings, tmp_path / "same.json", "--check")
    assert code == 0, stderr[-3000:]
    assert report["listing"]["order"] == "tree"
    assert report["listing"]["keys_compared"] == len(keys)
    assert report["differences"] == []
    digest = 0
    for key in keys:
        digest ^= blake64(key)
    assert report["listing"]["keys_digest"] == f"{digest:016x}"

    client = lyve.client(max_pool_connections=32)
    picked = keys[::41]  # across every cluster
    gone_on_target, gone_on_source, resized, rewritten = (picked[i::4] for i in range(4))
    expected = {k: "missing on target" for k in gone_on_target}
    expected |= {k: "extra on target" for k in gone_on_source}
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(lambda k: client.delete_object(Bucket=target, Key=k), gone_on_target))
        list(pool.map(lambda k: client.delete_object(Bucket=source, Key=k), gone_on_source))
    changed = {k: body_of(k) + b"longer" for k in resized}
    for key, body in changed.items():
        expected[key] = f"size {len(body_of(key))} -> {len(body)}"
    same_size = {k: body_of(k, "v2") for k in rewritten if body_of(k)}
    expected |= dict.fromkeys(same_size, "content differs")
    put_all(client, source, changed | same_size)

    code, report, stderr = run_cli(settings, tmp_path / "changed.json", "--check")
    assert code == 1, stderr[-3000:]
    assert differences(report) == expected
    assert report["listing"]["keys_compared"] == len(keys)


# -- the walk on SeaweedFS, ranges split while listed ------------------------------------------------


class Slowed:
    """A store's listing whose every page takes a while longer (a store far away): idle threads
    then split the ranges still being listed."""

    def __init__(self, inner: StoreLister, delay: float) -> None:
        self.inner, self.side, self.delay = inner, inner.side, delay
        self.requests = 0

    def pages(
        self, prefix: str, start_after: str | None, max_keys: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        for page in self.inner.pages(prefix, start_after, max_keys):
            self.requests = self.inner.requests
            time.sleep(self.delay)
            yield page

    def folders(self, prefix: str, start_after: str | None = None) -> tuple[list[str], list[str], bool]:
        return self.inner.folders(prefix, start_after)


def listed(end: Endpoint) -> list[ObjectInfo]:
    """The bucket as boto3 lists it, in byte order."""
    entries = [
        entry
        for page in end.client.get_paginator("list_objects_v2").paginate(Bucket=end.bucket)
        for entry in page.get("Contents", [])
    ]
    return infos({e["Key"]: {k: v for k, v in e.items() if k != "Key"} for e in entries})


def test_a_split_walk_over_seaweedfs_decides_what_one_merge_decides(
    lyve: SeaweedS3, pair: tuple[str, str, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(listing, "PAGE_KEYS", 40)  # many pages: many chances to split
    settings = settings_for(lyve, pair[0], pair[1])
    clients = build_clients(settings)
    source, target = (
        Slowed(StoreLister(end, lean_path(end, settings)), 0.005) for end in (clients.source, clients.target)
    )
    assert detect_order(source.inner) is Order.TREE
    walk = Walk(source, target, Plan(Order.TREE), KeyFilter(), [KeyRange()])
    walk.budget = SplitBudget(allowance=100)  # requests are no object here: splits are
    decisions = list(walk.decisions())
    assert_no_listing_threads()
    assert walk.stats.splits > 0
    expected = {d.key: d for d in merge(listed(clients.source), listed(clients.target), KeyFilter())}
    skipped = sum(item.keys for item in decisions if isinstance(item, Skipped))
    decided = [item for item in decisions if not isinstance(item, Skipped)]
    got = {d.key: d for d in decided}
    assert len(got) == len(decided), "a key decided twice"
    batched = {k for k, d in expected.items() if d.action is Action.SKIP and k not in got}
    assert len(batched) == skipped
    assert got == {k: d for k, d in expected.items() if k not in batched}
    assert walk.stats.merge.keys == len(expected)


# -- moto (byte order, boto3) to SeaweedFS (tree order) ------------------------------------------------


def test_a_byte_ordered_source_to_a_tree_ordered_target_copies_everything_once(
    lyve: SeaweedS3, moto_url: str, tmp_path: Path
) -> None:
    name = uuid.uuid4().hex[:10]
    source, target = f"src-{name}", f"dst-{name}"
    s3 = moto_client(moto_url)
    s3.create_bucket(Bucket=source)
    lyve.client().create_bucket(Bucket=target)
    # Lyve Cloud holds no object beside a folder of its name ("a" and "a/b"): none here.
    folders = {key[:i] for key in AWKWARD for i, char in enumerate(key) if char == "/"}
    keys = [key for key in AWKWARD if key not in folders]
    keys += [f"flat/{i:04d}" for i in range(150)]
    keys += [f"d/sub{i}/x" for i in range(30)] + [f"d/sub{i}-a" for i in range(30)]
    objects = {key: body_of(key) for key in keys}
    put_all(s3, source, objects)
    settings = settings_through(moto_url, ("testing", "testing"), lyve, (source, target))

    code, report, stderr = run_cli(settings, tmp_path / "first.json", LEAN_REQUESTS="false")
    assert code == 0, stderr[-3000:]
    assert report["listing"]["order"] == "sorted"
    assert report["done"].get("copy") == len(keys)
    assert report["failures"] == []
    copied = lyve.client()
    assert sorted(list_keys(copied, target)) == sorted(keys)
    for key in keys[:: len(keys) // 20]:
        assert copied.get_object(Bucket=target, Key=key)["Body"].read() == objects[key]

    code, report, stderr = run_cli(settings, tmp_path / "again.json", LEAN_REQUESTS="false")
    assert code == 0, stderr[-3000:]
    assert report["done"].get("copy", 0) == 0
    assert report["done"].get("replace", 0) == 0
    assert report["done"].get("skip") == len(keys)
    assert report["listing"]["keys_compared"] == len(keys)
