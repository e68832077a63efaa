"""Keys the target cannot store, and telling its refusals of them from passing trouble.

Lyve Cloud allows at most 255 bytes per `/`-separated segment of a key (1,024 in all) and
cannot hold an object and a prefix of the same name (`a` and `a/b`), both of which S3 allows.
Such keys fail for good: retrying them only fills the dead-letter queue. Stores say so in
different ways, some clearly (KeyTooLongError), some with an InternalError at the end of a
multipart upload (SeaweedFS), so an ambiguous answer is confirmed by looking at the target
before it is called permanent. When the target is AWS S3 itself (TARGET_DEFAULT_CREDENTIALS,
migrate --reverse) only S3's own 1,024-byte limit applies: it stores what Lyve Cloud refuses.
"""

from __future__ import annotations

from botocore.exceptions import BotoCoreError, ClientError

from replicator.aws_endpoint import on_aws
from replicator.clients import Endpoint
from replicator.errors import UnstorableKeyError, describe, error_code, is_not_found
from replicator.logs import get_logger

log = get_logger(__name__)

MAX_SEGMENT_BYTES = 255
MAX_KEY_BYTES = 1024
_COEXIST = "an object and a prefix of the same name cannot coexist"

# Answers that mean what they say, never a refusal of the key: not worth probing for.
_SPECIFIC_CODES = frozenset(
    {
        "AccessDenied",
        "AuthorizationHeaderMalformed",
        "BadDigest",
        "EntityTooLarge",
        "EntityTooSmall",
        "ExpiredToken",
        "IncompleteBody",
        "InvalidAccessKeyId",
        "InvalidDigest",
        "InvalidPart",
        "InvalidPartOrder",
        "MalformedXML",
        "NoSuchBucket",
        "NoSuchUpload",
        "PreconditionFailed",
        "RequestTimeTooSkewed",
        "RequestTimeout",
        "SignatureDoesNotMatch",
        "SlowDown",
        "ServiceUnavailable",
        "XAmzContentSHA256Mismatch",
    }
)


def lyve_rules_apply(target: Endpoint | None) -> bool:
    """Lyve Cloud's key rules hold for every target but AWS S3 (unknown: they hold)."""
    return target is None or not on_aws(target)


def check_key(key: str, target: Endpoint | None = None) -> UnstorableKeyError | None:
    """The reason `target` cannot store this key, known from the key alone, or None. Without a
    target, Lyve Cloud's rules are applied."""
    size = len(key.encode("utf-8"))
    if size > MAX_KEY_BYTES:
        return UnstorableKeyError(
            f"target cannot store {key!r}: the key is {size} bytes, over the {MAX_KEY_BYTES}-byte limit"
        )
    if not lyve_rules_apply(target):
        return None
    for segment in key.split("/"):
        length = len(segment.encode("utf-8"))
        if length > MAX_SEGMENT_BYTES:
            shown = segment if len(segment) <= 40 else f"{segment[:37]}..."
            return UnstorableKeyError(
                f"target cannot store {key!r}: its segment {shown!r} is {length} bytes (UTF-8), over "
                f"the {MAX_SEGMENT_BYTES}-byte limit per '/'-separated segment"
            )
    return None


def _ambiguous(exc: ClientError) -> bool:
    """An answer that could be a refusal of the key in disguise: a 500, or a generic 4xx."""
    status = int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
    if error_code(exc) in _SPECIFIC_CODES:
        return False
    # 502/503/504 say "try again"; they are never taken for a refusal.
    return status in (400, 409, 500)


def _object_exists(target: Endpoint, key: str) -> bool:
    try:
        target.client.head_object(Bucket=target.bucket, Key=key)
    except ClientError as exc:
        if is_not_found(exc):
            return False
        raise
    return True


def name_clash(key: str, target: Endpoint) -> str | None:
    """What on the target stands in the way of an object named `key`, or None: an object named
    after one of its parent prefixes, or objects under `key + "/"`."""
    segments = key.split("/")
    for end in range(1, len(segments)):
        parent = "/".join(segments[:end])
        if parent and _object_exists(target, parent):
            return f"an object named {parent!r} exists ({_COEXIST})"
    listing = target.client.list_objects_v2(Bucket=target.bucket, Prefix=f"{key}/", MaxKeys=1)
    under = listing.get("Contents") or []
    if under:
        return f"objects exist under {key + '/'!r}, e.g. {under[0]['Key']!r} ({_COEXIST})"
    return None


def explain_refusal(exc: BaseException, key: str, target: Endpoint) -> UnstorableKeyError | None:
    """A target write error as a permanent refusal of `key`, in words; None when it may pass
    (and the usual retries apply)."""
    if not isinstance(exc, ClientError):
        return None
    answered = f"the target answered {describe(exc)}"
    by_key = check_key(key, target)
    if error_code(exc) == "KeyTooLongError":
        if by_key is not None:
            return UnstorableKeyError(f"{by_key} ({answered})")
        message = exc.response.get("Error", {}).get("Message") or "key too long"
        return UnstorableKeyError(f"target cannot store {key!r}: {message} ({answered})")
    if not _ambiguous(exc):
        return None
    if by_key is not None:
        return UnstorableKeyError(f"{by_key} ({answered})")
    if not lyve_rules_apply(target):
        return None  # AWS S3 stores `a` beside `a/b`: its 500 is passing trouble
    try:
        clash = name_clash(key, target)
    except (ClientError, BotoCoreError) as probe_error:
        # Unconfirmed: treated as passing trouble, retried as usual.
        log.debug("name_clash_probe_failed", key=key, error=describe(probe_error))
        return None
    if clash is None:
        return None
    return UnstorableKeyError(f"target cannot store {key!r}: {clash}; {answered}")
