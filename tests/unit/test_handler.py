from __future__ import annotations

import copy
import json
from typing import Any
from urllib.parse import quote_plus

import boto3
import pytest
from moto import mock_aws

from lambda_enqueue import handler as handler_module
from lambda_enqueue.handler import EnqueueError, handle_event, send_messages
from lambda_enqueue.s3_events import parse_s3_event
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


def test_malformed_records_are_skipped_without_losing_valid_ones(
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
    with caplog.at_level("WARNING", logger="lambda_enqueue"):
        result = handle_event(event, sqs, url)
    assert result == {"enqueued": 2, "rejected": 4, "ignored": 1}
    keys = sorted(ReplicationMessage.from_body(m["Body"]).key for m in _drain(sqs, url))
    assert keys == ["good one", "good two"]
    reasons = [json.loads(r.getMessage()) for r in caplog.records if "record_rejected" in r.getMessage()]
    assert {r["index"] for r in reasons} == {1, 2, 3, 4}
    assert any("key" in r["reason"] for r in reasons)
    assert any("aws:sqs" in r["reason"] for r in reasons)


@pytest.mark.parametrize("event", [None, [], "text", {"Records": "nope"}, {"foo": 1}])
def test_events_that_are_not_s3_notifications_are_rejected_whole(event: Any) -> None:
    parsed = parse_s3_event(event)
    assert parsed.messages == []
    assert len(parsed.rejected) == 1


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
