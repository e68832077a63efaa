"""The storage interface: what the copy engine asks of the store at either end of a copy.

Stores move bytes; the engine plans and verifies. A store answers a HEAD, reads byte ranges pinned
to the version it looked at, writes an object in one request or in numbered parts (create, part,
complete, abort), lists keys in order, deletes, and names the incomplete uploads of a key. It is
S3-shaped: an S3-compatible store maps each call onto one S3 request; other stores (Azure Blob)
map the same calls onto their own model.

MD5s cross this interface as lowercase hex; metadata names are S3's (the part after
`x-amz-meta-`, lowercase), with this product's own fields (objects.OWN_METADATA) among them. Each
store maps both onto what it can hold and back.

Failures a store raises (besides what the SDK underneath raises before a store maps it):
- StoreUnavailableError: throttling, 5xx, a dropped connection; the same request may succeed later.
- StoreAccessError / StoreMissingError: wrong credentials, no permission, no such bucket or
  container; retrying cannot help (PermanentError).
- IntegrityError: the store refused bytes that did not match their checksum.
- SourceChangedError: a pinned read found another version, the object vanished during a read, or
  an upload's parts vanished before completion; the object is to be looked at and copied again.
- UnstorableKeyError: the store refuses this key for good.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from replicator.errors import PermanentError
from replicator.objects import CONTENT_HEADERS, META_MD5, META_SOURCE_ETAG, OWN_METADATA, ObjectInfo

Data = bytes | bytearray | memoryview


def md5_base64(md5_hex: str) -> str:
    """Content-MD5's form (base64 of the digest) of an MD5 given as hex."""
    return base64.b64encode(bytes.fromhex(md5_hex)).decode()


class StoreUnavailableError(ConnectionError):
    """The store is throttling, failing (5xx) or unreachable: the same request may succeed if
    sent again. A ConnectionError, so that errors.is_retryable() counts it as passing trouble."""


class StoreAccessError(PermanentError):
    """The store refused our credentials or their permissions (401/403). The message names the
    account and the container or bucket, never the secret."""

    reason = "store_access"


class StoreMissingError(PermanentError):
    """The bucket or container this store writes to does not exist."""

    reason = "store_missing"


# ContentHeaders' fields and the boto3 names of the same headers (objects.CONTENT_HEADERS).
_HEADER_NAMES = dict(
    zip(
        (
            "content_type",
            "content_encoding",
            "content_disposition",
            "content_language",
            "cache_control",
            "expires",
        ),
        CONTENT_HEADERS,
        strict=True,
    )
)


@dataclass(frozen=True)
class ContentHeaders:
    """The content headers carried with an object. `expires` is an instant (boto3 parses it) or
    the text as sent; a store without an Expires header keeps it elsewhere and gives it back."""

    content_type: str | None = None
    content_encoding: str | None = None
    content_disposition: str | None = None
    content_language: str | None = None
    cache_control: str | None = None
    expires: datetime | str | None = None

    @classmethod
    def from_s3(cls, headers: Mapping[str, Any]) -> ContentHeaders:
        """From boto3-named headers (ObjectInfo.headers)."""
        return cls(**{ours: headers[s3] for ours, s3 in _HEADER_NAMES.items() if headers.get(s3) is not None})

    def to_s3(self) -> dict[str, Any]:
        """boto3-named headers, only those set."""
        values = {s3: getattr(self, ours) for ours, s3 in _HEADER_NAMES.items()}
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class ObjectVersion:
    """Which version of an object a read must find: the store's ETag as it spells it (unquoted),
    and the version id where the store keeps versions."""

    etag: str
    version_id: str | None = None


@dataclass(frozen=True)
class ReplicaRecord:
    """What this product recorded on an object it wrote (objects.OWN_METADATA)."""

    source_etag: str | None = None
    md5: str | None = None

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> ReplicaRecord:
        return cls(source_etag=metadata.get(META_SOURCE_ETAG), md5=metadata.get(META_MD5))


@dataclass(frozen=True)
class StoredObject:
    """A HEAD's answer. `etag` is the store's own (unquoted, as the store spells it: for reads
    pinned to this version, not an MD5); `content_md5` is the whole object's MD5 (hex) when the
    store knows it. `metadata` holds the user metadata and our own fields by their S3 names."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None = None
    content_md5: str | None = None
    headers: ContentHeaders = field(default_factory=ContentHeaders)
    metadata: Mapping[str, str] = field(default_factory=dict)
    version_id: str | None = None

    @property
    def version(self) -> ObjectVersion:
        return ObjectVersion(self.etag, self.version_id)

    @property
    def replica(self) -> ReplicaRecord:
        return ReplicaRecord.from_metadata(self.metadata)

    def user_metadata(self) -> dict[str, str]:
        """The metadata without the fields this product writes."""
        return {k: v for k, v in self.metadata.items() if k not in OWN_METADATA}

    def to_object_info(self) -> ObjectInfo:
        """The engine's view of it (ObjectInfo), as if read by HeadObject."""
        return ObjectInfo(
            key=self.key,
            size=self.size,
            etag=self.etag,
            last_modified=self.last_modified,
            version_id=self.version_id,
            metadata=dict(self.metadata),
            headers=self.headers.to_s3(),
        )


@dataclass(frozen=True)
class ListedObject:
    """A listing's entry: no headers, no metadata."""

    key: str
    size: int
    etag: str
    last_modified: datetime | None = None


@dataclass(frozen=True)
class Upload:
    """An object being written in parts. S3 creates it on the server (CreateMultipartUpload);
    a store that applies headers and metadata only when the object is committed (Azure Blob)
    carries them here. Built again from an IncompleteUpload to resume one."""

    key: str
    upload_id: str
    headers: ContentHeaders = field(default_factory=ContentHeaders)
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Part:
    """An uploaded part: its number (from 1), what the store needs to assemble it (S3: the
    part's ETag; Azure Blob: the block id) and its size."""

    number: int
    token: str
    size: int


@dataclass(frozen=True)
class IncompleteUpload:
    """An upload of `key` begun and never completed. `initiated` is by the store's clock, None
    when the store does not say; `parts` is None when they could not be listed."""

    key: str
    upload_id: str
    initiated: datetime | None = None
    parts: Mapping[int, Part] | None = None


@dataclass(frozen=True)
class StoreLimits:
    """Sizes the engine plans parts with."""

    max_parts: int
    min_part_size: int  # every part but the last
    max_part_size: int
    max_single_put: int
    max_object_size: int


@runtime_checkable
class Store(Protocol):
    """One bucket or container. Implementations are thread-safe: parts go in parallel."""

    @property
    def name(self) -> str:
        """For logs and reports: the kind of store and where (never a credential)."""
        ...

    @property
    def limits(self) -> StoreLimits: ...

    def head(self, key: str) -> StoredObject | None:
        """The object's size, versions, headers and metadata; None when there is none."""
        ...

    def read_range(
        self, key: str, start: int, length: int, expect: ObjectVersion | None = None
    ) -> bytes | bytearray:
        """`length` bytes from `start`; with `expect`, only from that version (another one, or
        none: SourceChangedError)."""
        ...

    def put(
        self, key: str, data: Data, headers: ContentHeaders, metadata: Mapping[str, str], md5: str
    ) -> str | None:
        """Write a whole object in one request; the store checks the bytes against `md5` (hex).
        Returns the written object's ETag when the store names it."""
        ...

    def create_upload(self, key: str, headers: ContentHeaders, metadata: Mapping[str, str]) -> Upload:
        """Begin an object written in parts; nothing is visible under `key` until complete()."""
        ...

    def upload_part(self, upload: Upload, number: int, data: Data, md5: str | None) -> Part:
        """Send part `number` (1-based); the store checks it against `md5` (hex) when given."""
        ...

    def complete(self, upload: Upload, parts: Sequence[Part]) -> str | None:
        """Assemble the parts, in the order of their numbers, into the object; returns its ETag
        when the store names it."""
        ...

    def abort(self, upload: Upload) -> None:
        """Give up an upload: its parts never become visible. Idempotent."""
        ...

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ListedObject]:
        """The objects under `prefix` whose keys sort after `start_after`, in key order."""
        ...

    def delete(self, key: str) -> None:
        """Remove the object; absent already is fine."""
        ...

    def incomplete_uploads(self, key: str) -> Sequence[IncompleteUpload]:
        """The uploads of exactly this key begun and not completed (nor aborted, where the store
        can forget an upload), with their parts."""
        ...


# -- optional capabilities -------------------------------------------------------------------------
# A store offers these besides the Store calls where its model allows; the engine asks with
# isinstance() and does without otherwise.


@runtime_checkable
class PlansParts(Protocol):
    """A store with its own rule for part sizes (Azure Blob: block_size_for); without it, parts
    are sized from StoreLimits."""

    def part_size_for(self, size: int, configured: int) -> int:
        """The part size for an object of `size` bytes, given the configured part size."""
        ...


@runtime_checkable
class RefusesKeys(Protocol):
    """A store that can tell from a key alone that it cannot hold it (Azure Blob's naming rules)."""

    def key_refusal(self, key: str) -> str | None:
        """Why this store can never hold `key`, in words; None when it can. Asks nothing of the
        service."""
        ...


@runtime_checkable
class UpdatesMetadata(Protocol):
    """A store that can replace an object's content headers and metadata without the bytes
    being sent again (Azure Blob: Set Blob Properties and Set Blob Metadata)."""

    def update_metadata(
        self, key: str, expect: ObjectVersion, headers: ContentHeaders, metadata: Mapping[str, str]
    ) -> str | None:
        """Give the object exactly these headers and this metadata (ours among it), only while it
        is still the version `expect` names (another one, or none: SourceChangedError). Returns
        the object's ETag afterwards when the store names it."""
        ...
