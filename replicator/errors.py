"""Error types and the one place that decides whether an S3 error is worth retrying."""

from __future__ import annotations

from http.client import HTTPException

from botocore.exceptions import (
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    EndpointConnectionError,
    IncompleteReadError,
    ReadTimeoutError,
    ResponseStreamingError,
)
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
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
    """The copy was stopped (shutdown) before it finished; the upload was aborted."""


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


def object_retrying(attempts: int) -> Retrying:
    """The per-object retry policy, on top of botocore's per-request retries: a copy or
    reconcile that failed part-way (a dropped stream, the source rewritten under us) starts over
    a few times. A shutdown is never retried."""
    return Retrying(
        retry=retry_if_exception(lambda e: is_retryable(e) and not isinstance(e, CancelledError)),
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(initial=0.5, max=10),
        reraise=True,
    )
