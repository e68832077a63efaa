"""The engine never buffers more than it planned: a whole-object GET whose answer is larger than
the multipart threshold is not read, on either request path (a canned loopback server)."""

from __future__ import annotations

import http.client
import time

import pytest
from botocore.exceptions import ClientError

from replicator.objects import ObjectInfo
from replicator.transfer import _GrewError, _LargerError
from tests.helpers import engine_for
from tests.unit.test_lean_http import CannedServer, lean_for, partial

MIB = 1024 * 1024
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"


def test_a_body_within_the_limit_is_read() -> None:
    with CannedServer([partial("200 OK", b"0123456789")]) as server:
        response, data = lean_for(server.url).get_object("k", max_size=10)
    assert (data, response["ContentLength"]) == (b"0123456789", 10)


def test_a_body_over_the_limit_is_left_unread_and_the_connection_dropped() -> None:
    # The header announces 64 MiB; the server sends a few bytes and waits for a read that must
    # not come. The next request on the same client gets its own, clean, answer.
    answers = [partial("200 OK", b"x" * 10, length=64 * MIB), partial("200 OK", b"small")]
    with CannedServer(answers) as server:
        lean = lean_for(server.url)
        started = time.monotonic()
        response, data = lean.get_object("k", max_size=10 * MIB)
        assert data is None and response["ContentLength"] == 64 * MIB
        assert time.monotonic() - started < 2  # nothing waited for
        assert lean.get_object("k", max_size=10 * MIB)[1] == b"small"


@pytest.mark.parametrize(("limit", "expected"), [(10, b"helloworld"), (9, None)])
def test_a_body_without_a_length_is_read_up_to_the_limit(limit: int, expected: bytes | None) -> None:
    with CannedServer([CHUNKED]) as server:
        assert lean_for(server.url).get_object("k", max_size=limit)[1] == expected


@pytest.mark.parametrize("lean", [True, False])
def test_an_object_that_grew_past_the_threshold_is_not_read_whole(lean: bool) -> None:
    """Listed at 10 bytes, 20 MiB by the time of the GET: the multipart path takes over."""
    with CannedServer([partial("200 OK", b"x" * 10, length=20 * MIB, close=True)]) as server:
        engine = engine_for(server.url, lean)
        try:
            assert (engine._lean_source is not None) == lean
            with pytest.raises(_GrewError):
                engine._read_whole(ObjectInfo(key="k", size=10, etag="", complete=False))
        finally:
            engine.close()
    assert server.requests[0].startswith("GET /bucket/k ")


@pytest.mark.parametrize("lean", [True, False])
def test_a_range_answered_with_the_whole_object_is_not_buffered(lean: bool) -> None:
    """A store that ignores the Range header answers the whole object: on either path, an error
    that says so, and the body is not read into memory."""
    size = 20 * MIB
    with CannedServer([partial("200 OK", b"x" * 10, length=size, close=True)]) as server:
        engine = engine_for(server.url, lean)
        try:
            assert (engine._lean_source is not None) == lean
            obj = ObjectInfo(key="k", size=size, etag="0123456789abcdef0123456789abcdef")
            started = time.monotonic()
            with pytest.raises(
                http.client.HTTPException, match=f"asked for 10 bytes of 'k', the answer holds {size}"
            ):
                engine._read_range(obj, 0, 10)
            assert time.monotonic() - started < 2  # nothing waited for
        finally:
            engine.close()
    assert len(server.requests) == 1 and "Range: bytes=0-9" in server.requests[0]


def test_a_body_larger_than_its_reserved_space_is_not_read() -> None:
    """Listed at 3 bytes; the answer is larger (its length unknown): not read, and the space to
    reserve before reading it again is what the whole-object path may ever read."""
    with CannedServer([CHUNKED]) as server:
        engine = engine_for(server.url, True)
        try:
            with pytest.raises(_LargerError) as info:
                engine._read_whole(ObjectInfo(key="k", size=3, etag="", complete=False), reserved=3)
        finally:
            engine.close()
    assert info.value.size == engine.settings.multipart_threshold - 1


# -- a GET in place of the HEAD (read_first) ------------------------------------------------------


def answer(status: str, body: bytes, length: int | None = None, close: bool = False, **headers: str) -> bytes:
    """A canned answer with S3's object headers (`x_amz_meta_owner="qa"` for x-amz-meta-owner)."""
    lines = [f"HTTP/1.1 {status}", f"Content-Length: {len(body) if length is None else length}"]
    lines += [f"{name.replace('_', '-')}: {value}" for name, value in headers.items()]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


NOT_FOUND = b"<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>"


@pytest.mark.parametrize("lean", [True, False])
def test_one_get_describes_a_small_object_and_carries_its_bytes(lean: bool) -> None:
    headers = {
        "ETag": '"8d777f385d3dfec8815d20f7496026dc"',
        "Content_Type": "text/plain",
        "x_amz_meta_owner": "qa",
    }
    with CannedServer([answer("200 OK", b"data", **headers)]) as server:
        engine = engine_for(server.url, lean)
        try:
            with engine.read_first("k", 4) as read:
                assert read is not None
                obj, data = read
                assert engine.budget.in_use == 4  # the bytes are held in the buffer space ...
            assert engine.budget.in_use == 0  # ... until the block ends
        finally:
            engine.close()
    assert data == b"data"
    assert (obj.size, obj.etag, obj.complete) == (4, "8d777f385d3dfec8815d20f7496026dc", True)
    assert obj.headers["ContentType"] == "text/plain" and obj.metadata == {"owner": "qa"}
    assert len(server.requests) == 1 and server.requests[0].startswith("GET /bucket/k ")


@pytest.mark.parametrize("lean", [True, False])
def test_a_get_404_is_reported_as_no_object_not_as_a_changed_one(lean: bool) -> None:
    with CannedServer([answer("404 Not Found", NOT_FOUND)]) as server:
        engine = engine_for(server.url, lean)
        try:
            with engine.read_first("k", 4) as read:
                assert read is None
        finally:
            engine.close()
    assert engine.budget.in_use == 0


@pytest.mark.parametrize("lean", [True, False])
def test_other_get_refusals_come_back_as_the_store_sent_them(lean: bool) -> None:
    """An archived object's GET: not mapped here (a HEAD tells what it means), and nothing held."""
    refusal = b"<Error><Code>InvalidObjectState</Code><Message>archived</Message></Error>"
    with CannedServer([answer("403 Forbidden", refusal)]) as server:
        engine = engine_for(server.url, lean)
        try:
            with pytest.raises(ClientError) as info, engine.read_first("k", 4):
                pass
        finally:
            engine.close()
    assert info.value.response["Error"]["Code"] == "InvalidObjectState"
    assert engine.budget.in_use == 0


@pytest.mark.parametrize("lean", [True, False])
def test_an_object_grown_past_the_threshold_is_looked_at_with_a_head_not_read(lean: bool) -> None:
    """The event said 10 bytes; the GET answers 20 MiB: its body is left unread (the connection
    dropped), a HEAD describes the object for the multipart path, and no bytes are handed back."""
    grown = answer("200 OK", b"x" * 10, length=20 * MIB, close=True, ETag='"e"')
    head = answer("200 OK", b"", length=20 * MIB, ETag='"e"')
    with CannedServer([grown, head]) as server:
        engine = engine_for(server.url, lean)
        try:
            started = time.monotonic()
            with engine.read_first("k", 10) as read:
                assert read is not None
                obj, data = read
            assert time.monotonic() - started < 2  # nothing waited for
        finally:
            engine.close()
    assert data is None and obj.size == 20 * MIB
    assert [r.split(" ", 1)[0] for r in server.requests] == ["GET", "HEAD"]
    assert engine.budget.peak <= 10


def test_an_object_larger_than_its_event_said_is_read_again_within_its_own_space() -> None:
    larger = answer("200 OK", b"x" * 10, length=100, close=True)
    whole = answer("200 OK", b"y" * 100)
    with CannedServer([larger, whole]) as server:
        engine = engine_for(server.url, True)
        try:
            with engine.read_first("k", 10) as read:
                assert read is not None and read[1] == b"y" * 100
                assert engine.budget.in_use == 100
        finally:
            engine.close()
    assert len(server.requests) == 2
