"""S3 Inventory reports as the source listing: manifest, CSV rows, byte order, paging, errors."""

from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from botocore.exceptions import ResponseStreamingError
from moto import mock_aws

from migrate.inventory import InventoryError, InventoryListing, open_inventory

SOURCE = "source-bucket"
DESTINATION = "inventory-bucket"
CREATED = datetime(2026, 1, 31, 21, 32, tzinfo=UTC)
PLAIN = "Bucket, Key, Size, LastModifiedDate, ETag, StorageClass, IsMultipartUploaded, ReplicationStatus"
VERSIONED = (
    "Bucket, Key, VersionId, IsLatest, IsDeleteMarker, Size, LastModifiedDate, ETag, StorageClass, "
    "IsMultipartUploaded, ReplicationStatus, EncryptionStatus"
)


@dataclass
class Row:
    key: str
    size: int = 1
    etag: str = "0123456789abcdef0123456789abcdef"
    modified: datetime = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    storage_class: str = "STANDARD"
    latest: bool = True
    delete_marker: bool = False
    bucket: str = SOURCE
    version: str = "v1"

    def fields(self, columns: list[str], encode_slash: bool) -> list[str]:
        values = {
            "Bucket": self.bucket,
            # S3 URL-encodes keys in CSV inventories, a space as "+" (form encoding)
            "Key": quote_plus(self.key, safe="" if encode_slash else "/"),
            "VersionId": self.version,
            "IsLatest": str(self.latest).lower(),
            "IsDeleteMarker": str(self.delete_marker).lower(),
            "Size": "" if self.delete_marker else str(self.size),
            "LastModifiedDate": self.modified.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "ETag": "" if self.delete_marker else self.etag,
            "StorageClass": "" if self.delete_marker else self.storage_class,
            "IsMultipartUploaded": str("-" in self.etag).lower(),
            "ReplicationStatus": "",
            "EncryptionStatus": "SSE-S3",
        }
        return [values[name] for name in columns]


def csv_gz(rows: list[Row], schema: str, encode_slash: bool = False) -> bytes:
    text = io.StringIO()
    writer = csv.writer(text, quoting=csv.QUOTE_ALL, lineterminator="\n")
    columns = [name.strip() for name in schema.split(",")]
    for row in rows:
        writer.writerow(row.fields(columns, encode_slash))
    return gzip.compress(text.getvalue().encode("utf-8"))


@dataclass
class Report:
    """An inventory report laid out as S3 writes it: `<prefix>/<source>/<config>/<time>/
    manifest.json` and `<prefix>/<source>/<config>/data/<n>.csv.gz` in the destination bucket."""

    files: list[bytes]
    schema: str = PLAIN
    source_bucket: str = SOURCE
    destination: str = DESTINATION
    file_format: str = "CSV"
    created: datetime = CREATED
    prefix: str = "inventories"
    config: str = "all-objects"
    overrides: dict[str, Any] = field(default_factory=dict)
    md5_overrides: dict[int, str] = field(default_factory=dict)

    @property
    def base(self) -> str:
        return f"{self.prefix}/{self.source_bucket}/{self.config}"

    @property
    def manifest_key(self) -> str:
        return f"{self.base}/{self.created.strftime('%Y-%m-%dT%H-%MZ')}/manifest.json"

    def data_key(self, index: int) -> str:
        return f"{self.base}/data/{index:08d}-5ee0-41d9-b32b-a12b40a6f271.csv.gz"

    def manifest(self) -> bytes:
        document: dict[str, Any] = {
            "sourceBucket": self.source_bucket,
            "destinationBucket": f"arn:aws:s3:::{self.destination}",
            "version": "2016-11-30",
            "creationTimestamp": str(int(self.created.timestamp() * 1000)),
            "fileFormat": self.file_format,
            "fileSchema": self.schema,
            "files": [
                {
                    "key": self.data_key(i),
                    "size": len(data),
                    "MD5checksum": self.md5_overrides.get(i, hashlib.md5(data).hexdigest()),
                }
                for i, data in enumerate(self.files)
            ],
        }
        document.update(self.overrides)
        return json.dumps(document, indent=4).encode()

    def objects(self) -> dict[str, bytes]:
        made = {self.data_key(i): data for i, data in enumerate(self.files)}
        made[self.manifest_key] = self.manifest()
        return made

    def write_local(self, root: Path) -> Path:
        for key, data in self.objects().items():
            (root / key).parent.mkdir(parents=True, exist_ok=True)
            (root / key).write_bytes(data)
        return root / self.manifest_key

    def put(self, client: Any) -> str:
        for key, data in self.objects().items():
            client.put_object(Bucket=self.destination, Key=key, Body=data)
        return f"s3://{self.destination}/{self.manifest_key}"


def load(report: Report, tmp_path: Path, **kwargs: Any) -> InventoryListing:
    manifest = report.write_local(tmp_path / "report")
    (tmp_path / "work").mkdir(exist_ok=True)
    return open_inventory(str(manifest), None, SOURCE, directory=str(tmp_path / "work"), **kwargs)


def listed(listing: InventoryListing, prefix: str = "", start_after: str | None = None) -> list[str]:
    return [entry["Key"] for page in listing.pages(prefix, start_after) for entry in page]


def byte_order(keys: list[str]) -> list[str]:
    return sorted(keys, key=lambda key: key.encode("utf-8"))


def refused(report: Report, tmp_path: Path, **kwargs: Any) -> str:
    """The InventoryError's message; and nothing was left behind in the work directory."""
    with pytest.raises(InventoryError) as caught:
        load(report, tmp_path, **kwargs)
    assert list((tmp_path / "work").iterdir()) == []
    return str(caught.value)


# -- reading -------------------------------------------------------------------------------------


def test_a_csv_inventory_becomes_listing_entries_in_byte_order(tmp_path: Path) -> None:
    first = [
        Row("z/last", 7, "d41d8cd98f00b204e9800998ecf8427e"),
        Row("a/first", 0, "9B2CF535F27731C974343645A3985328-3", storage_class="GLACIER"),
    ]
    second = [
        Row("m/middle", 10**12, "00000000000000000000000000000001", storage_class="INTELLIGENT_TIERING")
    ]
    with load(Report([csv_gz(first, PLAIN), csv_gz(second, PLAIN)]), tmp_path) as listing:
        pages = list(listing.pages("", None))
        assert (listing.side, listing.requests, listing.files_read, listing.keys) == ("source", 0, 3, 3)
        assert listing.created == CREATED
    assert pages == [
        [
            {
                "Key": "a/first",
                "Size": 0,
                "ETag": '"9b2cf535f27731c974343645a3985328-3"',
                "LastModified": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
                "StorageClass": "GLACIER",
            },
            {
                "Key": "m/middle",
                "Size": 10**12,
                "ETag": '"00000000000000000000000000000001"',
                "LastModified": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
                "StorageClass": "INTELLIGENT_TIERING",
            },
            {
                "Key": "z/last",
                "Size": 7,
                "ETag": '"d41d8cd98f00b204e9800998ecf8427e"',
                "LastModified": datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC),
                "StorageClass": "STANDARD",
            },
        ]
    ]


ODD_KEYS = [
    "with space",
    "two  spaces ",
    "plus+sign",
    "+",
    "100%",
    "%",
    "%20",
    "literal%2Fslash",
    "a/b%2Fc/d",
    "ünïcödé/日本語/файл",
    "emoji 😀+%.bin",
    "tab\tand\nnewline",
    'quote"comma,semi;',
    "k/" + "é" * 499,  # 1,000 bytes
]


@pytest.mark.parametrize("encode_slash", [False, True])
def test_keys_round_trip_exactly(tmp_path: Path, encode_slash: bool) -> None:
    assert len(ODD_KEYS[-1].encode()) == 1000
    rows = [Row(key, size=i) for i, key in enumerate(ODD_KEYS)]
    with load(Report([csv_gz(rows, PLAIN, encode_slash)]), tmp_path) as listing:
        entries = [entry for page in listing.pages("", None) for entry in page]
    assert [entry["Key"] for entry in entries] == byte_order(ODD_KEYS)
    assert {entry["Key"]: entry["Size"] for entry in entries} == {key: i for i, key in enumerate(ODD_KEYS)}


def test_a_versioned_inventory_keeps_current_versions_and_skips_delete_markers(tmp_path: Path) -> None:
    rows = [
        Row("kept", 3, version="v3"),
        Row("kept", 2, latest=False, version="v2"),
        Row("deleted", latest=True, delete_marker=True, version="dm"),
        Row("deleted", 5, latest=False, version="v1"),
        Row("old-only", 9, latest=False),
        Row("with space+plus", 4),
    ]
    with load(Report([csv_gz(rows, VERSIONED)], schema=VERSIONED), tmp_path) as listing:
        entries = [entry for page in listing.pages("", None) for entry in page]
        assert listing.keys == 2
    assert [(entry["Key"], entry["Size"]) for entry in entries] == [("kept", 3), ("with space+plus", 4)]


def test_of_two_rows_of_one_key_the_later_one_stays(tmp_path: Path) -> None:
    older = Row("k", 1, modified=CREATED - timedelta(days=2))
    newer = Row("k", 2, modified=CREATED - timedelta(days=1))
    with load(Report([csv_gz([newer], PLAIN), csv_gz([older], PLAIN)]), tmp_path) as listing:
        assert [(e["Key"], e["Size"]) for page in listing.pages("", None) for e in page] == [("k", 2)]
        assert listing.keys == 1


def test_keep_leaves_keys_out(tmp_path: Path) -> None:
    rows = [Row(f"{name}/{i}") for name in ("a", "b", "c") for i in range(3)]
    with load(Report([csv_gz(rows, PLAIN)]), tmp_path, keep=lambda key: key.startswith("b/")) as listing:
        assert listed(listing) == ["b/0", "b/1", "b/2"]
        assert listing.keys == 3


# -- pages -----------------------------------------------------------------------------------------

ORDER_KEYS = ["a", "a-b", "a/b", "a/c", "a0", "ab", "b", "é", "éa", "\uffff", "\U0001f600", "\U0010ffff"]


@pytest.fixture
def ordered(tmp_path: Path) -> Iterator[InventoryListing]:
    rows = [Row(key) for key in reversed(ORDER_KEYS)]
    with load(Report([csv_gz(rows[:5], PLAIN), csv_gz(rows[5:], PLAIN)]), tmp_path) as listing:
        yield listing


def test_pages_follow_utf8_byte_order(ordered: InventoryListing) -> None:
    assert listed(ordered) == byte_order(ORDER_KEYS)
    # "-" (0x2d) < "/" (0x2f) < "0" (0x30): byte order, not path order
    assert listed(ordered)[:5] == ["a", "a-b", "a/b", "a/c", "a0"]


@pytest.mark.parametrize(
    ("prefix", "start_after", "expected"),
    [
        ("a", None, ["a", "a-b", "a/b", "a/c", "a0", "ab"]),
        ("a/", None, ["a/b", "a/c"]),
        ("a", "a-b", ["a/b", "a/c", "a0", "ab"]),
        ("a", "", ["a", "a-b", "a/b", "a/c", "a0", "ab"]),  # start_after below the prefix
        ("a/", "a", ["a/b", "a/c"]),
        ("a", "ab", []),  # start_after at the prefix's last key
        ("a", "b", []),  # start_after beyond the prefix
        ("é", None, ["é", "éa"]),
        ("\uffff", None, ["\uffff"]),
        ("", "éa", ["\uffff", "\U0001f600", "\U0010ffff"]),
        ("", "\U0010ffff", []),
        ("\U0010ffff", None, ["\U0010ffff"]),
        ("x", None, []),
    ],
)
def test_prefix_and_start_after(
    ordered: InventoryListing, prefix: str, start_after: str | None, expected: list[str]
) -> None:
    assert listed(ordered, prefix, start_after) == expected


def test_pages_hold_at_most_max_keys(tmp_path: Path) -> None:
    keys = [f"k/{i:03d}" for i in range(25)]
    with load(Report([csv_gz([Row(key) for key in reversed(keys)], PLAIN)]), tmp_path) as listing:
        sizes = [len(page) for page in listing.pages("k/", None, max_keys=10)]
        assert sizes == [10, 10, 5]
        after = [[e["Key"] for e in page] for page in listing.pages("k/", "k/019", max_keys=3)]
        assert after == [["k/020", "k/021", "k/022"], ["k/023", "k/024"]]
        exact = [len(page) for page in listing.pages("", None, max_keys=5)]
        assert exact == [5] * 5  # an exact multiple: no empty page at the end
        with pytest.raises(ValueError, match="max_keys must be at least 1"):
            next(listing.pages("", None, max_keys=0))


def test_pages_from_several_threads_at_once(tmp_path: Path) -> None:
    keys = [f"{p}/{i:04d}" for p in "abcd" for i in range(500)]
    results: dict[str, list[str]] = {}
    with load(Report([csv_gz([Row(key) for key in keys], PLAIN)]), tmp_path) as listing:

        def walk(prefix: str) -> None:
            results[prefix] = [e["Key"] for page in listing.pages(prefix, None, max_keys=7) for e in page]

        threads = [threading.Thread(target=walk, args=(p,)) for p in "abcd"]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert results == {p: [key for key in keys if key.startswith(p)] for p in "abcd"}


def test_close_deletes_the_file_and_ends_paging(tmp_path: Path) -> None:
    listing = load(Report([csv_gz([Row("a"), Row("b")], PLAIN)]), tmp_path)
    assert listing.path.exists()
    assert listing.path.parent == tmp_path / "work"
    assert listed(listing) == ["a", "b"]
    listing.close()
    assert list((tmp_path / "work").iterdir()) == []
    with pytest.raises(RuntimeError, match="closed"):
        next(threading_free_pages(listing))


def threading_free_pages(listing: InventoryListing) -> Iterator[list[dict[str, Any]]]:
    """Pages from a thread that has not read before (its connection is opened after close())."""
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(_first_page_or_error(listing)))
    thread.start()
    thread.join()
    if isinstance(out[0], BaseException):
        raise out[0]
    yield out[0]


def _first_page_or_error(listing: InventoryListing) -> Any:
    try:
        return next(listing.pages("", None))
    except BaseException as exc:
        return exc


# -- bad input -------------------------------------------------------------------------------------


def test_a_missing_local_manifest(tmp_path: Path) -> None:
    (tmp_path / "work").mkdir()
    with pytest.raises(InventoryError, match=r"the inventory manifest .*nope/manifest.json does not exist"):
        open_inventory(str(tmp_path / "nope" / "manifest.json"), None, SOURCE, str(tmp_path / "work"))
    assert list((tmp_path / "work").iterdir()) == []


def test_a_manifest_that_is_not_json(tmp_path: Path) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text('{"sourceBucket": "source-bucket",')
    with pytest.raises(InventoryError, match=r"manifest\.json is not valid JSON: Expecting property name"):
        open_inventory(str(manifest), None, SOURCE)


def test_a_manifest_missing_fields_names_them(tmp_path: Path) -> None:
    document = json.loads(Report([csv_gz([Row("a")], PLAIN)]).manifest())
    del document["sourceBucket"]
    del document["files"][0]["MD5checksum"]
    document["creationTimestamp"] = "last tuesday"
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps(document))
    with pytest.raises(InventoryError) as caught:
        open_inventory(str(manifest), None, SOURCE)
    message = str(caught.value)
    assert f"the inventory manifest {manifest} is not usable" in message
    assert "sourceBucket: Field required" in message
    assert "files.0.MD5checksum: Field required" in message
    assert "creationTimestamp: Input should be a valid integer" in message


@pytest.mark.parametrize("fmt", ["ORC", "Parquet"])
def test_orc_and_parquet_are_refused_naming_the_format(tmp_path: Path, fmt: str) -> None:
    message = refused(Report([b"not read"], file_format=fmt), tmp_path)
    assert f"is in {fmt} format" in message
    assert "only CSV inventories (gzip) are supported" in message


@pytest.mark.parametrize(
    ("schema", "missing"),
    [
        ("Bucket, Key, LastModifiedDate, ETag", "Size"),
        ("Bucket, Size, ETag", "Key"),
        ("Bucket, ETag", "Key and no Size"),
    ],
)
def test_a_schema_without_key_or_size(tmp_path: Path, schema: str, missing: str) -> None:
    message = refused(Report([csv_gz([Row("a")], schema)], schema=schema), tmp_path)
    assert f"has no {missing} column" in message
    assert repr(schema) in message


def test_a_manifest_of_another_bucket_names_both(tmp_path: Path) -> None:
    message = refused(Report([csv_gz([Row("a", bucket="other")], PLAIN)], source_bucket="other"), tmp_path)
    assert "is of bucket 'other', not of the migration's source bucket 'source-bucket'" in message


def test_a_row_of_another_bucket_refuses_the_whole_inventory(tmp_path: Path) -> None:
    rows = [Row("a"), Row("b"), Row("c", bucket="stranger")]
    message = refused(Report([csv_gz([Row("0")], PLAIN), csv_gz(rows, PLAIN)]), tmp_path)
    assert "00000001-5ee0-41d9-b32b-a12b40a6f271.csv.gz, row 3" in message
    assert "a row of bucket 'stranger', not of the migration's source bucket 'source-bucket'" in message


def test_a_data_file_with_a_wrong_md5(tmp_path: Path) -> None:
    report = Report([csv_gz([Row("a")], PLAIN), csv_gz([Row("b")], PLAIN)], md5_overrides={1: "0" * 32})
    actual = hashlib.md5(report.files[1]).hexdigest()
    message = refused(report, tmp_path)
    assert "00000001-5ee0-41d9-b32b-a12b40a6f271.csv.gz has MD5" in message
    assert f"MD5 {actual}, the manifest says {'0' * 32}" in message


def test_a_damaged_data_file_is_named_by_its_checksum(tmp_path: Path) -> None:
    good = csv_gz([Row(f"k{i}") for i in range(100)], PLAIN)
    report = Report([good])
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF
    report.md5_overrides = {0: hashlib.md5(good).hexdigest()}
    report.files = [bytes(damaged)]
    message = refused(report, tmp_path)
    assert f"the manifest says {hashlib.md5(good).hexdigest()}" in message


def test_a_data_file_that_is_not_gzip(tmp_path: Path) -> None:
    message = refused(Report([b'"source-bucket","a","1"\n']), tmp_path)
    assert "00000000-5ee0-41d9-b32b-a12b40a6f271.csv.gz is not a gzip-compressed CSV file" in message


def test_a_row_with_the_wrong_number_of_columns(tmp_path: Path) -> None:
    data = gzip.compress(
        b'"source-bucket","a","1","2026-01-02T03:04:05.000Z","e","STANDARD","false",""\n' * 2
    )
    data += gzip.compress(b'"source-bucket","b","1"\n')  # a second gzip member, as S3 may write
    message = refused(Report([data]), tmp_path)
    assert (
        "00000000-5ee0-41d9-b32b-a12b40a6f271.csv.gz, row 3: 3 columns where the manifest's fileSchema has 8"
        in message
    )


@pytest.mark.parametrize(
    ("column", "value", "said"),
    [
        ("Size", "12kB", "Size '12kB' is not a count"),
        ("Size", "\u00b2", "Size '\u00b2' is not a count"),  # a digit to str.isdigit, not to int()
        ("Size", "-1", "Size '-1' is not a count"),
        ("LastModifiedDate", "yesterday", "LastModifiedDate 'yesterday' is not an ISO 8601 time"),
        ("Key", "%C3%28", "the key '%C3%28' does not decode to UTF-8"),
    ],
)
def test_a_malformed_field_names_file_row_and_value(
    tmp_path: Path, column: str, value: str, said: str
) -> None:
    columns = [name.strip() for name in PLAIN.split(",")]
    good = Row("a").fields(columns, False)
    bad = list(good)
    bad[columns.index(column)] = value
    text = io.StringIO()
    csv.writer(text, quoting=csv.QUOTE_ALL).writerows([good, bad])
    message = refused(Report([gzip.compress(text.getvalue().encode())]), tmp_path)
    assert f"csv.gz, row 2: {said}" in message


# -- from S3 -------------------------------------------------------------------------------------


@pytest.fixture
def s3() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=DESTINATION)
        yield client


def test_an_inventory_in_s3_is_read_with_the_client(s3: Any, tmp_path: Path) -> None:
    uri = Report([csv_gz([Row("b")], PLAIN), csv_gz([Row("a b")], PLAIN)]).put(s3)
    with open_inventory(uri, s3, SOURCE, directory=str(tmp_path)) as listing:
        assert listed(listing) == ["a b", "b"]
        assert (listing.files_read, listing.requests) == (3, 0)
    assert list(tmp_path.iterdir()) == []


def test_a_missing_manifest_in_s3(s3: Any, tmp_path: Path) -> None:
    uri = f"s3://{DESTINATION}/inventories/{SOURCE}/all/2026-01-31T21-32Z/manifest.json"
    with pytest.raises(InventoryError, match=rf"the inventory manifest {uri} does not exist \(NoSuchKey\)"):
        open_inventory(uri, s3, SOURCE, directory=str(tmp_path))
    with pytest.raises(InventoryError, match=r"the bucket 'no-such-bucket' does not exist"):
        open_inventory("s3://no-such-bucket/manifest.json", s3, SOURCE, directory=str(tmp_path))
    with pytest.raises(InventoryError, match="names no manifest"):
        open_inventory(f"s3://{DESTINATION}", s3, SOURCE, directory=str(tmp_path))
    with pytest.raises(InventoryError, match="neither s3://"):
        open_inventory("https://example.com/manifest.json", s3, SOURCE, directory=str(tmp_path))
    assert list(tmp_path.iterdir()) == []


def test_a_missing_data_file_in_s3(s3: Any, tmp_path: Path) -> None:
    report = Report([csv_gz([Row("a")], PLAIN), csv_gz([Row("b")], PLAIN)])
    uri = report.put(s3)
    s3.delete_object(Bucket=DESTINATION, Key=report.data_key(1))
    with pytest.raises(InventoryError) as caught:
        open_inventory(uri, s3, SOURCE, directory=str(tmp_path))
    assert f"s3://{DESTINATION}/{report.data_key(1)} does not exist (NoSuchKey)" in str(caught.value)
    assert list(tmp_path.iterdir()) == []


class CutShort:
    """A body that fails halfway, as a connection reset mid-stream does."""

    def __init__(self, body: Any, length: int) -> None:
        self._body = body
        self._sent = 0
        self._limit = length // 2

    def read(self, size: int = -1) -> bytes:
        if self._sent >= self._limit:
            raise ResponseStreamingError(error="Connection broken: IncompleteRead")
        data = bytes(self._body.read(min(size, self._limit - self._sent)))
        self._sent += len(data)
        return data

    def close(self) -> None:
        self._body.close()

    def __enter__(self) -> CutShort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class FlakyClient:
    """The S3 client, whose first GET of each data file is cut short."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.cut: list[str] = []

    def get_object(self, **kwargs: Any) -> Any:
        response = self._client.get_object(**kwargs)
        if kwargs["Key"].endswith(".csv.gz") and kwargs["Key"] not in self.cut:
            self.cut.append(kwargs["Key"])
            response["Body"] = CutShort(response["Body"], response["ContentLength"])
        return response


def test_a_data_file_cut_short_is_read_again_from_the_start(s3: Any, tmp_path: Path) -> None:
    big = [Row(f"first/{i:05d}") for i in range(30_000)]  # more rows than one batch before the cut
    report = Report([csv_gz(big, PLAIN), csv_gz([Row("second")], PLAIN)])
    uri = report.put(s3)
    flaky = FlakyClient(s3)
    with open_inventory(uri, flaky, SOURCE, directory=str(tmp_path)) as listing:
        keys = listed(listing)
        assert listing.keys == 30_001
        assert listing.files_read == 5  # the manifest, each data file twice
    assert flaky.cut == [report.data_key(0), report.data_key(1)]
    assert keys == [row.key for row in big] + ["second"]
