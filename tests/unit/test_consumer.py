"""The queue consumer's bookkeeping, with an in-memory SQS (and moto for the DLQ lookup) and a
scripted reconciler."""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, ReadTimeoutError
from moto import mock_aws

from replicator.errors import (
    ArchivedObjectError,
    CancelledError,
    SourceBucketMissingError,
    UnstorableKeyError,
)
from replicator.logs import REDACTED, configure_logging, register_secrets
from replicator.messages import ReplicationMessage
from replicator.reconcile import Outcome, ReconcileResult
from replicator.settings import Settings
from worker.consumer import QueueConsumer
from worker.lease import Lease, Renewal, State
from worker.ops import FAILURE_DETAIL_ATTRIBUTE as ERROR_ATTRIBUTE
from worker.ops import FAILURE_REASON_ATTRIBUTE as REASON_ATTRIBUTE
from worker.ops import ORIGINAL_MESSAGE_ATTRIBUTE, redrive
from worker.policies import LeasePolicy, RequeuePolicy
from worker.sqs_queue import DeleteBatcher, Delivery, Queue, Visibility

QUEUE_URL = "https://sqs/q.fifo"
DLQ_URL = "https://sqs/q-dlq.fifo"


@dataclass
class Call:
    op: str
    handle: str
    value: int | None
    started: float
    ended: float = 0.0


@dataclass
class MemorySQS:
    """Just enough SQS: one batch of messages, then empty receives; records every call, in the
    order SQS would apply them (when the call returns), and fails on request."""

    pending: list[dict[str, Any]]
    deleted: list[str] = field(default_factory=list)
    delete_batches: list[list[str]] = field(default_factory=list)  # the handles of each call
    visibility: list[tuple[str, int]] = field(default_factory=list)
    sent: list[dict[str, Any]] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    # Renewals (visibility > 0 and not a back-off) answer this per-entry error code ...
    renewal_failure: str | None = None
    # ... or raise this, the first `renewal_errors` times (None: always).
    renewal_raises: Exception | None = None
    renewal_errors: int | None = None
    # Visibility changes to this value take this long (set when one starts).
    slow_visibility: tuple[int, float] | None = None
    slow_started: threading.Event = field(default_factory=threading.Event)
    send_fails: bool = False
    send_delay: float = 0.0  # every send takes this long
    delete_fails: bool = False
    # Every visibility change raises this (None: none does) ...
    visibility_raises: Exception | None = None
    # ... or answers this instead of SQS's usual shape.
    visibility_answer: Any = "usual"
    slow_handle: str | None = None  # slow_visibility applies to this handle only
    batch_size: int = 10  # at most this many messages per receive
    receive_delay: float = 0.0  # a receive that returns messages waits this long first
    visibility_batches: int = 0
    redrive_policy: dict[str, str] | None = None
    lookups: int = 0
    renewal_value: int = -1  # the heartbeat's visibility, set by make()
    lock: threading.Lock = field(default_factory=threading.Lock)

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        with self.lock:
            count = min(kwargs["MaxNumberOfMessages"], self.batch_size)
            batch, self.pending = self.pending[:count], self.pending[count:]
        if not batch:
            time.sleep(0.05)
        else:
            time.sleep(self.receive_delay)
        return {"Messages": batch}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        now = time.monotonic()
        if self.delete_fails:
            return {"Successful": [], "Failed": [{"Id": e["Id"], "Code": "InternalError"} for e in Entries]}
        with self.lock:
            self.deleted += [e["ReceiptHandle"] for e in Entries]
            self.delete_batches.append([e["ReceiptHandle"] for e in Entries])
            self.calls += [Call("delete", e["ReceiptHandle"], None, now, now) for e in Entries]
        return {"Successful": Entries, "Failed": []}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        started = time.monotonic()
        seconds = Entries[0]["VisibilityTimeout"]
        with self.lock:
            self.visibility_batches += 1
        if self.visibility_raises is not None:
            raise self.visibility_raises
        if self.visibility_answer != "usual":
            return self.visibility_answer  # type: ignore[no-any-return]
        slow_here = self.slow_handle is None or Entries[0]["ReceiptHandle"] == self.slow_handle
        if self.slow_visibility and seconds == self.slow_visibility[0] and slow_here:
            self.slow_started.set()
            time.sleep(self.slow_visibility[1])
        renewal = seconds == self.renewal_value
        if (
            renewal
            and self.renewal_raises is not None
            and (self.renewal_errors is None or self.renewal_errors > 0)
        ):
            if self.renewal_errors is not None:
                self.renewal_errors -= 1
            raise self.renewal_raises
        failed = []
        with self.lock:
            for e in Entries:
                if renewal and self.renewal_failure:
                    failed.append({"Id": e["Id"], "SenderFault": True, "Code": self.renewal_failure})
                    continue
                self.visibility.append((e["ReceiptHandle"], e["VisibilityTimeout"]))
                self.calls.append(Call("visibility", e["ReceiptHandle"], seconds, started, time.monotonic()))
        return {
            "Successful": [e for e in Entries if e["Id"] not in {f["Id"] for f in failed}],
            "Failed": failed,
        }

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        time.sleep(self.send_delay)
        if self.send_fails:
            raise EndpointConnectionError(endpoint_url=kwargs["QueueUrl"])
        with self.lock:
            self.sent.append(kwargs)
            return {"MessageId": f"new-{len(self.sent)}"}

    def get_queue_attributes(self, QueueUrl: str, AttributeNames: list[str]) -> dict[str, Any]:
        with self.lock:
            self.lookups += 1
        policy = {"RedrivePolicy": json.dumps(self.redrive_policy)} if self.redrive_policy else {}
        return {"Attributes": policy}

    def get_queue_url(self, QueueName: str, QueueOwnerAWSAccountId: str) -> dict[str, Any]:
        return {"QueueUrl": f"https://sqs/{QueueOwnerAWSAccountId}/{QueueName}"}

    def final_visibility(self, handle: str) -> int | None:
        values = [seconds for h, seconds in self.visibility if h == handle]
        return values[-1] if values else None


class ScriptedReconciler:
    """Per key: a float runs that long (stopping when cancelled), an exception is raised, a
    callable is called with the cancel event; anything else succeeds at once."""

    def __init__(self, behaviour: dict[str, Any]) -> None:
        self.behaviour = behaviour
        self.calls: list[str] = []
        self.cancelled: list[str] = []
        self.expected_sizes: dict[str, int | None] = {}
        self.engine = type("E", (), {"source": type("S", (), {"bucket": "source-bucket"})()})()

    def reconcile(
        self, key: str, cancel: threading.Event | None = None, expected_size: int | None = None
    ) -> ReconcileResult:
        assert cancel is not None
        self.calls.append(key)
        self.expected_sizes[key] = expected_size
        action = self.behaviour.get(key)
        if isinstance(action, float):
            deadline = time.monotonic() + action
            while time.monotonic() < deadline:
                if cancel.is_set():
                    self.cancelled.append(key)
                    raise CancelledError("stopped")
                time.sleep(0.02)
        elif isinstance(action, Exception):
            raise action
        elif callable(action):
            action(cancel)
        return ReconcileResult(key, Outcome.COPIED, 1)

    @property
    def targets(self) -> dict[str, None]:
        return {"lyve": None}

    def reconcile_each(
        self,
        key: str,
        names: list[str] | None,
        cancel: threading.Event | None = None,
        expected_size: int | None = None,
    ) -> dict[str, ReconcileResult | BaseException]:
        try:
            return {"lyve": self.reconcile(key, cancel, expected_size)}
        except Exception as exc:
            return {"lyve": exc}


class FanOutReconciler:
    """Two targets, "lyve" and "azure"; per (key, target) an exception to end with, or success.
    Records the target names each reconcile was asked for."""

    def __init__(self, behaviour: dict[tuple[str, str], BaseException]) -> None:
        self.targets = {"lyve": None, "azure": None}
        self.behaviour = behaviour
        self.asked: list[tuple[str, list[str] | None]] = []
        self.engine = type("E", (), {"source": type("S", (), {"bucket": "source-bucket"})()})()

    def reconcile_each(
        self,
        key: str,
        names: list[str] | None,
        cancel: threading.Event | None = None,
        expected_size: int | None = None,
    ) -> dict[str, ReconcileResult | BaseException]:
        self.asked.append((key, names))
        return {
            name: self.behaviour.get((key, name)) or ReconcileResult(key, Outcome.COPIED, 1)
            for name in (names or list(self.targets))
        }


def sqs_message(
    key: str,
    handle: str,
    receives: int = 1,
    body: str | None = None,
    interruptions: int = 0,
    targets: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    message = ReplicationMessage(
        bucket="source-bucket",
        key=key,
        event="ObjectCreated:Put",
        interruptions=interruptions,
        targets=targets,
    )
    return {
        "MessageId": f"id-{handle}",
        "ReceiptHandle": handle,
        "Body": body if body is not None else message.to_body(),
        "Attributes": {"MessageGroupId": message.group_id, "ApproximateReceiveCount": str(receives)},
    }


def settings_for(**tuning: Any) -> Settings:
    """Valid settings; `fast_*` overrides are applied unvalidated (timings below the minimums)."""
    fast = {k.removeprefix("fast_"): tuning.pop(k) for k in list(tuning) if k.startswith("fast_")}
    if "visibility_timeout_seconds" in fast:  # requests that stop as fast as the leases run
        fast = {"connect_timeout_seconds": 0.1, "read_timeout_seconds": 0.2} | fast
    settings = Settings(
        source_bucket="source-bucket",
        target_bucket="lyve-target",
        target_endpoint_url="https://lyve.example",
        target_access_key_id="a",
        target_secret_access_key="secret-value",
        **({"queue_url": QUEUE_URL, "drain_idle_seconds": 0.3, "receive_wait_seconds": 0} | tuning),
    )
    return settings.model_copy(update=fast)


def make(
    messages: list[dict[str, Any]], behaviour: dict[str, Any], sqs: MemorySQS | None = None, **tuning: Any
) -> tuple[QueueConsumer, MemorySQS, ScriptedReconciler]:
    settings = settings_for(**tuning)
    sqs = sqs or MemorySQS(messages)
    sqs.pending = list(messages)
    sqs.renewal_value = settings.visibility_timeout_seconds
    reconciler = ScriptedReconciler(behaviour)
    return QueueConsumer(settings, sqs, QUEUE_URL, reconciler), sqs, reconciler  # type: ignore[arg-type]


def stop_after(consumer: QueueConsumer, seconds: float) -> None:
    threading.Timer(seconds, consumer.request_stop).start()


@pytest.fixture
def logs() -> io.StringIO:
    stream = io.StringIO()
    configure_logging("DEBUG", "json", stream=stream)
    return stream


def events(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# -- the ordinary path -----------------------------------------------------------------------------


def test_messages_of_one_key_are_coalesced_and_deleted_after_success() -> None:
    consumer, sqs, reconciler = make(
        [sqs_message("a", "h1"), sqs_message("a", "h2"), sqs_message("b", "h3")], {}
    )
    assert consumer.run(drain=True) == 0
    assert sorted(reconciler.calls) == ["a", "b"]  # "a" twice in the batch: one reconcile
    assert sorted(sqs.deleted) == ["h1", "h2", "h3"]


@pytest.mark.parametrize(("deadline", "wait", "polled"), [(3, 10, 1), (2, 5, 0), (25, 10, 10), (15, 20, 13)])
def test_a_long_poll_ends_before_the_shutdown_deadline(deadline: float, wait: int, polled: int) -> None:
    """A poll still open when the process is gone would take a message nobody works on."""
    waits: list[int] = []

    class Recording(MemorySQS):
        def receive_message(self, **kwargs: Any) -> dict[str, Any]:
            waits.append(kwargs["WaitTimeSeconds"])
            return super().receive_message(**kwargs)

    consumer, _, _ = make(
        [], {}, sqs=Recording([]), receive_wait_seconds=wait, shutdown_deadline_seconds=deadline
    )
    stop_after(consumer, 0.3)
    assert consumer.run() == 0
    assert waits and set(waits) == {polled}


def test_finished_messages_of_different_keys_are_deleted_together() -> None:
    """Twelve keys finished at about the same time: one DeleteMessageBatch as soon as ten are
    waiting, one for the rest (here at shutdown: the flush delay is longer than the run)."""
    messages = [sqs_message(f"k{i}", f"h{i}") for i in range(12)]
    consumer, sqs, _ = make(messages, {})
    consumer.deletes = DeleteBatcher(consumer.queue, flush_seconds=60)
    assert consumer.run(drain=True) == 0
    assert sorted(len(batch) for batch in sqs.delete_batches) == [2, 10]
    assert sorted(sqs.deleted) == sorted(f"h{i}" for i in range(12))


def test_a_batch_goes_after_the_flush_delay_without_waiting_for_ten() -> None:
    consumer, sqs, _ = make([sqs_message("a", "h1"), sqs_message("b", "h2")], {})
    consumer.deletes = DeleteBatcher(consumer.queue, flush_seconds=0.2)
    stop_after(consumer, 3)
    started = time.monotonic()
    runner = threading.Thread(target=consumer.run)
    runner.start()
    while not sqs.deleted and time.monotonic() - started < 2.5:
        time.sleep(0.01)
    waited = time.monotonic() - started
    runner.join()
    assert sorted(sqs.deleted) == ["h1", "h2"]
    assert 0.2 <= waited < 2.5  # due after the delay, long before the stop


def test_the_deletes_still_waiting_are_sent_before_the_process_ends() -> None:
    """A finished key's delete waits for its batch; a copy still running at the deadline ends
    the process at once after the requeue: the waiting delete is sent before that exit."""

    def ignores_cancel(cancel: threading.Event) -> None:
        time.sleep(4)

    consumer, sqs, _ = make(
        [sqs_message("done", "h1"), sqs_message("stuck", "h2")],
        {"stuck": ignores_cancel},
        shutdown_deadline_seconds=1.5,
    )
    consumer.deletes = DeleteBatcher(consumer.queue, flush_seconds=60)
    exits: list[list[str]] = []
    consumer._exit_process = lambda code: exits.append(sorted(sqs.deleted))  # type: ignore[assignment,misc,return-value]
    stop_after(consumer, 0.3)
    consumer.run()
    assert exits == [["h1", "h2"]]  # h1 finished (its batch), h2 requeued (deleted at once)
    assert len(sqs.sent) == 1


def test_a_delete_after_the_batcher_closed_is_sent_at_once() -> None:
    sqs = MemorySQS([])
    deletes = DeleteBatcher(Queue(sqs, QUEUE_URL), flush_seconds=60)
    delivery = Delivery("id-1", "h1", "g", 1, "{}", received_at=time.monotonic())
    assert deletes.close(1)
    deletes.add([delivery])
    assert sqs.delete_batches == [["h1"]]


def test_the_reconcile_is_told_the_size_the_newest_event_reported() -> None:
    def body(key: str, event: str, size: int | None) -> str:
        return ReplicationMessage(bucket="source-bucket", key=key, event=event, size=size).to_body()

    messages = [
        sqs_message("a", "h1", body=body("a", "ObjectCreated:Put", 5)),
        sqs_message("a", "h2", body=body("a", "ObjectCreated:Put", 7)),
        sqs_message("b", "h3", body=body("b", "ObjectCreated:Put", 9)),
        sqs_message("b", "h4", body=body("b", "ObjectRemoved:Delete", None)),
    ]
    consumer, _, reconciler = make(messages, {})
    consumer.run(drain=True)
    assert reconciler.expected_sizes == {"a": 7, "b": None}


def test_failures_back_off_with_the_receive_count_and_are_not_deleted() -> None:
    consumer, sqs, _ = make(
        [sqs_message("bad", "h1", receives=3), sqs_message("ok", "h2")],
        {"bad": PermissionError("denied")},
        retry_backoff_base_seconds=10,
        max_backoff_seconds=300,
    )
    consumer.run(drain=True)
    assert sqs.deleted == ["h2"]
    assert ("h1", 40) in sqs.visibility  # 10 x 2^(3-1)
    assert sqs.sent == []


def test_an_unparseable_body_backs_off_and_does_not_block_the_rest() -> None:
    consumer, sqs, reconciler = make([sqs_message("x", "poison", body="{nope"), sqs_message("y", "h2")], {})
    consumer.run(drain=True)
    assert reconciler.calls == ["y"]
    assert sqs.deleted == ["h2"]
    assert any(handle == "poison" and seconds > 0 for handle, seconds in sqs.visibility)


def test_visibility_is_extended_while_a_long_copy_runs() -> None:
    consumer, sqs, _ = make([sqs_message("slow", "h1")], {"slow": 2.5}, fast_visibility_timeout_seconds=3)
    consumer.run(drain=True)
    assert ("h1", 3) in sqs.visibility  # the heartbeat (every second) renewed it
    assert sqs.deleted == ["h1"]


@pytest.mark.parametrize("bucket", ["other-bucket"])
def test_messages_for_another_bucket_are_refused(bucket: str) -> None:
    message = ReplicationMessage(bucket=bucket, key="k", event="ObjectCreated:Put")
    raw = sqs_message("k", "h1", body=message.to_body())
    consumer, sqs, reconciler = make([raw], {})
    consumer.run(drain=True)
    assert reconciler.calls == []
    assert sqs.deleted == []


# -- interruptions: requeued as fresh messages ------------------------------------------------


def test_stop_requeues_unfinished_work_as_a_fresh_message_within_the_deadline() -> None:
    consumer, sqs, reconciler = make([sqs_message("slow", "h1")], {"slow": 60.0}, shutdown_deadline_seconds=2)
    stop_after(consumer, 0.5)
    started = time.monotonic()
    assert consumer.run() == 0
    assert time.monotonic() - started < 4
    assert reconciler.cancelled == ["slow"]
    [sent] = sqs.sent
    original = ReplicationMessage.from_body(sqs_message("slow", "h1")["Body"])
    assert sent["QueueUrl"] == QUEUE_URL
    assert sent["MessageGroupId"] == original.group_id  # same group: FIFO order kept
    assert sent["MessageDeduplicationId"] != original.deduplication_id  # FIFO would drop a same id
    fresh = ReplicationMessage.from_body(sent["MessageBody"])
    assert (fresh.key, fresh.interruptions) == ("slow", 1)
    assert sqs.deleted == ["h1"]  # the received one goes: its receive count does not grow
    assert ("h1", 0) not in sqs.visibility
    assert consumer.counts["requeued"] == 1


def test_a_requeue_that_cannot_be_sent_hands_the_message_back() -> None:
    sqs = MemorySQS([], send_fails=True)
    consumer, sqs, _ = make([sqs_message("slow", "h1")], {"slow": 60.0}, sqs, shutdown_deadline_seconds=2)
    stop_after(consumer, 0.5)
    consumer.run()
    assert sqs.final_visibility("h1") == 0
    assert sqs.deleted == []


def test_a_message_interrupted_too_often_backs_off_instead() -> None:
    limit = RequeuePolicy().max_interruptions
    consumer, sqs, _ = make(
        [sqs_message("slow", "h1", receives=2, interruptions=limit)],
        {"slow": 60.0},
        shutdown_deadline_seconds=2,
        retry_backoff_base_seconds=10,
    )
    stop_after(consumer, 0.5)
    consumer.run()
    assert sqs.sent == []
    assert sqs.deleted == []
    assert sqs.final_visibility("h1") == 20


def test_a_copy_at_the_lease_cap_is_stopped_and_requeued(logs: io.StringIO) -> None:
    consumer, sqs, reconciler = make(
        [sqs_message("huge", "h1")],
        {"huge": 30.0},
        fast_visibility_timeout_seconds=3,
        fast_max_lease_seconds=1.5,
    )
    started = time.monotonic()
    consumer.run(drain=True)
    assert time.monotonic() - started < 6
    assert reconciler.cancelled == ["huge"]
    [sent] = sqs.sent
    assert ReplicationMessage.from_body(sent["MessageBody"]).interruptions == 1
    assert sqs.deleted == ["h1"]
    assert any(e["event"] == "requeued" and e["reason"] == "lease_cap" for e in events(logs))


def test_the_heartbeat_never_asks_for_visibility_past_12_hours_after_the_receive() -> None:
    policy = LeasePolicy(visibility_seconds=600, max_lease_seconds=42_600)
    assert policy.extension(0) == 600
    assert policy.extension(42_900) == 300
    assert policy.extension(43_199.5) == 0
    assert policy.extension(50_000) == 0
    assert not policy.capped(42_599) and policy.capped(42_600)


# -- leases -------------------------------------------------------------------------------------


def test_a_renewal_refused_per_entry_stops_the_copy_and_the_message_is_left_alone(logs: io.StringIO) -> None:
    sqs = MemorySQS([], renewal_failure="ReceiptHandleIsInvalid")
    consumer, sqs, reconciler = make(
        [sqs_message("slow", "h1")], {"slow": 10.0}, sqs, fast_visibility_timeout_seconds=3
    )
    started = time.monotonic()
    consumer.run(drain=True)
    assert time.monotonic() - started < 6  # stopped at the first renewal, not after 10 s
    assert reconciler.cancelled == ["slow"]
    assert sqs.deleted == []
    assert sqs.sent == []
    assert sqs.visibility == []  # no back-off, no hand-back: the message is someone else's now
    assert consumer.counts["lease_lost"] == 1
    [lost] = [e for e in events(logs) if e["event"] == "lease_lost"]
    assert "ReceiptHandleIsInvalid" in lost["reason"]


def test_a_lease_that_cannot_be_renewed_is_given_up_before_the_visibility_runs_out() -> None:
    sqs = MemorySQS([], renewal_raises=EndpointConnectionError(endpoint_url="https://sqs"))
    consumer, sqs, reconciler = make(
        [sqs_message("slow", "h1")], {"slow": 10.0}, sqs, fast_visibility_timeout_seconds=4
    )
    lost_at: list[float] = []
    started = time.monotonic()

    def watch() -> None:
        while not reconciler.cancelled and time.monotonic() - started < 10:
            time.sleep(0.01)
        lost_at.append(time.monotonic() - started)

    watcher = threading.Thread(target=watch)
    watcher.start()
    consumer.run(drain=True)
    watcher.join()
    assert reconciler.cancelled == ["slow"]
    assert 4 * 0.5 < lost_at[0] < 4  # retried while there was time, given up before it ran out
    assert sqs.deleted == [] and sqs.sent == [] and sqs.visibility == []
    assert consumer.counts["lease_lost"] == 1


def test_one_failed_renewal_is_retried_and_the_copy_goes_on() -> None:
    sqs = MemorySQS([], renewal_raises=EndpointConnectionError(endpoint_url="https://sqs"), renewal_errors=1)
    consumer, sqs, reconciler = make(
        [sqs_message("slow", "h1")], {"slow": 3.0}, sqs, fast_visibility_timeout_seconds=4
    )
    consumer.run(drain=True)
    assert reconciler.cancelled == []
    assert ("h1", 4) in sqs.visibility
    assert sqs.deleted == ["h1"]
    assert consumer.counts["lease_lost"] == 0


def test_a_back_off_waits_for_a_renewal_in_progress_and_is_the_last_word() -> None:
    """The heartbeat and the job's back-off run on different threads on the same receipt
    handle: the back-off must come after the renewal, never interleaved or overwritten."""
    sqs = MemorySQS([], slow_visibility=(3, 0.6))

    def fail_during_renewal(cancel: threading.Event) -> None:
        assert sqs.slow_started.wait(5)
        raise PermissionError("denied")

    consumer, sqs, _ = make(
        [sqs_message("k", "h1")],
        {"k": fail_during_renewal},
        sqs,
        fast_visibility_timeout_seconds=3,
        retry_backoff_base_seconds=10,
    )
    consumer.run(drain=True)
    calls = [c for c in sqs.calls if c.handle == "h1"]
    assert [c.value for c in calls] == [3, 10]  # renewal, then the back-off
    assert calls[0].ended <= calls[1].started  # not concurrent
    assert sqs.final_visibility("h1") == 10


def test_nothing_renews_a_lease_after_its_final_action() -> None:
    sqs = MemorySQS([])
    queue = Queue(sqs, QUEUE_URL)
    delivery = Delivery("id-1", "h1", "g", 1, "{}", received_at=time.monotonic() - 100)
    message = ReplicationMessage(bucket="source-bucket", key="k", event="ObjectCreated:Put")
    lease = Lease("k", [(delivery, message)], LeasePolicy(visibility_seconds=30, max_lease_seconds=600))
    lease.visible_until = time.monotonic() + 20
    assert lease.renew(queue, time.monotonic()) is Renewal.RENEWED
    lease.renewed_at -= 100  # due again
    assert lease.finish(lambda held: queue.delete(held.deliveries))
    assert lease.state is State.DONE
    assert lease.renew(queue, time.monotonic()) is Renewal.NONE
    assert not lease.finish(lambda held: queue.change_visibility(held.deliveries, 0))  # once only
    assert [c.op for c in sqs.calls] == ["visibility", "delete"]


# -- permanent failures -------------------------------------------------------------------------


def test_a_permanent_failure_goes_to_the_dlq_at_once_with_its_reason(logs: io.StringIO) -> None:
    register_secrets(["dlq-secret-5e6f7a"])
    error = UnstorableKeyError("the target refuses 'a/xxx': segment longer than 255 bytes dlq-secret-5e6f7a")
    consumer, sqs, _ = make(
        [sqs_message("doomed", "h1"), sqs_message("fine", "h2")], {"doomed": error}, dlq_url=DLQ_URL
    )
    consumer.run(drain=True)
    [sent] = sqs.sent
    assert sent["QueueUrl"] == DLQ_URL
    assert (
        sent["MessageGroupId"] == ReplicationMessage.from_body(sqs_message("doomed", "h1")["Body"]).group_id
    )
    attributes = {name: value["StringValue"] for name, value in sent["MessageAttributes"].items()}
    assert attributes[REASON_ATTRIBUTE] == "unstorable_key"
    assert "segment longer than 255 bytes" in attributes[ERROR_ATTRIBUTE]
    assert "dlq-secret-5e6f7a" not in attributes[ERROR_ATTRIBUTE] and REDACTED in attributes[ERROR_ATTRIBUTE]
    assert ReplicationMessage.from_body(sent["MessageBody"]).key == "doomed"  # redrive sends it back as is
    assert sorted(sqs.deleted) == ["h1", "h2"]
    assert sqs.visibility == []  # no back-off cycle
    [failed] = [e for e in events(logs) if e["event"] == "reconcile_failed_permanently"]
    assert (failed["key"], failed["reason"]) == ("doomed", "unstorable_key")
    assert "segment longer than 255 bytes" in failed["error"]


def test_the_dlq_is_found_from_the_redrive_policy_once() -> None:
    sqs = MemorySQS(
        [],
        redrive_policy={
            "deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:q-dlq.fifo",
            "maxReceiveCount": "5",
        },
    )
    behaviour = {k: ArchivedObjectError(f"{k} is in GLACIER") for k in ("a", "b", "c")}
    consumer, sqs, _ = make([sqs_message(k, f"h-{k}") for k in "abc"], behaviour, sqs)
    consumer.run(drain=True)
    assert [s["QueueUrl"] for s in sqs.sent] == ["https://sqs/123456789012/q-dlq.fifo"] * 3
    assert sqs.lookups == 1
    assert sorted(sqs.deleted) == ["h-a", "h-b", "h-c"]
    assert consumer.counts["failed_permanently"] == consumer.counts["dead_lettered"] == 3


def test_without_a_dlq_a_permanent_failure_backs_off() -> None:
    consumer, sqs, _ = make(
        [sqs_message("doomed", "h1")], {"doomed": UnstorableKeyError("no")}, retry_backoff_base_seconds=10
    )
    consumer.run(drain=True)
    assert sqs.sent == []
    assert sqs.deleted == []
    assert sqs.final_visibility("h1") == 10


def test_a_permanent_failure_reaches_a_real_dlq_after_one_receive() -> None:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq = sqs.create_queue(QueueName="r-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        queue = sqs.create_queue(
            QueueName="r.fifo",
            Attributes={
                "FifoQueue": "true",
                "RedrivePolicy": json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": "5"}),
            },
        )["QueueUrl"]
        for key in ("cold", "warm"):
            m = ReplicationMessage(bucket="source-bucket", key=key, event="ObjectCreated:Put")
            sqs.send_message(
                QueueUrl=queue, MessageBody=m.to_body(), MessageGroupId=m.group_id, MessageDeduplicationId=key
            )
        settings = settings_for(queue_url=queue)
        reconciler = ScriptedReconciler({"cold": ArchivedObjectError("cold is in DEEP_ARCHIVE")})
        QueueConsumer(settings, sqs, queue, reconciler).run(drain=True)  # type: ignore[arg-type]
        [dead] = sqs.receive_message(
            QueueUrl=dlq,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )["Messages"]
        assert ReplicationMessage.from_body(dead["Body"]).key == "cold"
        assert dead["MessageAttributes"][REASON_ATTRIBUTE]["StringValue"] == "archived"
        assert "DEEP_ARCHIVE" in dead["MessageAttributes"][ERROR_ATTRIBUTE]["StringValue"]
        attributes = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["All"])["Attributes"]
        assert (
            attributes["ApproximateNumberOfMessages"],
            attributes["ApproximateNumberOfMessagesNotVisible"],
        ) == (
            "0",
            "0",
        )
        assert sorted(reconciler.calls) == ["cold", "warm"]  # one receive each


def test_a_missing_source_bucket_backs_off_names_the_bucket_and_never_dead_letters(logs: io.StringIO) -> None:
    error = SourceBucketMissingError("source bucket 'source-bucket' does not exist")
    consumer, sqs, _ = make(
        [sqs_message("k", "h1")], {"k": error}, dlq_url=DLQ_URL, retry_backoff_base_seconds=10
    )
    consumer.run(drain=True)
    assert sqs.sent == [] and sqs.deleted == []
    assert sqs.final_visibility("h1") == 10
    [line] = [e for e in events(logs) if e["event"] == "source_bucket_missing"]
    assert line["bucket"] == "source-bucket" and line["level"] == "error"


# -- wiring ---------------------------------------------------------------------------------------


def test_the_worker_restarts_objects_as_often_as_the_settings_say(monkeypatch: pytest.MonkeyPatch) -> None:
    from replicator import reconcile
    from worker import cli

    seen: list[tuple[int, int]] = []
    original: Callable[..., Any] = reconcile.object_retrying

    def spy(source_changed: int, integrity: int) -> Any:
        seen.append((source_changed, integrity))
        return original(source_changed, integrity)

    monkeypatch.setattr(reconcile, "object_retrying", spy)
    settings = settings_for(source_changed_restarts=7, integrity_restarts=4)
    engine = type("Engine", (), {"settings": settings_for(), "source": None, "target": None})()
    runtime = type("Runtime", (), {"settings": settings, "engine": engine, "targets": None})()
    consumer = cli.build_consumer(runtime, MemorySQS([]), QUEUE_URL)  # type: ignore[arg-type]
    assert seen == [(7, 4)]
    assert consumer.reconciler.engine is engine


def test_redrive_stops_at_a_message_a_worker_sent_back_to_the_dlq_meanwhile() -> None:
    """A key that still cannot be stored goes straight back to the DLQ: redrive must not cycle."""
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        dlq = sqs.create_queue(QueueName="r-dlq.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        queue = sqs.create_queue(QueueName="r.fifo", Attributes={"FifoQueue": "true"})["QueueUrl"]
        m = ReplicationMessage(bucket="source-bucket", key="doomed", event="ObjectCreated:Put")
        sqs.send_message(
            QueueUrl=dlq, MessageBody=m.to_body(), MessageGroupId=m.group_id, MessageDeduplicationId="0"
        )
        rounds = 0

        class WorkerAlongside:
            """SQS as seen by redrive, with a worker dead-lettering each redriven message at once."""

            def __getattr__(self, name: str) -> Any:
                return getattr(sqs, name)

            def send_message_batch(self, **kwargs: Any) -> Any:
                nonlocal rounds
                rounds += 1
                assert rounds < 5, "redrive is cycling"
                response = sqs.send_message_batch(**kwargs)
                settings = settings_for(queue_url=queue, dlq_url=dlq)
                reconciler = ScriptedReconciler({"doomed": UnstorableKeyError("never")})
                QueueConsumer(settings, sqs, queue, reconciler).run(drain=True)  # type: ignore[arg-type]
                return response

        result = redrive(WorkerAlongside(), dlq, queue)
        assert (result.moved, rounds) == (1, 1)
        [back] = sqs.receive_message(QueueUrl=dlq, MessageAttributeNames=["All"])["Messages"]
        assert ORIGINAL_MESSAGE_ATTRIBUTE in back["MessageAttributes"]


@pytest.mark.parametrize(
    ("code", "message", "expected"),
    [
        ("AWS.SimpleQueueService.MessageNotInflight", "", Visibility.NOT_OURS),
        ("ReceiptHandleIsInvalid", "", Visibility.NOT_OURS),
        (
            "InvalidParameterValue",
            "Value x for parameter ReceiptHandle is invalid. Reason: The receipt handle has expired.",
            Visibility.NOT_OURS,
        ),
        (
            "InvalidParameterValue",
            "Value 99999 for parameter VisibilityTimeout is invalid",
            Visibility.FAILED,
        ),
        ("ServiceUnavailable", "", Visibility.FAILED),
    ],
)
def test_sqs_answers_are_read_as_lost_or_worth_another_try(
    code: str, message: str, expected: Visibility
) -> None:
    error = ClientError({"Error": {"Code": code, "Message": message}}, "ChangeMessageVisibilityBatch")
    delivery = Delivery("id-1", "h1", "g", 1, "{}", received_at=0.0)

    class Raising:
        def change_message_visibility_batch(self, **_: Any) -> Any:
            raise error

    class PerEntry:
        def change_message_visibility_batch(self, **_: Any) -> Any:
            return {
                "Successful": [],
                "Failed": [{"Id": "0", "SenderFault": True, "Code": code, "Message": message}],
            }

    assert Queue(Raising(), QUEUE_URL).change_visibility([delivery], 30)[0] is expected
    assert Queue(PerEntry(), QUEUE_URL).change_visibility([delivery], 30)[0] is expected


def test_a_dead_letter_that_cannot_be_sent_backs_off() -> None:
    sqs = MemorySQS([], send_fails=True)
    consumer, sqs, _ = make(
        [sqs_message("doomed", "h1")],
        {"doomed": UnstorableKeyError("no")},
        sqs,
        dlq_url=DLQ_URL,
        retry_backoff_base_seconds=10,
    )
    consumer.run(drain=True)
    assert sqs.deleted == []
    assert sqs.final_visibility("h1") == 10


# -- transport errors, slow calls, lost and regained leases ---------------------------------------


def test_a_renewal_that_times_out_is_a_failed_renewal_and_the_lease_is_still_watched() -> None:
    """botocore's ReadTimeoutError carries response=None: reading it must not kill the heartbeat."""
    timeout = ReadTimeoutError(endpoint_url="https://sqs")
    sqs = MemorySQS([], renewal_raises=timeout)
    consumer, sqs, reconciler = make(
        [sqs_message("slow", "h1")], {"slow": 8.0}, sqs, fast_visibility_timeout_seconds=4
    )
    started = time.monotonic()
    consumer.run(drain=True)
    assert reconciler.cancelled == ["slow"]
    assert time.monotonic() - started < 6  # stopped before the visibility ran out, not after 8 s
    assert consumer.counts["lease_lost"] == 1


def test_a_back_off_that_times_out_does_not_stop_the_receiver() -> None:
    sqs = MemorySQS([], visibility_raises=ReadTimeoutError(endpoint_url="https://sqs"))
    consumer, sqs, reconciler = make(
        [sqs_message("x", "poison", body="{nope"), sqs_message("y", "h2")], {}, sqs
    )
    stop_after(consumer, 5)  # a dead receiver never drains
    consumer.run(drain=True)
    assert reconciler.calls == ["y"]
    assert sqs.deleted == ["h2"]


def test_an_unexpected_error_in_the_receive_loop_is_logged_and_receiving_goes_on(logs: io.StringIO) -> None:
    sqs = MemorySQS([], visibility_answer=None, batch_size=1)  # an answer without the usual shape
    consumer, sqs, reconciler = make(
        [sqs_message("x", "poison", body="{nope"), sqs_message("y", "h2")], {}, sqs
    )
    stop_after(consumer, 8)
    consumer.run(drain=True)
    assert reconciler.calls == ["y"]
    assert sqs.deleted == ["h2"]
    assert any(e["event"] == "receive_loop_failed" for e in events(logs))


def test_a_slow_renewal_neither_delays_the_loss_of_its_lease_nor_blocks_other_leases() -> None:
    sqs = MemorySQS([], slow_visibility=(4, 4.0), slow_handle="h1")
    consumer, sqs, reconciler = make(
        [sqs_message("stuck", "h1"), sqs_message("fine", "h2")],
        {"stuck": 8.0, "fine": 4.5},
        sqs,
        fast_visibility_timeout_seconds=4,
    )
    cancelled_at: list[float] = []
    started = time.monotonic()

    def watch() -> None:
        while not reconciler.cancelled and time.monotonic() - started < 10:
            time.sleep(0.01)
        cancelled_at.append(time.monotonic() - started)

    watcher = threading.Thread(target=watch)
    watcher.start()
    consumer.run(drain=True)
    watcher.join()
    assert reconciler.cancelled == ["stuck"]
    # While its renewal hung: before the lease ran out at 4 s, when the hung call returns. (Due at
    # 4 - margin = 3 s; a loaded machine's scheduling took it to 3.7 once.)
    assert cancelled_at[0] < 4
    assert ("h2", 4) in sqs.visibility  # the other lease was renewed meanwhile ...
    assert "h2" in sqs.deleted  # ... and its copy finished
    time.sleep(max(0.0, 4.5 - (time.monotonic() - started)))  # the hung call returns


def test_a_lost_lease_whose_renewal_gets_through_again_is_requeued_as_fresh(logs: io.StringIO) -> None:
    """Lost on failed calls (not a refused handle): renewals go on until the job returns; one
    that gets through means the message is still ours, and the stopped copy is requeued instead
    of letting its receive count grow."""
    sqs = MemorySQS([], renewal_raises=EndpointConnectionError(endpoint_url="https://sqs"), renewal_errors=3)

    def stops_slowly(cancel: threading.Event) -> None:
        assert cancel.wait(10)
        time.sleep(1.5)  # the part in flight finishes its request
        raise CancelledError("stopped")

    consumer, sqs, _ = make(
        [sqs_message("k", "h1")], {"k": stops_slowly}, sqs, fast_visibility_timeout_seconds=4
    )
    consumer.run(drain=True)
    assert consumer.counts["lease_lost"] == 1 and consumer.counts["lease_regained"] == 1
    [sent] = sqs.sent
    assert ReplicationMessage.from_body(sent["MessageBody"]).interruptions == 1
    assert sqs.deleted == ["h1"]
    assert any(e["event"] == "requeued" and e["reason"] == "lease_lost" for e in events(logs))


def test_a_renewal_refused_after_the_lease_was_lost_is_not_retried() -> None:
    sqs = MemorySQS([], renewal_failure="ReceiptHandleIsInvalid", renewal_value=30)
    queue = Queue(sqs, QUEUE_URL)
    delivery = Delivery("id-1", "h1", "g", 1, "{}", received_at=time.monotonic())
    message = ReplicationMessage(bucket="source-bucket", key="k", event="ObjectCreated:Put")
    lease = Lease("k", [(delivery, message)], LeasePolicy(visibility_seconds=30, max_lease_seconds=600))
    assert lease.expire(time.monotonic() + 25)  # lost on the margin
    assert lease.wants_renewal(time.monotonic())  # lost on time, not refused: keep trying
    assert lease.renew(queue, time.monotonic()) is Renewal.NONE
    assert lease.refused and not lease.wants_renewal(time.monotonic())
    assert lease.state is State.LOST and lease.cancel.is_set()


# -- shutdown stragglers ------------------------------------------------------------------------


def test_stragglers_exit_the_process_right_after_their_messages_are_requeued() -> None:
    """A copy that does not stop by the deadline: its message is requeued and the process ends
    at once, so that none of its writes outlives the delete of its message."""
    finished = threading.Event()

    def ignores_cancel(cancel: threading.Event) -> None:
        time.sleep(4)
        finished.set()

    consumer, sqs, _ = make(
        [sqs_message("stuck", "h1")], {"stuck": ignores_cancel}, shutdown_deadline_seconds=1.5
    )
    exits: list[tuple[int, list[str], int, bool]] = []
    consumer._exit_process = lambda code: exits.append(
        (code, list(sqs.deleted), len(sqs.sent), finished.is_set())
    )  # type: ignore[assignment,misc,return-value]
    stop_after(consumer, 0.3)
    consumer.run()
    assert exits == [(0, ["h1"], 1, False)]  # after the requeue, while the copy still ran
    finished.wait(5)


def test_a_copy_that_stops_at_the_deadline_requeues_its_message_before_the_process_ends(
    logs: io.StringIO,
) -> None:
    """The job sees the cancel late and is still requeueing when the deadline comes: the
    process waits for that requeue instead of ending in the middle of it (which left the
    message invisible for its whole visibility timeout)."""

    def stops_late(cancel: threading.Event) -> None:
        assert cancel.wait(5)
        raise CancelledError("stopped")

    # Deadline 3 s after the stop: cancel at 2 s, stragglers taken at 2.5 s, the requeue's
    # send ends at about 2.7 s, the deadline is at 3 s.
    sqs = MemorySQS([], send_delay=0.7)
    consumer, sqs, _ = make(
        [sqs_message("late", "h1")], {"late": stops_late}, sqs, shutdown_deadline_seconds=3
    )
    exits: list[tuple[list[str], int]] = []
    consumer._exit_process = lambda code: exits.append((list(sqs.deleted), len(sqs.sent)))  # type: ignore[assignment,misc,return-value]
    stop_after(consumer, 0.3)
    consumer.run()
    assert exits == [(["h1"], 1)]  # requeued whole before the process ended
    [requeued] = [e for e in events(logs) if e["event"] == "requeued"]
    assert requeued["reason"] == "shutdown"


def test_a_copy_that_stops_in_time_does_not_end_the_process() -> None:
    consumer, sqs, _ = make([sqs_message("slow", "h1")], {"slow": 60.0}, shutdown_deadline_seconds=2)
    exits: list[int] = []
    consumer._exit_process = exits.append  # type: ignore[assignment]
    stop_after(consumer, 0.3)
    consumer.run()
    assert exits == [] and sqs.deleted == ["h1"]


# -- requeue and dead-letter bookkeeping --------------------------------------------------------


def test_a_message_received_again_is_requeued_under_a_new_deduplication_id() -> None:
    """Fresh copy sent, delete of the received one failed: the old message comes back with the
    same message id. Requeued again within FIFO's five minutes, it must not be dropped as a
    duplicate of the first requeue."""
    sent_ids = []
    for handle in ("h1", "h1-again"):
        raw = sqs_message("slow", handle) | {"MessageId": "id-same"}
        consumer, sqs, _ = make([raw], {"slow": 60.0}, shutdown_deadline_seconds=2)
        stop_after(consumer, 0.3)
        consumer.run()
        [sent] = sqs.sent
        sent_ids.append(sent["MessageDeduplicationId"])
    assert sent_ids[0] != sent_ids[1]


def test_a_requeue_whose_delete_fails_is_logged_as_a_failure(logs: io.StringIO) -> None:
    sqs = MemorySQS([], delete_fails=True)
    consumer, sqs, _ = make([sqs_message("slow", "h1")], {"slow": 60.0}, sqs, shutdown_deadline_seconds=2)
    stop_after(consumer, 0.3)
    consumer.run()
    names = [e["event"] for e in events(logs)]
    assert "requeued_but_not_deleted" in names and "requeued" not in names
    assert consumer.counts["requeued"] == 0


def test_a_dead_letter_whose_delete_fails_is_logged_as_a_failure(logs: io.StringIO) -> None:
    sqs = MemorySQS([], delete_fails=True)
    consumer, sqs, _ = make(
        [sqs_message("doomed", "h1")], {"doomed": UnstorableKeyError("no")}, sqs, dlq_url=DLQ_URL
    )
    consumer.run(drain=True)
    names = [e["event"] for e in events(logs)]
    assert "dead_lettered_but_not_deleted" in names and "dead_lettered" not in names


def test_permanent_failures_are_counted_only_once_in_the_dlq() -> None:
    sqs = MemorySQS([], send_fails=True)
    consumer, sqs, _ = make(
        [sqs_message("doomed", "h1")], {"doomed": UnstorableKeyError("no")}, sqs, dlq_url=DLQ_URL
    )
    counted: list[str] = []
    consumer.metrics.permanent_failure = counted.append  # type: ignore[method-assign]
    consumer.run(drain=True)
    assert counted == []  # not in the DLQ: backed off, it comes back and is counted when it gets there
    sqs.send_fails = False
    consumer, sqs, _ = make(
        [sqs_message("doomed", "h2")], {"doomed": UnstorableKeyError("no")}, sqs, dlq_url=DLQ_URL
    )
    consumer.metrics.permanent_failure = counted.append  # type: ignore[method-assign]
    consumer.run(drain=True)
    assert counted == ["unstorable_key"]


def test_a_message_received_while_stopping_goes_back_without_an_interruption_counted() -> None:
    sqs = MemorySQS([], receive_delay=0.6)
    consumer, sqs, reconciler = make([sqs_message("k", "h1", interruptions=2)], {}, sqs)
    stop_after(consumer, 0.2)  # while the receive waits
    consumer.run()
    assert reconciler.calls == []
    [sent] = sqs.sent
    assert ReplicationMessage.from_body(sent["MessageBody"]).interruptions == 2
    assert sqs.deleted == ["h1"]


def test_messages_of_one_key_back_off_in_one_call() -> None:
    consumer, sqs, _ = make(
        [sqs_message("bad", "h1", receives=2), sqs_message("bad", "h2", receives=2)],
        {"bad": PermissionError("denied")},
        retry_backoff_base_seconds=10,
    )
    consumer.run(drain=True)
    assert sqs.final_visibility("h1") == sqs.final_visibility("h2") == 20
    assert sqs.visibility_batches == 1


# -- the 12-hour limit ----------------------------------------------------------------------------


def test_near_the_12_hour_limit_a_lease_is_lost_on_the_margin_not_after_it_ran_out() -> None:
    policy = LeasePolicy(visibility_seconds=120, max_lease_seconds=43_080, request_seconds=70)
    now = time.monotonic()
    delivery = Delivery("id-1", "h1", "g", 1, "{}", received_at=now - 43_180)
    message = ReplicationMessage(bucket="source-bucket", key="k", event="ObjectCreated:Put")
    lease = Lease("k", [(delivery, message)], policy)
    lease.visible_until = now + 20  # all SQS would still grant
    sqs = MemorySQS([])
    assert lease.renew(Queue(sqs, QUEUE_URL), now) is Renewal.LOST
    assert lease.cancel.is_set() and sqs.calls == []


def test_the_margin_covers_a_request_in_flight() -> None:
    policy = LeasePolicy.from_settings(settings_for())
    assert policy.margin >= 10 + 60  # connect + read timeout: what a stopping part may still take
    assert policy.renew_every <= (120 - policy.margin) / 2  # a failed renewal is tried again
    assert policy.call_timeout * 2 < policy.renew_every  # two attempts end before the next is due


def test_a_part_told_to_stop_makes_no_further_request_attempt() -> None:
    """What a lost lease relies on: a part's request retries stop at the cancel, so a stopping
    copy takes at most the attempt in flight (the lease's margin), not all of them."""
    from replicator.errors import request_retrying
    from replicator.transfer import _unless_cancelled

    cancel = threading.Event()
    attempts: list[float] = []

    def flaky() -> bytes:
        attempts.append(time.monotonic())
        cancel.set()  # the lease was lost while this attempt ran
        raise EndpointConnectionError(endpoint_url="https://source")

    with pytest.raises(CancelledError):
        request_retrying(5)(_unless_cancelled(cancel, flaky))
    assert len(attempts) == 1


# -- several targets -------------------------------------------------------------------------------


def fan_out(
    messages: list[dict[str, Any]], behaviour: dict[tuple[str, str], BaseException], **tuning: Any
) -> tuple[MemorySQS, FanOutReconciler]:
    settings = settings_for(**tuning)
    sqs = MemorySQS(messages)
    sqs.pending = list(messages)
    sqs.redrive_policy = {"deadLetterTargetArn": "arn:aws:sqs:us-east-1:123456789012:replication-dlq.fifo"}
    reconciler = FanOutReconciler(behaviour)
    QueueConsumer(settings, sqs, QUEUE_URL, reconciler).run(drain=True)  # type: ignore[arg-type]
    return sqs, reconciler


def test_a_target_that_fails_goes_on_alone_in_the_keys_group_and_the_others_are_done() -> None:
    sqs, _ = fan_out([sqs_message("k", "h1")], {("k", "azure"): ConnectionError("azurite down")})
    assert sqs.deleted == ["h1"]  # the healthy target's work is done: not redone
    assert sqs.visibility == []  # no back-off for the message as a whole
    (sent,) = sqs.sent
    retry = ReplicationMessage.from_body(sent["MessageBody"])
    assert sent["QueueUrl"] == QUEUE_URL
    assert (retry.key, retry.targets) == ("k", ("azure",))
    plain = ReplicationMessage(bucket="source-bucket", key="k", event="ObjectCreated:Put")
    # The key's own group: a key is never worked on by two workers at once.
    assert sent["MessageGroupId"] == retry.group_id == plain.group_id


def test_a_message_for_one_target_is_reconciled_on_that_target_only_and_backs_off_there() -> None:
    sqs, reconciler = fan_out(
        [sqs_message("k", "h1", receives=2, targets=("azure",))], {("k", "azure"): ConnectionError("down")}
    )
    assert reconciler.asked == [("k", ["azure"])]
    assert sqs.sent == []  # it failed for every target it names: backs off as a whole
    assert sqs.final_visibility("h1") == 20
    assert sqs.deleted == []


def test_a_target_refusing_a_key_for_good_lands_in_the_dlq_naming_the_target() -> None:
    refusal = UnstorableKeyError("the key has a segment over 255 bytes")
    sqs, _ = fan_out([sqs_message("k", "h1")], {("k", "lyve"): refusal})
    (sent,) = sqs.sent
    assert sent["QueueUrl"].endswith("/replication-dlq.fifo")
    assert ReplicationMessage.from_body(sent["MessageBody"]).targets == ("lyve",)
    attributes = {name: value["StringValue"] for name, value in sent["MessageAttributes"].items()}
    assert attributes["FailureTarget"] == "lyve"
    assert attributes["FailureReason"] == refusal.reason
    assert sqs.deleted == ["h1"]


def test_when_every_target_fails_alike_the_message_backs_off_as_a_whole() -> None:
    boom = ConnectionError("both down")
    sqs, _ = fan_out([sqs_message("k", "h1")], {("k", "lyve"): boom, ("k", "azure"): boom})
    assert sqs.sent == []
    assert sqs.final_visibility("h1") == 10
    assert sqs.deleted == []


def test_a_hand_on_that_cannot_be_sent_backs_off_the_received_message() -> None:
    settings = settings_for()
    sqs = MemorySQS([sqs_message("k", "h1")])
    sqs.pending = [sqs_message("k", "h1")]
    sqs.send_fails = True
    reconciler = FanOutReconciler({("k", "azure"): ConnectionError("down")})
    QueueConsumer(settings, sqs, QUEUE_URL, reconciler).run(drain=True)  # type: ignore[arg-type]
    assert sqs.deleted == []
    assert sqs.final_visibility("h1") == 10  # comes back; "lyve" then finds its copy done


def test_an_interrupted_lease_goes_back_naming_every_target_its_messages_named() -> None:
    settings = settings_for(shutdown_deadline_seconds=1)
    narrowed = sqs_message("k", "h1", targets=("azure",), interruptions=1)
    everything = sqs_message("k", "h2")
    sqs = MemorySQS([narrowed, everything])
    sqs.pending = [narrowed, everything]

    class Slow(FanOutReconciler):
        def reconcile_each(self, key: str, names: Any, cancel: Any = None, expected_size: Any = None) -> Any:
            assert cancel is not None
            cancel.wait(10)
            return {name: CancelledError("stopped") for name in (names or list(self.targets))}

    consumer = QueueConsumer(settings, sqs, QUEUE_URL, Slow({}))  # type: ignore[arg-type]
    stop_after(consumer, 0.5)
    consumer.run()
    (sent,) = sqs.sent
    fresh = ReplicationMessage.from_body(sent["MessageBody"])
    assert fresh.targets is None  # one of them named every target: nobody is dropped
    assert sorted(sqs.deleted) == ["h1", "h2"]
