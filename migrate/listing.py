"""Bucket listings: a store's pages (`StoreLister`), a side sorted on disk when it lists in no
known order (`sorted_entries_on_disk`), keys on disk in no particular order (`KeySet`), and the
fresh look at the source that a delete needs (`listed_now`)."""

from __future__ import annotations

import http.client
import os
import sqlite3
import tempfile
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from botocore.exceptions import ClientError

from migrate.keyspace import key_before
from migrate.keyspace import shared_prefix as common_prefix
from replicator.aws_endpoint import on_aws
from replicator.clients import Endpoint
from replicator.errors import SourceBucketMissingError, describe, error_code, request_retrying
from replicator.lean_http import LeanUnsupported
from replicator.lean_s3 import LeanS3
from replicator.logs import get_logger
from replicator.objects import ObjectInfo, timestamp

log = get_logger("migrate.listing")


class ListingOrderError(Exception):
    def __init__(self, side: str, previous: str, key: str) -> None:
        super().__init__(f"the {side} listing is not in byte order ({key!r} after {previous!r})")
        self.side = side


FIRST_PAGE_KEYS = 100  # a short first page: the first copies start while the rest is listed
PAGE_KEYS = 1000


def _missing_source(endpoint: Endpoint, exc: ClientError) -> SourceBucketMissingError | None:
    """Never an empty listing: an empty source would turn --delete into "delete all"."""
    if error_code(exc) == "NoSuchBucket" and endpoint.name == "source":
        return SourceBucketMissingError(
            f"the source bucket {endpoint.bucket!r} at {endpoint.url} does not exist"
        )
    return None


def _page(endpoint: Endpoint, args: dict[str, Any]) -> Any:
    try:
        return endpoint.client.list_objects_v2(**args)
    except ClientError as exc:
        missing = _missing_source(endpoint, exc)
        if missing is not None:
            raise missing from None
        raise


def list_entries(endpoint: Endpoint, prefix: str = "") -> Iterator[Mapping[str, Any]]:
    """The raw ListObjectsV2 entries (Key, Size, ETag, LastModified, StorageClass, ...)."""
    for page in StoreLister(endpoint).pages(prefix, None, FIRST_PAGE_KEYS):
        yield from page


Pages = Iterator[list[dict[str, Any]]]  # ListObjectsV2 entries, a page at a time


class Lister(Protocol):
    """Pages of one side's keys: every key under `prefix` after `start_after`, in the store's
    order, as ListObjectsV2 entries (Key, Size, ETag, LastModified, StorageClass)."""

    side: str
    requests: int

    def pages(self, prefix: str, start_after: str | None, max_keys: int = PAGE_KEYS) -> Pages: ...


class StoreLister:
    """A store's listing: ListObjectsV2 on the lean HTTP path when the endpoint allows it (a
    page costs a tenth of the CPU), else boto3; counts its requests and notes the store's
    Server header (the hint to its listing order)."""

    def __init__(self, endpoint: Endpoint, lean: LeanS3 | None = None, attempts: int = 3) -> None:
        self.endpoint = endpoint
        # Throttling and 5xx answers are tried again (the lean path has no botocore retries):
        # one 503 SlowDown must not stop a listing of 10^9 keys.
        self._retry = request_retrying(attempts)
        self.side = endpoint.name
        self.requests = 0
        self.server = ""
        self._lean = lean
        self._count = threading.Lock()
        self._primed: tuple[str, str | None, Any] | None = None
        # Restored archived objects are readable: S3 says which, in the listing, when asked.
        # Other stores may refuse the header, and have no archive classes to restore from.
        self._attributes: tuple[str, ...] = ("RestoreStatus",) if on_aws(endpoint) else ()

    def pages(
        self, prefix: str, start_after: str | None, max_keys: int = PAGE_KEYS
    ) -> Iterator[list[dict[str, Any]]]:
        token: str | None = None
        page = self._take_primed(prefix, start_after) if max_keys == PAGE_KEYS else None
        while True:
            if page is None:
                page = self._page(prefix, start_after, token, max_keys)
            yield page.get("Contents", [])
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise RuntimeError(f"the {self.side} listing is truncated but gives no continuation token")
            max_keys = PAGE_KEYS
            page = None

    def prime(self, prefix: str, start_after: str | None) -> None:
        """Fetch the first page of a listing now (its answer names the store's Server); the
        `pages` call that asks for that listing later starts with it, without a request."""
        page = self._page(prefix, start_after, None, PAGE_KEYS)
        with self._count:
            self._primed = (prefix, start_after, page)

    def _take_primed(self, prefix: str, start_after: str | None) -> Any:
        with self._count:
            primed, self._primed = self._primed, None
        if primed is not None and primed[:2] == (prefix, start_after):
            return primed[2]
        return None  # asked for another listing: that page is not this one's

    def folders(self, prefix: str, start_after: str | None = None) -> tuple[list[str], list[str], bool]:
        """One page of the folder `prefix` listed with Delimiter "/" (after `start_after`): the
        keys directly in it, its subfolders (each ending in "/"), and whether there is more."""
        page = self._page(prefix, start_after, None, PAGE_KEYS, "/")
        files = [entry["Key"] for entry in page.get("Contents", [])]
        folders = [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
        return files, folders, bool(page.get("IsTruncated"))

    def _page(
        self,
        prefix: str,
        start_after: str | None,
        token: str | None,
        max_keys: int,
        delimiter: str | None = None,
    ) -> Any:
        with self._count:
            self.requests += 1
        try:
            page = self._retry(lambda: self._request(prefix, start_after, token, max_keys, delimiter))
        except ClientError as exc:
            missing = _missing_source(self.endpoint, exc)
            if missing is not None:
                raise missing from None
            if error_code(exc) != "AccessDenied" or not self._attributes:
                raise
            # A policy may allow listing but not the optional attributes: list without them
            # (a restored object is then taken for archived).
            log.warning("listing_without_restore_status", error=describe(exc))
            self._attributes = ()
            return self._page(prefix, start_after, token, max_keys, delimiter)
        if not self.server:
            self.server = str(page.get("Server") or "")
        return page

    def _request(
        self, prefix: str, start_after: str | None, token: str | None, max_keys: int, delimiter: str | None
    ) -> Any:
        lean = self._lean
        if lean is not None:
            try:
                return lean.list_objects(prefix, start_after, token, max_keys, self._attributes, delimiter)
            except LeanUnsupported as exc:
                log.info("lean_listing_off", side=self.side, reason=str(exc))
                self._lean = None
            except (OSError, http.client.HTTPException, ET.ParseError) as exc:
                # A transport error or a page cut short: this page goes through boto3 and its
                # retry policy.
                log.debug("lean_listing_retried", side=self.side, error=describe(exc))
        args: dict[str, Any] = {"Bucket": self.endpoint.bucket, "Prefix": prefix, "MaxKeys": max_keys}
        if start_after is not None:
            args["StartAfter"] = start_after
        if token is not None:
            args["ContinuationToken"] = token
        if delimiter is not None:
            args["Delimiter"] = delimiter
        if self._attributes:
            args["OptionalObjectAttributes"] = list(self._attributes)
        page: dict[str, Any] = dict(self.endpoint.client.list_objects_v2(**args))
        page["Server"] = page.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("server", "")
        return page


def list_bucket(endpoint: Endpoint, prefix: str = "") -> Iterator[ObjectInfo]:
    return map(ObjectInfo.from_listing, list_entries(endpoint, prefix))


def sort_key(key: str) -> bytes:
    return key.encode("utf-8")


def shared_prefix(keys: Iterable[str]) -> str:
    """The longest string every key starts with (characters, not path components)."""
    keys = list(keys)
    return common_prefix(min(keys), max(keys)) if keys else ""  # the extremes' is everyone's


def sorted_on_disk(
    entries: Iterable[Mapping[str, Any]],
    directory: str | None = None,
    order_key: Callable[[str], bytes] = lambda key: key.encode("utf-8"),
) -> Iterator[ObjectInfo]:
    return map(ObjectInfo.from_listing, sorted_entries_on_disk(entries, directory, order_key))


def sorted_entries_on_disk(
    entries: Iterable[Mapping[str, Any]],
    directory: str | None = None,
    order_key: Callable[[str], bytes] = lambda key: key.encode("utf-8"),
) -> Iterator[dict[str, Any]]:
    """`entries` spilled to disk and read back in byte order (ListingSpill), the file removed
    when the reader is done or stops."""
    with ListingSpill(directory, order_key) as spill:
        spill.fill(entries)
        yield from spill.rows()


class ListingSpill:
    """Listing entries in SQLite, read back in byte order (BLOB keys sort by memcmp) as often as
    asked: a listing spilled once can serve several readers, each at its own pace. Every field
    the filters and the merge use survives: size, ETag, LastModified, StorageClass, restore
    state; `ObjectInfo.from_listing` builds the objects on both paths."""

    def __init__(
        self,
        directory: str | None = None,
        order_key: Callable[[str], bytes] = lambda key: key.encode("utf-8"),
    ) -> None:
        fd, name = tempfile.mkstemp(prefix="listing-", suffix=".sqlite", dir=directory)
        os.close(fd)
        self.path = Path(name)
        self._order_key = order_key
        try:
            # Filled by a listing thread, then read by the merge's thread once the fill is over:
            # one thread at a time, never together.
            self._db = sqlite3.connect(self.path, check_same_thread=False)
        except BaseException:
            self.path.unlink(missing_ok=True)
            raise
        try:
            self._db.execute("PRAGMA journal_mode=OFF")
            self._db.execute("PRAGMA synchronous=OFF")
            self._db.execute(
                "CREATE TABLE objects (o BLOB PRIMARY KEY, k TEXT, size INTEGER, etag TEXT, modified TEXT,"
                " class TEXT, restoring INTEGER) WITHOUT ROWID"
            )
        except BaseException:
            self.close()
            raise

    def fill(self, entries: Iterable[Mapping[str, Any]]) -> None:
        """Add `entries` (ListObjectsV2's fields). A malformed one fails here, where the listing
        is read, not later in some reader's merge."""
        insert = "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?, ?)"
        batch: list[tuple[bytes, str, int, str | None, str | None, str | None, bool | None]] = []
        for entry in entries:
            modified = entry.get("LastModified")
            if isinstance(modified, str) and modified:
                timestamp(modified)  # readable later
            restore = entry.get("RestoreStatus")
            batch.append(
                (
                    self._order_key(entry["Key"]),
                    entry["Key"],
                    int(entry["Size"]),
                    entry.get("ETag"),
                    modified.isoformat() if isinstance(modified, datetime) else modified,
                    entry.get("StorageClass"),
                    bool(restore.get("IsRestoreInProgress")) if restore else None,
                )
            )
            if len(batch) >= 10_000:
                self._db.executemany(insert, batch)
                batch.clear()
        self._db.executemany(insert, batch)
        self._db.commit()

    def rows(self) -> Iterator[dict[str, Any]]:
        """The entries in byte order; each call is a reader of its own."""
        for key, size, etag, modified, storage_class, restoring in self._db.execute(
            "SELECT k, size, etag, modified, class, restoring FROM objects ORDER BY o"
        ):
            row: dict[str, Any] = {"Key": key, "Size": size, "ETag": etag}
            if modified is not None:
                row["LastModified"] = modified  # text: objects.timestamp reads it when needed
            if storage_class is not None:
                row["StorageClass"] = storage_class
            if restoring is not None:
                row["RestoreStatus"] = {"IsRestoreInProgress": bool(restoring)}
            yield row

    def close(self) -> None:
        self._db.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> ListingSpill:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# -- confirming absence before a delete ------------------------------------------------------


def listed_now(endpoint: Endpoint, keys: Sequence[str]) -> set[str]:
    """Which of `keys` (distinct, in byte order) the endpoint lists now.

    Fresh ListObjectsV2 requests, one directory (`/` level) at a time with Delimiter="/". Each
    request starts just below the first key not yet settled; a truncated page settles the keys
    up to its last file, and up to its last common prefix without the "/". Within a directory
    SeaweedFS lists entries by name, so the directory `d/sub/` comes before the file `d/sub-a`,
    which byte order puts first: the "/" is left out because a listed directory proves only
    that names up to its own name were listed. A dense run of keys costs one request per 1,000,
    scattered keys at most one request each (as a HEAD each would). Raises ListingOrderError
    when an answer is not in byte order: such a listing must not be trusted to prove absence.
    """
    by_directory: dict[str, list[str]] = {}
    for key in keys:
        by_directory.setdefault(key[: key.rfind("/") + 1], []).append(key)
    present: set[str] = set()
    for names in by_directory.values():
        present |= _listed_in_directory(endpoint, names)
    return present


def _ascending(items: Iterable[str], after: bytes, side: str) -> bytes:
    previous, previous_key = after, ""
    for item in items:
        current = sort_key(item)
        if current <= previous:
            raise ListingOrderError(side, previous_key, item)
        previous, previous_key = current, item
    return previous


def _settled_by(contents: Sequence[str], prefixes: Sequence[str]) -> bytes:
    """The highest key a truncated page proves listed: its last file, or its last directory's
    name without the "/" (each list is in byte order)."""
    bounds = [sort_key(contents[-1])] if contents else []
    if prefixes:
        bounds.append(sort_key(prefixes[-1].removesuffix("/")))
    return max(bounds, default=b"")


def _listed_in_directory(endpoint: Endpoint, keys: Sequence[str]) -> set[str]:
    wanted = set(keys)
    present: set[str] = set()
    index = 0
    args: dict[str, Any] | None = None
    after_content = after_prefix = settled = b""
    while index < len(keys):
        if args is None:  # a fresh request, just below the first key not settled yet
            start = key_before(keys[index])
            args = {
                "Bucket": endpoint.bucket,
                "Prefix": shared_prefix((keys[index], keys[-1])),
                "Delimiter": "/",
                "StartAfter": start,
                "MaxKeys": PAGE_KEYS,
            }
            after_content = after_prefix = sort_key(start)
        page = _page(endpoint, args)
        contents = [entry["Key"] for entry in page.get("Contents", [])]
        prefixes = [entry["Prefix"] for entry in page.get("CommonPrefixes", [])]
        present.update(key for key in contents if key in wanted)
        after_content = _ascending(contents, after_content, endpoint.name)
        after_prefix = _ascending(prefixes, after_prefix, endpoint.name)
        if not page.get("IsTruncated"):
            return present  # the listing reached the end of the prefix every key left shares
        if not contents and not prefixes:
            raise RuntimeError(f"the {endpoint.name} listing is truncated but empty")
        settled = max(settled, _settled_by(contents, prefixes))
        while index < len(keys) and sort_key(keys[index]) <= settled:
            index += 1
        if index == len(keys):
            break
        # Jump over the keys in between only when the listing has not reached the next key
        # yet; otherwise page on (a store in name order may still list it).
        if sort_key(key_before(keys[index])) > max(after_content, after_prefix):
            args = None
        else:
            token = page.get("NextContinuationToken")
            if not token:
                raise RuntimeError(f"the {endpoint.name} listing is truncated without a continuation token")
            args["ContinuationToken"] = token
    return present


class KeySet:
    """Keys (with a size) on disk, in no particular order when added; read back in byte order,
    and asked for membership by index: decisions arrive from ranges listed in parallel."""

    def __init__(self, directory: str | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix="keyset-", suffix=".sqlite", dir=directory)
        os.close(fd)
        self.path = Path(name)
        self.count = 0
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=OFF")
        self._db.execute("PRAGMA synchronous=OFF")
        self._db.execute("CREATE TABLE keys (k BLOB PRIMARY KEY, size INTEGER) WITHOUT ROWID")

    def add(self, key: str, size: int = 0) -> None:
        cursor = self._db.execute("INSERT OR IGNORE INTO keys VALUES (?, ?)", (sort_key(key), size))
        self.count += cursor.rowcount

    def __contains__(self, key: object) -> bool:
        assert isinstance(key, str)
        return self._db.execute("SELECT 1 FROM keys WHERE k = ?", (sort_key(key),)).fetchone() is not None

    def __iter__(self) -> Iterator[tuple[str, int]]:
        for key, size in self._db.execute("SELECT k, size FROM keys ORDER BY k"):
            yield key.decode("utf-8"), size

    def remove(self) -> None:
        self._db.close()
        self.path.unlink(missing_ok=True)
