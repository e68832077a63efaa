"""What we know about an object on either end, read from HeadObject or a listing."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
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

_PLAIN_MD5 = re.compile(r"^[0-9a-f]{32}$")
_CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+)$")


def clean_etag(etag: str | None) -> str:
    return (etag or "").strip('"').lower()


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
        )

    @classmethod
    def from_listing(cls, entry: Any) -> ObjectInfo:
        return cls(
            key=entry["Key"],
            size=int(entry["Size"]),
            etag=clean_etag(entry.get("ETag")),
            last_modified=entry.get("LastModified"),
            complete=False,
        )

    @property
    def etag_is_md5(self) -> bool:
        return not self.encrypted_etag and bool(_PLAIN_MD5.match(self.etag))

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

    def user_metadata(self) -> dict[str, str]:
        """The source's own user metadata, without the fields this product writes."""
        return {k: v for k, v in self.metadata.items() if k not in OWN_METADATA}


def target_matches(source: ObjectInfo, target: ObjectInfo) -> bool:
    """True when the target already holds the source's current bytes.

    Size first, then the source ETag recorded at copy time (catches same-size changes, also for
    multipart objects), then MD5s where both sides know them (objects copied by other tools).
    """
    if source.size != target.size:
        return False
    recorded = target.recorded_source_etag
    if recorded:
        return recorded == source.etag
    source_md5, target_md5 = source.known_md5, target.known_md5
    return source_md5 is not None and source_md5 == target_md5
