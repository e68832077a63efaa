"""Whether an endpoint is AWS S3 itself, for the few rules that differ between AWS and other
S3-compatible stores (listing attributes, Lyve Cloud's key limits)."""

from __future__ import annotations

from urllib.parse import urlsplit

from replicator.clients import Endpoint

AWS_S3_HOST_SUFFIXES = (".amazonaws.com", ".amazonaws.com.cn")


def on_aws(endpoint: Endpoint) -> bool:
    """True for AWS S3 endpoints (any region, partition, FIPS or dual-stack host)."""
    host = (urlsplit(endpoint.url).hostname or "").lower()
    return host.endswith(AWS_S3_HOST_SUFFIXES)
