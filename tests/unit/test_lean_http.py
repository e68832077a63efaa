"""The lean path's response class must read responses exactly as http.client does."""

from __future__ import annotations

import http.client
import io

import pytest

from replicator.lean_s3 import _QuickHeadersResponse


class FakeSocket:
    def __init__(self, raw: bytes) -> None:
        self.raw = raw

    def makefile(self, mode: str) -> io.BufferedReader:
        return io.BufferedReader(io.BytesIO(self.raw))


RESPONSES = [
    b'HTTP/1.1 200 OK\r\nContent-Length: 5\r\nETag: "abc"\r\nx-amz-meta-Note: a: b \r\n'
    b"x-amz-meta-empty:\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n\r\nhello",
    b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nServer: test\r\n\r\n",
    b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\nContent-Type: application/xml\r\n\r\n"
    b"5\r\n<Err>\r\n0\r\n\r\n",
    b"HTTP/1.0 500 Internal Server Error\r\nConnection: close\r\n\r\nbroken",
]


@pytest.mark.parametrize("raw", RESPONSES)
def test_quick_headers_response_reads_like_the_stdlib(raw: bytes) -> None:
    ours = _QuickHeadersResponse(FakeSocket(raw))  # type: ignore[arg-type]
    theirs = http.client.HTTPResponse(FakeSocket(raw))  # type: ignore[arg-type]
    for response in (ours, theirs):
        response.begin()
    assert (ours.status, ours.reason, ours.version) == (theirs.status, theirs.reason, theirs.version)
    assert ours.getheaders() == theirs.getheaders()
    assert (ours.will_close, ours.chunked, ours.length) == (theirs.will_close, theirs.chunked, theirs.length)
    assert ours.read() == theirs.read()
