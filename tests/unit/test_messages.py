from __future__ import annotations

from datetime import UTC, datetime

import pytest

from replicator.messages import MessageError, ReplicationMessage, message_group_id


def _msg(**kw: object) -> ReplicationMessage:
    base: dict[str, object] = {"bucket": "source-bucket", "key": "a/b.txt", "event": "ObjectCreated:Put"}
    base.update(kw)
    return ReplicationMessage.model_validate(base)


@pytest.mark.parametrize(
    "key",
    [
        "a b.txt",
        "plus+sign",
        "100%",
        "caf\u00e9/\u65e5\u672c/\U0001f600",
        "k" * 1024,
        "/".join(["d" * 200] * 5)[:1024],
    ],
)
def test_body_round_trips_keys_exactly(key: str) -> None:
    message = _msg(key=key, size=0, etag="abc")
    again = ReplicationMessage.from_body(message.to_body())
    assert again == message
    assert again.key == key


def test_group_id_is_a_short_stable_hash_of_the_key() -> None:
    long_key = "x" * 1024
    group = _msg(key=long_key).group_id
    assert len(group) <= 128
    assert group == message_group_id("source-bucket", long_key)
    assert group != _msg(key=long_key[:-1]).group_id


def test_duplicate_deliveries_share_a_deduplication_id() -> None:
    a = _msg(sequencer="0055AED6DCD90281E5", etag="e1")
    b = _msg(sequencer="0055AED6DCD90281E5", etag="e1")
    assert a.deduplication_id == b.deduplication_id
    assert len(a.deduplication_id) <= 128


def test_different_events_get_different_deduplication_ids() -> None:
    put = _msg(sequencer="01")
    assert put.deduplication_id != _msg(sequencer="02").deduplication_id
    assert put.deduplication_id != _msg(sequencer="01", event="ObjectRemoved:Delete").deduplication_id
    assert put.deduplication_id != _msg(sequencer="01", key="other").deduplication_id


def test_recreate_with_same_bytes_is_not_a_duplicate_without_sequencer() -> None:
    first = _msg(etag="e1", event_time=datetime(2026, 1, 1, tzinfo=UTC))
    again = _msg(etag="e1", event_time=datetime(2026, 1, 1, 0, 0, 5, tzinfo=UTC))
    assert first.deduplication_id != again.deduplication_id


def test_key_over_1024_bytes_is_rejected() -> None:
    with pytest.raises(ValueError, match="1024 bytes"):
        _msg(key="\u00e9" * 513)  # 1026 bytes in UTF-8


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("not json", "invalid replication message"),
        ('{"v": 2, "bucket": "b", "key": "k", "event": "x"}', "v"),
        ('{"v": 1, "bucket": "b", "event": "x"}', "key"),
        ('{"v": 1, "bucket": "b", "key": "", "event": "x"}', "key"),
        ("[]", "invalid replication message"),
    ],
)
def test_invalid_bodies_are_rejected_with_a_reason(body: str, reason: str) -> None:
    with pytest.raises(MessageError, match=reason):
        ReplicationMessage.from_body(body)


def test_bodies_without_an_interruption_count_still_parse_and_stay_as_they_were() -> None:
    old = '{"v":1,"bucket":"source-bucket","key":"a/b.txt","event":"ObjectCreated:Put","etag":"e1"}'
    message = ReplicationMessage.from_body(old)
    assert message.interruptions == 0
    assert message.to_body() == old  # nothing new on the wire for messages never interrupted


def test_an_interrupted_message_carries_its_count_and_keeps_its_identity() -> None:
    message = _msg(sequencer="01", event_time=datetime(2026, 1, 1, tzinfo=UTC))
    again = ReplicationMessage.from_body(message.interrupted().interrupted().to_body())
    assert again.interruptions == 2
    assert (again.key, again.event_time, again.group_id) == (
        message.key,
        message.event_time,
        message.group_id,
    )


def test_a_negative_interruption_count_is_rejected() -> None:
    with pytest.raises(MessageError, match="interruptions"):
        ReplicationMessage.from_body('{"v":1,"bucket":"b","key":"k","event":"x","interruptions":-1}')
