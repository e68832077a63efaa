"""A lease: the messages of one key while this worker holds them.

Every visibility change of those messages goes through the lease, one at a time (`_call_lock`),
so that the heartbeat's renewals and the one final action (delete, back off, hand back, requeue,
dead-letter) never overwrite each other, and nothing renews the messages once the final action
was taken. Whether the lease still holds its messages is decided apart from those calls
(`_state_lock`, never held during one): a lease whose visibility is about to run out is lost, and
its copy stopped, even while a renewal is still waiting for SQS.

A lease lost because renewals failed (not because SQS refused the receipt handle) keeps trying
until its job returns: if one gets through, the messages are this worker's again and the stopped
copy is requeued as a fresh message instead of letting its receive count grow.
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
    DONE = "done"  # the final action was taken (or the job ended without the messages)
    LOST = "lost"  # may have run out: another worker may hold the messages now


class Interruption(enum.StrEnum):
    """Why a copy was stopped (kept when a lost lease is regained: the copy stays stopped)."""

    SHUTDOWN = "shutdown"
    LEASE_CAP = "lease_cap"
    LEASE_LOST = "lease_lost"


class Renewal(enum.Enum):
    """What the heartbeat reports about a lease."""

    NONE = "none"  # not due, failed with time left, or nothing more to do
    RENEWED = "renewed"
    LOST = "lost"
    REGAINED = "regained"  # a renewal got through after the lease was lost


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
        self.started = False  # the job began working on the key
        self.state = State.HELD
        self.refused = False  # SQS refused the receipt handle: no renewal can help
        self.last_failure: str | None = None
        self.received_at = min(d.received_at for d in self.deliveries)
        self.visible_until = self.received_at + policy.visibility_seconds
        self.renewed_at = self.received_at
        self._call_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._settled = threading.Event()  # the final action has run, or never will

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
        with self._state_lock:
            first = self.interruption is None
            if first:
                self.interruption = why
        self.cancel.set()
        return first

    def finish(self, action: Callable[[Lease], None]) -> bool:
        """Take the final action, once, and only while the lease is held; either way no renewal
        follows. It runs after any renewal in progress has ended."""
        with self._call_lock, self._state_lock:
            was = self.state
            self.state = State.DONE
        if was is State.HELD:
            try:
                action(self)
            finally:
                self._settled.set()
        elif was is State.LOST:
            self._settled.set()  # lost: no final action will ever run
        return was is State.HELD

    def wait_settled(self, timeout: float) -> bool:
        """Wait for the final action, which may be running on another thread (a job that saw the
        cancel late): a process that ends mid-requeue leaves its message invisible, or twice."""
        return self._settled.wait(max(0.0, timeout))

    def wants_renewal(self, now: float) -> bool:
        """A renewal is due (or the lease was lost on failed calls) and none is in flight."""
        if self._call_lock.locked() or self.refused:
            return False
        if self.state is State.LOST:
            return True
        return self.state is State.HELD and self.policy.due(now - self.renewed_at)

    def expire(self, now: float) -> bool:
        """Lose the lease once its visibility left is within the margin (no SQS call: this runs
        even while a renewal waits for an answer). True if this call lost it."""
        if not self.policy.lost(self.visible_until - now):
            return False
        because = "the visibility is about to run out and no renewal got through"
        return self._lose(f"{because} ({self.last_failure})" if self.last_failure else because)

    def renew(self, queue: Queue, now: float) -> Renewal:
        """Extend the visibility; give the lease up when it cannot be kept."""
        if not self._call_lock.acquire(blocking=False):
            return Renewal.NONE  # a renewal or the final action is under way
        try:
            if self.state is State.DONE or self.refused:
                return Renewal.NONE
            seconds = self.policy.extension(self.held_for(now))
            if seconds <= self.visible_until - now:
                # Near SQS's 12-hour limit: nothing more to ask for, only the margin to watch.
                return Renewal.LOST if self.expire(now) else Renewal.NONE
            outcome, detail = queue.change_visibility(self.deliveries, seconds)
            if outcome is Visibility.CHANGED:
                with self._state_lock:
                    self.visible_until, self.renewed_at = now + seconds, now
                    regained = self.state is State.LOST
                    if regained:
                        self.state = State.HELD
                return Renewal.REGAINED if regained else Renewal.RENEWED
            if outcome is Visibility.NOT_OURS:
                self.refused = True
                lost = self._lose(f"SQS no longer accepts the receipt handle ({detail})")
                return Renewal.LOST if lost else Renewal.NONE
            self.last_failure = detail
            return Renewal.LOST if self.expire(time.monotonic()) else Renewal.NONE
        finally:
            self._call_lock.release()

    def _lose(self, why: str) -> bool:
        with self._state_lock:
            if self.state is not State.HELD:
                return False
            self.state = State.LOST
            self.lost_because = why
        self.interrupt(Interruption.LEASE_LOST)
        return True
