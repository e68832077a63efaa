"""Error types and the one place that decides whether an S3 error is worth retrying."""

from __future__ import annotations

import time
from collections.abc import Callable
from http.client import HTTPException
from typing import TypeVar

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential,
    wait_random,
)
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.exceptions import ProtocolError


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
        "PreconditionFailed",  # source changed under an If-Match read: look again
        "NoSuchUpload",  # upload aborted concurrently (stale-upload cleanup): start over
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
    SourceChangedError,
)


NOT_FOUND_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def error_code(exc: BaseException) -> str | None:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "")) or None
    return None


def is_not_found(exc: BaseException) -> bool:
    """The object (or its version) is not there: HEAD answers a bare 404, GET NoSuchKey."""
    return error_code(exc) in NOT_FOUND_CODES


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, CancelledError):
        return False
    if isinstance(exc, (*TRANSIENT_EXCEPTIONS, IntegrityError)):  # corrupted transfer: try again
        return True
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        return error_code(exc) in RETRYABLE_CODES or status >= 500
    return False


def describe(exc: BaseException) -> str:
    """A short, secret-free description for logs and reports."""
    code = error_code(exc)
    if code:
        op = getattr(exc, "operation_name", "")
        return f"{code} on {op}" if op else code
    return f"{type(exc).__name__}: {exc}"


T = TypeVar("T")


class RetryPolicy:
    """tenacity's Retrying, with the first attempt made directly.

    Nearly every call succeeds at once, and tenacity's bookkeeping costs about 9 us a call,
    three calls per small object. After a retryable first failure the policy waits its first
    back-off and tenacity carries on with the remaining attempts.
    """

    def __init__(
        self, attempts: int, first_wait: float, max_wait: float, retryable: Callable[[BaseException], bool]
    ) -> None:
        self.attempts = attempts
        self._retryable = retryable
        self._wait = wait_exponential(multiplier=first_wait, max=max_wait) + wait_random(0, first_wait)
        self._rest = Retrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(max(1, attempts - 1)),
            wait=self._wait,
            reraise=True,
        )

    def __call__(self, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except Exception as exc:
            if self.attempts <= 1 or not self._retryable(exc):
                raise
        time.sleep(self._wait(RetryCallState(self._rest, None, (), {})))
        return self._rest(fn)


def request_retrying(attempts: int) -> RetryPolicy:
    """Per request, on top of botocore's own retries (which do not cover a body cut short)."""
    return RetryPolicy(attempts, first_wait=0.2, max_wait=5, retryable=is_retryable)


def object_retrying(attempts: int) -> RetryPolicy:
    """The per-object retry policy, on top of botocore's per-request retries: a copy or
    reconcile that failed part-way (a dropped stream, the source rewritten under us) starts over
    a few times. A shutdown is never retried."""
    return RetryPolicy(
        attempts,
        first_wait=0.5,
        max_wait=10,
        retryable=lambda e: is_retryable(e) and not isinstance(e, CancelledError),
    )
