"""The queue consumer: long-poll the FIFO queue, reconcile keys concurrently, delete on success.

- The messages of one key received together form one lease and one reconcile (the source's
  current state answers them all); different keys run in parallel.
- A lease ends in exactly one final action, taken under its lock (see lease.py):
  success -> delete (finished keys' messages deleted together, see DeleteBatcher); a failure ->
  back off (visibility grows with the receive count, SQS moves the message to the DLQ after
  maxReceiveCount); a permanent failure (the key can never be stored, an archived or
  undecryptable source) -> straight to the DLQ; an interruption this worker controls (shutdown,
  the 12-hour lease cap) -> requeue as a fresh message, so that it does not count toward the DLQ
  and the next attempt resumes the upload.
- A heartbeat renews the leases of copies still running, each renewal on its own thread through
  a client with short timeouts. A lease that cannot be renewed in time is lost: its copy is
  cancelled before another worker can receive the message (see lease.py).
- Stop (SIGTERM): no more receives, in-flight copies get until the grace period ends, then they
  are cancelled (uploads kept) and their messages requeued. Copies still running at the deadline
  have their messages requeued too. The deletes still waiting for their batch are sent; then,
  if copies were still running at the deadline, the process exits at once, so that none of
  their writes outlives the message it was for.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, NoReturn

from replicator.errors import CancelledError, PermanentError, SourceBucketMissingError, describe
from replicator.logs import bind_context, get_logger, scrub, unbind_context
from replicator.messages import MessageError, ReplicationMessage
from replicator.metrics import SOURCE_BUCKET_MISSING, ReplicationMetrics
from replicator.reconcile import Outcome, Reconciler
from replicator.settings import Settings
from worker.lease import Interruption, Lease, Renewal
from worker.ops import (
    FAILURE_DETAIL_ATTRIBUTE,
    FAILURE_REASON_ATTRIBUTE,
    FAILURE_TARGET_ATTRIBUTE,
    ORIGINAL_MESSAGE_ATTRIBUTE,
)
from worker.policies import BackoffPolicy, DeletePolicy, LeasePolicy, RequeuePolicy, ShutdownPolicy
from worker.sqs_queue import SQS_BATCH, DeadLetterQueue, DeleteBatcher, Delivery, Queue, Visibility

log = get_logger("worker")

MAX_ERROR_CHARS = 1000
# Characters SQS refuses in a String attribute (outside XML's character range).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _deduplication_id(purpose: str, delivery: Delivery) -> str:
    """A new id for a message sent on behalf of a received one (FIFO drops a repeated id for
    five minutes): from the receipt handle, which is new on every receive, so a message received
    again is never taken for the one sent last time."""
    return hashlib.sha256(f"{purpose}\0{delivery.receipt_handle}".encode()).hexdigest()


def _kind(exc: BaseException) -> str:
    """How a failure is answered: interrupted, permanent (DLQ), or retried."""
    if isinstance(exc, CancelledError):
        return "interrupted"
    return "permanent" if isinstance(exc, PermanentError) else "retried"


def _attribute_text(text: str) -> str:
    text = _NOT_XML.sub("?", scrub(text))
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 3] + "..."


class QueueConsumer:
    def __init__(
        self,
        settings: Settings,
        sqs: Any,
        queue_url: str,
        reconciler: Reconciler,
        metrics: ReplicationMetrics | None = None,
        lease_sqs: Any = None,
        exit_process: Callable[[int], NoReturn] = os._exit,
    ) -> None:
        self.settings = settings
        self.queue = Queue(sqs, queue_url)
        # Renewals go through their own client (short timeouts, see LeasePolicy.call_timeout).
        self.lease_queue = Queue(lease_sqs or sqs, queue_url)
        self.reconciler = reconciler
        self.metrics = metrics or ReplicationMetrics(
            queue_url.rstrip("/").rsplit("/", 1)[-1], settings.metrics_namespace
        )
        self.backoff = BackoffPolicy.from_settings(settings)
        self.lease_policy = LeasePolicy.from_settings(settings)
        self.requeue_policy = RequeuePolicy()
        self.shutdown_policy = ShutdownPolicy.from_settings(settings)
        self.delete_policy = DeletePolicy()
        self.deletes = DeleteBatcher(self.queue, self.delete_policy.flush_seconds, self.delete_policy.batch)
        self.dead_letters = DeadLetterQueue(sqs, queue_url, settings.dlq_url)
        self.stop_receiving = threading.Event()
        self._finished = threading.Event()
        self.counts: Counter[str] = Counter()
        self._leases: dict[int, Lease] = {}
        self._lock = threading.Lock()
        self._free = threading.Semaphore(settings.worker_concurrency)
        self._jobs = ThreadPoolExecutor(settings.worker_concurrency, thread_name_prefix="job")
        self._renewals = ThreadPoolExecutor(settings.worker_concurrency, thread_name_prefix="renewal")
        self._exit_process = exit_process
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
            "worker_started", queue=self.queue.url, concurrency=self.settings.worker_concurrency, drain=drain
        )
        receiver.start()
        heartbeat.start()
        self.metrics.run_every(self.settings.metrics_interval_seconds, self._finished)
        while not self.stop_receiving.wait(timeout=0.5):
            pass
        stopping_at = time.monotonic()
        stragglers = self._shutdown(receiver, stopping_at)
        self._finished.set()
        self.metrics.flush()
        log.info("worker_stopped", **dict(self.counts), seconds=round(time.monotonic() - stopping_at, 2))
        if stragglers:
            # Their messages are back in the queue: no write of theirs may outlive that.
            logging.shutdown()
            self._exit_process(0)
        return 0

    def _shutdown(self, receiver: threading.Thread, stopping_at: float) -> int:
        """Stop receiving and working; the number of copies still running at the deadline."""
        policy = self.shutdown_policy
        grace_end, requeue_end = stopping_at + policy.grace_seconds, stopping_at + policy.requeue_seconds
        deadline = stopping_at + policy.deadline_seconds
        while self._current() and time.monotonic() < grace_end:
            time.sleep(0.1)
        if self._current():
            log.warning("cancelling_inflight", keys=len(self._current()))
            for lease in self._current():
                lease.interrupt(Interruption.SHUTDOWN)
            while self._current() and time.monotonic() < requeue_end:
                time.sleep(0.05)  # jobs that saw the cancel requeue their messages themselves
        stragglers = self._current()  # copies slower to stop than the deadline allows
        for lease in stragglers:
            lease.interrupt(Interruption.SHUTDOWN)
            self._interrupted(lease)
        for lease in stragglers:
            # A job that stopped just now may be requeueing its message itself: let it finish.
            lease.wait_settled(deadline - time.monotonic())  # ECS stops the task 5 s later
        # A receive still waiting puts back what it gets (see _receive_loop).
        receiver.join(timeout=max(0.0, deadline - time.monotonic() - 0.5))
        self._jobs.shutdown(wait=False, cancel_futures=True)
        self._renewals.shutdown(wait=False, cancel_futures=True)
        # The deletes of finished keys still waiting for their batch go now, before the process
        # ends (a delete from here on is sent at once).
        if not self.deletes.close(max(1.0, deadline - time.monotonic())):
            log.warning("deletes_not_flushed")
        return len(stragglers)

    # -- receiving ----------------------------------------------------------------------------

    def _current(self) -> list[Lease]:
        with self._lock:
            return list(self._leases.values())

    def _receive_loop(self) -> None:
        wait_seconds = (
            min(1, self.settings.receive_wait_seconds) if self._drain else self.settings.receive_wait_seconds
        )
        # A poll must end before the shutdown deadline: one still open when the process is gone
        # takes a message nobody will work on, invisible for the visibility timeout (Terraform
        # sets the queue's wait so; this holds for any setting).
        wait_seconds = min(wait_seconds, max(0, math.floor(self.settings.shutdown_deadline_seconds) - 2))
        while not self.stop_receiving.is_set():
            try:
                if self._receive_once(wait_seconds):
                    break
            except Exception as exc:  # the receiver must not die: the worker would idle forever
                log.exception("receive_loop_failed", error=describe(exc))
                self.stop_receiving.wait(timeout=2)

    def _receive_once(self, wait_seconds: int) -> bool:
        """One receive and what follows it; True when receiving is over."""
        capacity = self._reserve_slots()
        if capacity == 0:
            return False
        try:
            deliveries = self.queue.receive(
                capacity, wait_seconds, self.settings.visibility_timeout_seconds, time.monotonic()
            )
        except Exception as exc:
            self._release_slots(capacity)
            log.error("receive_failed", error=describe(exc))
            self.stop_receiving.wait(timeout=2)
            return False
        self._release_slots(capacity - len(deliveries))
        leases = self._leases_for(deliveries)
        if self.stop_receiving.is_set():
            # Received while stopping: never started, so straight back as they were.
            for lease in leases:
                lease.interrupt(Interruption.SHUTDOWN)
                self._interrupted(lease)
                self._release_slots(len(lease.deliveries))
            return True
        if deliveries:
            self._last_activity = time.monotonic()
            for lease in leases:
                with self._lock:
                    self._leases[id(lease)] = lease
                self._jobs.submit(self._work, lease)
        elif self._drain and self._idle_for() >= self.settings.drain_idle_seconds:
            log.info("queue_drained")
            self.stop_receiving.set()
        return False

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
        if self._current():
            return 0.0
        return time.monotonic() - self._last_activity

    def _leases_for(self, deliveries: list[Delivery]) -> list[Lease]:
        """One lease per key; messages that are not ours to reconcile back off at once."""
        by_key: dict[str, list[tuple[Delivery, ReplicationMessage]]] = {}
        expected = self.reconciler.engine.source.bucket
        for d in deliveries:
            try:
                message = ReplicationMessage.from_body(d.body)
            except MessageError as exc:
                self._reject(d, "message_invalid", reason=str(exc))
                continue
            if message.bucket != expected:
                self._reject(d, "message_wrong_bucket", bucket=message.bucket, expected=expected)
                continue
            by_key.setdefault(message.key, []).append((d, message))
        return [Lease(key, items, self.lease_policy) for key, items in by_key.items()]

    def _reject(self, delivery: Delivery, event: str, **details: Any) -> None:
        self._count("invalid")
        self.metrics.failure()
        log.error(event, message_id=delivery.message_id, receive_count=delivery.receive_count, **details)
        try:
            self._back_off_all([delivery])
        finally:
            self._release_slots(1)

    # -- work ---------------------------------------------------------------------------------

    def _work(self, lease: Lease) -> None:
        bind_context(message_id=lease.first.message_id, key=lease.key)
        try:
            self._reconcile(lease)
        except Exception as exc:  # never lose a job silently
            log.exception("job_crashed", error=describe(exc))
            lease.finish(self._back_off)
        finally:
            unbind_context("message_id", "key")
            with self._lock:
                self._leases.pop(id(lease), None)
            self._release_slots(len(lease.deliveries))

    def _reconcile(self, lease: Lease) -> None:
        first = lease.first
        names = self._targets_of(lease)
        if names is not None and not names:
            log.warning("message_for_no_known_target", targets=lease.messages[-1].targets)
            lease.finish(self._delete)  # a target since removed from the configuration
            return
        try:
            if lease.cancel.is_set():
                raise CancelledError("stopped before it started")
            lease.started = True
            # The newest event's size (None for a delete): a small object is read with one GET.
            results = self.reconciler.reconcile_each(
                lease.key, names, lease.cancel, expected_size=lease.messages[-1].size
            )
        except Exception as exc:  # looking at the source failed: every target's failure
            self._failed(lease, exc)
            return
        latency = self._latency(lease.messages)
        # Per-target figures whenever the deployment names its targets (TARGETS), even one.
        named = len(self.reconciler.targets) > 1 or self.settings.targets is not None
        failures: dict[str, Exception] = {}
        for name, result in results.items():
            if isinstance(result, Exception):
                failures[name] = result
                continue
            if isinstance(result, BaseException):
                raise result
            self._count(result.outcome.value)
            self.metrics.reconciled(result, latency, name if named else None)
            log.info(
                "reconciled",
                message_id=first.message_id,
                key=lease.key,
                outcome=result.outcome.value,
                bytes=result.size if result.outcome is Outcome.COPIED else 0,
                seconds=round(result.copy.seconds, 3) if result.copy else None,
                resumed_bytes=result.copy.resumed_bytes if result.copy else None,
                latency_seconds=round(latency, 3) if latency is not None else None,
                receive_count=first.receive_count,
                coalesced=len(lease.deliveries),
                **({"target": name} if named else {}),
            )
        if not failures:
            if not lease.finish(self._delete):
                log.info("not_deleted", reason="lease_lost")  # the next receiver finds it done
            return
        kinds = {_kind(exc) for exc in failures.values()}
        if len(failures) == len(results) and len(kinds) == 1:
            # Every target failed alike: the messages fail as a whole, as with one target.
            self._failed(lease, next(iter(failures.values())), sorted(failures) if named else None)
            return
        # Some targets are done, others failed: those go on alone (see _hand_on).
        lease.finish(lambda held: self._hand_on(held, failures))

    def _targets_of(self, lease: Lease) -> list[str] | None:
        """The targets the lease's messages name (None: all); names no longer configured are
        dropped."""
        named = [m.targets for m in lease.messages]
        if any(targets is None for targets in named):
            return None
        wanted = {name for targets in named if targets for name in targets}
        unknown = wanted - set(self.reconciler.targets)
        if unknown:
            log.warning("message_names_unknown_targets", targets=sorted(unknown))
        return sorted(wanted & set(self.reconciler.targets))

    def _failed(self, lease: Lease, exc: Exception, targets: list[str] | None = None) -> None:
        """The lease's reconcile failed (for every target it named, or looking at the source)."""
        first = lease.first
        where = {"targets": targets} if targets else {}
        if isinstance(exc, CancelledError):
            self._interrupted(lease)
        elif isinstance(exc, PermanentError):
            self._failed_permanently(lease, exc, targets)
        elif isinstance(exc, SourceBucketMissingError):
            self._count("failed")
            self.metrics.failure()
            self.metrics.count(SOURCE_BUCKET_MISSING)
            log.error(
                "source_bucket_missing",
                bucket=self.reconciler.engine.source.bucket,
                error=scrub(str(exc)),
                receive_count=first.receive_count,
            )
            lease.finish(self._back_off)
        else:
            self._count("failed")
            for name in targets or [""]:
                self.metrics.failure(name or None)
            log.error("reconcile_failed", error=describe(exc), receive_count=first.receive_count, **where)
            lease.finish(self._back_off)

    def _hand_on(self, lease: Lease, failures: dict[str, Exception]) -> None:
        """Final action when some targets succeeded and others failed: each failed target gets
        a message of its own, in the key's FIFO group (a key is never worked on twice at once):
        a permanent failure straight to the DLQ, an interrupted copy a fresh message, any other
        failure a fresh message whose retries then back off and end in the DLQ like any message.
        The healthy targets' work is not redone. The received messages are deleted once all of
        these are sent; if one cannot be sent, they back off instead (the healthy targets find
        their copies done next time)."""
        newest = self._body_of(lease)
        interrupted = tuple(sorted(n for n, e in failures.items() if isinstance(e, CancelledError)))
        sends: list[tuple[str, ReplicationMessage, dict[str, str] | None]] = []
        if interrupted:
            sends.append((self.queue.url, newest.for_targets(interrupted).interrupted(), None))
        dlq_url = self.dead_letters.url()
        for name, exc in sorted(failures.items()):
            if isinstance(exc, CancelledError):
                continue
            self._count("failed")
            message = newest.for_targets((name,))
            if isinstance(exc, PermanentError) and dlq_url is not None:
                detail = _attribute_text(str(exc))
                log.error(
                    "reconcile_failed_permanently",
                    key=lease.key,
                    target=name,
                    reason=exc.reason,
                    error=detail,
                )
                self.metrics.permanent_failure(exc.reason, name)
                attributes = {
                    FAILURE_REASON_ATTRIBUTE: exc.reason,
                    FAILURE_DETAIL_ATTRIBUTE: detail,
                    FAILURE_TARGET_ATTRIBUTE: name,
                    ORIGINAL_MESSAGE_ATTRIBUTE: lease.first.message_id,
                }
                sends.append((dlq_url, message, attributes))
            else:
                log.error("reconcile_failed", target=name, error=describe(exc), then="retried_alone")
                self.metrics.failure(name)
                sends.append((self.queue.url, message, None))
        for url, message, extra in sends:
            purpose = f"{'dead-letter' if extra else 'hand-on'}\0{','.join(message.targets or ())}"
            sent = self.queue.send(
                url, message.to_body(), message.group_id, _deduplication_id(purpose, lease.first), extra
            )
            if sent is None:
                self._back_off(lease)
                return
            log.info(
                "handed_on" if extra is None else "dead_lettered",
                key=lease.key,
                targets=list(message.targets or ()),
                new_message_id=sent,
            )
        if not self.queue.delete(lease.deliveries):
            self._count("hand_on_incomplete")
            log.error("handed_on_but_not_deleted", key=lease.key)

    @staticmethod
    def _latency(messages: list[ReplicationMessage]) -> float | None:
        """Seconds from the newest S3 event of this batch to now (the object is in the target)."""
        times = [m.event_time for m in messages if m.event_time is not None]
        if not times:
            return None
        newest = max(t if t.tzinfo else t.replace(tzinfo=UTC) for t in times)
        return max(0.0, (datetime.now(UTC) - newest).total_seconds())

    def _count(self, outcome: str) -> None:
        with self._lock:
            self.counts[outcome] += 1

    # -- outcomes other than success ----------------------------------------------------------

    def _interrupted(self, lease: Lease) -> None:
        """The copy stopped: put the messages back as fresh ones if this worker stopped it (a
        lost lease only if a renewal got through since: the messages are still ours then)."""
        if lease.interruption is not None:
            if not lease.finish(self._requeue):
                log.info("copy_stopped", key=lease.key, reason=lease.interruption.value)
            return
        # Cancelled without this worker asking: treat it as a failure, bounded by the DLQ.
        self._count("failed")
        self.metrics.failure()
        log.error(
            "reconcile_failed",
            error="cancelled unexpectedly",
            receive_count=lease.first.receive_count,
        )
        lease.finish(self._back_off)

    def _failed_permanently(
        self, lease: Lease, exc: PermanentError, targets: list[str] | None = None
    ) -> None:
        detail = _attribute_text(str(exc))
        self._count("failed_permanently")
        log.error(
            "reconcile_failed_permanently",
            key=lease.key,
            reason=exc.reason,
            error=detail,
            receive_count=lease.first.receive_count,
            **({"targets": targets} if targets else {}),
        )
        dlq_url = self.dead_letters.url()
        if dlq_url is None:
            self.metrics.failure()
            lease.finish(self._back_off)  # the redrive policy still gets it there, slowly
            return
        lease.finish(lambda held: self._dead_letter(held, dlq_url, exc.reason, detail, targets))

    # -- final actions (each runs once per lease, through Lease.finish) ----------------------

    def _delete(self, lease: Lease) -> None:
        # The work is done and idempotent: if a delete fails, or the process ends before its
        # batch is sent, a redelivery only reconciles the key again.
        self.deletes.add(lease.deliveries)

    def _back_off(self, lease: Lease) -> None:
        self._back_off_all(lease.deliveries)

    def _back_off_all(self, deliveries: list[Delivery]) -> None:
        """One batch call per back-off value (messages of one key usually share their count)."""
        by_seconds: dict[int, list[Delivery]] = {}
        for d in deliveries:
            by_seconds.setdefault(self.backoff.visibility(d.receive_count), []).append(d)
        for seconds, same in by_seconds.items():
            outcome, detail = self.queue.change_visibility(same, seconds)
            if outcome is not Visibility.CHANGED:
                log.warning("back_off_failed", messages=len(same), error=detail)

    def _hand_back(self, lease: Lease) -> None:
        self._count("handed_back")
        log.info("handed_back", key=lease.key, messages=len(lease.deliveries))
        self.queue.change_visibility(lease.deliveries, 0)

    @staticmethod
    def _body_of(lease: Lease) -> ReplicationMessage:
        """The lease's newest message naming every target any of its messages names (None if
        one names all): what goes back to the queue or to the DLQ for the whole lease."""
        newest = max(lease.messages, key=lambda m: m.interruptions)
        named = [m.targets for m in lease.messages]
        if any(targets is None for targets in named):
            return newest.model_copy(update={"targets": None})
        union = tuple(sorted({name for targets in named if targets for name in targets}))
        return newest.model_copy(update={"targets": union})

    def _requeue(self, lease: Lease) -> None:
        """A fresh copy of the message (receive count 1, same group, new deduplication id), then
        the received ones deleted; if the copy cannot be sent, the received ones handed back.
        A message received while stopping was not worked on: its interruptions stay as they were."""
        newest = self._body_of(lease)
        fresh = newest.interrupted() if lease.started else newest
        interruptions = fresh.interruptions
        if not self.requeue_policy.requeue(interruptions):
            log.warning("interrupted_too_often", key=lease.key, interruptions=interruptions)
            self._back_off(lease)
            return
        sent = self.queue.send(
            self.queue.url, fresh.to_body(), lease.group_id, _deduplication_id("requeue", lease.first)
        )
        if sent is None:
            self._hand_back(lease)
            return
        if not self.queue.delete(lease.deliveries):
            # Both are in the queue now: the next receive reconciles the key (twice at worst).
            self._count("requeue_incomplete")
            log.error("requeued_but_not_deleted", key=lease.key, new_message_id=sent)
            return
        # Not started (received while stopping): put back as it was, not an interruption.
        event = "requeued" if lease.started else "returned_unstarted"
        self._count(event)
        if lease.started:
            self.metrics.count("Interruptions")
        log.info(
            event,
            key=lease.key,
            reason=lease.interruption.value if lease.interruption else None,
            interruptions=interruptions,
            new_message_id=sent,
        )

    def _dead_letter(
        self, lease: Lease, dlq_url: str, reason: str, detail: str, targets: list[str] | None = None
    ) -> None:
        attributes = {
            FAILURE_REASON_ATTRIBUTE: reason,
            FAILURE_DETAIL_ATTRIBUTE: detail,
            ORIGINAL_MESSAGE_ATTRIBUTE: lease.first.message_id,
        }
        if targets:
            attributes[FAILURE_TARGET_ATTRIBUTE] = ",".join(targets)
        sent = self.queue.send(
            dlq_url,
            self._body_of(lease).to_body(),
            lease.group_id,
            _deduplication_id("dead-letter", lease.first),
            attributes,
        )
        if sent is None:
            self.metrics.failure()
            self._back_off(lease)
            return
        self.metrics.permanent_failure(reason)
        if not self.queue.delete(lease.deliveries):
            # In the DLQ and still in the queue: the next receive dead-letters it again.
            self._count("dead_letter_incomplete")
            log.error("dead_lettered_but_not_deleted", key=lease.key, reason=reason, dlq_message_id=sent)
            return
        self._count("dead_lettered")
        log.info("dead_lettered", key=lease.key, reason=reason, dlq_message_id=sent)

    # -- heartbeat ----------------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        """Every tick: the lease cap and the margin, checked in memory for every lease, whatever
        SQS calls are in flight; renewals that are due, each on a thread of its own."""
        while not self._finished.wait(timeout=self.lease_policy.tick):
            for lease in self._current():
                try:
                    self._tend(lease, time.monotonic())
                except Exception as exc:  # one lease's trouble must not stop the heartbeat
                    log.exception("heartbeat_failed", key=lease.key, error=describe(exc))

    def _tend(self, lease: Lease, now: float) -> None:
        if self.lease_policy.capped(lease.held_for(now)) and lease.interrupt(Interruption.LEASE_CAP):
            log.warning("lease_cap_reached", key=lease.key, held_seconds=round(lease.held_for(now)))
        if lease.expire(now):
            self._report(lease, Renewal.LOST)
        if lease.wants_renewal(now):
            self._renewals.submit(self._renew, lease)

    def _renew(self, lease: Lease) -> None:
        try:
            self._report(lease, lease.renew(self.lease_queue, time.monotonic()))
        except Exception as exc:  # a failed renewal: the margin check decides what it means
            lease.last_failure = describe(exc)
            log.exception("renewal_failed", key=lease.key, error=lease.last_failure)

    def _report(self, lease: Lease, renewal: Renewal) -> None:
        if renewal is Renewal.LOST:
            self._count("lease_lost")
            self.metrics.count("LeasesLost")
            log.warning(
                "lease_lost",
                key=lease.key,
                message_ids=[d.message_id for d in lease.deliveries],
                reason=lease.lost_because,
            )
        elif renewal is Renewal.REGAINED:
            self._count("lease_regained")
            log.warning("lease_regained", key=lease.key)
        elif renewal is Renewal.RENEWED:
            log.debug("visibility_extended", key=lease.key)
