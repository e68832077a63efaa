"""`--cleanup-uploads`: abort incomplete multipart uploads on the target older than an age.

Killed copies (SIGKILL, OOM, a lost task) cannot abort their uploads, and their parts are billed
while invisible. Lyve Cloud's ListMultipartUploads may insist on a prefix: when the bucket-wide
call is refused, the top-level prefixes of the bucket are walked instead. After `--delete`, the
incomplete uploads of the deleted keys are aborted the same way.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from botocore.exceptions import ClientError

from migrate.listing import shared_prefix
from replicator.clients import Endpoint
from replicator.errors import describe, error_code
from replicator.logs import get_logger

log = get_logger("migrate.uploads")


@dataclass(frozen=True)
class Upload:
    key: str
    upload_id: str
    initiated: datetime


def _list(endpoint: Endpoint, prefix: str) -> Iterator[Upload]:
    paginator = endpoint.client.get_paginator("list_multipart_uploads")
    for page in paginator.paginate(Bucket=endpoint.bucket, Prefix=prefix):
        for upload in page.get("Uploads", []):
            yield Upload(upload["Key"], upload["UploadId"], upload["Initiated"])


def _fallback_prefixes(endpoint: Endpoint, prefix: str) -> list[str]:
    """Top-level prefixes and first characters: covers keys the listing does not show yet."""
    found: set[str] = {prefix + c for c in string.ascii_letters + string.digits + string.punctuation}
    paginator = endpoint.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=endpoint.bucket, Prefix=prefix, Delimiter="/"):
        found.update(p["Prefix"] for p in page.get("CommonPrefixes", []))
    return sorted(found)


def incomplete_uploads(endpoint: Endpoint, prefix: str = "") -> Iterator[Upload]:
    try:
        yield from _list(endpoint, prefix)
        return
    except ClientError as exc:
        log.warning("list_uploads_needs_prefix", error=describe(exc))
    seen: set[str] = set()
    for sub in _fallback_prefixes(endpoint, prefix):
        try:
            for upload in _list(endpoint, sub):
                if upload.upload_id not in seen:
                    seen.add(upload.upload_id)
                    yield upload
        except ClientError as exc:
            log.warning("list_uploads_failed", prefix=sub, error=describe(exc))


def _abort(endpoint: Endpoint, upload: Upload) -> bool:
    """Abort one upload; True when it is gone (also when someone else aborted it first)."""
    try:
        endpoint.client.abort_multipart_upload(
            Bucket=endpoint.bucket, Key=upload.key, UploadId=upload.upload_id
        )
    except ClientError as exc:
        if error_code(exc) not in ("NoSuchUpload", "404"):
            log.error("abort_failed", key=upload.key, error=describe(exc))
            return False
    return True


def cleanup_uploads(
    endpoint: Endpoint, older_than: datetime, prefix: str = "", dry_run: bool = False
) -> list[Upload]:
    aborted: list[Upload] = []
    for upload in incomplete_uploads(endpoint, prefix):
        if upload.initiated >= older_than:
            continue
        if not dry_run and not _abort(endpoint, upload):
            continue
        log.info(
            "upload_aborted" if not dry_run else "upload_would_abort",
            key=upload.key,
            upload_id=upload.upload_id,
            initiated=upload.initiated.isoformat(),
        )
        aborted.append(upload)
    return aborted


def abort_uploads_of(endpoint: Endpoint, deleted: Mapping[str, datetime]) -> list[Upload]:
    """Abort the incomplete uploads of keys just deleted, begun before each key's delete (by the
    target's clock): an upload begun after it belongs to a new copy of a re-created key.

    One listing over the prefix the keys share (Lyve needs a prefix; `incomplete_uploads` walks
    the top-level ones when the bucket-wide call is refused), not one per key.
    """
    if not deleted:
        return []
    aborted: list[Upload] = []
    for upload in incomplete_uploads(endpoint, shared_prefix(deleted)):
        when = deleted.get(upload.key)
        if when is None or upload.initiated >= when:
            continue
        if _abort(endpoint, upload):
            log.info("upload_aborted", key=upload.key, upload_id=upload.upload_id, reason="key deleted")
            aborted.append(upload)
    return aborted
