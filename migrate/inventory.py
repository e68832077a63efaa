"""An S3 Inventory report as the migration's source listing: no LIST request on the source.

`open_inventory` reads the report's `manifest.json` (from S3 with the source client, or a local
file), checks it, streams every CSV data file (gzip) through its MD5 into an SQLite file and
returns an `InventoryListing`, a source `Lister` that answers key ranges in UTF-8 byte order.

Format facts (Amazon S3 User Guide, "Amazon S3 Inventory"): the manifest names `sourceBucket`,
`destinationBucket` (an ARN), `creationTimestamp` (milliseconds since the epoch, a string),
`fileFormat`, `fileSchema` (the CSV columns, comma-separated) and `files` (`key`, `size`,
`MD5checksum`), the data files being objects of the destination bucket. CSV data files are
gzip-compressed, without a header row, and their keys are URL-encoded with a space as `+` (as in
S3 event notifications), so `unquote_plus` decodes them. The data files are not sorted relative
to each other; rows go to a staging file in the order read, and one sorted INSERT builds the
key-ordered table (a b-tree filled in key order, not by random inserts that slow down once the
table outgrows the page cache).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import os
import re
import sqlite3
import tempfile
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self
from urllib.parse import unquote_plus

from botocore.exceptions import ClientError
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from replicator.errors import describe, error_code, is_not_found, request_retrying
from replicator.logs import get_logger

log = get_logger("migrate.inventory")

REQUIRED_COLUMNS = ("Key", "Size")
BATCH_ROWS = 10_000
SQLITE_CACHE_KIB = 65_536  # page cache while loading and sorting: memory stays bounded
_ARN = re.compile(r"^arn:[^:]+:s3:::(?P<bucket>[^/]+)$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class InventoryError(ValueError):
    """The inventory cannot be used as given: the message says which file, row and field."""


# -- the manifest ------------------------------------------------------------------------------


class DataFile(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key: str = Field(min_length=1)
    size: int = Field(ge=0)
    md5: str = Field(alias="MD5checksum", pattern=r"^[0-9a-fA-F]{32}$")


class Manifest(BaseModel):
    """The fields of `manifest.json` a migration uses (others, such as `version`, are ignored)."""

    model_config = ConfigDict(extra="ignore")

    source_bucket: str = Field(alias="sourceBucket", min_length=1)
    destination_bucket: str = Field(alias="destinationBucket", min_length=1)
    creation_timestamp: int = Field(alias="creationTimestamp", ge=0)  # ms since the epoch
    file_format: str = Field(alias="fileFormat")
    file_schema: str = Field(alias="fileSchema")
    files: list[DataFile]

    @property
    def created(self) -> datetime:
        return _EPOCH + timedelta(milliseconds=self.creation_timestamp)

    @property
    def columns(self) -> list[str]:
        return [name.strip() for name in self.file_schema.split(",")]

    @property
    def data_bucket(self) -> str:
        """The destination bucket's name (the manifest gives an ARN; a bare name is taken too)."""
        match = _ARN.match(self.destination_bucket)
        return match["bucket"] if match else self.destination_bucket


def parse_manifest(raw: bytes, where: str, source_bucket: str) -> Manifest:
    """The manifest checked for everything that can be known before any data file is read."""
    try:
        document = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InventoryError(f"the inventory manifest {where} is not valid JSON: {exc}") from None
    try:
        manifest = Manifest.model_validate(document)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'manifest'}: {error['msg']}"
            for error in exc.errors()
        )
        raise InventoryError(f"the inventory manifest {where} is not usable: {problems}") from None
    if manifest.file_format.upper() != "CSV":
        raise InventoryError(
            f"the inventory at {where} is in {manifest.file_format} format, which this migration "
            "does not read: only CSV inventories (gzip) are supported; configure the inventory "
            "report with the CSV output format"
        )
    missing = [name for name in REQUIRED_COLUMNS if name not in manifest.columns]
    if missing:
        raise InventoryError(
            f"the inventory at {where} has no {' and no '.join(missing)} column (fileSchema "
            f"{manifest.file_schema!r}): a migration needs Key and Size; add the Size field to the "
            "inventory configuration"
        )
    if manifest.source_bucket != source_bucket:
        raise InventoryError(
            f"the inventory at {where} is of bucket {manifest.source_bucket!r}, not of the "
            f"migration's source bucket {source_bucket!r}"
        )
    for name in ("ETag", "LastModifiedDate"):
        if name not in manifest.columns:
            # Not fatal: pairs then cost a HEAD each (no ETag), or time filters see no date.
            log.warning("inventory_column_missing", column=name, manifest=where)
    return manifest


# -- data files ------------------------------------------------------------------------------------


class _Verified(io.RawIOBase):
    """A readable stream that hashes and counts what passes through it."""

    def __init__(self, body: Any) -> None:
        super().__init__()
        self._body = body
        self.md5 = hashlib.md5()  # noqa: S324 - S3 names each data file's MD5
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data = self._body.read(len(buffer))
        count = len(data)
        buffer[:count] = data
        self.md5.update(data)
        self.size += count
        return count

    def drain(self) -> None:
        while self.read(1 << 20):
            pass


Row = tuple[bytes, int, bytes | str | None, int | None, str | None]


class _RowReader:
    """Turns the CSV rows of one schema into table rows: current versions only, keys decoded."""

    def __init__(self, columns: list[str], source_bucket: str, keep: Callable[[str], bool] | None) -> None:
        index = {name: i for i, name in reversed(list(enumerate(columns)))}
        self.width = len(columns)
        self._key = index["Key"]
        self._size = index["Size"]
        self._bucket = index.get("Bucket")
        self._latest = index.get("IsLatest")
        self._delete_marker = index.get("IsDeleteMarker")
        self._etag = index.get("ETag")
        self._modified = index.get("LastModifiedDate")
        self._class = index.get("StorageClass")
        self._source_bucket = source_bucket
        self._keep = keep

    def row(self, fields: list[str], where: str, number: int) -> Row | None:
        if len(fields) != self.width:
            raise InventoryError(
                f"inventory data file {where}, row {number}: {len(fields)} columns where the "
                f"manifest's fileSchema has {self.width}"
            )
        if self._bucket is not None and fields[self._bucket] != self._source_bucket:
            raise InventoryError(
                f"inventory data file {where}, row {number}: a row of bucket "
                f"{fields[self._bucket]!r}, not of the migration's source bucket {self._source_bucket!r}"
            )
        if self._latest is not None and fields[self._latest].lower() != "true":
            return None  # a noncurrent version
        if self._delete_marker is not None and fields[self._delete_marker].lower() == "true":
            return None  # the key is deleted now
        key = fields[self._key]
        if "%" in key or "+" in key:
            try:
                key = unquote_plus(key, errors="strict")
            except UnicodeDecodeError:
                raise InventoryError(
                    f"inventory data file {where}, row {number}: the key {key!r} does not decode to UTF-8"
                ) from None
        if not key:
            raise InventoryError(f"inventory data file {where}, row {number}: an empty key")
        if self._keep is not None and not self._keep(key):
            return None
        size = fields[self._size]
        if not (size.isascii() and size.isdigit()):
            raise InventoryError(f"inventory data file {where}, row {number}: Size {size!r} is not a count")
        return (
            key.encode("utf-8"),
            int(size),
            _pack_etag(fields[self._etag]) if self._etag is not None else None,
            self._milliseconds(fields[self._modified], where, number) if self._modified is not None else None,
            _pack_class(fields[self._class]) if self._class is not None else None,
        )

    @staticmethod
    def _milliseconds(text: str, where: str, number: int) -> int | None:
        """S3 times have milliseconds ("2026-01-02T03:04:05.678Z"), as its listings do."""
        if not text:
            return None
        try:
            when = datetime.fromisoformat(text)
        except ValueError:
            raise InventoryError(
                f"inventory data file {where}, row {number}: LastModifiedDate {text!r} is not an "
                "ISO 8601 time"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)  # S3 writes UTC ("...Z")
        return round(when.timestamp() * 1000)


def _pack_etag(etag: str) -> bytes | str | None:
    """A plain MD5 ETag as its 16 bytes (a sixth of a row's disk), any other as text."""
    etag = etag.strip('"')
    if len(etag) == 32:
        try:
            packed = bytes.fromhex(etag)
        except ValueError:
            packed = b""
        if len(packed) == 16:  # (fromhex skips spaces: those keep their text)
            return packed
    return etag.lower() or None


def _pack_class(storage_class: str) -> str | None:
    return None if storage_class in ("", "STANDARD") else storage_class


def _entry(
    key: bytes, size: int, etag: bytes | str | None, modified: int | None, cls: str | None
) -> dict[str, Any]:
    """A ListObjectsV2-shaped entry: a quoted ETag, an aware LastModified."""
    entry: dict[str, Any] = {"Key": key.decode("utf-8"), "Size": size, "StorageClass": cls or "STANDARD"}
    if etag is not None:
        entry["ETag"] = f'"{etag.hex() if isinstance(etag, bytes) else etag}"'
    if modified is not None:
        entry["LastModified"] = _EPOCH + timedelta(milliseconds=modified)
    return entry


_COLUMNS = "SELECT k, size, etag, modified, class FROM objects"
# One page: [inclusive] for the first page at the prefix itself, [bounded] under a prefix.
_PAGE_QUERIES = {
    bounded: {
        inclusive: f"{_COLUMNS} WHERE k {'>=' if inclusive else '>'} :low"
        + (" AND k < :high" if bounded else "")
        + " ORDER BY k LIMIT :limit"
        for inclusive in (True, False)
    }
    for bounded in (True, False)
}


def _successor(prefix: bytes) -> bytes | None:
    """The smallest byte string above every string that starts with `prefix` (UTF-8 has no 0xFF
    byte, so the last byte can always be raised)."""
    return prefix[:-1] + bytes([prefix[-1] + 1]) if prefix else None


# -- the listing -----------------------------------------------------------------------------------


class InventoryListing:
    """A source Lister over a loaded inventory. `requests` (LIST requests) stays 0; `files_read`
    counts the GETs of the manifest and data files. Safe to page from several threads at once
    (one SQLite read connection per thread). `close()` deletes the SQLite file."""

    side = "source"

    def __init__(self, path: Path, manifest: Manifest, files_read: int, where: str) -> None:
        self.path = path
        self.manifest = manifest
        self.where = where
        self.created = manifest.created
        self.files_read = files_read
        self.requests = 0
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.keys = int(self._db().execute("SELECT COUNT(*) FROM objects").fetchone()[0])

    def _db(self) -> sqlite3.Connection:
        db: sqlite3.Connection | None = getattr(self._local, "db", None)
        if db is None:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the inventory listing is closed")
                db = sqlite3.connect(self.path, check_same_thread=False)
                db.execute("PRAGMA query_only=ON")
                self._connections.append(db)
            self._local.db = db
        return db

    def pages(
        self, prefix: str = "", start_after: str | None = None, max_keys: int = 1000
    ) -> Iterator[list[dict[str, Any]]]:
        """The keys that start with `prefix` and sort after `start_after`, in UTF-8 byte order,
        `max_keys` a page. Each page is one indexed range query: it costs what it returns."""
        if max_keys < 1:
            raise ValueError(f"max_keys must be at least 1, not {max_keys}")
        low = prefix.encode("utf-8")
        inclusive = True
        if start_after is not None and start_after.encode("utf-8") >= low:
            low, inclusive = start_after.encode("utf-8"), False
        high = _successor(prefix.encode("utf-8"))
        queries = _PAGE_QUERIES[high is not None]
        while True:
            bounds = {"low": low, "high": high, "limit": max_keys}
            rows = self._db().execute(queries[inclusive], bounds).fetchall()
            if rows:
                yield [_entry(*row) for row in rows]
            if len(rows) < max_keys:
                return
            low, inclusive = rows[-1][0], False

    def close(self) -> None:
        with self._lock:
            self._closed = True
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


# -- loading ---------------------------------------------------------------------------------------


class _Loader:
    """Reads the manifest and the data files into a new SQLite file; removes it on any failure."""

    def __init__(
        self,
        uri: str,
        client: Any,
        source_bucket: str,
        directory: str | None,
        keep: Callable[[str], bool] | None,
        attempts: int,
    ) -> None:
        self.uri = uri
        self.client = client
        self.source_bucket = source_bucket
        self.directory = directory
        self.keep = keep
        self.retrying = request_retrying(attempts)
        self.files_read = 0
        self.local_dir: Path | None = None

    def load(self) -> InventoryListing:
        started = time.monotonic()
        manifest = parse_manifest(self._manifest_bytes(), self.uri, self.source_bucket)
        rows = _RowReader(manifest.columns, self.source_bucket, self.keep)
        fd, name = tempfile.mkstemp(prefix="inventory-", suffix=".sqlite", dir=self.directory)
        os.close(fd)
        path = Path(name)
        staging = path.with_suffix(".staging")
        try:
            db = sqlite3.connect(path)
            try:
                for pragma in ("journal_mode=OFF", "synchronous=OFF", f"cache_size=-{SQLITE_CACHE_KIB}"):
                    db.execute(f"PRAGMA {pragma}")
                db.execute(
                    "CREATE TABLE objects (k BLOB PRIMARY KEY, size INTEGER NOT NULL, etag,"
                    " modified INTEGER, class TEXT) WITHOUT ROWID"
                )
                db.execute("ATTACH DATABASE ? AS staging", (str(staging),))
                for pragma in ("journal_mode=OFF", "synchronous=OFF"):
                    db.execute(f"PRAGMA staging.{pragma}")
                db.execute(
                    "CREATE TABLE staging.rows (k BLOB, size INTEGER, etag, modified INTEGER, class TEXT)"
                )
                for data_file in manifest.files:
                    self._load_file(db, manifest, data_file, rows)
                # One sort builds the key-ordered table; of two rows of one key the later
                # LastModified stays (rows never repeat a key in a report, but a report is a
                # rolling snapshot).
                db.execute(
                    "INSERT OR REPLACE INTO objects SELECT k, size, etag, modified, class"
                    " FROM staging.rows ORDER BY k, modified"
                )
                db.commit()
                db.execute("DETACH DATABASE staging")
            finally:
                db.close()
                staging.unlink(missing_ok=True)
            listing = InventoryListing(path, manifest, self.files_read, self.uri)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        log.info(
            "inventory_loaded",
            manifest=self.uri,
            created=listing.created.isoformat(),
            keys=listing.keys,
            data_files=len(manifest.files),
            seconds=round(time.monotonic() - started, 1),
            sqlite_bytes=path.stat().st_size,
        )
        return listing

    # where the files come from

    def _manifest_bytes(self) -> bytes:
        if self.uri.startswith("s3://"):
            bucket, _, key = self.uri.removeprefix("s3://").partition("/")
            if not bucket or not key:
                raise InventoryError(f"{self.uri!r} names no manifest: give s3://BUCKET/KEY/manifest.json")
            with self._s3_body(bucket, key, "the inventory manifest") as body:
                return bytes(body.read())
        if "://" in self.uri:
            raise InventoryError(
                f"{self.uri!r} is neither s3://BUCKET/KEY/manifest.json nor a local file path"
            )
        path = Path(self.uri)
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            raise InventoryError(f"the inventory manifest {self.uri} does not exist") from None
        except IsADirectoryError:
            raise InventoryError(
                f"the inventory manifest {self.uri} is a directory: give the manifest.json in it"
            ) from None
        self.files_read += 1
        self.local_dir = path.resolve().parent
        return raw

    def _s3_body(self, bucket: str, key: str, what: str) -> Any:
        where = f"s3://{bucket}/{key}"
        if self.client is None:
            raise InventoryError(f"{what} {where} is in S3, and no S3 client was given to read it")
        try:
            response = self.retrying(lambda: self.client.get_object(Bucket=bucket, Key=key))
        except ClientError as exc:
            if error_code(exc) == "NoSuchBucket":
                raise InventoryError(f"{what} {where}: the bucket {bucket!r} does not exist") from None
            if is_not_found(exc):
                raise InventoryError(f"{what} {where} does not exist ({error_code(exc)})") from None
            raise InventoryError(f"{what} {where} cannot be read: {describe(exc)}") from None
        finally:
            self.files_read += 1
        return response["Body"]

    def _local_copy(self, key: str) -> Path | None:
        """For a local manifest: the data file's key, or any tail of it, under the manifest's
        directory or its parent (a synced copy of the report, or a flat directory)."""
        if self.local_dir is None:
            return None
        parts = [part for part in key.split("/") if part]
        for base in (self.local_dir, self.local_dir.parent):
            for start in range(len(parts)):
                candidate = base.joinpath(*parts[start:])
                if candidate.is_file():
                    return candidate
        return None

    def _open(self, manifest: Manifest, data_file: DataFile) -> tuple[IO[bytes], str]:
        local = self._local_copy(data_file.key)
        if local is not None:
            self.files_read += 1
            return open(local, "rb"), str(local)
        bucket = manifest.data_bucket
        return self._s3_body(
            bucket, data_file.key, "the inventory data file"
        ), f"s3://{bucket}/{data_file.key}"

    # reading one data file

    def _load_file(
        self, db: sqlite3.Connection, manifest: Manifest, data_file: DataFile, rows: _RowReader
    ) -> None:
        def attempt() -> None:
            # A retry reads the file from the start again; the rows the failed attempt stored
            # repeat identically and collapse into one in the sorted insert.
            body, where = self._open(manifest, data_file)
            with body:
                self._read(db, body, where, data_file, rows)

        self.retrying(attempt)
        db.commit()

    def _read(
        self, db: sqlite3.Connection, body: IO[bytes], where: str, data_file: DataFile, rows: _RowReader
    ) -> None:
        raw = _Verified(body)
        insert = "INSERT INTO staging.rows VALUES (?, ?, ?, ?, ?)"
        batch: list[Row] = []
        try:
            text = io.TextIOWrapper(gzip.GzipFile(fileobj=raw, mode="rb"), encoding="utf-8", newline="")
            for number, fields in enumerate(csv.reader(text), start=1):
                row = rows.row(fields, where, number)
                if row is not None:
                    batch.append(row)
                    if len(batch) >= BATCH_ROWS:
                        db.executemany(insert, batch)
                        batch.clear()
            db.executemany(insert, batch)
            raw.drain()
        except InventoryError:
            self._damaged(raw, where, data_file)
            raise
        except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, gzip.BadGzipFile) and exc.errno is not None:
                raise  # a local read failed: not the file's content
            self._damaged(raw, where, data_file)
            raise InventoryError(
                f"inventory data file {where} is not a gzip-compressed CSV file: {exc}"
            ) from None
        self._check(raw, where, data_file)

    def _damaged(self, raw: _Verified, where: str, data_file: DataFile) -> None:
        """After a bad row or bad gzip: a file whose checksum is wrong is named as damaged (the
        clearer cause). When the rest cannot be read, the first error stands."""
        try:
            raw.drain()
        except Exception:  # the caller raises its own error next
            return
        self._check(raw, where, data_file)

    @staticmethod
    def _check(raw: _Verified, where: str, data_file: DataFile) -> None:
        md5 = raw.md5.hexdigest()
        if md5 != data_file.md5.lower():
            raise InventoryError(
                f"inventory data file {where} has MD5 {md5}, the manifest says {data_file.md5.lower()}: "
                "the file is damaged or not the one the manifest lists"
            )
        if raw.size != data_file.size:
            raise InventoryError(
                f"inventory data file {where} has {raw.size} bytes, the manifest says {data_file.size}"
            )


def open_inventory(
    uri: str,
    client: Any,
    source_bucket: str,
    directory: str | None = None,
    keep: Callable[[str], bool] | None = None,
    attempts: int = 3,
) -> InventoryListing:
    """Load the S3 Inventory report whose manifest is `uri` (`s3://bucket/key/manifest.json`,
    read with `client`, or a local path) as the source listing of `source_bucket`.

    Data files are read from the manifest's destination bucket with `client`; for a local
    manifest, a copy next to it is read instead when one exists. Rows are streamed into an SQLite
    file in `directory` (the system's temporary directory by default): memory stays flat.
    `keep(key)` false leaves a key out (a shard's own key ranges, a prefix). `attempts` bounds
    the reads of each file (transport errors, throttling, 5xx; a retried data file starts over).

    Raises InventoryError, naming the file (and row), for a manifest that is missing, not JSON,
    of another bucket, not CSV or without a Key or Size column, and for a data file that is
    missing, damaged (MD5, size, gzip) or holds a malformed row. Nothing is kept on disk then.
    """
    return _Loader(uri, client, source_bucket, directory, keep, attempts).load()
