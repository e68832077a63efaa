"""The consumer's decisions about time, each in one small object: how long a failed message stays
invisible, how a lease is kept and when it is given up, when an interrupted message is put back
as a fresh one, and how long a stopping worker waits for its copies."""

from __future__ import annotations

import math
from dataclasses import dataclass

from replicator.settings import Settings

# SQS: a message's visibility can be extended up to 12 hours after it was received.
SQS_MAX_VISIBILITY_SECONDS = 43_200


@dataclass(frozen=True)
class BackoffPolicy:
    """A failed message reappears after base x 2^(receives - 1) seconds, capped; after
    maxReceiveCount receives SQS moves it to the DLQ."""

    base_seconds: float
    max_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> BackoffPolicy:
        return cls(settings.retry_backoff_base_seconds, settings.max_backoff_seconds)

    def visibility(self, receive_count: int) -> int:
        return int(min(self.max_seconds, self.base_seconds * 2 ** max(0, receive_count - 1)))


@dataclass(frozen=True)
class LeasePolicy:
    """Keeping a received message invisible while its key is worked on.

    A copy told to stop may still finish the request it has in flight (one attempt: connect plus
    read timeout), so a lease counts as lost once the visibility left is within `margin` of that:
    the copy is stopped then, whether or not a renewal is still waiting for SQS, and has stopped
    before another worker can receive the message. Renewals happen often enough that a failing
    one is retried several times before that point. A copy still running `max_lease_seconds`
    after the receive is stopped too (SQS refuses to extend beyond 12 hours) and its message put
    back as a fresh one.
    """

    visibility_seconds: int
    max_lease_seconds: float
    # The longest a data request may run once started (connect + read timeout).
    request_seconds: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> LeasePolicy:
        return cls(
            settings.visibility_timeout_seconds,
            settings.max_lease_seconds,
            settings.connect_timeout_seconds + settings.read_timeout_seconds,
        )

    @property
    def margin(self) -> float:
        """Visibility left at which a lease not renewed counts as lost: time for the copy to stop
        before the message can be received again."""
        return max(self.visibility_seconds / 4, self.request_seconds)

    @property
    def renew_every(self) -> float:
        """Half of the time a renewal has before the margin: a failed one gets retried."""
        return min(self.visibility_seconds / 3, (self.visibility_seconds - self.margin) / 2)

    @property
    def call_timeout(self) -> float:
        """Connect and read timeout of one visibility change: a slow call must not use up the
        time left for its retries."""
        return max(0.5, min(10.0, self.renew_every / 3))

    @property
    def tick(self) -> float:
        """How often the heartbeat looks at the leases (in memory; SQS only when one is due)."""
        return min(1.0, self.renew_every / 2)

    def due(self, since_renewal: float) -> bool:
        return since_renewal >= self.renew_every

    def extension(self, held_for: float) -> int:
        """Seconds of visibility to ask for now, never past SQS's 12 hours after the receive."""
        return max(0, min(self.visibility_seconds, SQS_MAX_VISIBILITY_SECONDS - math.ceil(held_for)))

    def capped(self, held_for: float) -> bool:
        return held_for >= self.max_lease_seconds

    def lost(self, visibility_left: float) -> bool:
        return visibility_left <= self.margin


@dataclass(frozen=True)
class RequeuePolicy:
    """An interruption this worker controls (shutdown, the lease cap) is not the object's fault:
    the message goes back as a fresh one (receive count 1) and the copy resumes from its
    uploaded parts. An object interrupted more than `max_interruptions` times backs off like a
    failure instead, so that one that never finishes still ends in the DLQ."""

    max_interruptions: int = 50

    def requeue(self, interruptions: int) -> bool:
        """`interruptions`: how often the message was interrupted, this time included."""
        return interruptions <= self.max_interruptions


@dataclass(frozen=True)
class DeletePolicy:
    """Finished messages are deleted together, up to ten in one DeleteMessageBatch: a batch goes
    once ten are waiting, or `flush_seconds` after the first of them finished, and at shutdown.
    Waiting costs no latency (the object is on the target already); only the next message of the
    same key waits that much longer (FIFO holds a group while one of its messages is in flight)."""

    flush_seconds: float = 0.05
    batch: int = 10


@dataclass(frozen=True)
class ShutdownPolicy:
    """After SIGTERM: in-flight copies may finish until the grace period ends, then they are
    cancelled; a few seconds at the end are kept for putting their messages back."""

    deadline_seconds: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ShutdownPolicy:
        return cls(settings.shutdown_deadline_seconds)

    @property
    def grace_seconds(self) -> float:
        """Until then copies may finish; then they are cancelled."""
        return self.deadline_seconds - min(5.0, self.deadline_seconds / 3)

    @property
    def requeue_seconds(self) -> float:
        """Until then cancelled copies put their messages back themselves; the stragglers'
        messages are put back by the stopping thread after it."""
        return self.deadline_seconds - min(1.0, self.deadline_seconds / 6)
