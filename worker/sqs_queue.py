"""The SQS calls the consumer makes, with their answers reduced to what the consumer decides on."""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from replicator.errors import StartupError, describe, error_code
from replicator.logs import get_logger
from worker.ops import dead_letter_queue_url

log = get_logger("worker")

SQS_BATCH = 10
# Per-entry or call errors meaning the receipt handle is no longer this worker's: the message was
# deleted, became visible again or was received by someone else. ("InvalidParameterValue" is how
# SQS words an expired handle: "... for parameter ReceiptHandle is invalid".)
_NOT_OURS = frozenset({"ReceiptHandleIsInvalid", "MessageNotInflight"})


@dataclass
class Delivery:
    """One received SQS message."""

    message_id: str
    receipt_handle: str
    group_id: str
    receive_count: int
    body: str
    # monotonic time just before the ReceiveMessage call: never later than SQS's own receive
    # time, so visibility and the 12-hour limit computed from it err on the safe side.
    received_at: float

    @classmethod
    def from_sqs(cls, raw: dict[str, Any], received_at: float) -> Delivery:
        attributes = raw.get("Attributes", {})
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            group_id=attributes.get("MessageGroupId", raw["MessageId"]),
            receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
            body=raw.get("Body", ""),
            received_at=received_at,
        )


class Visibility(enum.Enum):
    CHANGED = "changed"
    FAILED = "failed"  # may work on another try
    NOT_OURS = "not_ours"  # the receipt handle is no longer valid


def _not_ours(code: str | None, message: str = "") -> bool:
    code = (code or "").rsplit(".", 1)[-1]  # "AWS.SimpleQueueService.MessageNotInflight"
    return code in _NOT_OURS or (code == "InvalidParameterValue" and "ReceiptHandle" in message)


def _chunks(items: Sequence[Delivery], size: int = SQS_BATCH) -> Iterable[Sequence[Delivery]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Queue:
    def __init__(self, sqs: Any, url: str) -> None:
        self.sqs = sqs
        self.url = url

    def receive(self, max_messages: int, wait_seconds: int, visibility: int, now: float) -> list[Delivery]:
        response = self.sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max_messages,
            WaitTimeSeconds=wait_seconds,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
        )
        return [Delivery.from_sqs(raw, now) for raw in response.get("Messages", [])]

    def delete(self, deliveries: Sequence[Delivery]) -> bool:
        """True when every message was deleted."""
        deleted = True
        for chunk in _chunks(deliveries):
            entries = [{"Id": str(i), "ReceiptHandle": d.receipt_handle} for i, d in enumerate(chunk)]
            try:
                response = self.sqs.delete_message_batch(QueueUrl=self.url, Entries=entries)
            except Exception as exc:
                log.warning("delete_failed", error=describe(exc))
                deleted = False
                continue
            for failure in response.get("Failed", []):
                log.warning("delete_failed", code=failure.get("Code"), message=failure.get("Message"))
                deleted = False
        return deleted

    def change_visibility(
        self, deliveries: Sequence[Delivery], seconds: int
    ) -> tuple[Visibility, str | None]:
        """Set the visibility of all `deliveries`; the worst outcome over them, with SQS's words."""
        outcome, detail = Visibility.CHANGED, None
        for chunk in _chunks(deliveries):
            entries = [
                {"Id": str(i), "ReceiptHandle": d.receipt_handle, "VisibilityTimeout": seconds}
                for i, d in enumerate(chunk)
            ]
            try:
                response = self.sqs.change_message_visibility_batch(QueueUrl=self.url, Entries=entries)
            except Exception as exc:
                # Transport errors (ReadTimeoutError, ConnectionClosedError) carry response=None.
                response = getattr(exc, "response", None) or {}
                message = str(response.get("Error", {}).get("Message", ""))
                if _not_ours(error_code(exc), message):
                    return Visibility.NOT_OURS, describe(exc)
                outcome, detail = Visibility.FAILED, describe(exc)
                continue
            for failure in response.get("Failed", []):
                code, message = failure.get("Code"), str(failure.get("Message", ""))
                if _not_ours(code, message):
                    return Visibility.NOT_OURS, code
                outcome, detail = Visibility.FAILED, f"{code}: {message}"
        return outcome, detail

    def send(
        self,
        url: str,
        body: str,
        group_id: str,
        deduplication_id: str,
        attributes: dict[str, str] | None = None,
    ) -> str | None:
        """SendMessage to a FIFO queue; the new message id, or None (logged) when it failed."""
        extra: dict[str, Any] = {}
        if attributes:
            extra["MessageAttributes"] = {
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
            }
        try:
            response = self.sqs.send_message(
                QueueUrl=url,
                MessageBody=body,
                MessageGroupId=group_id,
                MessageDeduplicationId=deduplication_id,
                **extra,
            )
        except Exception as exc:
            log.warning("send_failed", queue=url.rstrip("/").rsplit("/", 1)[-1], error=describe(exc))
            return None
        return str(response["MessageId"])


class DeleteBatcher:
    """Deletes finished messages of any keys together: DeleteMessageBatch of up to `batch`
    entries, sent once that many are waiting or `flush_seconds` after the oldest was added, on a
    thread of its own (no job waits for it). close() sends what is left and stops the thread;
    after it, add() deletes at once.

    A message added here is done with: its key was reconciled. If the process dies before the
    batch goes, the message only becomes visible again when its visibility runs out, and the
    next receiver reconciles the key once more, which finds the target in step (idempotent)."""

    def __init__(self, queue: Queue, flush_seconds: float, batch: int = SQS_BATCH) -> None:
        self.queue = queue
        self.flush_seconds = flush_seconds
        self.batch = max(1, min(batch, SQS_BATCH))
        self._waiting: list[tuple[float, Delivery]] = []  # (when it is due, the message)
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="deleter", daemon=True)

    def add(self, deliveries: Sequence[Delivery]) -> None:
        with self._cond:
            if not self._closed and (self._thread.ident is None or self._thread.is_alive()):
                if self._thread.ident is None:
                    self._thread.start()  # on first use
                due = time.monotonic() + self.flush_seconds
                self._waiting.extend((due, d) for d in deliveries)
                self._cond.notify()
                return
        self.queue.delete(deliveries)

    def close(self, timeout: float) -> bool:
        """Send every batch still waiting; True when all were sent within `timeout`."""
        with self._cond:
            self._closed = True
            self._cond.notify()
            if self._thread.ident is None:
                return True  # never started: nothing was added
        self._thread.join(max(0.0, timeout))
        return not self._thread.is_alive()

    def _next(self) -> list[Delivery] | None:
        """The next batch, once it is due; None when closed and nothing is left."""
        with self._cond:
            while True:
                if self._waiting:
                    wait = self._waiting[0][0] - time.monotonic()
                    if self._closed or len(self._waiting) >= self.batch or wait <= 0:
                        batch = [d for _, d in self._waiting[: self.batch]]
                        del self._waiting[: self.batch]
                        return batch
                elif self._closed:
                    return None
                else:
                    wait = None
                self._cond.wait(wait)

    def _run(self) -> None:
        while (batch := self._next()) is not None:
            try:
                self.queue.delete(batch)  # logs what failed: those messages come back, and no harm
            except Exception as exc:  # the thread must not die: deletes would stop for good
                log.warning("delete_failed", messages=len(batch), error=describe(exc))


class DeadLetterQueue:
    """Where a message that can never succeed goes at once: DLQ_URL, else the dead-letter queue
    of the queue's redrive policy, looked up on first use and remembered."""

    def __init__(self, sqs: Any, queue_url: str, configured: str | None) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._url = configured
        self._known = configured is not None
        self._lock = threading.Lock()

    def url(self) -> str | None:
        """The DLQ's URL, or None when there is none (or SQS could not say, this time)."""
        with self._lock:
            if not self._known:
                try:
                    self._url = dead_letter_queue_url(self._sqs, self._queue_url, None)
                except StartupError as exc:  # no redrive policy: there is no DLQ to find
                    log.error("dead_letter_queue_unknown", error=str(exc))
                except Exception as exc:  # asked again next time
                    log.warning("dead_letter_queue_lookup_failed", error=describe(exc))
                    return None
                self._known = True
            return self._url
