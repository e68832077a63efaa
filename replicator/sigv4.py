"""SigV4 header signing for the lean request path.

botocore's S3SigV4Auth costs about 60 us per request here (an AWSRequest, URL parsing, its
email-based header map, four HMACs for the signing key). For an object of a few KiB that is a
tenth of the copy's CPU. This signer produces the same canonical request as botocore for the
plain GET, PUT and UploadPart the lean path sends (tests/unit/test_sigv4.py compares the two
byte for byte, also against requests a real botocore client serialised), keeps the signing key
for the day, and reads credentials through botocore so refreshable ones (task roles) stay fresh.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from botocore.auth import SIGNED_HEADERS_BLACKLIST, UNSIGNED_PAYLOAD

# botocore's own list of headers it leaves out of the signature.
_UNSIGNED_HEADERS = frozenset(SIGNED_HEADERS_BLACKLIST)


def query_string(params: dict[str, str]) -> str:
    """The canonical query string: names and values percent-encoded as botocore does (only
    unreserved characters left as they are), pairs sorted. Also what goes on the wire."""
    pairs = sorted((quote(name, safe="-_.~"), quote(value, safe="-_.~")) for name, value in params.items())
    return "&".join(f"{name}={value}" for name, value in pairs)


def _hmac(key: bytes, message: str) -> bytes:
    return hmac.new(key, message.encode(), hashlib.sha256).digest()


class SigV4Signer:
    """Signs S3 requests with an unsigned payload (integrity comes from Content-MD5)."""

    def __init__(self, credentials: Any, region: str, service: str = "s3") -> None:
        self._credentials = credentials  # botocore Credentials (possibly refreshable)
        self._region = region
        self._service = service
        self._keys: dict[tuple[str, str], bytes] = {}

    def _signing_key(self, secret: str, day: str) -> bytes:
        cached = self._keys.get((secret, day))
        if cached is None:
            cached = _hmac(f"AWS4{secret}".encode(), day)
            for part in (self._region, self._service, "aws4_request"):
                cached = _hmac(cached, part)
            # One day, one secret: replacing the whole dict drops the old entry, and a plain
            # assignment is atomic, so threads need no lock (at worst two compute the same key).
            self._keys = {(secret, day): cached}
        return cached

    def sign(
        self,
        method: str,
        path: str,
        host: str,
        headers: dict[str, str],
        query: str = "",
        now: datetime | None = None,
    ) -> dict[str, str]:
        """The headers to send: `headers` plus Host, X-Amz-Date, X-Amz-Content-SHA256, the session
        token if any, and Authorization. `path` is the URI exactly as sent (already quoted),
        `query` the output of query_string()."""
        frozen = self._credentials.get_frozen_credentials()
        stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
        day = stamp[:8]
        signed = dict(headers)
        signed["Host"] = host
        signed["X-Amz-Date"] = stamp
        signed["X-Amz-Content-SHA256"] = UNSIGNED_PAYLOAD
        if frozen.token:
            signed["X-Amz-Security-Token"] = frozen.token
        canonical: dict[str, str] = {}
        for name, value in signed.items():
            lower = name.lower()
            if lower not in _UNSIGNED_HEADERS:
                canonical[lower] = " ".join(value.split())
        names = sorted(canonical)
        signed_names = ";".join(names)
        request = "\n".join(
            (
                method,
                path,
                query,
                "".join(f"{n}:{canonical[n]}\n" for n in names),
                signed_names,
                UNSIGNED_PAYLOAD,
            )
        )
        scope = f"{day}/{self._region}/{self._service}/aws4_request"
        to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(request.encode()).hexdigest()}"
        signature = hmac.new(
            self._signing_key(frozen.secret_key, day), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        signed["Authorization"] = (
            f"AWS4-HMAC-SHA256 Credential={frozen.access_key}/{scope}, "
            f"SignedHeaders={signed_names}, Signature={signature}"
        )
        return signed
