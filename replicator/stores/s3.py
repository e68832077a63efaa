"""An S3-compatible bucket as a Store: Lyve Cloud, AWS S3, SeaweedFS, MinIO, moto.

Requests. Object GETs (ranged and whole), PutObject, UploadPart and listing pages go on the lean
HTTP path (lean_s3.LeanS3) when the settings and the endpoint allow it and the key is one it can
address; every other request goes through boto3, and every request does once the lean path has
been refused for the whole endpoint (a redirect, say). `lean_for` is the one place that decides.
Each request is retried once, by one policy: botocore's own (standard mode, MAX_ATTEMPTS) for a
boto3 call, errors.request_retrying(MAX_ATTEMPTS) for a lean request and for a boto3 body cut
short while it was read (botocore retries the request, not the read of its body).

Two layers. The request methods (get_range, get_object, put_object, send_part, head_object, look)
send one S3 request and raise what the SDK or the lean path raised, for the copy engine, which
reads those errors itself (transfer.py). The Store methods (base.Store) build on them and raise
the project's errors:
- 401/403 (but RequestTimeTooSkewed, which S3 sends as 403 and retrying fixes): StoreAccessError,
  naming the bucket and the endpoint, never a credential.
- NoSuchBucket: StoreMissingError. A HEAD answers a missing bucket with a bare 404, which reads as
  "no such object": head() returns None then, and the next write or listing tells.
- BadDigest, InvalidDigest (errors.INTEGRITY_CODES): IntegrityError.
- A pinned read that finds another version (412) or no object (404, or a range past its end):
  SourceChangedError; so is an upload gone before its parts were sent or assembled (NoSuchUpload,
  InvalidPart).
- A write the target refuses for its key: UnstorableKeyError (target_rules.explain_refusal).
- On the source (endpoint.name == "source"), a read refused for good: the PermanentError
  errors.source_refusal builds (archived, SSE-C, SSE-KMS without kms:Decrypt).
- Throttling, 5xx and transport errors that outlast the retries are raised as sent: botocore's
  ClientError (5xx, SlowDown, ...) or connection errors, http.client's errors from the lean path.
  errors.is_retryable recognises each of them, as the engine, the worker and migrate already
  expect; StoreUnavailableError is not used here.
"""

from __future__ import annotations

import builtins
import http.client
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from botocore.exceptions import BotoCoreError, ClientError

from replicator import looks
from replicator.clients import Endpoint
from replicator.errors import (
    INTEGRITY_CODES,
    RETRYABLE_CODES,
    CancelledError,
    CopyError,
    IntegrityError,
    PermanentError,
    RetryPolicy,
    SourceChangedError,
    describe,
    error_code,
    is_not_found,
    is_retryable,
    request_retrying,
    source_refusal,
)
from replicator.lean_http import LeanUnsupported
from replicator.lean_s3 import LeanS3, lean_path
from replicator.logs import get_logger
from replicator.objects import ObjectInfo, clean_etag, timestamp
from replicator.settings import MIB, Settings
from replicator.stores.base import (
    ContentHeaders,
    Data,
    IncompleteUpload,
    ListedObject,
    ObjectVersion,
    Part,
    StoreAccessError,
    StoredObject,
    StoreLimits,
    StoreMissingError,
    Upload,
    md5_base64,
)
from replicator.target_rules import explain_refusal

log = get_logger(__name__)

T = TypeVar("T")

# S3's limits, with Lyve Cloud's smaller largest part (the copy engine plans with these too).
MIN_PART_SIZE = 5 * MIB
MAX_PART_SIZE = 4 * 1024 * MIB  # Lyve Cloud's limit (AWS allows 5 GiB)
MAX_PARTS = 10_000
MAX_SINGLE_PUT = 5 * 1024 * MIB
MAX_OBJECT_SIZE = 5 * 1024 * 1024 * MIB
PAGE_KEYS = 1000  # ListObjectsV2's largest page
_GONE_UPLOAD_CODES = frozenset({"NoSuchUpload", "InvalidPart"})
_PRECONDITION_CODES = frozenset({"PreconditionFailed", "412"})


class _CutShort(Exception):
    """Reading a boto3 response body failed part-way: botocore retried the request, not the read."""

    def __init__(self, error: Exception) -> None:
        super().__init__(describe(error))
        self.error = error


def unless_cancelled(cancel: threading.Event | None, call: Callable[[], T]) -> Callable[[], T]:
    """`call`, refused once `cancel` is set: a request told to stop makes no further attempt (its
    lease may run out meanwhile), the one in flight only ends."""

    def attempt() -> T:
        if cancel is not None and cancel.is_set():
            raise CancelledError("stopped between attempts")
        return call()

    return attempt


def _blob(data: Data) -> bytes | bytearray:
    # botocore takes bytes, bytearray or a file for a body, not a memoryview.
    return bytes(data) if isinstance(data, memoryview) else data


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def _public_url(url: str) -> str:
    """The endpoint URL without any user:password part, for names and messages."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class S3Store:
    """One bucket of an S3-compatible endpoint as a Store. Thread-safe: boto3 clients are, the
    lean path keeps a connection per thread, and turning the lean path off is one assignment."""

    limits = StoreLimits(
        max_parts=MAX_PARTS,
        min_part_size=MIN_PART_SIZE,
        max_part_size=MAX_PART_SIZE,
        max_single_put=MAX_SINGLE_PUT,
        max_object_size=MAX_OBJECT_SIZE,
    )

    def __init__(self, endpoint: Endpoint, settings: Settings) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.bucket = endpoint.bucket
        self.client = endpoint.client
        self._url = _public_url(endpoint.url)
        self._lean = lean_path(endpoint, settings)
        self._retry = request_retrying(settings.max_attempts)
        self._retry_body = RetryPolicy(
            settings.max_attempts, first_wait=0.2, max_wait=5, retryable=lambda e: isinstance(e, _CutShort)
        )

    @property
    def name(self) -> str:
        return f"s3 {self.bucket} at {self._url}"

    def __repr__(self) -> str:
        return f"S3Store({self.name!r})"

    # -- the path a request takes ------------------------------------------------------------------

    @property
    def lean(self) -> LeanS3 | None:
        """The lean path to this bucket, None once it is off (or never was on)."""
        return self._lean

    def lean_for(self, key: str | None) -> LeanS3 | None:
        """The lean path for a request about `key` (None: a bucket-level request), or None when
        boto3 is to send it. The one place that chooses."""
        lean = self._lean
        if lean is None or (key is not None and not lean.supports(key)):
            return None
        return lean

    def lean_failed(self, exc: LeanUnsupported) -> None:
        """The lean path refused a request: off for every later one if the refusal is about the
        endpoint (a redirect, another region), not about one request."""
        if exc.endpoint_wide and self._lean is not None:
            log.info("lean_path_off", side=self.endpoint.name, reason=str(exc))
            self._lean = None

    def _either(
        self,
        key: str | None,
        lean_call: Callable[[LeanS3], T],
        boto_call: Callable[[], T],
        cancel: threading.Event | None = None,
    ) -> T:
        """One request, on the lean path when lean_for allows it (retried here), else (or when
        the lean path refuses it) through boto3 (retried by botocore)."""
        lean = self.lean_for(key)
        if lean is not None:
            try:
                return self._retry(unless_cancelled(cancel, lambda: lean_call(lean)))
            except LeanUnsupported as exc:
                self.lean_failed(exc)
        return boto_call()

    # -- requests, errors as sent ------------------------------------------------------------------

    def _boto_get(self, call: Callable[[], Any], max_size: int | None = None) -> tuple[Any, bytes | None]:
        """A boto3 GetObject and its body; (response, None) when the body is longer than max_size
        (closed unread). botocore retries the request; a body cut short is read again here."""

        def attempt() -> tuple[Any, bytes | None]:
            response = call()
            body = response["Body"]
            if max_size is not None and int(response["ContentLength"]) > max_size:
                body.close()
                return response, None
            try:
                return response, body.read()
            except Exception as exc:
                if is_retryable(exc):
                    raise _CutShort(exc) from exc
                raise

        try:
            return self._retry_body(attempt)
        except _CutShort as exc:
            raise exc.error from None

    def get_range(
        self,
        key: str,
        start: int,
        length: int,
        version_id: str | None = None,
        if_match: str | None = None,
        cancel: threading.Event | None = None,
    ) -> bytes | bytearray:
        """Bytes start..start+length-1 (length > 0) of the object: of `version_id`, or only while
        its ETag matches `if_match` (quoted), when given. Fewer bytes when the object ends first."""

        def lean(path: LeanS3) -> bytes | bytearray:
            return path.get_range(key, start, length, version_id, if_match)

        def boto() -> bytes | bytearray:
            args: dict[str, Any] = {
                "Bucket": self.bucket,
                "Key": key,
                "Range": f"bytes={start}-{start + length - 1}",
            }
            if version_id:
                args["VersionId"] = version_id
            if if_match:
                args["IfMatch"] = if_match
            # A store that ignored the Range header answers the whole object: not read.
            response, data = self._boto_get(
                unless_cancelled(cancel, lambda: self.client.get_object(**args)), length
            )
            if data is None:
                raise http.client.HTTPException(
                    f"asked for {length} bytes of {key!r}, the answer holds {response['ContentLength']}"
                )
            return data

        return self._either(key, lean, boto, cancel)

    def get_object(self, key: str, max_size: int | None = None) -> tuple[Any, bytes | None]:
        """The whole object: (a GetObject-shaped response, its bytes), or (response, None) when it
        is longer than max_size (not read)."""
        return self._either(
            key,
            lambda lean: lean.get_object(key, max_size=max_size),
            lambda: self._boto_get(lambda: self.client.get_object(Bucket=self.bucket, Key=key), max_size),
        )

    def put_object(
        self, key: str, data: Data, metadata: Mapping[str, str], checksum: str, **params: Any
    ) -> str | None:
        """PutObject with its Content-MD5 (`checksum`, base64) and boto3-named parameters
        (content headers, Tagging); the ETag, when the answer names it."""
        body = data if isinstance(data, bytes) else bytes(data)

        def boto() -> str | None:
            response = self.client.put_object(
                Bucket=self.bucket,
                Key=key,
                Body=body,
                Metadata=dict(metadata),
                ContentMD5=checksum,
                **params,
            )
            return response.get("ETag")

        def lean(path: LeanS3) -> str | None:
            return path.put_object(key, body, dict(metadata), ContentMD5=checksum, **params)

        return self._either(key, lean, boto)

    def send_part(
        self,
        key: str,
        upload_id: str,
        number: int,
        data: Data,
        checksum: str | None,
        cancel: threading.Event | None = None,
    ) -> str:
        """UploadPart, with its Content-MD5 (`checksum`, base64) when given; the part's ETag as
        the store sent it."""

        def boto() -> str:
            integrity: dict[str, Any] = {"ContentMD5": checksum} if checksum else {}
            response = self.client.upload_part(
                Bucket=self.bucket,
                Key=key,
                UploadId=upload_id,
                PartNumber=number,
                Body=_blob(data),  # type: ignore[arg-type]  # botocore takes a bytearray; the stubs say bytes
                **integrity,
            )
            return response["ETag"]

        body = _blob(data)
        return self._either(
            key, lambda lean: lean.upload_part(key, upload_id, number, body, checksum), boto, cancel
        )

    def head_object(self, key: str, part_number: int | None = None) -> Any:
        """HeadObject (of part `part_number` when given: the object's headers and its part layout)."""
        if part_number is not None:
            return self.client.head_object(Bucket=self.bucket, Key=key, PartNumber=part_number)
        return self.client.head_object(Bucket=self.bucket, Key=key)

    def look(self, key: str) -> ObjectInfo | None:
        """HeadObject read into ObjectInfo; None for a 404 (no such key, a delete marker, or no
        such bucket: HEAD cannot tell). On the source, a refusal retrying cannot fix is raised
        as the PermanentError that says so (errors.source_refusal); any other error as sent."""
        return looks.head(self.endpoint, key)

    # -- the Store ---------------------------------------------------------------------------------

    def head(self, key: str) -> StoredObject | None:
        """None for a 404 (see look)."""
        info = self._call("HeadObject", key, lambda: self.look(key))
        return self.stored(info) if info is not None else None

    @staticmethod
    def stored(info: ObjectInfo) -> StoredObject:
        """A HEAD's (or a whole GET's) answer as read into ObjectInfo, as the Store says it.
        `content_md5`: the ETag when it is a plain MD5 of an object neither SSE-KMS nor SSE-C;
        on an object this product wrote, the MD5 it recorded instead (a store may give a
        multipart object an ETag that only looks like an MD5: Lyve Cloud does)."""
        return StoredObject(
            key=info.key,
            size=info.size,
            etag=info.etag,
            last_modified=info.last_modified,
            content_md5=info.known_md5,
            headers=ContentHeaders.from_s3(info.headers),
            metadata=dict(info.metadata),
            version_id=info.version_id,
        )

    def read_range(
        self, key: str, start: int, length: int, expect: ObjectVersion | None = None
    ) -> bytes | bytearray:
        """Pinned to `expect`'s version id when it has one (a version never changes), else to its
        ETag (If-Match)."""
        if start < 0 or length < 0:
            raise ValueError(f"bad range: start {start}, length {length}")
        if length == 0:
            return b""
        version_id = expect.version_id if expect is not None else None
        if_match = f'"{expect.etag}"' if expect is not None and expect.etag and not version_id else None
        data = self._call(
            "GetObject", key, lambda: self.get_range(key, start, length, version_id, if_match), reading=True
        )
        if len(data) != length:
            raise SourceChangedError(
                f"read {len(data)} bytes of {key!r} at offset {start}, expected {length}: it is shorter now"
            )
        return data

    def put(
        self, key: str, data: Data, headers: ContentHeaders, metadata: Mapping[str, str], md5: str
    ) -> str | None:
        """One PutObject with the bytes' Content-MD5."""
        if len(data) > MAX_SINGLE_PUT:
            raise ValueError(
                f"{len(data)} bytes are above PutObject's {MAX_SINGLE_PUT} byte limit: write in parts"
            )
        checksum = md5_base64(md5)
        etag = self._call(
            "PutObject",
            key,
            lambda: self.put_object(key, data, metadata, checksum, **headers.to_s3()),
            writing=True,
        )
        return clean_etag(etag) or None

    def create_upload(self, key: str, headers: ContentHeaders, metadata: Mapping[str, str]) -> Upload:
        created = self._call(
            "CreateMultipartUpload",
            key,
            lambda: self.client.create_multipart_upload(
                Bucket=self.bucket, Key=key, Metadata=dict(metadata), **headers.to_s3()
            ),
            writing=True,
        )
        return Upload(key, created["UploadId"], headers, dict(metadata))

    def upload_part(self, upload: Upload, number: int, data: Data, md5: str | None) -> Part:
        """The part's token is its ETag (unquoted)."""
        if not 1 <= number <= MAX_PARTS:
            raise ValueError(f"part number {number} is outside 1..{MAX_PARTS}")
        checksum = md5_base64(md5) if md5 else None
        etag = self._call(
            "UploadPart",
            upload.key,
            lambda: self.send_part(upload.key, upload.upload_id, number, data, checksum),
            writing=True,
        )
        return Part(number, clean_etag(etag), len(data))

    def complete(self, upload: Upload, parts: Sequence[Part]) -> str | None:
        ordered = sorted(parts, key=lambda part: part.number)
        numbers = [part.number for part in ordered]
        if len(set(numbers)) != len(numbers):
            raise ValueError(f"upload {upload.upload_id} of {upload.key!r}: a part number given twice")
        listed: Any = [{"PartNumber": part.number, "ETag": f'"{part.token}"'} for part in ordered]
        completed = self._call(
            "CompleteMultipartUpload",
            upload.key,
            lambda: self.client.complete_multipart_upload(
                Bucket=self.bucket,
                Key=upload.key,
                UploadId=upload.upload_id,
                MultipartUpload={"Parts": listed},
            ),
            writing=True,
        )
        return clean_etag(completed.get("ETag")) or None

    def abort(self, upload: Upload) -> None:
        """An upload gone already (aborted, completed, expired) is fine."""

        def abort() -> None:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.bucket, Key=upload.key, UploadId=upload.upload_id
                )
            except ClientError as exc:
                if error_code(exc) not in ("NoSuchUpload", "404"):
                    raise

        self._call("AbortMultipartUpload", upload.key, abort)

    def list(self, prefix: str = "", start_after: str | None = None) -> Iterator[ListedObject]:
        """ListObjectsV2 pages, in the store's (byte) order."""
        token: str | None = None
        while True:
            page = self._call("ListObjectsV2", None, self._page_call(prefix, start_after, token))
            for entry in page.get("Contents", []):
                key = entry["Key"]
                if start_after is not None and key <= start_after:
                    continue  # a store that ignored StartAfter costs a longer listing, not a wrong one
                modified = entry.get("LastModified")
                yield ListedObject(
                    key,
                    int(entry["Size"]),
                    clean_etag(entry.get("ETag")),
                    timestamp(modified) if modified else None,
                )
            if not page.get("IsTruncated"):
                return
            token = page.get("NextContinuationToken")
            if not token:
                raise CopyError(f"the listing of {self.name} is truncated but gives no continuation token")

    def _page_call(self, prefix: str, start_after: str | None, token: str | None) -> Callable[[], Any]:
        def boto() -> Any:
            args: dict[str, Any] = {"Bucket": self.bucket, "Prefix": prefix, "MaxKeys": PAGE_KEYS}
            if start_after is not None:
                args["StartAfter"] = start_after
            if token is not None:
                args["ContinuationToken"] = token
            return self.client.list_objects_v2(**args)

        return lambda: self._either(
            None, lambda lean: lean.list_objects(prefix, start_after, token, PAGE_KEYS), boto
        )

    def delete(self, key: str) -> None:

        def delete() -> None:
            try:
                self.client.delete_object(Bucket=self.bucket, Key=key)
            except ClientError as exc:
                if not is_not_found(exc):
                    raise

        self._call("DeleteObject", key, delete)

    def incomplete_uploads(self, key: str) -> Sequence[IncompleteUpload]:
        """Uploads of exactly `key` (listed by prefix: Lyve Cloud needs one), in the order listed,
        with their parts; `parts` is None for an upload whose parts could not be listed, and an
        upload gone meanwhile is left out."""

        def uploads() -> builtins.list[tuple[str, Any]]:
            paginator = self.client.get_paginator("list_multipart_uploads")
            return [
                (upload["UploadId"], upload.get("Initiated"))
                for page in paginator.paginate(Bucket=self.bucket, Prefix=key)
                for upload in page.get("Uploads", [])
                if upload["Key"] == key
            ]

        found = []
        for upload_id, initiated in self._call("ListMultipartUploads", key, uploads):
            try:
                parts: dict[int, Part] | None = self._parts(key, upload_id)
            except ClientError as exc:
                if error_code(exc) in ("NoSuchUpload", "404"):
                    continue
                log.info(
                    "parts_not_listed", store=self.name, key=key, upload_id=upload_id, error=describe(exc)
                )
                parts = None
            except BotoCoreError as exc:
                log.info(
                    "parts_not_listed", store=self.name, key=key, upload_id=upload_id, error=describe(exc)
                )
                parts = None
            found.append(IncompleteUpload(key, upload_id, initiated, parts))
        return found

    def _parts(self, key: str, upload_id: str) -> dict[int, Part]:
        """number -> Part. A part number listed twice with different contents (SeaweedFS lists
        every upload of a part number until completion) holds no telling which counts: it gets
        no token and size 0, so that nobody keeps it."""
        parts: dict[int, Part] = {}
        paginator = self.client.get_paginator("list_parts")
        for page in paginator.paginate(Bucket=self.bucket, Key=key, UploadId=upload_id):
            for entry in page.get("Parts", []):
                number = int(entry["PartNumber"])
                part = Part(number, clean_etag(entry.get("ETag")), int(entry["Size"]))
                parts[number] = part if parts.get(number, part) == part else Part(number, "", 0)
        return parts

    # -- errors ------------------------------------------------------------------------------------

    def _call(
        self,
        operation: str,
        key: str | None,
        call: Callable[[], T],
        reading: bool = False,
        writing: bool = False,
    ) -> T:
        try:
            return call()
        except ClientError as exc:
            failure = self._failure(exc, operation, key, reading, writing)
            if failure is None:
                raise
            raise failure from exc

    def _failure(
        self, exc: ClientError, operation: str, key: str | None, reading: bool = False, writing: bool = False
    ) -> Exception | None:
        """The project's error for a refused request, in words that name no credential; None
        when the error is to be raised as sent (see the module docstring)."""
        code, status = error_code(exc) or "", _status(exc)
        where = f"{operation} of {key!r}" if key is not None else operation
        place = f"bucket {self.bucket!r} at {self._url}"
        answer = f"{status} {code}" if code and code != str(status) else str(status or code)
        # HEAD's refusals were looked at already (look).
        refusal = self._source_refusal(exc, operation, key) if operation == "GetObject" else None
        if refusal is not None:
            return refusal
        if code in RETRYABLE_CODES:
            return None  # passing trouble, retried already (RequestTimeTooSkewed is a 403)
        if status in (401, 403):
            return StoreAccessError(
                f"{place} refused {where} ({answer}): check the {self.endpoint.name}'s access key and "
                "secret key, and that they may read and write this bucket"
            )
        if code == "NoSuchBucket":
            return StoreMissingError(
                f"{place} does not exist ({answer} on {where}): create it or fix its name"
            )
        if code in INTEGRITY_CODES:
            return IntegrityError(
                f"{place} refused {where}: the bytes do not match their checksum ({answer})"
            )
        if reading and (code in _PRECONDITION_CODES or is_not_found(exc) or code == "InvalidRange"):
            return SourceChangedError(
                f"{key!r} changed or vanished during {operation} ({answer}): look at it again"
            )
        if code in _GONE_UPLOAD_CODES:
            return SourceChangedError(
                f"the upload of {key!r} or some of its parts are gone ({answer} on {operation}): "
                "copy it again"
            )
        if writing and key is not None:
            return explain_refusal(exc, key, self.endpoint)
        return None

    def _source_refusal(self, exc: ClientError, operation: str, key: str | None) -> PermanentError | None:
        """On the source, a read refused for good (errors.source_refusal). A GET refused with a
        bare AccessDenied may be an SSE-KMS object whose key we may not use: only a HEAD (which
        needs no kms:Decrypt) tells, so one is made to name the key."""
        if self.endpoint.name != "source" or operation not in ("HeadObject", "GetObject"):
            return None
        refusal = source_refusal(exc, None, operation, key, self.endpoint)
        if (
            refusal is not None
            or key is None
            or operation != "GetObject"
            or error_code(exc) != "AccessDenied"
        ):
            return refusal
        try:
            info = ObjectInfo.from_head(key, self.head_object(key))
        except (ClientError, BotoCoreError, ValueError):
            return None
        return source_refusal(exc, info, operation, key, self.endpoint)
