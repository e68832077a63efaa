"""An HTTP proxy on loopback that makes an S3 endpoint unreliable on purpose.

It forwards each request to the real server unchanged (the Host header included, so SigV4 still
verifies) and, for a seeded random share of them, answers 503 SlowDown or 500 InternalError
instead, or drops the connection without an answer. Used by the fault-injection suite.
"""

from __future__ import annotations

import contextlib
import http.client
import random
import socket
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

_ERROR_XML = '<?xml version="1.0"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-connection",
}


@dataclass
class FaultPlan:
    slow_down: float = 0.0  # share of requests answered 503 SlowDown
    internal_error: float = 0.0  # share answered 500 InternalError
    drop: float = 0.0  # share whose connection is closed without an answer
    # Requests of these methods are refused with 403 and this error code (a store that refuses
    # writes: a lost permission, a locked account), sent as S3 (XML Code) and Azure
    # (x-ms-error-code) name it.
    refuse_methods: frozenset[str] = frozenset()
    refusal_code: str = "AuthorizationPermissionMismatch"
    seed: int = 7
    injected: Counter[str] = field(default_factory=Counter)
    forwarded: int = 0


class FaultProxy:
    def __init__(self, upstream: str, plan: FaultPlan) -> None:
        self.upstream = urlsplit(upstream)
        self.plan = plan
        self._random = random.Random(plan.seed)
        self._lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # quiet
                pass

            def _handle(self) -> None:
                proxy.handle(self)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="fault-proxy", daemon=True)

    def start(self) -> FaultProxy:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _choose(self) -> str | None:
        with self._lock:
            roll = self._random.random()
        plan = self.plan
        if roll < plan.slow_down:
            return "slow_down"
        if roll < plan.slow_down + plan.internal_error:
            return "internal_error"
        if roll < plan.slow_down + plan.internal_error + plan.drop:
            return "drop"
        return None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        fault = "refuse" if request.command in self.plan.refuse_methods else self._choose()
        if fault:
            with self._lock:
                self.plan.injected[fault] += 1
        if fault == "drop":
            request.close_connection = True
            with contextlib.suppress(OSError):
                request.connection.shutdown(socket.SHUT_RDWR)
            return
        if fault in ("slow_down", "internal_error", "refuse"):
            status, code = {
                "slow_down": (503, "SlowDown"),
                "internal_error": (500, "InternalError"),
                "refuse": (403, self.plan.refusal_code),
            }[fault]
            payload = _ERROR_XML.format(code=code, message="injected fault").encode()
            request.send_response(status)
            request.send_header("x-ms-error-code", code)
            request.send_header("Content-Type", "application/xml")
            request.send_header("Content-Length", str(len(payload)))
            request.end_headers()
            if request.command != "HEAD":
                request.wfile.write(payload)
            return
        self._forward(request, body)

    def _forward(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        upstream = http.client.HTTPConnection(
            self.upstream.hostname or "127.0.0.1", self.upstream.port, timeout=120
        )
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            upstream.request(request.command, request.path, body=body or None, headers=headers)
            response = upstream.getresponse()
            payload = response.read()
        finally:
            upstream.close()
        with self._lock:
            self.plan.forwarded += 1
        request.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                request.send_header(name, value)
        # A HEAD answer carries the object's length and no body.
        length = response.getheader("Content-Length") if request.command == "HEAD" else None
        request.send_header("Content-Length", length or str(len(payload)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)
