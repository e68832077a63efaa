"""The queue message shared by the enqueue Lambda, the worker and migrate.

A message means "reconcile this key": the worker looks at the source now and makes the target
match it, so duplicates, reordering and lost intermediate events all converge. The event fields
are kept for logs and the replication-latency metric, not for deciding what to do.

This module is packaged into the Lambda zip: it imports only the standard library and pydantic.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

SCHEMA_VERSION: Literal[1] = 1
MAX_KEY_BYTES = 1024


class MessageError(ValueError):
    """A queue message body that is not a valid replication message."""


class ReplicationMessage(BaseModel):
    """Version 1 of the queue message. Field names are short: they travel in every message."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    v: Literal[1] = SCHEMA_VERSION
    bucket: str = Field(min_length=1, max_length=255)
    key: str = Field(min_length=1)
    event: str = Field(min_length=1, description="S3 event name, e.g. ObjectCreated:Put")
    event_time: datetime | None = None
    sequencer: str | None = None
    etag: str | None = None
    size: int | None = Field(default=None, ge=0)
    version_id: str | None = None
    # How often a worker stopped this key's copy and put the message back as a fresh one
    # (shutdown, the 12-hour lease cap); absent from the body while zero.
    interruptions: int = Field(default=0, ge=0)
    # The targets still to reconcile the key on, by name; absent: every target. A target that
    # failed while others succeeded goes on in a message of its own (see the worker).
    targets: tuple[str, ...] | None = Field(default=None, min_length=1)

    @field_validator("key")
    @classmethod
    def _key_fits_s3(cls, key: str) -> str:
        if len(key.encode("utf-8")) > MAX_KEY_BYTES:
            raise ValueError(f"key is longer than {MAX_KEY_BYTES} bytes in UTF-8")
        return key

    @property
    def group_id(self) -> str:
        """FIFO group: one per key, so a key is never worked on twice at once, whichever
        targets a message names (two workers on one key could delete a copy just rewritten, or
        write an older version over a newer one)."""
        return message_group_id(self.bucket, self.key)

    @property
    def deduplication_id(self) -> str:
        """Same id for the same S3 event delivered twice, different ids for different events.

        S3 repeats the sequencer on duplicate deliveries. Without one (moto, some replays) the
        version id or ETag plus the event time stands in, so a delete-then-recreate of identical
        bytes is not mistaken for a duplicate.
        """
        identity = self.sequencer or "|".join(
            part for part in (self.version_id, self.etag, self.event_time_text) if part
        )
        digest = hashlib.sha256("\x00".join((self.bucket, self.key, self.event, identity)).encode("utf-8"))
        return digest.hexdigest()

    @property
    def event_time_text(self) -> str | None:
        return self.event_time.isoformat() if self.event_time else None

    def to_body(self) -> str:
        return self.model_dump_json(
            exclude_none=True, exclude={"interruptions"} if not self.interruptions else None
        )

    def for_targets(self, names: tuple[str, ...]) -> ReplicationMessage:
        """The same message for these targets only (a fresh start: no interruptions)."""
        return self.model_copy(update={"targets": tuple(sorted(names)), "interruptions": 0})

    def interrupted(self) -> ReplicationMessage:
        """The same message, counting one more interruption (for a fresh copy on the queue)."""
        return self.model_copy(update={"interruptions": self.interruptions + 1})

    @classmethod
    def from_body(cls, body: str) -> ReplicationMessage:
        try:
            return cls.model_validate_json(body)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in exc.errors()
            )
            raise MessageError(f"invalid replication message: {problems}") from None


def message_group_id(bucket: str, key: str) -> str:
    """A hash of bucket and key: keys can be 1024 bytes, group ids at most 128 characters."""
    return hashlib.sha256(f"{bucket}\x00{key}".encode()).hexdigest()
