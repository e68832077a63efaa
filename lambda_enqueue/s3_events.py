"""Typed models of S3's two event formats, and their translation into replication messages.

- Bucket notifications (`{"Records": [...]}`):
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/notification-content-structure.html
  Keys arrive URL-encoded ("red flower.jpg" -> "red+flower.jpg"); they are decoded here, once.
- EventBridge events (`"source": "aws.s3"`, `"detail-type": "Object Created"`, ...):
  https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html
  The key in `detail.object.key` is taken as it is: that page, unlike the notification one,
  does not describe it as URL-encoded.

The same change yields the same message from either format (same key, event name, sequencer,
so the same FIFO group and deduplication id): a bucket moving from one to the other, with both
delivering for a while, enqueues each change once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import unquote_plus

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from replicator.messages import MessageError, ReplicationMessage

# Event families that change what a key holds. Everything else (restore, tagging, ACL,
# replication, transition) leaves the bytes alone and is ignored.
REPLICATED_EVENT_PREFIXES = ("ObjectCreated:", "ObjectRemoved:", "LifecycleExpiration:")

# EventBridge detail types of the same families (the S3 user guide's mapping table).
EVENTBRIDGE_CREATED = "Object Created"
EVENTBRIDGE_DELETED = "Object Deleted"
REPLICATED_DETAIL_TYPES = (EVENTBRIDGE_CREATED, EVENTBRIDGE_DELETED)

# `detail.reason` of "Object Created" -> the notification's event name.
_CREATED_REASONS = {
    "PutObject": "ObjectCreated:Put",
    "POST Object": "ObjectCreated:Post",
    "CopyObject": "ObjectCreated:Copy",
    "CompleteMultipartUpload": "ObjectCreated:CompleteMultipartUpload",
}
_LIFECYCLE_REASON = "Lifecycle Expiration"
_DELETE_MARKER = "Delete Marker Created"


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


class EventBridgeObject(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    key: str = Field(min_length=1)
    size: int | None = Field(default=None, ge=0)
    etag: str | None = None
    version_id: str | None = Field(default=None, alias="version-id")
    sequencer: str | None = None


class EventBridgeDetail(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    bucket: S3Bucket
    object: EventBridgeObject
    reason: str | None = None
    deletion_type: str | None = Field(default=None, alias="deletion-type")


class EventBridgeEnvelope(BaseModel):
    """The part every EventBridge event has; `detail` is checked once the type is known."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    source: str = Field(min_length=1)
    detail_type: str = Field(alias="detail-type", min_length=1)
    time: datetime | None = None
    detail: Any = None


@dataclass(frozen=True)
class RejectedRecord:
    index: int  # position in Records; -1: the event as a whole
    reason: str


@dataclass(frozen=True)
class ParsedEvent:
    messages: list[ReplicationMessage]
    rejected: list[RejectedRecord]
    ignored: int
    test_event: bool = False


def _shown(value: str) -> str:
    """A value from the event, for a reason: quoted and cut short (it may be huge or hostile)."""
    return repr(value if len(value) <= 64 else f"{value[:64]}...")


def _first_error(exc: ValidationError, prefix: str = "") -> str:
    err = exc.errors()[0]
    where = ".".join((prefix, *(str(p) for p in err["loc"]))).strip(".") or "record"
    return f"{where}: {err['msg']}"


def _rejected_whole(reason: str) -> ParsedEvent:
    return ParsedEvent([], [RejectedRecord(-1, reason)], 0)


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


def eventbridge_event_name(detail_type: str, detail: EventBridgeDetail) -> str:
    """The bucket notification's name for the same change, e.g. "ObjectRemoved:DeleteMarkerCreated".

    A reason S3 may add later still yields a message (a reconcile is always safe): the name
    then carries the reason itself.
    """
    reason = detail.reason or ""
    if detail_type == EVENTBRIDGE_CREATED:
        known = _CREATED_REASONS.get(reason)
        return known or f"ObjectCreated:{re.sub(r'[^A-Za-z0-9]', '', reason) or 'Unknown'}"
    family = "LifecycleExpiration" if reason == _LIFECYCLE_REASON else "ObjectRemoved"
    return f"{family}:{'DeleteMarkerCreated' if detail.deletion_type == _DELETE_MARKER else 'Delete'}"


def eventbridge_to_message(envelope: EventBridgeEnvelope, detail: EventBridgeDetail) -> ReplicationMessage:
    obj = detail.object
    created = envelope.detail_type == EVENTBRIDGE_CREATED
    return ReplicationMessage(
        bucket=detail.bucket.name,
        key=obj.key,  # not URL-encoded in this format: decoding would corrupt "a+b", "100%25"
        event=eventbridge_event_name(envelope.detail_type, detail),
        event_time=envelope.time,
        sequencer=obj.sequencer,
        # A delete's etag (and size, if any) describe the delete marker, not content.
        etag=obj.etag.strip('"') if created and obj.etag else None,
        size=obj.size if created else None,
        version_id=obj.version_id,
    )


def parse_eventbridge_event(event: dict[str, Any]) -> ParsedEvent:
    """One EventBridge event: one message, or a rejection with the reason, or ignored."""
    try:
        envelope = EventBridgeEnvelope.model_validate(event)
    except ValidationError as exc:
        return _rejected_whole(_first_error(exc))
    if envelope.source != "aws.s3":
        return _rejected_whole(f"EventBridge source is {_shown(envelope.source)}, not aws.s3")
    if envelope.detail_type not in REPLICATED_DETAIL_TYPES:
        return ParsedEvent([], [], 1)
    try:
        detail = EventBridgeDetail.model_validate(envelope.detail)
    except ValidationError as exc:
        return _rejected_whole(_first_error(exc, "detail"))
    try:
        message = eventbridge_to_message(envelope, detail)
    except ValidationError as exc:
        return _rejected_whole(_first_error(exc))
    return ParsedEvent([message], [], 0)


def parse_s3_event(event: Any) -> ParsedEvent:
    """Split an S3 notification into messages, rejected records (with reasons) and ignored ones.

    One bad record never costs the valid records of the same event.
    """
    if not isinstance(event, dict):
        return _rejected_whole(f"event is a {type(event).__name__}, not an object")
    if event.get("Event") == "s3:TestEvent" and "Records" not in event:
        return ParsedEvent([], [], 0, test_event=True)
    records = event.get("Records")
    if not isinstance(records, list):
        return _rejected_whole("event has no 'Records' list")

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
            reason = f"eventSource is {_shown(record.event_source)}, not aws:s3"
            rejected.append(RejectedRecord(index, reason))
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


def parse_event(event: Any) -> ParsedEvent:
    """Either format, told apart by shape: EventBridge events have a `detail-type`."""
    if isinstance(event, dict) and "detail-type" in event and "Records" not in event:
        return parse_eventbridge_event(event)
    return parse_s3_event(event)
