"""Typed models of the S3 event notification, and its translation into replication messages.

Shape: https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html
Keys arrive URL-encoded ("red flower.jpg" -> "red+flower.jpg"); they are decoded here, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from replicator.messages import MessageError, ReplicationMessage

# Event families that change what a key holds. Everything else (restore, tagging, ACL,
# replication, transition) leaves the bytes alone and is ignored.
REPLICATED_EVENT_PREFIXES = ("ObjectCreated:", "ObjectRemoved:", "LifecycleExpiration:")


class S3Bucket(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(min_length=1)


class S3Object(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    key: str = Field(min_length=1)
    size: int | None = Field(default=None, ge=0)
    e_tag: str | None = Field(default=None, alias="eTag")
    version_id: str | None = Field(default=None, alias="versionId")
    sequencer: str | None = None


class S3Entity(BaseModel):
    model_config = ConfigDict(extra="ignore")
    bucket: S3Bucket
    object: S3Object


class S3EventRecord(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    event_source: str | None = Field(default=None, alias="eventSource")
    event_name: str = Field(alias="eventName", min_length=1)
    event_time: datetime | None = Field(default=None, alias="eventTime")
    s3: S3Entity


@dataclass(frozen=True)
class RejectedRecord:
    index: int
    reason: str


@dataclass(frozen=True)
class ParsedEvent:
    messages: list[ReplicationMessage]
    rejected: list[RejectedRecord]
    ignored: int
    test_event: bool = False


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "record"
    return f"{where}: {err['msg']}"


def record_to_message(record: S3EventRecord) -> ReplicationMessage:
    obj = record.s3.object
    return ReplicationMessage(
        bucket=record.s3.bucket.name,
        key=unquote_plus(obj.key),
        event=record.event_name.removeprefix("s3:"),
        event_time=record.event_time,
        sequencer=obj.sequencer,
        etag=obj.e_tag.strip('"') if obj.e_tag else None,
        size=obj.size,
        version_id=obj.version_id,
    )


def parse_s3_event(event: Any) -> ParsedEvent:
    """Split an S3 notification into messages, rejected records (with reasons) and ignored ones.

    One bad record never costs the valid records of the same event.
    """
    if not isinstance(event, dict):
        return ParsedEvent([], [RejectedRecord(-1, f"event is a {type(event).__name__}, not an object")], 0)
    if event.get("Event") == "s3:TestEvent" and "Records" not in event:
        return ParsedEvent([], [], 0, test_event=True)
    records = event.get("Records")
    if not isinstance(records, list):
        return ParsedEvent([], [RejectedRecord(-1, "event has no 'Records' list")], 0)

    messages: list[ReplicationMessage] = []
    rejected: list[RejectedRecord] = []
    ignored = 0
    for index, raw in enumerate(records):
        try:
            record = S3EventRecord.model_validate(raw)
        except ValidationError as exc:
            rejected.append(RejectedRecord(index, _first_error(exc)))
            continue
        if record.event_source not in (None, "aws:s3"):
            rejected.append(RejectedRecord(index, f"eventSource is {record.event_source!r}, not aws:s3"))
            continue
        if not record.event_name.removeprefix("s3:").startswith(REPLICATED_EVENT_PREFIXES):
            ignored += 1
            continue
        try:
            messages.append(record_to_message(record))
        except (ValidationError, MessageError) as exc:
            reason = _first_error(exc) if isinstance(exc, ValidationError) else str(exc)
            rejected.append(RejectedRecord(index, reason))
    return ParsedEvent(messages, rejected, ignored)
