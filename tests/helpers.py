"""Helpers shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from replicator.clients import build_clients
from replicator.settings import Settings
from replicator.transfer import TransferEngine

EVENTS = Path(__file__).parent / "events"


def load_event(name: str) -> dict[str, Any]:
    return json.loads((EVENTS / name).read_text())  # type: ignore[no-any-return]


def s3_record(key_encoded: str, event: str = "ObjectCreated:Put", **obj: Any) -> dict[str, Any]:
    """One S3 event record with an already URL-encoded key, as S3 sends it."""
    return {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": "2026-11-21T05:00:00.000Z",
        "eventName": event,
        "s3": {
            "s3SchemaVersion": "1.0",
            "bucket": {"name": "source-bucket", "arn": "arn:aws:s3:::source-bucket"},
            "object": {"key": key_encoded, **obj},
        },
    }


def engine_for(
    url: str, lean: bool, bucket: str = "bucket", target_bucket: str | None = None
) -> TransferEngine:
    """An engine with both ends at `url` (a canned loopback server), on the lean path or boto3."""
    settings = Settings(
        source_bucket=bucket,
        source_endpoint_url=url,
        source_access_key_id="AKIDEXAMPLE",
        source_secret_access_key="secret",
        source_addressing_style="path",
        target_bucket=target_bucket or bucket,
        target_endpoint_url=url,
        target_access_key_id="AKIDEXAMPLE",
        target_secret_access_key="secret",
        allow_http_endpoints=True,
        lean_requests=lean,
        max_attempts=1,
    )
    clients = build_clients(settings)
    return TransferEngine(clients.source, clients.target, settings)
