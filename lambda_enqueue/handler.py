"""S3 event -> FIFO SQS queue. S3 cannot notify a FIFO queue directly, so this thin Lambda does.

It takes both of S3's event formats: bucket notifications and EventBridge events (see
s3_events.py). Imports only the standard library, boto3 and the shared message model (the Lambda
zip is small).

Any message that cannot be enqueued after retries raises, so Lambda's async retry redelivers the
whole event (the FIFO deduplication id makes the redelivery of already-sent records harmless).
An event or record that is not a valid S3 event raises too, after the valid records of the same
event are enqueued: once Lambda's retries are spent, its on-failure destination keeps the whole
event, with the reason, in the enqueue-failures queue instead of it being dropped.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from functools import cache
from typing import Any

import boto3
from botocore.config import Config

from lambda_enqueue.s3_events import RejectedRecord, parse_event
from replicator.messages import ReplicationMessage

BATCH_SIZE = 10  # SendMessageBatch limit
SEND_ATTEMPTS = 5

logger = logging.getLogger("lambda_enqueue")
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))


class EnqueueError(RuntimeError):
    """Some messages could not be enqueued; raising makes Lambda retry the event."""


class RejectedEventError(ValueError):
    """The event, or some of its records, is not a valid S3 event. Raised after the valid
    records are enqueued, so that Lambda hands the event to its on-failure destination."""

    def __init__(self, rejected: Sequence[RejectedRecord]) -> None:
        self.rejected = list(rejected)
        # Positions and reasons only: a record may be huge or hostile.
        details = "; ".join(
            f"{'event' if r.index < 0 else f'record {r.index}'}: {r.reason}" for r in self.rejected
        )
        super().__init__(f"{len(self.rejected)} rejected: {details}")


def _log(level: int, event: str, **fields: Any) -> None:
    logger.log(level, json.dumps({"event": event, **fields}, default=str))


@cache
def _sqs_client() -> Any:
    return boto3.client("sqs", config=Config(retries={"mode": "standard", "max_attempts": 5}))


def _queue_url() -> str:
    url = os.environ.get("QUEUE_URL", "")
    if not url:
        raise EnqueueError("QUEUE_URL is not set on the function")
    return url


def send_messages(sqs: Any, queue_url: str, messages: Sequence[ReplicationMessage]) -> int:
    """SendMessageBatch in tens; failed entries are retried with backoff, then raise."""
    for start in range(0, len(messages), BATCH_SIZE):
        pending = {str(i): m for i, m in enumerate(messages[start : start + BATCH_SIZE])}
        failures: list[dict[str, Any]] = []
        for attempt in range(SEND_ATTEMPTS):
            response = sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {
                        "Id": entry_id,
                        "MessageBody": m.to_body(),
                        "MessageGroupId": m.group_id,
                        "MessageDeduplicationId": m.deduplication_id,
                    }
                    for entry_id, m in pending.items()
                ],
            )
            failures = response.get("Failed", [])
            pending = {f["Id"]: pending[f["Id"]] for f in failures}
            if not pending:
                break
            # A sender fault (e.g. invalid parameter) will not heal with retries.
            if all(f.get("SenderFault") for f in failures):
                break
            time.sleep(min(0.1 * 2**attempt, 2.0))
        if pending:
            details = [
                {"key": pending[f["Id"]].key, "code": f.get("Code"), "message": f.get("Message")}
                for f in failures
            ]
            _log(logging.ERROR, "enqueue_failed", failed=details)
            raise EnqueueError(f"{len(pending)} message(s) could not be enqueued: {details}")
    return len(messages)


def handle_event(event: Any, sqs: Any, queue_url: str) -> dict[str, Any]:
    """Enqueue every valid record; then raise RejectedEventError if any was not valid."""
    parsed = parse_event(event)
    if parsed.test_event:
        _log(logging.INFO, "test_event_ignored")
        return {"enqueued": 0, "rejected": 0, "ignored": 1}
    for bad in parsed.rejected:
        # The reason and position only: the record may be huge or hostile.
        _log(logging.WARNING, "record_rejected", index=bad.index, reason=bad.reason)
    sent = send_messages(sqs, queue_url, parsed.messages)
    summary = {"enqueued": sent, "rejected": len(parsed.rejected), "ignored": parsed.ignored}
    _log(logging.INFO, "event_enqueued", **summary)
    if parsed.rejected:
        raise RejectedEventError(parsed.rejected)
    return summary


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point."""
    return handle_event(event, _sqs_client(), _queue_url())
