"""Property tests: arbitrary input never crashes the event parser or the handler; bad records are
rejected with a reason; keys survive URL-encoding and the queue message exactly."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from lambda_enqueue.handler import RejectedEventError, handle_event
from lambda_enqueue.s3_events import parse_event, parse_s3_event
from replicator.messages import MAX_KEY_BYTES, ReplicationMessage
from tests.helpers import s3_record

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: st.lists(children, max_size=5) | st.dictionaries(st.text(), children, max_size=5),
    max_leaves=30,
)

# Real S3 keys: non-empty UTF-8 up to 1024 bytes (surrogates cannot be encoded).
keys = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=400).filter(
    lambda k: len(k.encode()) <= MAX_KEY_BYTES
)


class RecordingSQS:
    def __init__(self) -> None:
        self.bodies: list[str] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        assert len(Entries) <= 10
        for entry in Entries:
            assert len(entry["MessageGroupId"]) <= 128
            assert len(entry["MessageDeduplicationId"]) <= 128
            self.bodies.append(entry["MessageBody"])
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_arbitrary_json_never_crashes_the_parser(event: Any) -> None:
    parsed = parse_s3_event(event)
    assert all(r.reason for r in parsed.rejected)


@settings(max_examples=200)
@given(st.lists(json_values | st.builds(lambda k: s3_record(quote_plus(k)), keys), max_size=12))
def test_records_mixed_with_garbage_are_split_cleanly(records: list[Any]) -> None:
    sqs = RecordingSQS()
    event = {"Records": records}
    parsed = parse_event(event)
    assert len(parsed.messages) + len(parsed.rejected) + parsed.ignored == len(records)
    # The valid records are enqueued first; any invalid one then fails the invocation, so Lambda
    # keeps the event (retries, then its on-failure destination).
    if parsed.rejected:
        with pytest.raises(RejectedEventError) as caught:
            handle_event(event, sqs, "queue")
        assert len(caught.value.rejected) == len(parsed.rejected)
    else:
        handle_event(event, sqs, "queue")
    assert len(sqs.bodies) == len(parsed.messages)
    for body in sqs.bodies:
        ReplicationMessage.from_body(body)  # every message sent is valid


@settings(max_examples=300)
@given(keys)
def test_keys_round_trip_through_the_event_and_the_message(key: str) -> None:
    [message] = parse_s3_event({"Records": [s3_record(quote_plus(key), size=0)]}).messages
    assert message.key == key
    assert ReplicationMessage.from_body(message.to_body()).key == key


@settings(max_examples=100)
@given(keys, st.integers(min_value=1, max_value=400))
def test_oversized_keys_are_rejected_with_a_reason(key: str, extra: int) -> None:
    oversized = key + "\u00e9" * (MAX_KEY_BYTES // 2 + extra)  # > 1024 bytes in UTF-8
    parsed = parse_s3_event({"Records": [s3_record(quote_plus(oversized))]})
    assert parsed.messages == []
    assert len(parsed.rejected) == 1
    assert parsed.rejected[0].reason
