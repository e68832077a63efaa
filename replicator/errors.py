"""Error types and the one place that decides whether an S3 error is worth retrying."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from http.client import HTTPException
from typing import TYPE_CHECKING, TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from tenacity import RetryCallState, Retrying, retry_base, stop_never, wait_exponential, wait_random
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ProtocolError

if TYPE_CHECKING:
    from replicator.clients import Endpoint
    from replicator.objects import ObjectInfo


class StartupError(Exception):
    """Configuration or connectivity problem found before any message is consumed."""


class CopyError(Exception):
    """A copy failed; the upload, if any, was aborted."""


class IntegrityError(CopyError):
    """The bytes written to the target do not match the source."""


class SourceChangedError(CopyError):
    """The source object changed while it was being copied; reconcile again."""


class CancelledError(CopyError):
    """The copy was stopped (shutdown, lease lost, lease at its 12-hour cap) before it finished.

    The multipart upload, if any, is kept so that the next attempt resumes it (see transfer.py);
    an interruption is not a failure of the object and never counts toward the DLQ.
    """


class LeaseLostError(CancelledError):
    """This worker no longer holds the message (a heartbeat failed or the lease ran out): the
    copy stops before the message can be seen by another worker."""


class PermanentError(CopyError):
    """Retrying cannot fix it: the worker sends the message to the DLQ at once (no back-off
    cycle), migrate reports the key apart and carries on. `reason` is a short stable label for
    metrics and reports; the message says what happened in words."""

    reason = "permanent"

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason


class UnstorableKeyError(PermanentError):
    """The target refuses this key for good (a `/` segment over 255 bytes, an object and a prefix
    of the same name, ...). The message names the key and the target's own reason."""

    reason = "unstorable_key"


class ArchivedObjectError(PermanentError):
    """The source object is in an archive storage class or tier and not restored."""

    reason = "archived"


class EncryptedSourceError(PermanentError):
    """The source object cannot be read with our keys: SSE-C (a customer key we do not have) or
    SSE-KMS with a key the task role may not use."""

    reason = "encrypted"


class SourceBucketMissingError(Exception):
    """The source bucket does not exist (or is not the one configured): nothing may be deleted
    on the target on the strength of a 404 from it."""


# -- classification ------------------------------------------------------------------------------

# Request level: worth sending the same request again (throttling, server-side trouble).
RETRYABLE_CODES = frozenset(
    {
        "SlowDown",
        "Throttling",
        "ThrottlingException",
        "RequestTimeout",
        "RequestTimeTooSkewed",
        "InternalError",
        "ServiceUnavailable",
        "503",
        "500",
        "502",
        "504",
    }
)

TRANSIENT_EXCEPTIONS: tuple[type[BaseException], ...] = (
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
    ProtocolError,
    Urllib3Error,
    ConnectionError,
    TimeoutError,
    HTTPException,
)

# Object level: the object must be looked at and copied again from the start.
SOURCE_CHANGED_CODES = frozenset(
    {
        "PreconditionFailed",  # the source changed under an If-Match read
        "412",
        "NoSuchUpload",  # the upload was aborted concurrently (stale-upload cleanup)
    }
)
# The target refused bytes that did not match their checksum: corrupted on the way.
INTEGRITY_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch"})

NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})
# 501: the store does not implement the request (or one of its headers).
NOT_IMPLEMENTED_CODES = frozenset({"NotImplemented", "501"})


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def _status(exc: ClientError) -> int:
    return int(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


def is_not_found(exc: BaseException) -> bool:
    """The object (or its version) is not there: HEAD answers a bare 404, GET NoSuchKey."""
    return error_code(exc) in NOT_FOUND_CODES


def is_retryable(exc: BaseException) -> bool:
    """Request level: the same request may succeed if sent again (transport errors, throttling,
    5xx but 501). A changed source, a vanished upload or corrupted bytes need the object started
    over (see object_restart_kind); repeating one request cannot fix them."""
    if isinstance(exc, CopyError):
        return False
    if isinstance(exc, TRANSIENT_EXCEPTIONS):
        return True
    if isinstance(exc, ClientError):
        status = _status(exc)
        if status == 501 or error_code(exc) in NOT_IMPLEMENTED_CODES:
            return False  # the store does not do this at all: asking again changes nothing
        return error_code(exc) in RETRYABLE_CODES or status >= 500
    return False


SOURCE_CHANGED = "source_changed"
INTEGRITY = "integrity"


def object_restart_kind(exc: BaseException) -> str | None:
    """Object level: which restart budget this failure draws on, or None when starting the
    object over cannot help (a shutdown, a permanent refusal) or the request level already
    retried it (transport errors, throttling, 5xx)."""
    if isinstance(exc, (CancelledError, PermanentError)):
        return None
    code = error_code(exc)
    if isinstance(exc, SourceChangedError) or code in SOURCE_CHANGED_CODES:
        return SOURCE_CHANGED
    if isinstance(exc, IntegrityError) or code in INTEGRITY_CODES:
        return INTEGRITY
    return None


def self_copy_refused(exc: BaseException) -> bool:
    """A metadata-only update (a server-side copy of the target onto itself) was refused in a
    way repeating cannot change (501 NotImplemented, an InvalidRequest, AccessDenied on the
    copy's read): copy the bytes instead. A changed object (PreconditionFailed, NoSuchUpload) or
    passing trouble is not such a refusal; a key the target refuses is a PermanentError."""
    return isinstance(exc, ClientError) and not is_retryable(exc) and object_restart_kind(exc) is None


# -- source refusals -----------------------------------------------------------------------------

_SSE_C_HINTS = ("customer provided key", "customer key", "server side encryption")


def _names_sse_c(exc: ClientError) -> bool:
    """An answer that says the object needs its customer key (AWS: InvalidRequest, SeaweedFS:
    InvalidArgument, each with a message about server-side encryption or customer keys)."""
    if error_code(exc) not in ("InvalidRequest", "InvalidArgument"):
        return False
    message = str(exc.response.get("Error", {}).get("Message", "") or "").lower()
    return any(hint in message for hint in _SSE_C_HINTS)


_PROBE_FAILURES: tuple[type[BaseException], ...] = (BotoCoreError, *TRANSIENT_EXCEPTIONS)


def _read_first_byte(source: Endpoint, key: str) -> None:
    try:
        source.client.get_object(Bucket=source.bucket, Key=key, Range="bytes=0-0")["Body"].close()
    except ClientError as exc:
        if error_code(exc) != "InvalidRange":
            raise
        # An empty object has no byte 0: read it whole (nothing; closed unread should it have grown).
        source.client.get_object(Bucket=source.bucket, Key=key)["Body"].close()


def _sse_c_confirmed(source: Endpoint | None, key: str | None) -> bool:
    """A bare 400 says nothing by itself (HEAD has no body: an expired token looks the same).
    A one-byte GET of the object answers in words."""
    if source is None or key is None:
        return False
    try:
        _read_first_byte(source, key)
    except ClientError as exc:
        return _names_sse_c(exc)
    except _PROBE_FAILURES:
        return False  # nothing confirmed: the original error stands
    return False  # readable: whatever the 400 was, it was not SSE-C


def source_refusal(
    exc: BaseException,
    obj: ObjectInfo | None,
    operation: str,
    key: str | None = None,
    source: Endpoint | None = None,
) -> PermanentError | None:
    """A source read refused for a reason retrying cannot fix, in words; None for anything else.

    - SSE-C: HeadObject answers a bare 400 (no body, so botocore's code is "400"), which is
      taken for SSE-C only once a one-byte GET through `source` confirms it (without `source`,
      never); GetObject an InvalidRequest / InvalidArgument that speaks of customer keys.
    - SSE-KMS: AccessDenied on GetObject of an aws:kms object (HEAD needs no kms:Decrypt).
    - Archive tiers: InvalidObjectState.
    `obj` is what a HEAD said about the object, when known; `key` names it otherwise.
    """
    if not isinstance(exc, ClientError):
        return None
    name = key if key is not None else (obj.key if obj is not None else None)
    what = f"source object {name!r}" if name is not None else "the source object"
    code = error_code(exc) or ""
    message = str(exc.response.get("Error", {}).get("Message", "") or "")
    reads = operation in ("HeadObject", "GetObject")
    if code == "InvalidObjectState":
        tier_name = (obj.archive_tier or obj.storage_class) if obj is not None else None
        tier = f" ({tier_name})" if tier_name else ""
        return ArchivedObjectError(
            f"{what} is archived{tier} and not restored: restore it (S3 RestoreObject) to replicate it"
        )
    bare_400 = _status(exc) == 400 and code in ("400", "BadRequest")
    sse_c = reads and (_names_sse_c(exc) or (bare_400 and _sse_c_confirmed(source, name)))
    if sse_c:
        return EncryptedSourceError(
            f"{what} is encrypted with a customer key we do not have (SSE-C): it cannot be read "
            "without that key and is not replicated"
        )
    kms_key = obj.kms_key_id if obj is not None else None
    # AWS answers a bare "Access Denied" when kms:Decrypt is missing: only the HEAD before it
    # (which needs no kms:Decrypt, and fails for SSE-C) tells that the object is aws:kms.
    kms = kms_key or (obj is not None and obj.encrypted_etag) or "kms" in message.lower()
    if operation == "GetObject" and code == "AccessDenied" and kms:
        key_name = f"KMS key {kms_key}" if kms_key else "its KMS key"
        return EncryptedSourceError(
            f"{what} is encrypted with {key_name} (SSE-KMS) and the task role may not use it: grant "
            "kms:Decrypt on that key (add its ARN to the Terraform variable source_kms_key_arns)"
        )
    return None


def describe(exc: BaseException) -> str:
    """A short, secret-free description for logs and reports."""
    if isinstance(exc, PermanentError):
        return str(exc)  # already written for people
    code = error_code(exc)
    if code:
        op = getattr(exc, "operation_name", "")
        return f"{code} on {op}" if op else code
    return f"{type(exc).__name__}: {exc}"


# -- retry policies ------------------------------------------------------------------------------

T = TypeVar("T")
Classifier = Callable[[BaseException], str | None]


class _RetriesLeft(retry_base):
    """tenacity retry strategy for one call: retry while the failure's kind has retries left."""

    def __init__(self, kind_of: Classifier, retries: Mapping[str, int], first: str) -> None:
        self._kind_of = kind_of
        self._left = dict(retries)
        self._left[first] -= 1  # the direct first attempt already used one

    def __call__(self, retry_state: RetryCallState) -> bool:
        outcome = retry_state.outcome
        error = outcome.exception() if outcome is not None and outcome.failed else None
        kind = self._kind_of(error) if error is not None else None
        if kind is None or self._left.get(kind, 0) < 1:
            return False
        self._left[kind] -= 1
        return True


class RetryPolicy:
    """tenacity's Retrying, with the first attempt made directly.

    Nearly every call succeeds at once, and tenacity's bookkeeping costs about 9 us a call,
    three calls per small object. After a retryable first failure the policy waits its first
    back-off and tenacity carries on with the remaining attempts.

    Each failure is sorted into a kind (None: never retried), and each kind has its own number
    of retries per call: `RetryPolicy(attempts, ..., retryable)` is the one-kind case.
    """

    def __init__(
        self,
        attempts: int,
        first_wait: float,
        max_wait: float,
        retryable: Callable[[BaseException], bool],
    ) -> None:
        self._setup(
            lambda e: "retryable" if retryable(e) else None, {"retryable": attempts - 1}, first_wait, max_wait
        )

    @classmethod
    def per_kind(
        cls, kind_of: Classifier, retries: Mapping[str, int], first_wait: float, max_wait: float
    ) -> RetryPolicy:
        policy = cls.__new__(cls)
        policy._setup(kind_of, retries, first_wait, max_wait)
        return policy

    def _setup(
        self, kind_of: Classifier, retries: Mapping[str, int], first_wait: float, max_wait: float
    ) -> None:
        self._kind_of = kind_of
        self.retries = {kind: max(0, count) for kind, count in retries.items()}
        self.attempts = 1 + sum(self.retries.values())  # at most, whatever the mix of failures
        self._wait = wait_exponential(multiplier=first_wait, max=max_wait) + wait_random(0, first_wait)
        # The retry strategy (a fresh budget per call) alone decides when to stop.
        self._rest = Retrying(stop=stop_never, wait=self._wait, reraise=True)

    def __call__(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            kind = self._kind_of(exc)
            if kind is None or self.retries.get(kind, 0) < 1:
                raise
        time.sleep(self._wait(RetryCallState(self._rest, None, (), {})))
        return self._rest.copy(retry=_RetriesLeft(self._kind_of, self.retries, kind))(fn)


def request_retrying(attempts: int) -> RetryPolicy:
    """Per request, on top of botocore's own retries (which do not cover a body cut short):
    transport errors, throttling and 5xx, `attempts` attempts in all."""
    return RetryPolicy(attempts, first_wait=0.2, max_wait=5, retryable=is_retryable)


def object_retrying(source_changed: int, integrity: int) -> RetryPolicy:
    """Per object, on top of the per-request retries: a copy or reconcile starts over up to
    `source_changed` times when the source changed under it (SourceChanged, PreconditionFailed)
    or its upload vanished (NoSuchUpload), and up to `integrity` times when the bytes written did
    not verify. A shutdown, a permanent refusal or a request-level failure (already retried
    below) is never started over."""
    return RetryPolicy.per_kind(
        object_restart_kind,
        {SOURCE_CHANGED: source_changed, INTEGRITY: integrity},
        first_wait=0.5,
        max_wait=10,
    )
