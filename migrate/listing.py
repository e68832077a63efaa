"""Bucket listings in one key order, with memory that does not grow with the bucket.

S3 lists keys in UTF-8 byte order, and the merge relies on it. Some S3-compatible stores list in
another order (SeaweedFS walks its directory tree: "a/b" before "a-c"). `in_byte_order` notices
that, and the caller then re-reads that side through `sorted_on_disk`, an SQLite spill file.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from replicator.clients import Endpoint
from replicator.objects import ObjectInfo


class ListingOrderError(Exception):
    def __init__(self, side: str, previous: str, key: str) -> None:
        super().__init__(f"the {side} listing is not in byte order ({key!r} after {previous!r})")
        self.side = side


FIRST_PAGE_KEYS = 100  # a short first page: the first copies start while the rest is listed
PAGE_KEYS = 1000


def list_bucket(endpoint: Endpoint, prefix: str = "") -> Iterator[ObjectInfo]:
    args: dict[str, Any] = {"Bucket": endpoint.bucket, "Prefix": prefix, "MaxKeys": FIRST_PAGE_KEYS}
    while True:
        page = endpoint.client.list_objects_v2(**args)
        for entry in page.get("Contents", []):
            yield ObjectInfo.from_listing(entry)
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")
        if not token:
            raise RuntimeError(f"the {endpoint.name} listing is truncated but gives no continuation token")
        args.update(ContinuationToken=token, MaxKeys=PAGE_KEYS)


def sort_key(key: str) -> bytes:
    return key.encode("utf-8")


def in_byte_order(listing: Iterable[ObjectInfo], side: str) -> Iterator[ObjectInfo]:
    previous: bytes | None = None
    previous_key = ""
    for obj in listing:
        current = sort_key(obj.key)
        if previous is not None and current <= previous:
            raise ListingOrderError(side, previous_key, obj.key)
        previous, previous_key = current, obj.key
        yield obj


def sorted_on_disk(listing: Iterable[ObjectInfo], directory: str | None = None) -> Iterator[ObjectInfo]:
    """Spill a listing to SQLite and read it back in byte order (BLOB keys sort by memcmp)."""
    fd, name = tempfile.mkstemp(prefix="listing-", suffix=".sqlite", dir=directory)
    os.close(fd)
    path = Path(name)
    try:
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute("CREATE TABLE objects (k BLOB PRIMARY KEY, size INTEGER, etag TEXT) WITHOUT ROWID")
        batch: list[tuple[bytes, int, str]] = []
        for obj in listing:
            batch.append((sort_key(obj.key), obj.size, obj.etag))
            if len(batch) >= 10_000:
                db.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)", batch)
                batch.clear()
        db.executemany("INSERT OR REPLACE INTO objects VALUES (?, ?, ?)", batch)
        db.commit()
        for key, size, etag in db.execute("SELECT k, size, etag FROM objects ORDER BY k"):
            yield ObjectInfo(key=key.decode("utf-8"), size=size, etag=etag, complete=False)
        db.close()
    finally:
        path.unlink(missing_ok=True)
