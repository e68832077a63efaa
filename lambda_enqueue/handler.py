"""S3 event -> FIFO SQS queue. S3 cannot notify a FIFO queue directly, so this thin Lambda does.

Imports only the standard library, boto3 and the shared message model (the Lambda zip is small).
Any message that cannot be enqueued after retries raises, so Lambda's async retry redelivers the
whole event (the FIFO deduplication id makes the redelivery of already-sent records harmless).
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

from lambda_enqueue.s3_events import parse_s3_event
from replicator.messages import ReplicationMessage

BATCH_SIZE = 10  # SendMessageBatch limit
SEND_ATTEMPTS = 5

logger = logging.getLogger("lambda_enqueue")
logger.setLevel(os.environ.get("LOG_LEVEL", "INFO"))


class EnqueueError(RuntimeError):
    """Some messages could not be enqueued; raising makes Lambda retry the event."""


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
    parsed = parse_s3_event(event)
    if parsed.test_event:
        _log(logging.INFO, "test_event_ignored")
        return {"enqueued": 0, "rejected": 0, "ignored": 1}
    for bad in parsed.rejected:
        # The reason and position only: the record may be huge or hostile.
        _log(logging.WARNING, "record_rejected", index=bad.index, reason=bad.reason)
    sent = send_messages(sqs, queue_url, parsed.messages)
    summary = {"enqueued": sent, "rejected": len(parsed.rejected), "ignored": parsed.ignored}
    _log(logging.INFO, "event_enqueued", **summary)
    return summary


def handler(event: Any, context: Any) -> dict[str, Any]:
    """The Lambda entry point."""
    return handle_event(event, _sqs_client(), _queue_url())
