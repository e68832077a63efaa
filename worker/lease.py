"""A lease: the messages of one key while this worker holds them.

Every visibility change of those messages goes through the lease, under one lock, so that the
heartbeat's renewals and the one final action (delete, back off, hand back, requeue, dead-letter)
never run at the same time, and nothing renews the messages once the final action was taken. A
lease that cannot be renewed in time is lost: its copy is cancelled and no final action is taken
(the messages are someone else's now).
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable

from replicator.messages import ReplicationMessage
from worker.policies import LeasePolicy
from worker.sqs_queue import Delivery, Queue, Visibility


class State(enum.Enum):
    HELD = "held"
    DONE = "done"  # the final action was taken
    LOST = "lost"  # could not be kept: another worker may hold the messages now


class Interruption(enum.StrEnum):
    SHUTDOWN = "shutdown"
    LEASE_CAP = "lease_cap"
    LEASE_LOST = "lease_lost"


class Renewal(enum.Enum):
    NOT_DUE = "not_due"
    RENEWED = "renewed"
    FAILED = "failed"  # tried again on the next tick
    LOST = "lost"
    SKIPPED = "skipped"  # final action taken or under way


class Lease:
    def __init__(
        self, key: str, items: list[tuple[Delivery, ReplicationMessage]], policy: LeasePolicy
    ) -> None:
        self.key = key
        self.deliveries = [d for d, _ in items]
        self.messages = [m for _, m in items]
        self.policy = policy
        # Set on shutdown, at the lease cap or when the lease is lost: the copy stops.
        self.cancel = threading.Event()
        self.interruption: Interruption | None = None
        self.lost_because: str | None = None
        self.state = State.HELD
        self.received_at = min(d.received_at for d in self.deliveries)
        self.visible_until = self.received_at + policy.visibility_seconds
        self.renewed_at = self.received_at
        self._lock = threading.Lock()
        self._interrupt_lock = threading.Lock()

    @property
    def first(self) -> Delivery:
        return self.deliveries[0]

    @property
    def group_id(self) -> str:
        return self.first.group_id

    def held_for(self, now: float) -> float:
        return now - self.received_at

    def interrupt(self, why: Interruption) -> bool:
        """Cancel the copy; the first reason given is kept. True if this call interrupted it."""
        with self._interrupt_lock:
            first = self.interruption is None
            if first:
                self.interruption = why
        self.cancel.set()
        return first

    def finish(self, action: Callable[[Lease], None]) -> bool:
        """Take the final action, once, and only while the lease is held. It runs after any
        renewal in progress has ended, and no renewal starts after it."""
        with self._lock:
            if self.state is not State.HELD:
                return False
            self.state = State.DONE
        action(self)
        return True

    def renew(self, queue: Queue, now: float) -> Renewal:
        """The heartbeat: extend the visibility when due; give the lease up when it cannot be
        kept (SQS no longer knows the receipt handle, or it runs out before a renewal worked)."""
        if not self._lock.acquire(blocking=False):
            return Renewal.SKIPPED  # only finish() waits on this lock: a final action is under way
        try:
            if self.state is not State.HELD:
                return Renewal.SKIPPED
            if not self.policy.due(now - self.renewed_at):
                return Renewal.NOT_DUE
            left = self.visible_until - now
            if left <= 0:
                return self._lose("the visibility ran out before it could be renewed")
            seconds = self.policy.extension(self.held_for(now))
            if seconds <= left:
                return Renewal.NOT_DUE  # near SQS's 12-hour limit: nothing more to ask for
            outcome, detail = queue.change_visibility(self.deliveries, seconds)
            if outcome is Visibility.CHANGED:
                self.visible_until, self.renewed_at = now + seconds, now
                return Renewal.RENEWED
            if outcome is Visibility.NOT_OURS:
                return self._lose(f"SQS no longer accepts the receipt handle ({detail})")
            if self.policy.lost(self.visible_until - time.monotonic()):
                return self._lose(f"renewals failed and the visibility is about to run out ({detail})")
            return Renewal.FAILED
        finally:
            self._lock.release()

    def _lose(self, why: str) -> Renewal:
        self.state = State.LOST
        self.lost_because = why
        self.interrupt(Interruption.LEASE_LOST)
        return Renewal.LOST
