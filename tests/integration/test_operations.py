"""`python -m worker status` and `redrive` against the local stack."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest

from local_stack.stack import LocalStack
from replicator.messages import ReplicationMessage

pytestmark = pytest.mark.integration


def _worker(stack: LocalStack, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "worker", *args],
        env=stack.env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def _drain_all(stack: LocalStack) -> None:
    """Empty both queues (PurgeQueue allows one call a minute)."""
    sqs = stack.aws.client("sqs")
    for url in (stack.aws.queue_url, stack.aws.dlq_url):
        while got := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=0).get(
            "Messages"
        ):
            for message in got:
                sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def _send(stack: LocalStack, url: str, keys: list[str]) -> None:
    sqs = stack.aws.client("sqs")
    for key in keys:
        message = ReplicationMessage(bucket=stack.source_bucket, key=key, event="ObjectCreated:Put")
        sqs.send_message(
            QueueUrl=url,
            MessageBody=message.to_body(),
            MessageGroupId=message.group_id,
            MessageDeduplicationId=message.deduplication_id,
        )


def test_status_reports_waiting_in_flight_and_dead_letter_counts(stack: LocalStack, prefix: str) -> None:
    _drain_all(stack)
    _send(stack, stack.aws.queue_url, [f"{prefix}{i}" for i in range(7)])
    _send(stack, stack.aws.dlq_url, [f"{prefix}dead-{i}" for i in range(3)])
    held = stack.aws.client("sqs").receive_message(
        QueueUrl=stack.aws.queue_url, MaxNumberOfMessages=2, VisibilityTimeout=300
    )["Messages"]
    assert len(held) == 2
    result = _worker(stack, "status", "--json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert (status["visible"], status["in_flight"]) == (5, 2)
    assert status["dead_letter_visible"] == 3
    assert status["queue"] == "replication.fifo"
    assert status["dead_letter_queue"] == "replication-dlq.fifo"
    assert status["running_tasks"] is None  # no ECS service configured
    table = _worker(stack, "status")
    assert table.returncode == 0
    assert "dead-letter queue replication-dlq.fifo" in table.stdout
    assert "make redrive" in table.stdout
    _drain_all(stack)


def test_redrive_moves_every_message_back_once_and_the_worker_replicates_them(
    stack: LocalStack, prefix: str
) -> None:
    _drain_all(stack)
    keys = [f"{prefix}redriven-{i}.txt" for i in range(13)]
    for key in keys:
        stack.source().put_object(Bucket=stack.source_bucket, Key=key, Body=key.encode())
    stack.invoker.pump()  # type: ignore[union-attr]
    _drain_all(stack)  # the live events are gone: only the dead letters below remain
    _send(stack, stack.aws.dlq_url, keys)
    dry = _worker(stack, "redrive", "--dry-run")
    assert dry.returncode == 0
    assert "would move 13 message(s)" in dry.stdout
    moved = _worker(stack, "redrive")
    assert moved.returncode == 0, moved.stderr
    assert "moved 13 message(s)" in moved.stdout
    status = json.loads(_worker(stack, "status", "--json").stdout)
    assert (status["visible"], status["dead_letter_visible"]) == (13, 0)
    held: dict[str, Any] = {}  # by message id: a redelivery is not a duplicate
    sqs = stack.aws.client("sqs")
    while got := sqs.receive_message(
        QueueUrl=stack.aws.queue_url, MaxNumberOfMessages=10, VisibilityTimeout=60
    ).get("Messages", []):
        held.update({m["MessageId"]: m for m in got})
    assert sorted(ReplicationMessage.from_body(m["Body"]).key for m in held.values()) == sorted(keys)
    for message in held.values():  # hand them back to the worker below
        sqs.change_message_visibility(
            QueueUrl=stack.aws.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
        )
    drained = _worker(stack, "--drain", DRAIN_IDLE_SECONDS="2")
    assert drained.returncode == 0, drained.stderr[-2000:]
    target = stack.target()
    for key in keys:
        assert target.get_object(Bucket=stack.target_bucket, Key=key)["Body"].read() == key.encode()


def test_status_shows_messages_that_found_the_source_bucket_missing(stack: LocalStack) -> None:
    _drain_all(stack)
    before = json.loads(_worker(stack, "status", "--json").stdout)
    assert before["source_bucket_missing"] is None  # no datapoint: nothing happened
    stack.aws.client("cloudwatch").put_metric_data(
        Namespace="LyveReplicator",
        MetricData=[
            {
                "MetricName": "SourceBucketMissing",
                "Dimensions": [{"Name": "Queue", "Value": "replication.fifo"}],
                "Value": 3,
                "Unit": "Count",
            }
        ],
    )
    status = json.loads(_worker(stack, "status", "--json").stdout)
    assert status["source_bucket_missing"] == 3
    table = _worker(stack, "status")
    assert table.returncode == 0
    assert "found the source bucket missing" in " ".join(table.stdout.split())


def test_redrive_returns_a_message_the_worker_dead_lettered_and_it_does_not_cycle(
    stack: LocalStack, prefix: str
) -> None:
    _drain_all(stack)
    held_elsewhere = json.loads(_worker(stack, "status", "--json").stdout)["in_flight"]
    doomed = f"{prefix}" + "r" * 300  # a segment the stand-in target refuses
    stack.source().put_object(Bucket=stack.source_bucket, Key=doomed, Body=b"x")
    stack.invoker.pump()  # type: ignore[union-attr]
    first = _worker(stack, "--drain", DRAIN_IDLE_SECONDS="2")
    assert first.returncode == 0, first.stderr[-2000:]
    assert json.loads(_worker(stack, "status", "--json").stdout)["dead_letter_visible"] == 1
    moved = _worker(stack, "redrive")
    assert moved.returncode == 0, moved.stderr
    assert "moved 1 message(s)" in moved.stdout
    sqs = stack.aws.client("sqs")
    [message] = sqs.receive_message(
        QueueUrl=stack.aws.queue_url, VisibilityTimeout=60, MessageSystemAttributeNames=["MessageGroupId"]
    )["Messages"]
    assert ReplicationMessage.from_body(message["Body"]).key == doomed
    assert message["Attributes"]["MessageGroupId"] == ReplicationMessage.from_body(message["Body"]).group_id
    sqs.change_message_visibility(  # back to the worker below
        QueueUrl=stack.aws.queue_url, ReceiptHandle=message["ReceiptHandle"], VisibilityTimeout=0
    )
    again = _worker(stack, "--drain", DRAIN_IDLE_SECONDS="2")
    assert again.returncode == 0
    assert again.stderr.count('"reconcile_failed_permanently"') == 1
    status = json.loads(_worker(stack, "status", "--json").stdout)
    assert (status["visible"], status["in_flight"], status["dead_letter_visible"]) == (0, held_elsewhere, 1)
    _drain_all(stack)
