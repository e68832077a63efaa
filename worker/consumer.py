"""The queue consumer: long-poll the FIFO queue, reconcile keys concurrently, delete on success.

- Messages of different groups run in parallel; the messages of one group received together are
  coalesced into one reconcile of their key (the source's current state answers them all).
- A message is deleted only after its key was reconciled. A failure sets its visibility to a
  backoff that grows with the receive count; after maxReceiveCount SQS moves it to the DLQ.
- A heartbeat extends the visibility of messages still being worked on (big copies).
- Stop (SIGTERM): no more receives, in-flight work gets until the deadline, then copies are
  cancelled (uploads aborted) and unfinished messages are handed back with visibility 0.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import structlog

from replicator.errors import CancelledError, describe
from replicator.logs import get_logger
from replicator.messages import MessageError, ReplicationMessage
from replicator.metrics import ReplicationMetrics
from replicator.reconcile import Outcome, Reconciler
from replicator.settings import Settings

log = get_logger("worker")

SQS_BATCH = 10


@dataclass
class Delivery:
    """One received SQS message while this worker holds it."""

    message_id: str
    receipt_handle: str
    group_id: str
    receive_count: int
    body: str
    received_at: float = field(default_factory=time.monotonic)
    extended_at: float = field(default_factory=time.monotonic)

    @classmethod
    def from_sqs(cls, raw: dict[str, Any]) -> Delivery:
        attributes = raw.get("Attributes", {})
        return cls(
            message_id=raw["MessageId"],
            receipt_handle=raw["ReceiptHandle"],
            group_id=attributes.get("MessageGroupId", raw["MessageId"]),
            receive_count=int(attributes.get("ApproximateReceiveCount", "1")),
            body=raw.get("Body", ""),
        )


def _chunks(items: list[Delivery], size: int = SQS_BATCH) -> Iterable[list[Delivery]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class QueueConsumer:
    def __init__(
        self,
        settings: Settings,
        sqs: Any,
        queue_url: str,
        reconciler: Reconciler,
        metrics: ReplicationMetrics | None = None,
    ) -> None:
        self.settings = settings
        self.sqs = sqs
        self.queue_url = queue_url
        self.reconciler = reconciler
        self.metrics = metrics or ReplicationMetrics(
            queue_url.rstrip("/").rsplit("/", 1)[-1], settings.metrics_namespace
        )
        self.stop_receiving = threading.Event()
        self.cancel_work = threading.Event()
        self._finished = threading.Event()
        self.counts: Counter[str] = Counter()
        self._inflight: dict[str, Delivery] = {}
        self._lock = threading.Lock()
        self._free = threading.Semaphore(settings.worker_concurrency)
        self._jobs = ThreadPoolExecutor(settings.worker_concurrency, thread_name_prefix="job")
        self._drain = False
        self._last_activity = time.monotonic()

    # -- lifecycle ----------------------------------------------------------------------------

    def request_stop(self, *_: Any) -> None:
        if not self.stop_receiving.is_set():
            log.info("stop_requested")
        self.stop_receiving.set()

    def run(self, drain: bool = False) -> int:
        self._drain = drain
        receiver = threading.Thread(target=self._receive_loop, name="receiver", daemon=True)
        heartbeat = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        log.info(
            "worker_started", queue=self.queue_url, concurrency=self.settings.worker_concurrency, drain=drain
        )
        receiver.start()
        heartbeat.start()
        self.metrics.run_every(self.settings.metrics_interval_seconds, self._finished)
        while not self.stop_receiving.wait(timeout=0.5):
            pass
        stopping_at = time.monotonic()
        self._shutdown(receiver, stopping_at + self.settings.shutdown_deadline_seconds)
        self._finished.set()
        self.metrics.flush()
        log.info("worker_stopped", **dict(self.counts), seconds=round(time.monotonic() - stopping_at, 2))
        return 0

    def _shutdown(self, receiver: threading.Thread, deadline: float) -> None:
        # Leave a few seconds at the end for aborting uploads and handing messages back.
        grace_end = deadline - min(5.0, self.settings.shutdown_deadline_seconds / 3)
        while self._inflight_count() and time.monotonic() < grace_end:
            time.sleep(0.1)
        if self._inflight_count():
            log.warning("cancelling_inflight", messages=self._inflight_count())
            self.cancel_work.set()
            while self._inflight_count() and time.monotonic() < deadline - 1.0:
                # Jobs that saw the cancel hand their messages back themselves.
                time.sleep(0.1)
        receiver.join(timeout=max(0.0, deadline - time.monotonic() - 0.5))
        with self._lock:
            leftovers = list(self._inflight.values())
        self._hand_back(leftovers)
        self._jobs.shutdown(wait=False, cancel_futures=True)

    # -- receiving ----------------------------------------------------------------------------

    def _inflight_count(self) -> int:
        with self._lock:
            return len(self._inflight)

    def _receive_loop(self) -> None:
        wait_seconds = (
            min(1, self.settings.receive_wait_seconds)
            if self._drain
            else (self.settings.receive_wait_seconds)
        )
        while not self.stop_receiving.is_set():
            capacity = self._reserve_slots()
            if capacity == 0:
                continue
            try:
                response = self.sqs.receive_message(
                    QueueUrl=self.queue_url,
                    MaxNumberOfMessages=capacity,
                    WaitTimeSeconds=wait_seconds,
                    VisibilityTimeout=self.settings.visibility_timeout_seconds,
                    MessageSystemAttributeNames=["ApproximateReceiveCount", "MessageGroupId"],
                )
            except Exception as exc:
                self._release_slots(capacity)
                log.error("receive_failed", error=describe(exc))
                self.stop_receiving.wait(timeout=2)
                continue
            deliveries = [Delivery.from_sqs(raw) for raw in response.get("Messages", [])]
            self._release_slots(capacity - len(deliveries))
            if self.stop_receiving.is_set():
                # Received while stopping: never started, so back at once.
                self._release_slots(len(deliveries))
                self._set_visibility(deliveries, lambda d: 0)
                break
            if deliveries:
                self._last_activity = time.monotonic()
                self._dispatch(deliveries)
            elif self._drain and self._idle_for() >= self.settings.drain_idle_seconds:
                log.info("queue_drained")
                self.stop_receiving.set()

    def _reserve_slots(self) -> int:
        """Block until at least one job slot is free, then take up to ten."""
        if not self._free.acquire(timeout=0.5):
            return 0
        taken = 1
        while taken < SQS_BATCH and self._free.acquire(blocking=False):
            taken += 1
        return taken

    def _release_slots(self, count: int) -> None:
        for _ in range(count):
            self._free.release()

    def _idle_for(self) -> float:
        if self._inflight_count():
            return 0.0
        return time.monotonic() - self._last_activity

    def _dispatch(self, deliveries: list[Delivery]) -> None:
        with self._lock:
            for d in deliveries:
                self._inflight[d.receipt_handle] = d
        groups: dict[str, list[Delivery]] = {}
        for d in deliveries:
            groups.setdefault(d.group_id, []).append(d)
        for group in groups.values():
            self._jobs.submit(self._run_group, group)

    # -- work ---------------------------------------------------------------------------------

    def _run_group(self, deliveries: list[Delivery]) -> None:
        try:
            by_key: dict[str, list[tuple[Delivery, ReplicationMessage]]] = {}
            for d in deliveries:
                try:
                    message = ReplicationMessage.from_body(d.body)
                except MessageError as exc:
                    self._count("invalid")
                    self.metrics.failure()
                    log.error(
                        "message_invalid",
                        message_id=d.message_id,
                        reason=str(exc),
                        receive_count=d.receive_count,
                    )
                    self._back_off([d])
                    continue
                if message.bucket != self.reconciler.engine.source.bucket:
                    self._count("invalid")
                    log.error(
                        "message_wrong_bucket",
                        message_id=d.message_id,
                        bucket=message.bucket,
                        expected=self.reconciler.engine.source.bucket,
                    )
                    self._back_off([d])
                    continue
                by_key.setdefault(message.key, []).append((d, message))
            for key, items in by_key.items():
                self._reconcile(key, items)
        except Exception as exc:  # never lose a job silently
            log.exception("job_crashed", error=describe(exc))
            self._back_off([d for d in deliveries if self._holds(d)])
        finally:
            self._release_slots(len(deliveries))

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1

    def _holds(self, delivery: Delivery) -> bool:
        with self._lock:
            return delivery.receipt_handle in self._inflight

    def _reconcile(self, key: str, items: list[tuple[Delivery, ReplicationMessage]]) -> None:
        deliveries = [d for d, _ in items]
        first = items[0][0]
        structlog.contextvars.bind_contextvars(message_id=first.message_id, key=key)
        try:
            if self.cancel_work.is_set():
                raise CancelledError("shutting down")
            result = self.reconciler.reconcile(key, self.cancel_work)
        except CancelledError:
            log.info("handed_back", messages=len(deliveries))
            self._hand_back(deliveries)
            return
        except Exception as exc:
            self._count("failed")
            self.metrics.failure()
            log.error("reconcile_failed", error=describe(exc), receive_count=first.receive_count)
            self._back_off(deliveries)
            return
        finally:
            structlog.contextvars.unbind_contextvars("message_id", "key")
        self._count(result.outcome.value)
        latency = self._latency([m for _, m in items])
        self.metrics.reconciled(result, latency)
        log.info(
            "reconciled",
            message_id=first.message_id,
            key=key,
            outcome=result.outcome.value,
            bytes=result.size if result.outcome is Outcome.COPIED else 0,
            seconds=round(result.copy.seconds, 3) if result.copy else None,
            latency_seconds=round(latency, 3) if latency is not None else None,
            coalesced=len(deliveries),
        )
        self._delete(deliveries)

    @staticmethod
    def _latency(messages: list[ReplicationMessage]) -> float | None:
        """Seconds from the newest S3 event of this batch to now (the object is in the target)."""
        times = [m.event_time for m in messages if m.event_time is not None]
        if not times:
            return None
        newest = max(t if t.tzinfo else t.replace(tzinfo=UTC) for t in times)
        return max(0.0, (datetime.now(UTC) - newest).total_seconds())

    # -- SQS bookkeeping ----------------------------------------------------------------------

    def _forget(self, deliveries: list[Delivery]) -> list[Delivery]:
        with self._lock:
            return [d for d in deliveries if self._inflight.pop(d.receipt_handle, None) is not None]

    def _delete(self, deliveries: list[Delivery]) -> None:
        for chunk in _chunks(self._forget(deliveries)):
            entries = [{"Id": str(i), "ReceiptHandle": d.receipt_handle} for i, d in enumerate(chunk)]
            try:
                response = self.sqs.delete_message_batch(QueueUrl=self.queue_url, Entries=entries)
                for failure in response.get("Failed", []):
                    # The work is done and idempotent; a redelivery only reconciles again.
                    log.warning("delete_failed", code=failure.get("Code"))
            except Exception as exc:
                log.warning("delete_failed", error=describe(exc))

    def _set_visibility(self, deliveries: list[Delivery], seconds_for: Any) -> None:
        for chunk in _chunks(deliveries):
            entries = [
                {"Id": str(i), "ReceiptHandle": d.receipt_handle, "VisibilityTimeout": seconds_for(d)}
                for i, d in enumerate(chunk)
            ]
            try:
                self.sqs.change_message_visibility_batch(QueueUrl=self.queue_url, Entries=entries)
            except Exception as exc:
                log.warning("visibility_change_failed", error=describe(exc))

    def _back_off(self, deliveries: list[Delivery]) -> None:
        base, cap = self.settings.retry_backoff_base_seconds, self.settings.max_backoff_seconds
        self._set_visibility(
            self._forget(deliveries), lambda d: int(min(cap, base * 2 ** (d.receive_count - 1)))
        )

    def _hand_back(self, deliveries: list[Delivery]) -> None:
        self._set_visibility(self._forget(deliveries), lambda d: 0)

    def _heartbeat_loop(self) -> None:
        visibility = self.settings.visibility_timeout_seconds
        every = max(1.0, visibility / 3)
        while not self._finished.wait(timeout=min(every, 2.0)):
            now = time.monotonic()
            with self._lock:
                due = [d for d in self._inflight.values() if now - d.extended_at >= every]
            if due:
                self._set_visibility(due, lambda d: visibility)
                for d in due:
                    d.extended_at = now
                log.debug("visibility_extended", messages=len(due))
