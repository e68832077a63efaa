"""Which incomplete upload a copy resumes, and which parts of it it keeps: the marker part names
the source version and the layout, and only parts of exactly the planned size are kept."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from botocore.exceptions import ClientError

from replicator.clients import build_clients
from replicator.errors import CancelledError, IntegrityError, SourceChangedError, UnstorableKeyError
from replicator.objects import ObjectInfo
from replicator.settings import MIB, Settings
from replicator.transfer import MARKER_PART, MAX_PARTS, TransferEngine, _ChainBroken, _Incomplete, _Layout

PART = 5 * MIB
SOURCE = ObjectInfo(key="k", size=3 * PART + 10, etag="0123456789abcdef0123456789abcdef", metadata={"a": "1"})
LAYOUT = _Layout(SOURCE.size, PART, chained=False)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> Any:
    tuning = getattr(request, "param", {})
    settings = Settings(
        source_bucket="src-bucket",
        target_bucket="dst-bucket",
        target_endpoint_url="http://127.0.0.1:9",  # never reached
        target_access_key_id="AKIDEXAMPLE",
        target_secret_access_key="secret",
        allow_http_endpoints=True,
        **tuning,
    )
    clients = build_clients(settings)
    engine = TransferEngine(clients.source, clients.target, settings)
    yield engine
    engine.close()


def marker_of(engine: TransferEngine, obj: ObjectInfo = SOURCE, layout: _Layout = LAYOUT) -> bytes:
    marker = engine._resume_marker(obj, layout, engine._put_args(obj, obj.known_md5))
    assert marker is not None
    return marker


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def upload(
    engine: TransferEngine, upload_id: str, parts: dict[int, tuple[int, str]], marker: bytes | None
) -> _Incomplete:
    if marker is not None:
        parts = parts | {MARKER_PART: (len(marker), md5(marker))}
    return _Incomplete(upload_id, parts)


def test_the_marker_names_version_layout_and_metadata(engine: TransferEngine) -> None:
    base = marker_of(engine)
    assert base == marker_of(engine)  # deterministic: the next attempt writes the same bytes
    assert base.startswith(b"replica-resume v1\n")
    others = [
        marker_of(engine, ObjectInfo(**{**SOURCE.__dict__, "etag": "f" * 32})),
        marker_of(engine, ObjectInfo(**{**SOURCE.__dict__, "version_id": "v2"})),
        marker_of(engine, ObjectInfo(**{**SOURCE.__dict__, "size": SOURCE.size + 1})),
        marker_of(engine, ObjectInfo(**{**SOURCE.__dict__, "metadata": {"a": "2"}})),
        marker_of(engine, ObjectInfo(**{**SOURCE.__dict__, "headers": {"ContentType": "text/csv"}})),
        marker_of(engine, layout=_Layout(SOURCE.size, 2 * PART, chained=False)),
        marker_of(engine, layout=_Layout(SOURCE.size, PART, chained=True)),
    ]
    assert len({base, *others}) == len(others) + 1


def test_only_parts_of_the_planned_size_are_kept(engine: TransferEngine) -> None:
    marker = marker_of(engine)
    parts = {
        1: (PART, "a" * 32),
        2: (PART - 1, "b" * 32),  # cut short
        3: (0, ""),  # listed twice with different contents
        4: (10, "d" * 32),  # the short last part
        5: (PART, "e" * 32),  # beyond this layout
    }
    assert engine._resumable(SOURCE, LAYOUT, marker, [upload(engine, "u1", parts, marker)]) == (
        "u1",
        {1: "a" * 32, 4: "d" * 32},
    )


def test_the_upload_with_the_most_bytes_kept_is_resumed(engine: TransferEngine) -> None:
    marker = marker_of(engine)
    found = [
        upload(engine, "one", {1: (PART, "a" * 32)}, marker),
        upload(engine, "two", {1: (PART, "a" * 32), 2: (PART, "b" * 32)}, marker),
        upload(
            engine, "other-version", {1: (PART, "a" * 32), 2: (PART, "b" * 32), 3: (PART, "c" * 32)}, b"x"
        ),
    ]
    resumed = engine._resumable(SOURCE, LAYOUT, marker, found)
    assert resumed is not None and resumed[0] == "two"


@pytest.mark.parametrize(
    "marker_part",
    [
        None,  # created by something else, or before markers
        (0, ""),  # listed twice
        (100, "0" * 32),  # another marker: another version, layout or metadata
        (100, "d41d8cd98f00b204e9800998ecf8427e-1"),  # a store whose part ETags are not MD5s
    ],
)
def test_an_upload_without_our_marker_is_not_resumed(
    engine: TransferEngine, marker_part: tuple[int, str] | None
) -> None:
    marker = marker_of(engine)
    parts = {1: (PART, "a" * 32)} | ({MARKER_PART: marker_part} if marker_part else {})
    assert engine._resumable(SOURCE, LAYOUT, marker, [_Incomplete("u1", parts)]) is None


def test_an_upload_whose_parts_could_not_be_listed_is_not_resumed(engine: TransferEngine) -> None:
    assert engine._resumable(SOURCE, LAYOUT, marker_of(engine), [_Incomplete("u1", None)]) is None


@pytest.mark.parametrize("engine", [{"resume_uploads": False}], indirect=True)
def test_nothing_is_resumed_when_resuming_is_off(engine: TransferEngine) -> None:
    assert engine._resume_marker(SOURCE, LAYOUT, engine._put_args(SOURCE, None)) is None
    found = [_Incomplete("u1", {1: (PART, "a" * 32)})]
    assert engine._resumable(SOURCE, LAYOUT, None, found) is None


def test_a_replayed_10000_part_layout_has_no_marker_and_still_resumes(engine: TransferEngine) -> None:
    """Its ETag chain proves every part, kept or not, when the upload completes."""
    obj = ObjectInfo(key="k", size=MAX_PARTS * PART, etag="0" * 32 + "-10000")
    layout = _Layout(obj.size, PART, chained=True)
    assert layout.count == MAX_PARTS
    assert engine._resume_marker(obj, layout, engine._put_args(obj, None)) is None
    found = [_Incomplete("u1", {1: (PART, "a" * 32), MAX_PARTS: (PART, "b" * 32)})]
    assert engine._resumable(obj, layout, None, found) == ("u1", {1: "a" * 32, MAX_PARTS: "b" * 32})


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}, "UploadPart"
    )


@pytest.mark.parametrize(
    ("error", "kept"),
    [
        (CancelledError("stopped"), True),
        (client_error("SlowDown", 503), True),  # throttled beyond the request retries
        (client_error("InternalError", 500), True),
        (ConnectionResetError("reset"), True),
        (IntegrityError("bad bytes"), False),
        (SourceChangedError("rewritten"), False),
        (client_error("PreconditionFailed", 412), False),
        (client_error("BadDigest", 400), False),
        (client_error("AccessDenied", 403), False),
        (UnstorableKeyError("no such key here"), False),
        (_ChainBroken("parts do not combine"), False),
    ],
)
def test_an_upload_is_kept_only_after_failures_a_later_attempt_may_get_past(
    engine: TransferEngine, error: BaseException, kept: bool
) -> None:
    assert engine._keep_upload(error, LAYOUT, marked=True) is kept


def test_an_upload_no_attempt_could_recognise_is_not_kept(engine: TransferEngine) -> None:
    stopped = CancelledError("stopped")
    assert engine._keep_upload(stopped, LAYOUT, marked=False) is False  # its marker never landed
    chained = _Layout(MAX_PARTS * PART, PART, chained=True)  # its ETag chain proves every part
    assert engine._keep_upload(stopped, chained, marked=False) is True
    engine._markers_usable = False  # the target's part ETags are not MD5s
    assert engine._keep_upload(stopped, LAYOUT, marked=True) is False


@pytest.mark.parametrize("engine", [{"resume_uploads": False}], indirect=True)
def test_without_resume_no_upload_is_kept(engine: TransferEngine) -> None:
    assert engine._keep_upload(CancelledError("stopped"), LAYOUT, marked=True) is False
