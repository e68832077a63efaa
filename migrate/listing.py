"""Bucket listings in one key order, with memory that does not grow with the bucket.

S3 lists keys in UTF-8 byte order, and the merge relies on it. Some S3-compatible stores list in
another order (SeaweedFS walks its directory tree: "a/b" before "a-c"). `in_byte_order` notices
that, and the caller then re-reads that side through `sorted_on_disk`, an SQLite spill file.
`KeyFile` keeps a key-ordered list of keys on disk (deletes to carry out, keys already handled).
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import IO, Any

from botocore.exceptions import ClientError

from replicator.aws_endpoint import on_aws
from replicator.clients import Endpoint
from replicator.errors import SourceBucketMissingError, describe, error_code
from replicator.logs import get_logger
from replicator.objects import ObjectInfo

log = get_logger("migrate.listing")


class ListingOrderError(Exception):
    def __init__(self, side: str, previous: str, key: str) -> None:
        super().__init__(f"the {side} listing is not in byte order ({key!r} after {previous!r})")
        self.side = side


FIRST_PAGE_KEYS = 100  # a short first page: the first copies start while the rest is listed
PAGE_KEYS = 1000


def _page(endpoint: Endpoint, args: dict[str, Any]) -> Any:
    try:
        return endpoint.client.list_objects_v2(**args)
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket" and endpoint.name == "source":
            # Never an empty listing: an empty source would turn --delete into "delete all".
            raise SourceBucketMissingError(
                f"the source bucket {endpoint.bucket!r} at {endpoint.url} does not exist"
            ) from None
        raise


def list_entries(endpoint: Endpoint, prefix: str = "") -> Iterator[Mapping[str, Any]]:
    """The raw ListObjectsV2 entries (Key, Size, ETag, LastModified, StorageClass, ...)."""
    args: dict[str, Any] = {"Bucket": endpoint.bucket, "Prefix": prefix, "MaxKeys": FIRST_PAGE_KEYS}
    if on_aws(endpoint):
        # Restored archived objects are readable: S3 says which, in the listing, when asked.
        # Other stores may refuse the header, and have no archive classes to restore from.
        args["OptionalObjectAttributes"] = ["RestoreStatus"]
    while True:
        try:
            page = _page(endpoint, args)
        except ClientError as exc:
            if error_code(exc) != "AccessDenied" or "OptionalObjectAttributes" not in args:
                raise
            # A policy may allow listing but not the optional attributes: list without them
            # (a restored object is then taken for archived).
            log.warning("listing_without_restore_status", error=describe(exc))
            del args["OptionalObjectAttributes"]
            continue
        yield from page.get("Contents", [])
        if not page.get("IsTruncated"):
            return
        token = page.get("NextContinuationToken")
        if not token:
            raise RuntimeError(f"the {endpoint.name} listing is truncated but gives no continuation token")
        args.update(ContinuationToken=token, MaxKeys=PAGE_KEYS)


def list_bucket(endpoint: Endpoint, prefix: str = "") -> Iterator[ObjectInfo]:
    return map(ObjectInfo.from_listing, list_entries(endpoint, prefix))


def sort_key(key: str) -> bytes:
    return key.encode("utf-8")


def shared_prefix(keys: Iterable[str]) -> str:
    """The longest string every key starts with (characters, not path components)."""
    keys = list(keys)
    if not keys:
        return ""
    low, high = min(keys), max(keys)  # the prefix of the extremes is everyone's
    length = 0
    while length < min(len(low), len(high)) and low[length] == high[length]:
        length += 1
    return low[:length]


def in_byte_order(listing: Iterable[ObjectInfo], side: str) -> Iterator[ObjectInfo]:
    previous: bytes | None = None
    previous_key = ""
    for obj in listing:
        current = sort_key(obj.key)
        if previous is not None and current <= previous:
            raise ListingOrderError(side, previous_key, obj.key)
        previous, previous_key = current, obj.key
        yield obj


def sorted_on_disk(
    entries: Iterable[Mapping[str, Any]], directory: str | None = None
) -> Iterator[ObjectInfo]:
    """Spill listing entries to SQLite and read them back in byte order (BLOB keys sort by
    memcmp). Every field the filters and the merge use survives: size, ETag, LastModified,
    StorageClass, restore state; `ObjectInfo.from_listing` builds the objects on both paths."""
    fd, name = tempfile.mkstemp(prefix="listing-", suffix=".sqlite", dir=directory)
    os.close(fd)
    path = Path(name)
    try:
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=OFF")
        db.execute("PRAGMA synchronous=OFF")
        db.execute(
            "CREATE TABLE objects (k BLOB PRIMARY KEY, size INTEGER, etag TEXT, modified TEXT,"
            " class TEXT, restoring INTEGER) WITHOUT ROWID"
        )
        insert = "INSERT OR REPLACE INTO objects VALUES (?, ?, ?, ?, ?, ?)"
        batch: list[tuple[bytes, int, str | None, str | None, str | None, bool | None]] = []
        for entry in entries:
            modified = entry.get("LastModified")
            restore = entry.get("RestoreStatus")
            batch.append(
                (
                    sort_key(entry["Key"]),
                    int(entry["Size"]),
                    entry.get("ETag"),
                    modified.isoformat() if isinstance(modified, datetime) else None,
                    entry.get("StorageClass"),
                    bool(restore.get("IsRestoreInProgress")) if restore else None,
                )
            )
            if len(batch) >= 10_000:
                db.executemany(insert, batch)
                batch.clear()
        db.executemany(insert, batch)
        db.commit()
        rows = db.execute("SELECT k, size, etag, modified, class, restoring FROM objects ORDER BY k")
        for key, size, etag, modified, storage_class, restoring in rows:
            row: dict[str, Any] = {"Key": key.decode("utf-8"), "Size": size, "ETag": etag}
            if modified is not None:
                row["LastModified"] = datetime.fromisoformat(modified)
            if storage_class is not None:
                row["StorageClass"] = storage_class
            if restoring is not None:
                row["RestoreStatus"] = {"IsRestoreInProgress": bool(restoring)}
            yield ObjectInfo.from_listing(row)
        db.close()
    finally:
        path.unlink(missing_ok=True)


# -- confirming absence before a delete ------------------------------------------------------


def key_before(key: str) -> str:
    """A string just below `key` in byte order, for StartAfter: only strings that start with the
    result itself lie between the two (UTF-8 byte order is code point order)."""
    last = ord(key[-1])
    if last == 0:
        return key[:-1]
    below = last - 1
    if 0xD800 <= below <= 0xDFFF:  # surrogates are not characters: skip to the one before
        below = 0xD7FF
    return key[:-1] + chr(below) + "\U0010ffff"


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


# -- key-ordered files -----------------------------------------------------------------------


class KeyFile:
    """Keys (any characters, newlines included) one per line, with an optional size, in the
    order they were written; read back as (key, size) pairs."""

    def __init__(self, directory: str | None = None) -> None:
        fd, name = tempfile.mkstemp(prefix="keys-", suffix=".txt", dir=directory)
        os.close(fd)
        self.path = Path(name)
        self.count = 0
        self._out: IO[str] | None = open(self.path, "w", encoding="ascii")  # noqa: SIM115

    def add(self, key: str, size: int = 0) -> None:
        assert self._out is not None, "KeyFile written after close()"
        self._out.write(f"{size}\t{key.encode('unicode_escape').decode('ascii')}\n")
        self.count += 1

    def close(self) -> None:
        if self._out is not None:
            self._out.close()
            self._out = None

    def __iter__(self) -> Iterator[tuple[str, int]]:
        self.close()
        with open(self.path, encoding="ascii") as lines:
            for line in lines:
                size, _, escaped = line.rstrip("\n").partition("\t")
                yield escaped.encode("ascii").decode("unicode_escape"), int(size)

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


class OrderedMembership:
    """`key in self` for keys asked in increasing byte order, against a KeyFile written in
    increasing byte order: one pass over the file, constant memory."""

    def __init__(self, keys: KeyFile | None) -> None:
        self._keys = iter(keys) if keys is not None else iter(())
        self._current: bytes | None = None
        self._advance()

    def _advance(self) -> None:
        item = next(self._keys, None)
        self._current = sort_key(item[0]) if item is not None else None

    def __contains__(self, key: object) -> bool:
        if self._current is None:
            return False
        assert isinstance(key, str)
        wanted = sort_key(key)
        while self._current is not None and self._current < wanted:
            self._advance()
        return self._current == wanted
