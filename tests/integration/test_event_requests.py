"""What one small-object event costs in requests to AWS (moto, counted at its server), through the
real handler and a real worker process: the source read once, and the queue's deletes batched."""

from __future__ import annotations

import os

import pytest

from bench.events import RequestCounter, requests_between
from local_stack.stack import LocalStack
from tests.integration.test_pipeline import assert_in_sync

pytestmark = pytest.mark.integration
EVENTS = 30


def test_a_small_object_event_costs_one_source_read_and_a_share_of_a_delete(
    stack: LocalStack, prefix: str
) -> None:
    s3 = stack.source()
    for i in range(EVENTS):
        s3.put_object(Bucket=stack.source_bucket, Key=f"{prefix}{i:03d}.bin", Body=os.urandom(4096 + i))
    stack.invoker.pump()  # type: ignore[union-attr]
    counter = RequestCounter().install()
    try:
        before = counter.snapshot()
        result = stack.run_worker("--drain", env=stack.env(DRAIN_IDLE_SECONDS="2"))
        counted = requests_between(before, counter.snapshot(), EVENTS)
    finally:
        counter.uninstall()
    assert result.returncode == 0, result.stderr[-3000:]
    assert_in_sync(stack, prefix)
    calls = counted["by_call"]
    assert calls.get("S3 GET") == EVENTS and "S3 HEAD" not in calls  # one source request each
    # Finished keys' messages leave the queue together (one call per message before).
    assert calls["DeleteMessageBatch"] <= EVENTS // 3, calls
