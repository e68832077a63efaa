"""The queue consumer's bookkeeping, with an in-memory SQS and a scripted reconciler."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from replicator.errors import CancelledError
from replicator.messages import ReplicationMessage
from replicator.reconcile import Outcome, ReconcileResult
from replicator.settings import Settings
from worker.consumer import QueueConsumer


class MemorySQS:
    """Just enough SQS: one batch of messages, then empty receives; records every call."""

    def __init__(self, messages: list[dict[str, Any]]) -> None:
        self.pending = list(messages)
        self.deleted: list[str] = []
        self.visibility: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def receive_message(self, **kwargs: Any) -> dict[str, Any]:
        with self.lock:
            batch, self.pending = (
                self.pending[: kwargs["MaxNumberOfMessages"]],
                self.pending[kwargs["MaxNumberOfMessages"] :],
            )
        if not batch:
            time.sleep(0.05)
        return {"Messages": batch}

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        with self.lock:
            self.deleted += [e["ReceiptHandle"] for e in Entries]
        return {"Successful": Entries, "Failed": []}

    def change_message_visibility_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        with self.lock:
            self.visibility += [(e["ReceiptHandle"], e["VisibilityTimeout"]) for e in Entries]
        return {"Successful": Entries, "Failed": []}


class ScriptedReconciler:
    def __init__(self, behaviour: dict[str, Any]) -> None:
        self.behaviour = behaviour
        self.calls: list[str] = []
        self.engine = type("E", (), {"source": type("S", (), {"bucket": "source-bucket"})()})()

    def reconcile(self, key: str, cancel: threading.Event | None = None) -> ReconcileResult:
        self.calls.append(key)
        action = self.behaviour.get(key)
        if isinstance(action, float):
            deadline = time.monotonic() + action
            while time.monotonic() < deadline:
                if cancel is not None and cancel.is_set():
                    raise CancelledError("stopped")
                time.sleep(0.02)
        elif isinstance(action, Exception):
            raise action
        return ReconcileResult(key, Outcome.COPIED, 1)


def sqs_message(key: str, handle: str, receives: int = 1, body: str | None = None) -> dict[str, Any]:
    message = ReplicationMessage(bucket="source-bucket", key=key, event="ObjectCreated:Put")
    return {
        "MessageId": f"id-{handle}",
        "ReceiptHandle": handle,
        "Body": body if body is not None else message.to_body(),
        "Attributes": {"MessageGroupId": message.group_id, "ApproximateReceiveCount": str(receives)},
    }


def make(
    messages: list[dict[str, Any]], behaviour: dict[str, Any], **tuning: Any
) -> tuple[QueueConsumer, MemorySQS, ScriptedReconciler]:
    settings = Settings(
        source_bucket="source-bucket",
        target_bucket="lyve-target",
        target_endpoint_url="https://lyve.example",
        target_access_key_id="a",
        target_secret_access_key="secret-value",
        queue_url="https://sqs/q.fifo",
        drain_idle_seconds=0.3,
        receive_wait_seconds=0,
        **tuning,
    )
    sqs, reconciler = MemorySQS(messages), ScriptedReconciler(behaviour)
    return QueueConsumer(settings, sqs, settings.queue_url or "", reconciler), sqs, reconciler  # type: ignore[arg-type]


def test_messages_of_one_key_are_coalesced_and_deleted_after_success() -> None:
    consumer, sqs, reconciler = make(
        [sqs_message("a", "h1"), sqs_message("a", "h2"), sqs_message("b", "h3")], {}
    )
    assert consumer.run(drain=True) == 0
    assert sorted(reconciler.calls) == ["a", "b"]  # "a" twice in the batch: one reconcile
    assert sorted(sqs.deleted) == ["h1", "h2", "h3"]


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


def test_an_unparseable_body_backs_off_and_does_not_block_the_rest() -> None:
    consumer, sqs, reconciler = make([sqs_message("x", "poison", body="{nope"), sqs_message("y", "h2")], {})
    consumer.run(drain=True)
    assert reconciler.calls == ["y"]
    assert sqs.deleted == ["h2"]
    assert any(handle == "poison" and seconds > 0 for handle, seconds in sqs.visibility)


def test_visibility_is_extended_while_a_long_copy_runs() -> None:
    consumer, sqs, _ = make(
        [sqs_message("slow", "h1")], {"slow": 4.0}, visibility_timeout_seconds=10, shutdown_deadline_seconds=5
    )
    consumer.run(drain=True)
    assert ("h1", 10) in sqs.visibility  # the heartbeat (every ~3.3 s) renewed it
    assert sqs.deleted == ["h1"]


def test_stop_hands_unfinished_work_back_within_the_deadline() -> None:
    consumer, sqs, _ = make([sqs_message("slow", "h1")], {"slow": 60.0}, shutdown_deadline_seconds=2)
    threading.Timer(0.5, consumer.request_stop).start()
    started = time.monotonic()
    assert consumer.run() == 0
    assert time.monotonic() - started < 4
    assert ("h1", 0) in sqs.visibility
    assert sqs.deleted == []


@pytest.mark.parametrize("bucket", ["other-bucket"])
def test_messages_for_another_bucket_are_refused(bucket: str) -> None:
    message = ReplicationMessage(bucket=bucket, key="k", event="ObjectCreated:Put")
    raw = sqs_message("k", "h1", body=message.to_body())
    consumer, sqs, reconciler = make([raw], {})
    consumer.run(drain=True)
    assert reconciler.calls == []
    assert sqs.deleted == []
