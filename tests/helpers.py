"""Helpers shared by the tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

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
