"""The lean path's response class must read responses exactly as http.client does, and its range
reads and part uploads must fail clearly on answers they cannot use."""

from __future__ import annotations

import http.client
import io
import socketserver
import threading

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from replicator.lean_s3 import LeanS3, _QuickHeadersResponse


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


class CannedServer:
    """A loopback HTTP server answering each request with the next canned response as is
    (possibly malformed), and recording the requests' heads."""

    def __init__(self, answers: list[bytes]) -> None:
        self.answers = answers
        self.requests: list[str] = []
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                while server.answers:
                    head = b""
                    while not head.endswith(b"\r\n\r\n"):
                        line = self.rfile.readline()
                        if not line:
                            return
                        head += line
                    server.requests.append(head.decode())
                    answer = server.answers.pop(0)
                    self.wfile.write(answer)
                    self.wfile.flush()
                    if b"Connection: close" in answer:
                        return

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> CannedServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def lean_for(url: str) -> LeanS3:
    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=Config(s3={"addressing_style": "path", "payload_signing_enabled": False}),
    )
    return LeanS3(client, "bucket", connect_timeout=5, read_timeout=5)


def partial(status: str, body: bytes, length: int | None = None, close: bool = False) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body) if length is None else length}\r\n"
    return (head + ("Connection: close\r\n" if close else "") + "\r\n").encode() + body


def test_a_range_read_arrives_whole_and_pinned() -> None:
    with CannedServer([partial("206 Partial Content", b"0123456789")]) as server:
        data = lean_for(server.url).get_range("dir/a b+c.bin", 10, 10, version_id="v/1+2", if_match='"e"')
    assert bytes(data) == b"0123456789"
    head = server.requests[0]
    assert head.startswith("GET /bucket/dir/a%20b%2Bc.bin?versionId=v%2F1%2B2 HTTP/1.1\r\n")
    assert "Range: bytes=10-19\r\n" in head and 'If-Match: "e"\r\n' in head


def test_a_body_cut_short_is_an_error_and_the_next_read_reconnects() -> None:
    answers = [
        partial("206 Partial Content", b"01234", length=10, close=True),
        partial("206 Partial Content", b"abcdefghij"),
    ]
    with CannedServer(answers) as server:
        lean = lean_for(server.url)
        with pytest.raises(http.client.IncompleteRead):
            lean.get_range("k", 0, 10)
        assert bytes(lean.get_range("k", 0, 10)) == b"abcdefghij"


def test_a_store_that_ignores_the_range_is_not_read_into_the_part() -> None:
    with (
        CannedServer([partial("200 OK", b"x" * 20)]) as server,
        pytest.raises(http.client.HTTPException, match="asked for 10 bytes"),
    ):
        lean_for(server.url).get_range("k", 0, 10)


def test_a_changed_source_answers_with_its_s3_error_code() -> None:
    error = b"<Error><Code>PreconditionFailed</Code><Message>At least one failed</Message></Error>"
    with (
        CannedServer([partial("412 Precondition Failed", error)]) as server,
        pytest.raises(ClientError) as info,
    ):
        lean_for(server.url).get_range("k", 0, 10, if_match='"old"')
    assert info.value.response["Error"]["Code"] == "PreconditionFailed"


def test_upload_part_sends_the_body_and_returns_the_etag() -> None:
    ok = b'HTTP/1.1 200 OK\r\nETag: "abc"\r\nContent-Length: 0\r\n\r\n'
    with CannedServer([ok, partial("200 OK", b"")]) as server:
        lean = lean_for(server.url)
        assert lean.upload_part("k", "up/1", 3, bytearray(b"part"), "md5==") == '"abc"'
        with pytest.raises(http.client.HTTPException, match="without an ETag"):
            lean.upload_part("k", "up/1", 4, b"part", None)
    head = server.requests[0]
    assert head.startswith("PUT /bucket/k?partNumber=3&uploadId=up%2F1 HTTP/1.1\r\n")
    assert "Content-MD5: md5==\r\n" in head and "Content-Length: 4\r\n" in head
