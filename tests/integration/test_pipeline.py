"""The pipeline over HTTP: moto as AWS, SeaweedFS as Lyve Cloud, the real handler and worker."""

from __future__ import annotations

import io
import json
import os
import random
from typing import Any

import pytest

from local_stack.compare import bucket_contents, differences
from local_stack.stack import LocalStack
from replicator.messages import ReplicationMessage

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


def contents(client: Any, bucket: str, prefix: str) -> dict[str, Any]:
    return bucket_contents(client, bucket, prefix)


def assert_in_sync(stack: LocalStack, prefix: str) -> None:
    src = contents(stack.source(), stack.source_bucket, prefix)
    dst = contents(stack.target(), stack.target_bucket, prefix)
    assert differences(src, dst) == []


def replicate(stack: LocalStack, **env: str) -> str:
    """Deliver pending notifications through the handler, then drain the queue with a worker."""
    stack.invoker.pump()  # type: ignore[union-attr]
    result = stack.run_worker("--drain", env=stack.env(DRAIN_IDLE_SECONDS="2", **env))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


def queue_depth(stack: LocalStack, url: str | None = None) -> tuple[int, int]:
    attrs = stack.aws.client("sqs").get_queue_attributes(
        QueueUrl=url or stack.aws.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])


def test_create_overwrite_delete_and_recreate(stack: LocalStack, prefix: str) -> None:
    s3, bucket = stack.source(), stack.source_bucket
    keys = {
        f"{prefix}plain.txt": b"v1",
        f"{prefix}red flower.jpg": os.urandom(1000),
        f"{prefix}a+b%20c.txt": b"plus and percent",
        f"{prefix}caf\u00e9/\U0001f600.bin": b"unicode",
        f"{prefix}empty": b"",
        f"{prefix}multi/part.bin": os.urandom(21 * MIB + 7),
        f"{prefix}" + "/".join(["d" * 200] * 4) + "/" + "e" * 150: b"long key",
    }
    for key, body in keys.items():
        s3.upload_fileobj(
            io.BytesIO(body),
            bucket,
            key,
            ExtraArgs={"ContentType": "application/x-test", "Metadata": {"origin": "test"}},
        )
    replicate(stack)
    assert_in_sync(stack, prefix)
    head = stack.target().head_object(Bucket=stack.target_bucket, Key=f"{prefix}multi/part.bin")
    assert head["ContentType"] == "application/x-test"
    assert head["Metadata"]["origin"] == "test"

    s3.put_object(Bucket=bucket, Key=f"{prefix}plain.txt", Body=b"v2")  # same size, new bytes
    s3.delete_object(Bucket=bucket, Key=f"{prefix}red flower.jpg")
    s3.delete_object(Bucket=bucket, Key=f"{prefix}empty")
    s3.put_object(Bucket=bucket, Key=f"{prefix}empty", Body=b"")  # delete-then-recreate
    replicate(stack)
    assert_in_sync(stack, prefix)
    body = stack.target().get_object(Bucket=stack.target_bucket, Key=f"{prefix}plain.txt")["Body"].read()
    assert body == b"v2"
    assert queue_depth(stack) == (0, 0)


def _send(stack: LocalStack, messages: list[ReplicationMessage], dedup_suffix: str = "") -> None:
    sqs = stack.aws.client("sqs")
    for m in messages:
        sqs.send_message(
            QueueUrl=stack.aws.queue_url,
            MessageBody=m.to_body(),
            MessageGroupId=m.group_id,
            MessageDeduplicationId=m.deduplication_id[:100] + dedup_suffix,
        )


def test_duplicated_and_reordered_events_converge(stack: LocalStack, prefix: str) -> None:
    s3, bucket = stack.source(), stack.source_bucket
    kept, gone = f"{prefix}kept", f"{prefix}gone"
    s3.put_object(Bucket=bucket, Key=kept, Body=b"final")
    s3.put_object(Bucket=bucket, Key=gone, Body=b"short-lived")
    replicate(stack)
    s3.delete_object(Bucket=bucket, Key=gone)
    stack.invoker.pump()  # type: ignore[union-attr]
    # Stale events arrive late and out of order: a create for the deleted key after its delete,
    # a delete for the key that exists, each twice (distinct dedup ids, as after the 5-min window).
    stale = [
        ReplicationMessage(bucket=bucket, key=gone, event="ObjectCreated:Put", etag="x"),
        ReplicationMessage(bucket=bucket, key=kept, event="ObjectRemoved:Delete"),
    ]
    _send(stack, list(reversed(stale)), "-late1")
    _send(stack, stale, "-late2")
    replicate(stack)
    assert_in_sync(stack, prefix)
    assert [k for k in contents(stack.target(), stack.target_bucket, prefix)] == [kept]


def test_shuffled_history_of_one_key_ends_at_the_source_state(stack: LocalStack, prefix: str) -> None:
    s3, bucket = stack.source(), stack.source_bucket
    key = f"{prefix}history"
    s3.put_object(Bucket=bucket, Key=key, Body=b"one")
    s3.put_object(Bucket=bucket, Key=key, Body=b"two!")
    s3.delete_object(Bucket=bucket, Key=key)
    s3.put_object(Bucket=bucket, Key=key, Body=b"three")
    raw = stack.aws.client("sqs").receive_message(
        QueueUrl=stack.aws.notification_queue_url, MaxNumberOfMessages=10
    )["Messages"]
    events = [json.loads(m["Body"]) for m in raw]
    for m in raw:
        stack.aws.client("sqs").delete_message(
            QueueUrl=stack.aws.notification_queue_url, ReceiptHandle=m["ReceiptHandle"]
        )
    random.Random(7).shuffle(events)
    from lambda_enqueue.handler import handle_event

    for event in events + events:  # every notification twice, shuffled
        handle_event(event, stack.aws.client("sqs"), stack.aws.queue_url)
    replicate(stack)
    assert_in_sync(stack, prefix)
    assert stack.target().get_object(Bucket=stack.target_bucket, Key=key)["Body"].read() == b"three"


def test_wrong_target_secret_fails_fast_and_consumes_nothing(stack: LocalStack, prefix: str) -> None:
    stack.source().put_object(Bucket=stack.source_bucket, Key=f"{prefix}waiting", Body=b"x")
    stack.invoker.pump()  # type: ignore[union-attr]
    secrets = stack.aws.client("secretsmanager")
    secrets.create_secret(
        Name=f"wrong-{prefix[:-1]}",
        SecretString=json.dumps(
            {"access_key_id": stack.lyve.access_key, "secret_access_key": "definitely-not-the-key"}
        ),
    )
    before = queue_depth(stack)
    result = stack.run_worker("--drain", env=stack.env(TARGET_SECRET_ID=f"wrong-{prefix[:-1]}"))
    assert result.returncode == 3
    assert "access denied" in result.stderr
    assert "target bucket" in result.stderr
    assert "definitely-not-the-key" not in result.stderr
    assert queue_depth(stack) == before
    replicate(stack)  # the message was not lost: a correctly configured worker handles it
    assert_in_sync(stack, prefix)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"TARGET_BUCKET": "no-such-bucket"}, "does not exist"),
        ({"TARGET_SECRET_ID": "no-such-secret"}, "TARGET_SECRET_ID"),
        ({"TARGET_ENDPOINT_URL": "http://127.0.0.1:9"}, "unreachable"),
        ({"TARGET_BUCKET": ""}, "TARGET_BUCKET"),
        ({"QUEUE_URL": ""}, "QUEUE_URL"),
    ],
)
def test_bad_configuration_stops_at_start_with_a_clear_line(
    stack: LocalStack, env: dict[str, str], expected: str
) -> None:
    before = queue_depth(stack)
    result = stack.run_worker("--drain", env=stack.env(MAX_ATTEMPTS="1", CONNECT_TIMEOUT_SECONDS="1", **env))
    assert result.returncode in (2, 3)
    assert expected in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert queue_depth(stack) == before


def test_a_key_the_target_refuses_goes_to_the_dlq_after_one_receive(stack: LocalStack, prefix: str) -> None:
    """SeaweedFS refuses a 256-byte path segment for good: no back-off cycle, straight to the DLQ
    with the reason, while the other keys replicate."""
    s3, bucket, sqs = stack.source(), stack.source_bucket, stack.aws.client("sqs")
    doomed = f"{prefix}" + "s" * 256
    for i in range(4):
        s3.put_object(Bucket=bucket, Key=f"{prefix}fine-{i}", Body=os.urandom(100 + i))
    s3.put_object(Bucket=bucket, Key=doomed, Body=b"cannot land")
    log = replicate(stack)
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    failed = [e for e in lines if e["event"] == "reconcile_failed_permanently"]
    assert [(e["key"], e["reason"]) for e in failed] == [(doomed, "unstorable_key")]  # one receive
    assert "256" in failed[0]["error"]  # the words say why
    assert not [e for e in lines if e["event"] == "reconcile_failed"]  # no back-off cycle
    assert queue_depth(stack) == (0, 0)
    dead = sqs.receive_message(
        QueueUrl=stack.aws.dlq_url,
        MaxNumberOfMessages=10,
        MessageAttributeNames=["All"],
        MessageSystemAttributeNames=["MessageGroupId"],
    )["Messages"]
    [message] = [m for m in dead if ReplicationMessage.from_body(m["Body"]).key == doomed]
    assert message["MessageAttributes"]["FailureReason"]["StringValue"] == "unstorable_key"
    assert "255" in message["MessageAttributes"]["FailureDetail"]["StringValue"]
    assert message["Attributes"]["MessageGroupId"] == ReplicationMessage.from_body(message["Body"]).group_id
    for m in dead:
        sqs.delete_message(QueueUrl=stack.aws.dlq_url, ReceiptHandle=m["ReceiptHandle"])
    target = contents(stack.target(), stack.target_bucket, prefix)
    assert sorted(target) == [f"{prefix}fine-{i}" for i in range(4)]
    source = {k: v for k, v in contents(s3, bucket, prefix).items() if k != doomed}
    assert differences(source, target) == []
