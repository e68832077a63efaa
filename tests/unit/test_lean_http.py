"""The lean path's response class must read responses exactly as http.client does, its range
reads and part uploads must fail clearly on answers they cannot use, and it must reach an
endpoint as botocore would (its CA bundle, its proxies) or leave it to boto3."""

from __future__ import annotations

import hashlib
import http.client
import io
import ipaddress
import re
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from local_stack.seaweed import free_port
from replicator.lean_http import LeanUnsupported, QuickHeadersResponse, ThreadConnections
from replicator.lean_s3 import LeanS3
from replicator.objects import ObjectInfo
from tests.helpers import engine_for


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
    ours = QuickHeadersResponse(FakeSocket(raw))  # type: ignore[arg-type]
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


class PartServer(CannedServer):
    """Reads each request's body, answers with an ETag naming the part, and closes every
    connection after one answer without saying so (no Connection: close header): the client
    keeps a connection the server has closed."""

    def __init__(self) -> None:
        super().__init__([])
        self.bodies: list[bytes] = []
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                head = b""
                while not head.endswith(b"\r\n\r\n"):
                    line = self.rfile.readline()
                    if not line:
                        return
                    head += line
                server.requests.append(head.decode())
                length = int(re.search(rb"Content-Length: (\d+)", head).group(1))  # type: ignore[union-attr]
                server.bodies.append(self.rfile.read(length))
                number = re.search(rb"partNumber=(\d+)", head).group(1).decode()  # type: ignore[union-attr]
                self.wfile.write(
                    f'HTTP/1.1 200 OK\r\nETag: "e{number}"\r\nContent-Length: 0\r\n\r\n'.encode()
                )

        self._server.RequestHandlerClass = Handler


def test_a_streamed_part_is_sent_on_a_fresh_connection_when_the_kept_one_was_closed() -> None:
    # A streamed body cannot be sent twice: a kept-alive connection the server closed meanwhile is
    # found before sending, not by a failed send (which would cost the part a retry).
    ranges = [partial("206 Partial Content", b"abcd"), partial("206 Partial Content", b"wxyz")]
    with CannedServer(ranges) as source_server, PartServer() as target_server:
        source, target = lean_for(source_server.url), lean_for(target_server.url)
        buffer = memoryview(bytearray(2))  # two chunks a part
        with source.open_range("k", 0, 4, buffer) as body:
            assert target.upload_part_stream("k", "u", 1, body) == '"e1"'
        time.sleep(0.1)  # the server's close arrives
        with source.open_range("k", 4, 4, buffer) as body:
            assert target.upload_part_stream("k", "u", 2, body) == '"e2"'
    assert target_server.bodies == [b"abcd", b"wxyz"]


def test_a_stream_closed_in_another_thread_closes_its_own_connection_only() -> None:
    with CannedServer([partial("206 Partial Content", b"abcd")]) as server:
        lean = lean_for(server.url)
        body = lean.open_range("k", 0, 4, memoryview(bytearray(2)))
        kept: list[Any] = []

        def elsewhere() -> None:
            own = lean._connection()
            body.close()  # as the garbage collector may, in whatever thread it runs
            kept.append(lean._connections._local.connection is own)

        thread = threading.Thread(target=elsewhere)
        thread.start()
        thread.join()
        assert kept == [True]  # that thread's connection is untouched
        assert lean._connections._local.connection.sock is None  # the stream's own is closed: it reconnects
        body.close()  # twice: nothing more


# -- TLS and proxies: the lean path reaches an endpoint the way botocore would, or not at all ------


def issue_ca(directory: Path, name: str) -> tuple[Path, Any, Any]:
    """A self-signed CA: (its PEM file, its key, its certificate)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def issue_server_cert(directory: Path, ca_key: Any, ca_cert: Any) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 signed by the CA: (certificate file, key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class PKI:
    ca: Path  # the CA that signed the server's certificate
    other_ca: Path  # a CA that did not
    server_cert: Path
    server_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca, ca_key, ca_cert = issue_ca(directory, "test-ca")
    other_ca, _, _ = issue_ca(directory, "other-ca")
    server_cert, server_key = issue_server_cert(directory, ca_key, ca_cert)
    return PKI(ca, other_ca, server_cert, server_key)


class TLSCannedServer(CannedServer):
    """The canned server behind TLS, with a certificate for 127.0.0.1."""

    def __init__(self, answers: list[bytes], pki: PKI) -> None:
        super().__init__(answers)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pki.server_cert, pki.server_key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.url = self.url.replace("http://", "https://")


_PROXY_AND_CA_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
    "AWS_CA_BUNDLE",
    "REQUESTS_CA_BUNDLE",
)


@pytest.fixture
def network_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No proxy or CA bundle from the developer's environment; the test sets its own."""
    for name in _PROXY_AND_CA_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def client_for(url: str, **kwargs: Any) -> Any:
    config = Config(
        s3={"addressing_style": "path", "payload_signing_enabled": False}, **kwargs.pop("config", {})
    )
    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="AKIDEXAMPLE",
        aws_secret_access_key="secret",
        config=config,
        **kwargs,
    )


OBJECT = partial("200 OK", b"hello")


def test_the_lean_path_trusts_the_ca_bundle_botocore_uses(pki: PKI, network_env: pytest.MonkeyPatch) -> None:
    network_env.setenv("AWS_CA_BUNDLE", str(pki.ca))
    with TLSCannedServer([OBJECT], pki) as server:
        lean = LeanS3(client_for(server.url), "bucket", connect_timeout=5, read_timeout=5)
        _, body = lean.get_object("k")
    assert body == b"hello"
    assert server.requests[0].startswith("GET /bucket/k HTTP/1.1\r\n")


def test_the_lean_path_trusts_the_clients_own_verify_setting(
    pki: PKI, network_env: pytest.MonkeyPatch
) -> None:
    with TLSCannedServer([OBJECT], pki) as server:
        lean = LeanS3(client_for(server.url, verify=str(pki.ca)), "bucket", connect_timeout=5, read_timeout=5)
        assert lean.get_object("k")[1] == b"hello"


def test_a_certificate_from_another_ca_fails_verification(pki: PKI, network_env: pytest.MonkeyPatch) -> None:
    network_env.setenv("AWS_CA_BUNDLE", str(pki.other_ca))
    with TLSCannedServer([OBJECT], pki) as server:
        lean = LeanS3(client_for(server.url), "bucket", connect_timeout=5, read_timeout=5)
        with pytest.raises(ssl.SSLCertVerificationError):
            lean.get_object("k")
    assert server.requests == []  # nothing was sent over the unverified connection


def test_verification_turned_off_is_left_to_botocore(pki: PKI, network_env: pytest.MonkeyPatch) -> None:
    with pytest.raises(LeanUnsupported, match="verification is off"):
        LeanS3(client_for("https://127.0.0.1:9", verify=False), "bucket", connect_timeout=5, read_timeout=5)


@pytest.mark.parametrize(
    ("env", "config", "lean"),
    [
        ({"HTTPS_PROXY": "http://127.0.0.1:3128"}, {}, False),
        ({"https_proxy": "http://127.0.0.1:3128"}, {}, False),
        ({"HTTPS_PROXY": "http://127.0.0.1:3128", "NO_PROXY": "127.0.0.1"}, {}, True),
        ({"HTTP_PROXY": "http://127.0.0.1:3128"}, {}, True),  # a proxy for http:// only
        ({}, {"proxies": {"https": "http://127.0.0.1:3128"}}, False),
        ({}, {}, True),
    ],
    ids=["HTTPS_PROXY", "https_proxy", "NO_PROXY", "other-scheme", "Config-proxies", "none"],
)
def test_the_lean_path_is_off_where_a_proxy_applies(
    pki: PKI, network_env: pytest.MonkeyPatch, env: dict[str, str], config: dict[str, Any], lean: bool
) -> None:
    for name, value in env.items():
        network_env.setenv(name, value)
    client = client_for("https://127.0.0.1:9443", config=config, verify=str(pki.ca))
    if lean:
        LeanS3(client, "bucket", connect_timeout=5, read_timeout=5)
    else:
        with pytest.raises(LeanUnsupported, match="proxy"):
            LeanS3(client, "bucket", connect_timeout=5, read_timeout=5)


def test_behind_a_proxy_copies_go_through_it_with_boto3(network_env: pytest.MonkeyPatch) -> None:
    # Nothing listens on the endpoint itself: only requests sent through the proxy can succeed.
    endpoint = f"http://127.0.0.1:{free_port()}"
    body = b"hello"
    etag = hashlib.md5(body).hexdigest()
    answers = [
        partial("200 OK", body).replace(b"\r\n\r\n", f'\r\nETag: "{etag}"\r\n\r\n'.encode(), 1),
        f'HTTP/1.1 200 OK\r\nETag: "{etag}"\r\nContent-Length: 0\r\n\r\n'.encode(),
    ]
    with CannedServer(answers) as proxy:
        network_env.setenv("HTTP_PROXY", proxy.url)
        engine = engine_for(endpoint, True, "src-bucket", "dst-bucket")
        try:
            assert engine._lean_source is None and engine._lean_target is None
            engine.copy(ObjectInfo(key="k", size=len(body), etag=etag, complete=False))
        finally:
            engine.close()
    # Absolute-form request targets: boto3 sent both through the proxy.
    assert proxy.requests[0].startswith(f"GET {endpoint}/src-bucket/k HTTP/1.1\r\n")
    assert proxy.requests[1].startswith(f"PUT {endpoint}/dst-bucket/k HTTP/1.1\r\n")


class SilentServer:
    """Accepts connections (over TLS, completes the handshake) and never answers."""

    def __init__(self, context: ssl.SSLContext | None = None) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.host = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._context = context
        self._listener.settimeout(0.05)  # to see the stop flag
        self._held: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            conn.settimeout(5)
            if self._context is not None:
                conn = self._context.wrap_socket(conn, server_side=True)
            self._held.append(conn)

    def __enter__(self) -> SilentServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self._listener.close()
        for conn in self._held:
            conn.close()


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_a_request_waits_the_read_timeout_not_the_connect_timeout(pki: PKI, tls: bool) -> None:
    client_context = None
    server_context = None
    if tls:
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(pki.server_cert, pki.server_key)
        client_context = ssl.create_default_context(cafile=str(pki.ca))
    with SilentServer(server_context) as server:
        connections = ThreadConnections(
            server.host, tls, client_context, connect_timeout=30, read_timeout=0.5
        )
        connection = connections.connection()
        connection.connect()
        assert connection.sock.gettimeout() == 0.5  # connected (and shaken hands) within 30 s
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            connections.open("GET", "/bucket/k", {}, None)
        assert time.monotonic() - started < 10  # the read timeout, not the connect one
        assert connections.connection() is not connection  # dropped after the timeout
