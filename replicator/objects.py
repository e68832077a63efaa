"""What we know about an object on either end, read from HeadObject or a listing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

# User metadata we write on every target object (x-amz-meta-*).
META_SOURCE_ETAG = "replica-source-etag"
META_MD5 = "replica-md5"
OWN_METADATA = (META_SOURCE_ETAG, META_MD5)

# Content headers carried over on both the single-PUT and the multipart path.
CONTENT_HEADERS = (
    "ContentType",
    "ContentEncoding",
    "ContentDisposition",
    "ContentLanguage",
    "CacheControl",
    "Expires",
)

# Storage classes and Intelligent-Tiering tiers whose objects must be restored before a GET.
# GLACIER_IR (Instant Retrieval) is read like STANDARD.
ARCHIVE_CLASSES = frozenset({"GLACIER", "DEEP_ARCHIVE"})
ARCHIVE_TIERS = frozenset({"ARCHIVE_ACCESS", "DEEP_ARCHIVE_ACCESS"})

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")
_RESTORED = re.compile(r'ongoing-request\s*=\s*"false"', re.IGNORECASE)


def clean_etag(etag: str | None) -> str:
    return (etag or "").strip('"').lower()


def plain_md5(etag: str) -> bool:
    """An unquoted ETag that looks like a single-part MD5 (not `<md5>-<parts>`)."""
    return bool(_PLAIN_MD5.match(etag))


def timestamp(value: datetime | str) -> datetime:
    """A listing's LastModified: a datetime (boto3), or its ISO 8601 text (the lean path parses
    it only when an object is built from it)."""
    if isinstance(value, datetime):
        return value
    when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return when if when.tzinfo else when.replace(tzinfo=UTC)


@dataclass(frozen=True)
class ObjectInfo:
    key: str
    size: int
    etag: str  # unquoted, lowercase
    last_modified: datetime | None = None
    version_id: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    headers: dict[str, Any] = field(default_factory=dict)
    encrypted_etag: bool = False  # SSE-KMS / SSE-C: the ETag is not an MD5
    # False when read from a listing: content headers and metadata still to be fetched.
    complete: bool = True
    # Read from a HEAD of part 1 (PartNumber=1): that part's length and the source's part count.
    first_part_size: int | None = None
    parts_count: int | None = None
    # None for STANDARD (HeadObject omits it for that class).
    storage_class: str | None = None
    # HeadObject's Restore header as sent (`ongoing-request="false", expiry-date="..."` once a
    # restored copy is readable); None when no restore was asked for or it is not known.
    restore: str | None = None
    # Intelligent-Tiering's archive tier (HeadObject's ArchiveStatus), when in one.
    archive_status: str | None = None
    # The KMS key of an aws:kms object, so that a refused read can name it.
    kms_key_id: str | None = None

    @classmethod
    def from_head(cls, key: str, head: Any) -> ObjectInfo:
        """From a HeadObject (or whole-object GetObject) response, also one for PartNumber=1."""
        sse = str(head.get("ServerSideEncryption") or "")
        size, first_part_size = int(head["ContentLength"]), None
        content_range = head.get("ContentRange")
        if content_range:
            match = _CONTENT_RANGE.match(str(content_range))
            if not match or int(match.group(1)) != 0:
                raise ValueError(f"HEAD of {key!r}: unexpected Content-Range {content_range!r}")
            size, first_part_size = int(match.group(3)), size
        parts_count = head.get("PartsCount")
        return cls(
            key=key,
            size=size,
            etag=clean_etag(head.get("ETag")),
            last_modified=head.get("LastModified"),
            version_id=head.get("VersionId"),
            metadata={k.lower(): v for k, v in (head.get("Metadata") or {}).items()},
            headers={h: head[h] for h in CONTENT_HEADERS if head.get(h) is not None},
            encrypted_etag=sse.startswith("aws:kms") or bool(head.get("SSECustomerAlgorithm")),
            first_part_size=first_part_size,
            parts_count=int(parts_count) if parts_count is not None else None,
            storage_class=head.get("StorageClass") or None,
            restore=head.get("Restore") or None,
            archive_status=head.get("ArchiveStatus") or None,
            kms_key_id=head.get("SSEKMSKeyId") or None,
        )

    @classmethod
    def from_listing(cls, entry: Any) -> ObjectInfo:
        """From a ListObjectsV2 entry. Its restore state is known only when the listing asked
        for it (OptionalObjectAttributes=RestoreStatus)."""
        status = entry.get("RestoreStatus")
        restore = None
        if status:
            restore = f'ongoing-request="{"true" if status.get("IsRestoreInProgress") else "false"}"'
        storage_class = entry.get("StorageClass")
        return cls(
            key=entry["Key"],
            size=int(entry["Size"]),
            etag=clean_etag(entry.get("ETag")),
            last_modified=timestamp(entry["LastModified"]) if entry.get("LastModified") else None,
            complete=False,
            storage_class=storage_class if storage_class and storage_class != "STANDARD" else None,
            restore=restore,
        )

    @property
    def written_by_us(self) -> bool:
        """Copied here by this product: our recorded fields, not the store's ETag, describe it."""
        return META_SOURCE_ETAG in self.metadata

    @property
    def etag_is_md5(self) -> bool:
        # A store may give a multipart object a plain-looking ETag that is no MD5 (Lyve Cloud
        # computes multipart ETags its own way): on objects we wrote, only our record counts.
        return not self.encrypted_etag and not self.written_by_us and plain_md5(self.etag)

    @property
    def known_md5(self) -> str | None:
        """The whole-object MD5 if it is known without reading the bytes."""
        recorded = self.metadata.get(META_MD5)
        if recorded and _PLAIN_MD5.match(recorded):
            return recorded
        return self.etag if self.etag_is_md5 else None

    @property
    def recorded_source_etag(self) -> str | None:
        return self.metadata.get(META_SOURCE_ETAG)

    @property
    def restored(self) -> bool:
        """A restored copy of an archived object is readable now."""
        return bool(self.restore and _RESTORED.search(self.restore))

    @property
    def archive_tier(self) -> str | None:
        """The archive class or tier that keeps the bytes from being read, whether restored or not."""
        if self.archive_status in ARCHIVE_TIERS:
            return self.archive_status
        if self.storage_class in ARCHIVE_CLASSES:
            return self.storage_class
        return None

    @property
    def archived(self) -> bool:
        """In GLACIER / DEEP_ARCHIVE or an Intelligent-Tiering archive tier, and not restored: a
        GET would fail (InvalidObjectState). From a listing without restore state, a restored
        object still counts as archived until a HEAD says otherwise."""
        return self.archive_tier is not None and not self.restored

    def user_metadata(self) -> dict[str, str]:
        """The source's own user metadata, without the fields this product writes."""
        return {k: v for k, v in self.metadata.items() if k not in OWN_METADATA}


def target_matches(source: ObjectInfo, target: ObjectInfo) -> bool:
    """True when the target already holds the source's current bytes.

    Size first, then the source ETag recorded at copy time (catches same-size changes, also for
    multipart objects), then MD5s where both sides know them (objects copied by other tools).
    The target's own ETag is never taken for an MD5 on an object we wrote (see etag_is_md5).
    """
    if source.size != target.size:
        return False
    recorded = target.recorded_source_etag
    if recorded:
        return recorded == source.etag
    source_md5, target_md5 = source.known_md5, target.known_md5
    return source_md5 is not None and source_md5 == target_md5


def _expires(value: Any) -> Any:
    """Expires as an instant: boto3 parses it into a datetime, the lean path keeps the text."""
    if isinstance(value, datetime):
        moment = value
    else:
        try:
            moment = parsedate_to_datetime(str(value).strip())
        except (TypeError, ValueError):
            return str(value).strip()  # not a date: compared as sent
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _comparable_headers(obj: ObjectInfo) -> dict[str, Any]:
    return {
        name: _expires(value) if name == "Expires" else str(value).strip()
        for name, value in obj.headers.items()
        if name in CONTENT_HEADERS
    }


def _comparable_metadata(obj: ObjectInfo) -> dict[str, str]:
    # Metadata names are case-insensitive (S3 lowercases them, some stores keep the case).
    return {k.lower(): v for k, v in obj.metadata.items() if k.lower() not in OWN_METADATA}


def metadata_matches(source: ObjectInfo, target: ObjectInfo) -> bool:
    """True when the target carries the source's content headers and user metadata, the fields
    this product writes aside. Both must come from HeadObject: a listing holds neither."""
    for obj in (source, target):
        if not obj.complete:
            raise ValueError(f"metadata of {obj.key!r} is unknown: it was read from a listing, not a HEAD")
    return _comparable_headers(source) == _comparable_headers(target) and _comparable_metadata(
        source
    ) == _comparable_metadata(target)
