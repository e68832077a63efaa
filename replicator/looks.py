"""Looking at one key on an S3 bucket: HEAD, and whether the source holds it at all (now)."""

from __future__ import annotations

from botocore.exceptions import ClientError

from replicator.clients import Endpoint
from replicator.errors import SourceBucketMissingError, error_code, is_not_found, source_refusal
from replicator.objects import ObjectInfo


def head(endpoint: Endpoint, key: str) -> ObjectInfo | None:
    """HeadObject, or None when the key does not exist (or is a delete marker).

    On the source, a refusal retrying cannot fix (an SSE-C object answers a bare 400) is raised
    as the PermanentError that says so.
    """
    try:
        response = endpoint.client.head_object(Bucket=endpoint.bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return None
        if endpoint.name == "source":
            refusal = source_refusal(exc, None, "HeadObject", key, endpoint)
            if refusal is not None:
                raise refusal from exc
        raise
    return ObjectInfo.from_head(key, response)


def source_absent(endpoint: Endpoint, key: str) -> bool:
    """True only when the source bucket is known, now, not to hold the key.

    HEAD answers a bare 404 both for a deleted key and for a missing bucket. A one-key listing
    from the key tells the two apart (NoSuchBucket) and shows whether the key is there at this
    moment (a key is the first of the keys it prefixes).
    """
    try:
        listing = endpoint.client.list_objects_v2(Bucket=endpoint.bucket, Prefix=key, MaxKeys=1)
    except ClientError as exc:
        if error_code(exc) == "NoSuchBucket":
            raise SourceBucketMissingError(
                f"source bucket {endpoint.bucket!r} does not exist at {endpoint.url}: a 404 from it "
                "proves nothing, so nothing is deleted on the target (check SOURCE_BUCKET and "
                "SOURCE_ENDPOINT_URL / SOURCE_REGION)"
            ) from None
        raise
    return not any(entry.get("Key") == key for entry in listing.get("Contents", []))
