"""The lean listing's page reader on the pages real stores send: SeaweedFS (standing in for Lyve
Cloud) and moto's S3 (standing in for AWS), listing keys with characters XML and URL encoding
treat specially, in pages of every kind (one page, pages with continuation tokens, a delimiter's
CommonPrefixes). The scanner reads every page itself, as the ElementTree reader reads it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from local_stack.seaweed import SeaweedS3
from replicator import lean_s3
from replicator.clients import build_clients
from replicator.lean_s3 import LeanS3, lean_path
from tests.integration.support import drop_bucket, moto_client, settings_for, settings_through

pytestmark = pytest.mark.integration

KEYS = [
    "a",
    "a b+c&d<e>\"q'",
    "amp&amp;lt<",
    "%41%2B",
    "t\tab",
    "d/sub/x",
    "d/sub y/z",
    "zü/ä",
    "中文/文件",
    "😀/😀",
    "images/11e517/00f7b02b7bd08a59b22597283.jpg",
    f"long/{'n' * 200}/{'m' * 40}",
]
# Pages of every kind: (prefix, keys a page, delimiter).
LISTINGS = [("", 1000, None), ("", 3, None), ("", 1000, "/"), ("d/", 2, "/")]


def read_pages(
    lean: LeanS3, monkeypatch: pytest.MonkeyPatch, attributes: tuple[str, ...] = ()
) -> list[bytes]:
    """The raw pages of each listing, as the store sent them."""
    pages: list[bytes] = []
    reader = lean_s3._list_page

    def recorded(data: bytes, server: str) -> dict[str, Any]:
        pages.append(data)
        return reader(data, server)

    monkeypatch.setattr(lean_s3, "_list_page", recorded)
    for prefix, max_keys, delimiter in LISTINGS:
        token = None
        while True:
            page = lean.list_objects(prefix, None, token, max_keys, attributes, delimiter)
            token = page.get("NextContinuationToken")
            if not token:
                break
    return pages


def assert_scanned_as_the_tree_reads(pages: list[bytes], server: str) -> None:
    assert len(pages) > len(LISTINGS)
    for data in pages:
        assert lean_s3._scan_page(data, server) == lean_s3._list_page_tree(data, server)
    listed = lean_s3._scan_page(pages[0], server)
    assert sorted(entry["Key"] for entry in listed["Contents"]) == sorted(KEYS)


@pytest.fixture
def seaweedfs_lean(lyve: SeaweedS3) -> Iterator[LeanS3]:
    name = uuid.uuid4().hex[:10]
    admin = lyve.client()
    for bucket in (f"lp-{name}", f"lp2-{name}"):
        admin.create_bucket(Bucket=bucket)
    for key in KEYS:
        admin.put_object(Bucket=f"lp-{name}", Key=key, Body=key.encode()[:7])
    settings = settings_for(lyve, f"lp-{name}", f"lp2-{name}")
    lean = lean_path(build_clients(settings).source, settings)
    assert lean is not None
    try:
        yield lean
    finally:
        for bucket in (f"lp-{name}", f"lp2-{name}"):
            drop_bucket(admin, bucket)


def test_seaweedfs_pages_are_scanned_as_the_tree_reads_them(
    seaweedfs_lean: LeanS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = read_pages(seaweedfs_lean, monkeypatch)
    assert_scanned_as_the_tree_reads(pages, "SeaweedFS")
    assert any(b"&#34;" in page for page in pages)  # its ETags' quotes are references


def test_moto_pages_are_scanned_as_the_tree_reads_them(
    moto_url: str, lyve: SeaweedS3, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = uuid.uuid4().hex[:10]
    aws = moto_client(moto_url)
    aws.create_bucket(Bucket=f"aws-{name}")
    for key in KEYS:
        aws.put_object(Bucket=f"aws-{name}", Key=key, Body=key.encode()[:7])
    aws.put_object(Bucket=f"aws-{name}", Key="d/sub/x", Body=b"cold", StorageClass="GLACIER")
    settings = settings_through(moto_url, ("testing", "testing"), lyve, (f"aws-{name}", f"dst-{name}"))
    lean = lean_path(build_clients(settings).source, settings)
    assert lean is not None
    pages = read_pages(lean, monkeypatch, ("RestoreStatus",))
    assert_scanned_as_the_tree_reads(pages, "amazon.com")
    classes = {e["Key"]: e.get("StorageClass") for e in lean_s3._scan_page(pages[0], "")["Contents"]}
    assert classes["d/sub/x"] == "GLACIER"
