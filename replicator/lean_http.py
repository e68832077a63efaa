"""Keep-alive HTTP connections, one per calling thread, for the lean request paths (lean_s3 for
S3, stores.lean_azure for Azure Blob).

A shared pool's locks convoy under the GIL; a connection owned by the thread that uses it needs
none. Responses skip the email package's header parser (about 20 us each, a tenth of a small
object's copy): the stores answer with plain `Name: value` lines.
"""

from __future__ import annotations

import http.client
import os
import select
import ssl
import threading
import types
from collections.abc import Callable, Iterable
from typing import Any

Body = bytes | memoryview | Iterable[Any] | None


class LeanUnsupported(Exception):
    """This request is better left to the full client (boto3, the Azure SDK), and, endpoint_wide,
    every later one too."""

    def __init__(self, reason: str, endpoint_wide: bool = True) -> None:
        super().__init__(reason)
        self.endpoint_wide = endpoint_wide


def _parse_headers(fp: Any) -> http.client.HTTPMessage:
    """http.client.parse_headers without the email package's feed parser."""
    message = http.client.HTTPMessage()
    for line in http.client._read_headers(fp):  # type: ignore[attr-defined]  # the stdlib's limits
        name, separator, value = line.decode("iso-8859-1").partition(":")
        if separator:  # the email package's rules: name as is, value without leading blanks
            message[name] = value.lstrip(" \t").rstrip("\r\n")
    return message


class QuickHeadersResponse(http.client.HTTPResponse):
    # The stdlib's own begin(), run with the header parser above in place of parse_headers:
    # every other rule (status line, 100 Continue, chunking, keep-alive) stays the stdlib's.
    begin = types.FunctionType(
        http.client.HTTPResponse.begin.__code__,
        {**vars(http.client), "parse_headers": _parse_headers},
    )


def verifying_context(bundle: str) -> ssl.SSLContext:
    """TLS verification against a CA bundle, a file or a directory (as requests and botocore read
    them). One this path cannot load leaves the endpoint to the full client, which reports it in
    its own words on its first request."""
    try:
        if os.path.isdir(bundle):
            return ssl.create_default_context(capath=bundle)
        return ssl.create_default_context(cafile=bundle)
    except (OSError, ValueError) as exc:
        raise LeanUnsupported(f"CA bundle {bundle!r} unusable: {exc}") from None


class Connection(http.client.HTTPConnection):
    """Connects (and, over TLS, shakes hands) within `timeout`, then waits at most `read_timeout`
    for each send and read: an endpoint that does not answer a SYN fails in the connect timeout,
    not in the longer one a slow answer is given, as with the full clients."""

    response_class = QuickHeadersResponse
    read_timeout: float | None = None

    def connect(self) -> None:
        super().connect()
        self.sock.settimeout(self.read_timeout)


class TLSConnection(Connection, http.client.HTTPSConnection):
    pass


class ThreadConnections:
    """One kept-alive connection to `host` per calling thread."""

    def __init__(
        self,
        host: str,
        https: bool,
        context: ssl.SSLContext | None,
        connect_timeout: float,
        read_timeout: float,
    ) -> None:
        self.host = host
        self._https = https
        self._context = context
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._local = threading.local()

    def connection(self) -> http.client.HTTPConnection:
        connection: Connection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._https:
                connection = TLSConnection(self.host, timeout=self._connect_timeout, context=self._context)
            else:
                connection = Connection(self.host, timeout=self._connect_timeout)
            connection.read_timeout = self._read_timeout
            self._local.connection = connection
        return connection

    def drop(self) -> None:
        """Close this thread's connection (the next request opens another)."""
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None

    def forget(self, connection: http.client.HTTPConnection) -> None:
        """Close `connection`, and stop reusing it if it is this thread's."""
        connection.close()
        if getattr(self._local, "connection", None) is connection:
            self._local.connection = None

    def stale(self) -> bool:
        """Whether this thread's kept-alive connection was closed by the server meanwhile: an idle
        connection with something to read has been (urllib3 makes the same check). A streamed body
        cannot be sent a second time on a fresh one, so it is checked before sending."""
        connection = getattr(self._local, "connection", None)
        sock = getattr(connection, "sock", None)
        if sock is None:
            return False
        try:
            readable, _, _ = select.select([sock], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def open(
        self,
        method: str,
        target: str,
        headers: dict[str, str],
        body: Body,
        can_resend: Callable[[], bool] = lambda: True,
    ) -> http.client.HTTPResponse:
        """Send a request and read the status and headers; the caller reads the body (and drops
        the connection if it stops before the end)."""
        for attempt in (1, 2):
            connection = self.connection()
            try:
                connection.request(method, target, body=body, headers=headers)
                return connection.getresponse()
            except (http.client.HTTPException, ConnectionError):
                # A kept-alive connection the server had closed: reconnect once, then give up
                # (the caller's retry policy takes over). A streamed body that has begun cannot
                # be sent again: the caller's retry reads it again.
                self.drop()
                if attempt == 2 or not can_resend():
                    raise
            except BaseException:
                self.drop()  # a timeout leaves the connection mid-exchange
                raise
        raise AssertionError("unreachable")

    def exchange(
        self, method: str, target: str, headers: dict[str, str], body: Body, can_resend: Callable[[], bool]
    ) -> tuple[http.client.HTTPResponse, bytes]:
        """open(), and the whole answer read."""
        response = self.open(method, target, headers, body, can_resend)
        try:
            data = response.read()
        except BaseException:
            self.drop()
            raise
        return response, data
