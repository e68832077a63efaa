"""Error classification: what is retried per request, what starts an object over (and how many
times, per kind), and source refusals put in words. ClientErrors are built the way botocore
builds them: its own parser reading the HTTP answer S3 gives."""

from __future__ import annotations

import http.client
import io
import time
from collections.abc import Callable
from typing import Any

import botocore.parsers
import botocore.session
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from replicator.clients import Endpoint
from replicator.errors import (
    ArchivedObjectError,
    CancelledError,
    EncryptedSourceError,
    IntegrityError,
    LeaseLostError,
    PermanentError,
    RetryPolicy,
    SourceChangedError,
    UnstorableKeyError,
    describe,
    is_retryable,
    object_retrying,
    request_retrying,
    self_copy_refused,
    source_refusal,
)
from replicator.objects import ObjectInfo

_S3 = botocore.session.get_session().create_client(
    "s3", region_name="us-east-1", aws_access_key_id="AKIDEXAMPLE", aws_secret_access_key="secret"
)


def s3_error(operation: str, status: int, code: str | None = None, message: str = "") -> ClientError:
    """The ClientError botocore raises for this HTTP answer (no body when code is None, as for
    every HEAD)."""
    body = b"" if code is None else f"<Error><Code>{code}</Code><Message>{message}</Message></Error>".encode()
    output = _S3.meta.service_model.operation_model(operation).output_shape
    parsed = botocore.parsers.create_parser("rest-xml").parse(
        {"status_code": status, "headers": {}, "body": body}, output
    )
    return ClientError(parsed, operation)  # type: ignore[arg-type]


SSE_C_GET_AWS = (
    "The object was stored using a form of Server Side Encryption. "
    "The correct parameters must be provided to retrieve the object."
)
SSE_C_GET_SEAWEED = (
    "Requests specifying Server Side Encryption with Customer provided keys must provide the customer key."
)


# -- request level ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [
        s3_error("GetObject", 503, "SlowDown", "Reduce your request rate."),
        s3_error("PutObject", 500, "InternalError", "We encountered an internal error."),
        s3_error("HeadObject", 503),
        s3_error("UploadPart", 502, "BadGateway"),
        ReadTimeoutError(endpoint_url="https://s3"),
        ConnectionResetError(),
        http.client.IncompleteRead(b"", 10),
    ],
    ids=["SlowDown", "InternalError", "bare-503", "502", "read-timeout", "reset", "cut-short"],
)
def test_transport_errors_throttling_and_5xx_are_retried_per_request(error: BaseException) -> None:
    assert is_retryable(error)


@pytest.mark.parametrize(
    "error",
    [
        s3_error("GetObject", 412, "PreconditionFailed", "At least one of the pre-conditions failed"),
        s3_error("UploadPart", 404, "NoSuchUpload", "The specified upload does not exist."),
        s3_error("UploadPart", 400, "BadDigest", "The Content-MD5 you specified did not match"),
        s3_error("GetObject", 403, "AccessDenied", "Access Denied"),
        s3_error(
            "CopyObject",
            501,
            "NotImplemented",
            "A header you provided implies functionality that is not implemented",
        ),
        s3_error("HeadObject", 501),
        SourceChangedError("changed"),
        IntegrityError("md5"),
        CancelledError("stop"),
        UnstorableKeyError("no"),
    ],
    ids=[
        "412",
        "NoSuchUpload",
        "BadDigest",
        "AccessDenied",
        "501-NotImplemented",
        "bare-501",
        "SourceChanged",
        "Integrity",
        "Cancelled",
        "Permanent",
    ],
)
def test_object_level_and_permanent_failures_are_not_retried_per_request(error: BaseException) -> None:
    assert not is_retryable(error)


# -- object level -------------------------------------------------------------------------------


class Script:
    """Raises the scripted errors in turn, then returns "done"."""

    def __init__(self, errors: list[BaseException]) -> None:
        self.errors, self.calls = list(errors), 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The back-off waits taken (both the policy's first one and tenacity's), without waiting."""
    taken: list[float] = []
    monkeypatch.setattr(time, "sleep", taken.append)
    return taken


def always(make: Callable[[], BaseException], times: int = 50) -> list[BaseException]:
    return [make() for _ in range(times)]


@pytest.mark.parametrize(
    ("make", "calls"),
    [
        (lambda: SourceChangedError("rewritten"), 1 + 3),
        (lambda: s3_error("GetObject", 412, "PreconditionFailed", "failed"), 1 + 3),
        (lambda: s3_error("CompleteMultipartUpload", 404, "NoSuchUpload", "gone"), 1 + 3),
        (lambda: IntegrityError("md5 differs"), 1 + 2),
        (lambda: s3_error("UploadPart", 400, "BadDigest", "md5 differs"), 1 + 2),
        (lambda: s3_error("GetObject", 503, "SlowDown", "slow"), 1),  # the request level retried it
        (lambda: ReadTimeoutError(endpoint_url="https://s3"), 1),
        (lambda: UnstorableKeyError("segment too long"), 1),
        (lambda: EncryptedSourceError("SSE-C"), 1),
        (lambda: ArchivedObjectError("GLACIER"), 1),
        (lambda: PermanentError("no"), 1),
        (lambda: CancelledError("shutdown"), 1),
        (lambda: LeaseLostError("lease"), 1),
        (lambda: ValueError("bug"), 1),
    ],
    ids=[
        "SourceChanged",
        "PreconditionFailed",
        "NoSuchUpload",
        "Integrity",
        "BadDigest",
        "503",
        "timeout",
        "Unstorable",
        "Encrypted",
        "Archived",
        "Permanent",
        "Cancelled",
        "LeaseLost",
        "other",
    ],
)
def test_object_restarts_per_error_kind(
    make: Callable[[], BaseException], calls: int, waits: list[float]
) -> None:
    errors = always(make)
    fn = Script(errors)
    with pytest.raises(type(errors[0])):
        object_retrying(source_changed=3, integrity=2)(fn)
    assert fn.calls == calls
    assert len(waits) == calls - 1  # a back-off before every restart, none otherwise


def test_each_kind_draws_on_its_own_budget(waits: list[float]) -> None:
    changed, corrupt = SourceChangedError("changed"), IntegrityError("corrupt")
    policy = object_retrying(source_changed=2, integrity=1)
    # Two of each kind's restarts are used up, interleaved: the call still succeeds ...
    fn = Script([changed, corrupt, changed])
    assert policy(fn) == "done"
    assert fn.calls == 4
    # ... but a second integrity failure is one too many, whatever is left for the other kind.
    fn = Script([corrupt, changed, corrupt])
    with pytest.raises(IntegrityError):
        policy(fn)
    assert fn.calls == 3


def test_a_budget_is_per_call_not_per_policy(waits: list[float]) -> None:
    policy = object_retrying(source_changed=1, integrity=0)
    for _ in range(3):  # the same policy, shared by threads and calls: each call starts afresh
        fn = Script([SourceChangedError("changed")])
        assert policy(fn) == "done"
        assert fn.calls == 2


def test_no_restarts_configured_means_one_attempt(waits: list[float]) -> None:
    fn = Script([SourceChangedError("changed")])
    with pytest.raises(SourceChangedError):
        object_retrying(source_changed=0, integrity=0)(fn)
    assert fn.calls == 1 and waits == []


def test_the_first_attempt_is_made_directly(waits: list[float], monkeypatch: pytest.MonkeyPatch) -> None:
    policy = object_retrying(source_changed=3, integrity=2)

    def no_tenacity(*_: Any, **__: Any) -> Any:
        raise AssertionError("tenacity used for a call that succeeded at once")

    monkeypatch.setattr(policy._rest, "copy", no_tenacity)
    assert policy(lambda: "done") == "done"


def test_request_retrying_counts_attempts(waits: list[float]) -> None:
    fn = Script(always(lambda: s3_error("GetObject", 503, "SlowDown", "slow")))
    with pytest.raises(ClientError):
        request_retrying(4)(fn)
    assert fn.calls == 4
    fn = Script([SourceChangedError("changed")])
    with pytest.raises(SourceChangedError):
        request_retrying(4)(fn)
    assert fn.calls == 1


def test_retry_policy_keeps_its_one_kind_constructor(waits: list[float]) -> None:
    policy = RetryPolicy(3, first_wait=0.01, max_wait=0.02, retryable=lambda e: isinstance(e, KeyError))
    fn = Script([KeyError("a"), KeyError("b")])
    assert policy(fn) == "done" and fn.calls == 3
    assert policy.attempts == 3


# -- source refusals ----------------------------------------------------------------------------


class ProbedSource:
    """A source whose GetObject answers each call with the next of `answers` (an error, or a
    body), recording the calls."""

    def __init__(self, *answers: BaseException | bytes) -> None:
        self.answers = list(answers)
        self.calls: list[dict[str, Any]] = []

    def get_object(self, **args: Any) -> Any:
        self.calls.append(args)
        answer = self.answers.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return {"Body": io.BytesIO(answer)}


def probed(*answers: BaseException | bytes) -> tuple[Endpoint, ProbedSource]:
    client = ProbedSource(*answers)
    return Endpoint("source", "bucket", client, "https://s3.amazonaws.com"), client  # type: ignore[arg-type]


@pytest.mark.parametrize("message", [SSE_C_GET_AWS, SSE_C_GET_SEAWEED], ids=["aws", "seaweedfs"])
def test_a_head_answering_a_bare_400_is_sse_c_once_a_one_byte_get_says_so(message: str) -> None:
    error = s3_error("HeadObject", 400)
    assert error.response["Error"]["Code"] == "400"  # what botocore makes of S3's answer
    code = "InvalidRequest" if message == SSE_C_GET_AWS else "InvalidArgument"
    source, client = probed(s3_error("GetObject", 400, code, message))
    refusal = source_refusal(error, None, "HeadObject", key="secret/report.pdf", source=source)
    assert isinstance(refusal, EncryptedSourceError)
    assert refusal.reason == "encrypted"
    assert "'secret/report.pdf'" in str(refusal) and "SSE-C" in str(refusal)
    assert describe(refusal) == str(refusal)  # not "400 on HeadObject"
    assert client.calls == [{"Bucket": "bucket", "Key": "secret/report.pdf", "Range": "bytes=0-0"}]


@pytest.mark.parametrize(
    "answer",
    [
        b"x",  # readable now: the 400 was passing (an expired token looks the same on a HEAD)
        s3_error("GetObject", 400, "ExpiredToken", "The provided token has expired."),
        s3_error("GetObject", 400, "InvalidToken", "The provided token is malformed."),
        s3_error("GetObject", 403, "AccessDenied", "Access Denied"),
        s3_error("GetObject", 503, "SlowDown", "Reduce your request rate."),
        ConnectionResetError(),
    ],
    ids=["readable", "ExpiredToken", "InvalidToken", "AccessDenied", "SlowDown", "transport"],
)
def test_a_bare_400_is_not_sse_c_unless_confirmed(answer: BaseException | bytes) -> None:
    source, client = probed(answer)
    error = s3_error("HeadObject", 400)
    assert source_refusal(error, None, "HeadObject", key="k", source=source) is None
    assert len(client.calls) == 1
    # Nothing to confirm it with: never called SSE-C.
    assert source_refusal(error, None, "HeadObject", key="k") is None


def test_an_empty_sse_c_object_is_confirmed_with_a_whole_read() -> None:
    """An empty object has no byte 0: SeaweedFS answers the range with InvalidRange first."""
    source, client = probed(
        s3_error("GetObject", 416, "InvalidRange", "The requested range is not satisfiable"),
        s3_error("GetObject", 400, "InvalidArgument", SSE_C_GET_SEAWEED),
    )
    refusal = source_refusal(s3_error("HeadObject", 400), None, "HeadObject", key="empty", source=source)
    assert isinstance(refusal, EncryptedSourceError)
    assert [call.get("Range") for call in client.calls] == ["bytes=0-0", None]


@pytest.mark.parametrize("message", [SSE_C_GET_AWS, SSE_C_GET_SEAWEED], ids=["aws", "seaweedfs"])
def test_a_get_of_an_sse_c_object_without_its_key(message: str) -> None:
    code = "InvalidRequest" if message == SSE_C_GET_AWS else "InvalidArgument"
    refusal = source_refusal(s3_error("GetObject", 400, code, message), None, "GetObject", key="k")
    assert isinstance(refusal, EncryptedSourceError) and "SSE-C" in str(refusal)


def test_access_denied_on_a_kms_object_names_the_key_and_the_fix() -> None:
    arn = "arn:aws:kms:us-east-1:111122223333:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    head = {"ContentLength": 3, "ETag": '"8c1a0f1a"', "ServerSideEncryption": "aws:kms", "SSEKMSKeyId": arn}
    obj = ObjectInfo.from_head("data/x.parquet", head)
    refusal = source_refusal(s3_error("GetObject", 403, "AccessDenied", "Access Denied"), obj, "GetObject")
    assert isinstance(refusal, EncryptedSourceError)
    text = str(refusal)
    assert (
        arn in text and "kms:Decrypt" in text and "source_kms_key_arns" in text and "'data/x.parquet'" in text
    )


def test_access_denied_on_an_object_a_head_found_kms_encrypted() -> None:
    head = {
        "ContentLength": 3,
        "ETag": '"0f343b0931126a20f133d67c2b018a3b"',
        "ServerSideEncryption": "aws:kms",
    }
    obj = ObjectInfo.from_head("k", head)
    refusal = source_refusal(s3_error("GetObject", 403, "AccessDenied", "Access Denied"), obj, "GetObject")
    assert isinstance(refusal, EncryptedSourceError) and "kms:Decrypt" in str(refusal)


def test_plain_access_denied_is_not_called_an_encryption_problem() -> None:
    head = {"ContentLength": 3, "ETag": '"0f343b0931126a20f133d67c2b018a3b"'}
    obj = ObjectInfo.from_head("k", head)
    denied = s3_error("GetObject", 403, "AccessDenied", "Access Denied")
    assert source_refusal(denied, obj, "GetObject") is None
    assert source_refusal(denied, None, "GetObject", key="k") is None


def test_an_archived_object() -> None:
    error = s3_error(
        "GetObject", 403, "InvalidObjectState", "The operation is not valid for the object's storage class"
    )
    obj = ObjectInfo.from_head("cold/x", {"ContentLength": 3, "ETag": '"e"', "StorageClass": "DEEP_ARCHIVE"})
    refusal = source_refusal(error, obj, "GetObject")
    assert isinstance(refusal, ArchivedObjectError) and refusal.reason == "archived"
    assert "'cold/x'" in str(refusal) and "DEEP_ARCHIVE" in str(refusal) and "restore" in str(refusal)


@pytest.mark.parametrize(
    ("error", "operation"),
    [
        (s3_error("HeadObject", 404), "HeadObject"),
        (s3_error("HeadObject", 403), "HeadObject"),
        (s3_error("HeadObject", 503), "HeadObject"),
        (s3_error("GetObject", 400, "InvalidArgument", "Invalid range"), "GetObject"),
        (
            s3_error("PutObject", 400, "InvalidRequest", "Server Side Encryption settings are wrong"),
            "PutObject",
        ),
        (SourceChangedError("changed"), "GetObject"),
    ],
    ids=["404", "403", "503", "other-400", "a-write", "not-a-client-error"],
)
def test_other_answers_are_not_refusals(error: BaseException, operation: str) -> None:
    assert source_refusal(error, None, operation, key="k") is None


def test_describe_keeps_codes_short_and_permanent_errors_in_words() -> None:
    assert describe(s3_error("GetObject", 503, "SlowDown", "slow")) == "SlowDown on GetObject"
    assert describe(UnstorableKeyError("target cannot store 'a/b'")) == "target cannot store 'a/b'"
    assert describe(ValueError("x")) == "ValueError: x"


# -- a metadata-only update the target refuses ----------------------------------------------------


@pytest.mark.parametrize(
    ("error", "refused"),
    [
        (s3_error("CopyObject", 501, "NotImplemented", "not implemented"), True),
        (s3_error("CopyObject", 400, "InvalidRequest", "This copy request is illegal"), True),
        (s3_error("CopyObject", 403, "AccessDenied", "Access Denied"), True),
        (
            s3_error("CopyObject", 412, "PreconditionFailed", "At least one of the pre-conditions failed"),
            False,
        ),
        (s3_error("UploadPartCopy", 404, "NoSuchUpload", "The specified upload does not exist."), False),
        (s3_error("CopyObject", 503, "SlowDown", "Reduce your request rate."), False),
        (s3_error("CopyObject", 500, "InternalError", "We encountered an internal error."), False),
        (UnstorableKeyError("target cannot store 'a'"), False),
        (ConnectionResetError(), False),
    ],
    ids=[
        "501",
        "InvalidRequest",
        "AccessDenied",
        "412",
        "NoSuchUpload",
        "SlowDown",
        "500",
        "unstorable",
        "reset",
    ],
)
def test_which_failed_metadata_updates_fall_back_to_a_copy(error: BaseException, refused: bool) -> None:
    assert self_copy_refused(error) is refused
