from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from lambda_enqueue import handler as handler_module
from lambda_enqueue.handler import EnqueueError, RejectedEventError, handle_event, send_messages
from lambda_enqueue.s3_events import parse_event, parse_s3_event
from replicator.messages import ReplicationMessage
from tests.helpers import load_event, s3_record


@pytest.fixture
def fifo() -> Any:
    with mock_aws():
        sqs = boto3.client("sqs", region_name="us-east-1")
        url = sqs.create_queue(
            QueueName="replication.fifo",
            Attributes={
                "FifoQueue": "true",
                "DeduplicationScope": "messageGroup",
                "FifoThroughputLimit": "perMessageGroupId",
            },
        )["QueueUrl"]
        yield sqs, url


def _drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        )
        if not got.get("Messages"):
            return out
        for m in got["Messages"]:
            out.append(m)
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])


ODD_KEYS = [
    "red flower.jpg",
    "a+b.txt",
    "100% done.txt",
    "caf\u00e9/\u65e5\u672c\u8a9e/\U0001f600.txt",
    "/".join(["d" * 200] * 5)[:1024],
    "k" * 1024,
    "  leading and trailing  ",
]


@pytest.mark.parametrize("key", ODD_KEYS)
def test_keys_are_decoded_once(key: str, fifo: Any) -> None:
    sqs, url = fifo
    event = {"Records": [s3_record(quote_plus(key), size=0, eTag="d41d8cd98f00b204e9800998ecf8427e")]}
    assert handle_event(event, sqs, url)["enqueued"] == 1
    [raw] = _drain(sqs, url)
    message = ReplicationMessage.from_body(raw["Body"])
    assert message.key == key
    assert message.size == 0
    assert raw["Attributes"]["MessageGroupId"] == message.group_id


def test_canonical_put_and_delete_events(fifo: Any) -> None:
    sqs, url = fifo
    assert handle_event(load_event("s3_put.json"), sqs, url)["enqueued"] == 1
    assert handle_event(load_event("s3_delete.json"), sqs, url)["enqueued"] == 1
    put, delete = (ReplicationMessage.from_body(m["Body"]) for m in _drain(sqs, url))
    assert put.key == delete.key == "photos/red flower.jpg"
    assert put.event == "ObjectCreated:Put"
    assert put.sequencer == "0055AED6DCD90281E5"
    assert put.version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert delete.event == "ObjectRemoved:Delete"


def test_test_event_is_ignored(fifo: Any) -> None:
    sqs, url = fifo
    result = handle_event(load_event("s3_test_event.json"), sqs, url)
    assert result == {"enqueued": 0, "rejected": 0, "ignored": 1}
    assert _drain(sqs, url) == []


def test_duplicate_event_delivery_is_deduplicated_by_the_queue(fifo: Any) -> None:
    sqs, url = fifo
    event = load_event("s3_put.json")
    handle_event(event, sqs, url)
    handle_event(copy.deepcopy(event), sqs, url)
    assert len(_drain(sqs, url)) == 1


def test_malformed_records_are_rejected_after_the_valid_ones_are_enqueued(
    fifo: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sqs, url = fifo
    good = s3_record("good+one", sequencer="01")
    no_key = s3_record("x")
    del no_key["s3"]["object"]["key"]
    bad_size = s3_record("bad-size", size=-5)
    not_a_dict = "garbage"
    other_source = {**s3_record("y"), "eventSource": "aws:sqs"}
    tagging = s3_record("tagged", event="ObjectTagging:Put")
    event = {
        "Records": [
            good,
            no_key,
            bad_size,
            not_a_dict,
            other_source,
            tagging,
            s3_record("good+two", sequencer="02"),
        ]
    }
    with caplog.at_level("WARNING", logger="lambda_enqueue"), pytest.raises(RejectedEventError) as raised:
        handle_event(event, sqs, url)
    # The valid records are on the queue; the event raises so that Lambda's on-failure
    # destination keeps it (with this message) instead of the bad records being dropped.
    keys = sorted(ReplicationMessage.from_body(m["Body"]).key for m in _drain(sqs, url))
    assert keys == ["good one", "good two"]
    assert [r.index for r in raised.value.rejected] == [1, 2, 3, 4]
    assert "4 rejected" in str(raised.value)
    assert "record 1: s3.object.key: Field required" in str(raised.value)
    assert "aws:sqs" in str(raised.value)
    reasons = [json.loads(r.getMessage()) for r in caplog.records if "record_rejected" in r.getMessage()]
    assert {r["index"] for r in reasons} == {1, 2, 3, 4}
    assert any("key" in r["reason"] for r in reasons)
    assert any("aws:sqs" in r["reason"] for r in reasons)


@pytest.mark.parametrize(
    "event",
    [None, [], "text", {"Records": "nope"}, {"foo": 1}, {"detail-type": "Object Created"}],
)
def test_events_that_are_neither_format_are_rejected_whole(event: Any) -> None:
    parsed = parse_event(event)
    assert parsed.messages == []
    assert len(parsed.rejected) == 1
    assert parsed.rejected[0].index == -1


def test_an_event_rejected_whole_raises_and_enqueues_nothing(fifo: Any) -> None:
    sqs, url = fifo
    with pytest.raises(RejectedEventError, match="event: event has no 'Records' list"):
        handle_event({"foo": 1}, sqs, url)
    assert _drain(sqs, url) == []


def test_key_longer_than_1024_bytes_is_rejected_with_reason() -> None:
    parsed = parse_s3_event({"Records": [s3_record(quote_plus("\u00e9" * 600))]})
    assert parsed.messages == []
    assert "1024 bytes" in parsed.rejected[0].reason


def test_lifecycle_expiration_is_replicated_as_a_delete() -> None:
    parsed = parse_s3_event({"Records": [s3_record("old.log", event="LifecycleExpiration:Delete")]})
    assert [m.event for m in parsed.messages] == ["LifecycleExpiration:Delete"]


def test_batches_of_ten(fifo: Any) -> None:
    sqs, url = fifo
    calls: list[int] = []
    real = sqs.send_message_batch

    def counting(**kw: Any) -> Any:
        calls.append(len(kw["Entries"]))
        return real(**kw)

    sqs.send_message_batch = counting
    records = [s3_record(f"key-{i}", sequencer=f"{i:04d}") for i in range(25)]
    assert handle_event({"Records": records}, sqs, url)["enqueued"] == 25
    assert calls == [10, 10, 5]
    assert len(_drain(sqs, url)) == 25


class FlakySQS:
    """Fails the first entry of each batch a given number of times."""

    def __init__(self, failures: int, sender_fault: bool = False) -> None:
        self.failures = failures
        self.sender_fault = sender_fault
        self.sent: list[str] = []
        self.calls = 0

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls += 1
        failed = []
        for entry in Entries:
            if entry["Id"] == "0" and self.failures > 0:
                failed.append(
                    {
                        "Id": "0",
                        "Code": "InternalError",
                        "Message": "try again",
                        "SenderFault": self.sender_fault,
                    }
                )
            else:
                self.sent.append(entry["MessageBody"])
        if failed:
            self.failures -= 1
        return {"Successful": [], "Failed": failed}


def test_failed_entries_are_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_module.time, "sleep", lambda s: None)
    sqs = FlakySQS(failures=2)
    messages = parse_s3_event({"Records": [s3_record(f"k{i}") for i in range(3)]}).messages
    assert send_messages(sqs, "url", messages) == 3
    assert len(sqs.sent) == 3
    assert sqs.calls == 3


def test_entries_still_failing_raise_so_lambda_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_module.time, "sleep", lambda s: None)
    sqs = FlakySQS(failures=100)
    messages = parse_s3_event({"Records": [s3_record("k0"), s3_record("k1")]}).messages
    with pytest.raises(EnqueueError, match="1 message"):
        send_messages(sqs, "url", messages)


def test_sender_faults_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(handler_module.time, "sleep", lambda s: None)
    sqs = FlakySQS(failures=100, sender_fault=True)
    with pytest.raises(EnqueueError):
        send_messages(sqs, "url", parse_s3_event({"Records": [s3_record("k0")]}).messages)
    assert sqs.calls == 1


def test_missing_queue_url_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QUEUE_URL", raising=False)
    with pytest.raises(EnqueueError, match="QUEUE_URL"):
        handler_module.handler(load_event("s3_put.json"), None)


def test_lambda_entry_point_sends_to_the_configured_queue(fifo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sqs, url = fifo
    monkeypatch.setenv("QUEUE_URL", url)
    handler_module._sqs_client.cache_clear()
    try:
        assert handler_module.handler(load_event("s3_put.json"), None)["enqueued"] == 1
    finally:
        handler_module._sqs_client.cache_clear()
    assert len(_drain(sqs, url)) == 1


# -- EventBridge events (event_delivery = "eventbridge") --------------------------------------


def eventbridge_event(
    key: str,
    detail_type: str = "Object Created",
    reason: str | None = "PutObject",
    deletion_type: str | None = None,
    **obj: Any,
) -> dict[str, Any]:
    """One S3 event as EventBridge delivers it: the key as it is, not URL-encoded."""
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": "source-bucket"},
        "object": {"key": key, **obj},
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "111122223333",
    }
    if reason is not None:
        detail["reason"] = reason
    if deletion_type is not None:
        detail["deletion-type"] = deletion_type
    return {
        "version": "0",
        "id": "17793124-05d4-b198-2fde-7ededc63b103",
        "detail-type": detail_type,
        "source": "aws.s3",
        "account": "111122223333",
        "time": "2026-11-21T05:00:00Z",
        "region": "us-east-1",
        "resources": ["arn:aws:s3:::source-bucket"],
        "detail": detail,
    }


def test_canonical_eventbridge_created_and_deleted_events(fifo: Any) -> None:
    sqs, url = fifo
    assert handle_event(load_event("eventbridge_object_created.json"), sqs, url)["enqueued"] == 1
    assert handle_event(load_event("eventbridge_object_deleted.json"), sqs, url)["enqueued"] == 1
    created, deleted = (ReplicationMessage.from_body(m["Body"]) for m in _drain(sqs, url))
    assert created.key == deleted.key == "photos/red flower.jpg"
    assert created.event == "ObjectCreated:Put"
    assert (created.size, created.etag) == (1024, "d41d8cd98f00b204e9800998ecf8427e")
    assert created.sequencer == "0055AED6DCD90281E5"
    assert created.version_id == "096fKKXTRTtl3on89fVO.nfljtsv6qko"
    assert deleted.event == "ObjectRemoved:Delete"
    assert (deleted.size, deleted.etag) == (None, None)  # the delete marker's, not content's


@pytest.mark.parametrize(
    ("notification", "eventbridge"),
    [
        ("s3_put.json", "eventbridge_object_created.json"),
        ("s3_delete.json", "eventbridge_object_deleted.json"),
    ],
)
def test_both_formats_of_one_change_give_one_and_the_same_message(
    notification: str, eventbridge: str, fifo: Any
) -> None:
    [from_notification] = parse_event(load_event(notification)).messages
    [from_eventbridge] = parse_event(load_event(eventbridge)).messages
    assert from_eventbridge == from_notification
    assert from_eventbridge.to_body() == from_notification.to_body()
    assert from_eventbridge.group_id == from_notification.group_id
    assert from_eventbridge.deduplication_id == from_notification.deduplication_id
    # Both delivering (a bucket moving from one to the other): the queue keeps one.
    sqs, url = fifo
    handle_event(load_event(notification), sqs, url)
    handle_event(load_event(eventbridge), sqs, url)
    assert len(_drain(sqs, url)) == 1


@pytest.mark.parametrize("key", ODD_KEYS)
def test_eventbridge_keys_are_taken_as_they_are(key: str, fifo: Any) -> None:
    sqs, url = fifo
    event = eventbridge_event(key, size=0, etag="d41d8cd98f00b204e9800998ecf8427e", sequencer="0A")
    assert handle_event(event, sqs, url)["enqueued"] == 1
    [raw] = _drain(sqs, url)
    message = ReplicationMessage.from_body(raw["Body"])
    assert message.key == key
    assert raw["Attributes"]["MessageGroupId"] == message.group_id
    # The same change as a bucket notification (key URL-encoded there): the same message.
    [notified] = parse_s3_event(
        {
            "Records": [
                s3_record(quote_plus(key), size=0, eTag="d41d8cd98f00b204e9800998ecf8427e", sequencer="0A")
            ]
        }
    ).messages
    assert message.key == notified.key
    assert message.deduplication_id == notified.deduplication_id


@pytest.mark.parametrize("key", ["a+b.txt", "100%25 done.txt", "x%2By", "%E6%97%A5"])
def test_eventbridge_keys_that_look_url_encoded_are_not_decoded(key: str) -> None:
    [message] = parse_event(eventbridge_event(key)).messages
    assert message.key == key


def test_eventbridge_key_of_1024_bytes_is_kept_and_longer_is_rejected(fifo: Any) -> None:
    sqs, url = fifo
    longest = "\u00e9" * 512  # 1024 bytes in UTF-8
    assert handle_event(eventbridge_event(longest), sqs, url)["enqueued"] == 1
    with pytest.raises(RejectedEventError, match="1024 bytes"):
        handle_event(eventbridge_event(longest + "x"), sqs, url)
    assert [ReplicationMessage.from_body(m["Body"]).key for m in _drain(sqs, url)] == [longest]


@pytest.mark.parametrize(
    ("detail_type", "reason", "deletion_type", "expected"),
    [
        ("Object Created", "PutObject", None, "ObjectCreated:Put"),
        ("Object Created", "POST Object", None, "ObjectCreated:Post"),
        ("Object Created", "CopyObject", None, "ObjectCreated:Copy"),
        ("Object Created", "CompleteMultipartUpload", None, "ObjectCreated:CompleteMultipartUpload"),
        ("Object Deleted", "DeleteObject", "Permanently Deleted", "ObjectRemoved:Delete"),
        ("Object Deleted", "DeleteObject", "Delete Marker Created", "ObjectRemoved:DeleteMarkerCreated"),
        ("Object Deleted", "Lifecycle Expiration", "Permanently Deleted", "LifecycleExpiration:Delete"),
        (
            "Object Deleted",
            "Lifecycle Expiration",
            "Delete Marker Created",
            "LifecycleExpiration:DeleteMarkerCreated",
        ),
    ],
)
def test_eventbridge_events_are_named_as_the_notification_of_the_same_change(
    detail_type: str, reason: str, deletion_type: str | None, expected: str
) -> None:
    event = eventbridge_event("k", detail_type, reason, deletion_type, sequencer="0B")
    [message] = parse_event(event).messages
    assert message.event == expected
    notification = {"Records": [s3_record("k", event=expected, sequencer="0B")]}
    assert message.deduplication_id == parse_s3_event(notification).messages[0].deduplication_id


def test_an_eventbridge_reason_not_known_yet_is_still_enqueued() -> None:
    [message] = parse_event(eventbridge_event("k", reason="Some New API")).messages
    assert (message.key, message.event) == ("k", "ObjectCreated:SomeNewAPI")
    [message] = parse_event(eventbridge_event("k", reason=None)).messages
    assert message.event == "ObjectCreated:Unknown"


@pytest.mark.parametrize(
    "detail_type", ["Object Restore Completed", "Object Tags Added", "Object ACL Updated"]
)
def test_eventbridge_events_that_change_no_bytes_are_ignored(detail_type: str, fifo: Any) -> None:
    sqs, url = fifo
    result = handle_event(eventbridge_event("k", detail_type, reason=None), sqs, url)
    assert result == {"enqueued": 0, "rejected": 0, "ignored": 1}
    assert _drain(sqs, url) == []


def _without(path: tuple[str, ...]) -> dict[str, Any]:
    event = eventbridge_event("k", sequencer="01")
    parent: Any = event
    for part in path[:-1]:
        parent = parent[part]
    del parent[path[-1]]
    return event


MALFORMED_EVENTBRIDGE = [
    (_without(("detail",)), "detail: Input should be a valid dictionary"),
    (_without(("detail", "object", "key")), "detail.object.key: Field required"),
    (_without(("detail", "bucket")), "detail.bucket: Field required"),
    (_without(("source",)), "source: Field required"),
    ({**eventbridge_event("k"), "source": "aws.sqs"}, "EventBridge source is 'aws.sqs', not aws.s3"),
    ({**eventbridge_event("k"), "time": "yesterday"}, "time: Input should be a valid datetime"),
    (eventbridge_event("", sequencer="01"), "detail.object.key: String should have at least 1 character"),
    (eventbridge_event("k", size=-1), "detail.object.size: Input should be greater than or equal to 0"),
]


@pytest.mark.parametrize(("event", "reason"), MALFORMED_EVENTBRIDGE)
def test_malformed_eventbridge_events_are_rejected_with_their_reason(
    event: dict[str, Any], reason: str, fifo: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sqs, url = fifo
    with caplog.at_level("WARNING", logger="lambda_enqueue"), pytest.raises(RejectedEventError) as raised:
        handle_event(event, sqs, url)
    assert reason in str(raised.value)
    assert _drain(sqs, url) == []
    [logged] = [json.loads(r.getMessage()) for r in caplog.records if "record_rejected" in r.getMessage()]
    assert logged["index"] == -1 and reason in logged["reason"]


def test_lambda_entry_point_takes_eventbridge_events(fifo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    sqs, url = fifo
    monkeypatch.setenv("QUEUE_URL", url)
    handler_module._sqs_client.cache_clear()
    try:
        assert handler_module.handler(load_event("eventbridge_object_created.json"), None)["enqueued"] == 1
    finally:
        handler_module._sqs_client.cache_clear()
    [raw] = _drain(sqs, url)
    assert ReplicationMessage.from_body(raw["Body"]).key == "photos/red flower.jpg"


def test_a_huge_source_value_is_cut_short_in_the_reason() -> None:
    parsed = parse_event({**eventbridge_event("k"), "source": "x" * 100_000})
    [rejected] = parsed.rejected
    assert rejected.reason == f"EventBridge source is '{'x' * 64}...', not aws.s3"
