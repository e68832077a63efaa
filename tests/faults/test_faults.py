"""Workers killed mid-copy, an unreliable target, event storms, poison messages, SIGTERM, bad
configuration and secrets: nothing is lost or corrupted, nothing stalls, nothing leaks."""

from __future__ import annotations

import io
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from lambda_enqueue.handler import handle_event
from local_stack.fault_proxy import FaultPlan, FaultProxy
from local_stack.stack import LocalStack
from replicator.messages import ReplicationMessage
from tests.faults.conftest import FaultReport, PartCountingProxy, verify

pytestmark = pytest.mark.faults
MIB = 1024 * 1024


@pytest.fixture
def prefix() -> str:
    return f"f-{uuid.uuid4().hex[:8]}/"


def depth(stack: LocalStack, url: str) -> tuple[int, int]:
    attributes = stack.aws.client("sqs").get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]), int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def wait_for_upload(stack: LocalStack, prefix: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if stack.target().list_multipart_uploads(Bucket=stack.target_bucket, Prefix=prefix).get("Uploads"):
            return
        time.sleep(0.05)
    raise AssertionError("no multipart upload started")


def drain(stack: LocalStack, **env: str) -> subprocess.CompletedProcess[str]:
    result = stack.run_worker("--drain", env=stack.env(**({"DRAIN_IDLE_SECONDS": "3"} | env)))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def worker_mid_copy(
    stack: LocalStack, prefix: str, mib: int, env: dict[str, str], **popen: Any
) -> subprocess.Popen[bytes]:
    """A worker copying a new object of `mib` MiB one part at a time, caught mid-upload."""
    stack.source().upload_fileobj(io.BytesIO(os.urandom(mib * MIB)), stack.source_bucket, f"{prefix}big.bin")
    stack.invoker.pump()  # type: ignore[union-attr]
    # A long poll under way when the worker stops goes on in the queue without it, and takes the
    # next test's messages; Terraform keeps it shorter than the shutdown deadline, and so does this.
    defaults = {"PART_CONCURRENCY": "1", "RECEIVE_WAIT_SECONDS": "1"}
    worker = stack.start_worker(env=stack.env(**(defaults | env)), **popen)
    wait_for_upload(stack, prefix)
    return worker


def test_worker_killed_mid_copy_is_finished_by_another(
    stack: LocalStack, prefix: str, fault_report: FaultReport
) -> None:
    slow = {
        # Short, so that the message comes back soon; the timeouts leave a stopping copy time.
        "VISIBILITY_TIMEOUT_SECONDS": "20",
        "CONNECT_TIMEOUT_SECONDS": "2",
        "READ_TIMEOUT_SECONDS": "5",
        "SHUTDOWN_DEADLINE_SECONDS": "5",
        "PART_CONCURRENCY": "1",
    }
    victim = worker_mid_copy(stack, prefix, 80, slow, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    victim.send_signal(signal.SIGKILL)  # no chance to abort anything
    victim.wait(timeout=10)
    stale = stack.target().list_multipart_uploads(Bucket=stack.target_bucket, Prefix=prefix)["Uploads"]
    assert len(stale) == 1
    started = time.monotonic()
    # The message comes back after its visibility timeout; the upload is resumed or replaced.
    result = drain(stack, **slow, DRAIN_IDLE_SECONDS="25")  # longer than the visibility
    assert time.monotonic() - started < 120
    fault_report.add(
        "worker SIGKILLed mid multipart copy",
        faults=1,
        objects=verify(stack, prefix),  # and no upload left
        lost=0,
        stale_uploads=len(stale),
        resumed=any(e["event"] == "upload_resumed" for e in _events(result.stderr)),
    )


def test_throttling_errors_and_dropped_connections_lose_nothing(
    stack: LocalStack, prefix: str, fault_report: FaultReport
) -> None:
    rng = random.Random(11)
    source = stack.source()
    for i in range(40):
        source.put_object(
            Bucket=stack.source_bucket, Key=f"{prefix}obj-{i}", Body=rng.randbytes(rng.randint(0, 200_000))
        )
    for i in range(2):
        source.upload_fileobj(io.BytesIO(os.urandom(12 * MIB + i)), stack.source_bucket, f"{prefix}large-{i}")
    stack.invoker.pump()  # type: ignore[union-attr]
    plan = FaultPlan(slow_down=0.10, internal_error=0.05, drop=0.05, seed=3)
    with FaultProxy(stack.lyve.endpoint_url, plan) as proxy:
        drain(stack, TARGET_ENDPOINT_URL=proxy.endpoint_url, MAX_ATTEMPTS="10", PART_SIZE_MIB="5")
    injected = sum(plan.injected.values())
    assert injected >= 10, plan.injected
    fault_report.add(
        "target answers 503 SlowDown / 500 / drops connections",
        faults=injected,
        objects=verify(stack, prefix),
        lost=0,
        **dict(plan.injected),
        requests_forwarded=plan.forwarded,
    )


def test_create_overwrite_delete_recreate_storm_converges(
    stack: LocalStack, prefix: str, fault_report: FaultReport
) -> None:
    source, sqs = stack.source(), stack.aws.client("sqs")
    keys = [f"{prefix}k{i}" for i in range(5)]
    for key in keys:
        source.put_object(Bucket=stack.source_bucket, Key=key, Body=b"one")
        source.put_object(Bucket=stack.source_bucket, Key=key, Body=b"two, longer")
        source.delete_object(Bucket=stack.source_bucket, Key=key)
    for key in keys[:3]:
        source.put_object(Bucket=stack.source_bucket, Key=key, Body=os.urandom(100))
    events = []
    while got := sqs.receive_message(QueueUrl=stack.aws.notification_queue_url, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        for message in got:
            events.append(json.loads(message["Body"]))
            sqs.delete_message(
                QueueUrl=stack.aws.notification_queue_url, ReceiptHandle=message["ReceiptHandle"]
            )
    storm = events * 2
    random.Random(5).shuffle(storm)
    for event in storm:
        handle_event(event, sqs, stack.aws.queue_url)
    # Late copies, as if delivered after the 5-minute deduplication window: new dedup ids.
    for key in keys:
        for name in ("ObjectCreated:Put", "ObjectRemoved:Delete"):
            late = ReplicationMessage(bucket=stack.source_bucket, key=key, event=name)
            sqs.send_message(
                QueueUrl=stack.aws.queue_url,
                MessageBody=late.to_body(),
                MessageGroupId=late.group_id,
                MessageDeduplicationId=f"late-{uuid.uuid4().hex}",
            )
    drain(stack)
    fault_report.add(
        "create/overwrite/delete/recreate: duplicated, shuffled, late",
        faults=len(storm) + 10,
        objects=verify(stack, prefix),
        lost=0,
        events_delivered=len(storm) + 10,
    )


# 2,000 events through moto on two cores take 4-5 minutes: more than the suite's per-test guard.
@pytest.mark.timeout(600)
def test_burst_of_2000_events_with_several_workers(
    stack: LocalStack, prefix: str, fault_report: FaultReport
) -> None:
    source = stack.source()
    count = 2000

    def put(i: int) -> None:
        source.put_object(
            Bucket=stack.source_bucket, Key=f"{prefix}burst/{i:05d}", Body=os.urandom(1 + i % 4096)
        )

    stack.invoker.start()  # deliver the notifications as Lambda would, continuously  # type: ignore[union-attr]
    workers = [
        stack.start_worker(
            "--drain",
            env=stack.env(DRAIN_IDLE_SECONDS="10", LOG_FORMAT="json"),  # a loaded machine pauses
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    started = time.monotonic()
    with ThreadPoolExecutor(16) as pool:
        list(pool.map(put, range(count)))
    try:
        outputs = [w.communicate(timeout=300)[1].decode() for w in workers]
    finally:
        stack.invoker.stop()  # type: ignore[union-attr]
    assert all(w.returncode == 0 for w in workers), outputs[0][-2000:]
    elapsed = time.monotonic() - started
    latencies, finished = [], []
    for output in outputs:
        for line in output.splitlines():
            if '"reconciled"' in line:
                entry = json.loads(line)
                if entry.get("latency_seconds") is not None:
                    latencies.append(entry["latency_seconds"])
                finished.append(datetime.fromisoformat(entry["timestamp"].replace("Z", "+00:00")))
    seen = Counter(e["event"] for output in outputs for e in _events(output))
    assert len(latencies) >= count * 0.99, seen  # coalesced duplicates aside, every event measured
    quantiles = statistics.quantiles(latencies, n=100)
    objects = verify(stack, prefix)
    assert objects == count
    fault_report.add(
        "burst of 2,000 create events, 3 workers",
        faults=0,
        objects=objects,
        lost=0,
        events_per_second=round(count / elapsed, 1),
        latency_p50_s=round(quantiles[49], 2),
        latency_p99_s=round(quantiles[98], 2),
        wall_seconds=round(elapsed, 1),
    )


def test_poison_messages_reach_the_dlq_and_do_not_block_others(
    stack: LocalStack, prefix: str, fault_report: FaultReport
) -> None:
    sqs, source = stack.aws.client("sqs"), stack.source()
    good = f"{prefix}good/"
    for i in range(10):
        source.put_object(Bucket=stack.source_bucket, Key=f"{good}{i}", Body=b"fine")
    # A key the stand-in target refuses (a 300-byte path segment): its copy always fails.
    doomed = f"poison-{uuid.uuid4().hex[:6]}/" + "x" * 300
    source.put_object(Bucket=stack.source_bucket, Key=doomed, Body=b"never lands")
    stack.invoker.pump()  # type: ignore[union-attr]
    sqs.send_message(
        QueueUrl=stack.aws.queue_url,
        MessageBody="{not json",
        MessageGroupId="poison",
        MessageDeduplicationId=uuid.uuid4().hex,
    )
    before = depth(stack, stack.aws.dlq_url)[0]
    result = drain(stack, RETRY_BACKOFF_BASE_SECONDS="1", DRAIN_IDLE_SECONDS="8")
    assert '"message_invalid"' in result.stderr
    # The key the target refuses goes to the DLQ at once (one receive), with its reason.
    assert [
        (e["key"], e["reason"])
        for e in _events(result.stderr)
        if e["event"] == "reconcile_failed_permanently"
    ] == [(doomed, "unstorable_key")]
    assert depth(stack, stack.aws.dlq_url)[0] - before == 2
    assert depth(stack, stack.aws.queue_url) == (0, 0)
    objects = verify(stack, good)
    assert objects == 10
    fault_report.add(
        "poison messages (bad body, always-failing key)", faults=2, objects=objects, lost=0, dead_lettered=2
    )


def _events(output: str | bytes) -> list[dict[str, Any]]:
    text = output.decode() if isinstance(output, bytes) else output
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_sigterm_requeues_unfinished_work_and_the_next_worker_resumes(
    stack: LocalStack, prefix: str, fault_report: FaultReport
) -> None:
    """A stopped copy keeps its upload and its message comes back as a fresh one (receive count
    1: a scale-in never pushes an object toward the DLQ); the next worker sends only the rest."""
    deadline, mib, part_mib = 3, 64, 5
    total_parts = -(-mib // part_mib)
    with PartCountingProxy(stack.lyve.endpoint_url, part_delay=0.4) as proxy:
        env = {
            "TARGET_ENDPOINT_URL": proxy.endpoint_url,
            "PART_SIZE_MIB": str(part_mib),
            "SHUTDOWN_DEADLINE_SECONDS": str(deadline),
        }
        worker = worker_mid_copy(stack, prefix, mib, env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stopping = time.monotonic()
        worker.send_signal(signal.SIGTERM)
        _, stderr = worker.communicate(timeout=30)
        took = time.monotonic() - stopping
        assert worker.returncode == 0
        assert took <= deadline + 2, took
        first = _events(stderr)
        requeues = [e for e in first if e["event"] == "requeued"]
        assert len(requeues) == 1, stderr.decode()
        [requeued] = requeues
        assert requeued["reason"] == "shutdown"
        assert not [e for e in first if e["event"] in ("handed_back", "reconciled")]
        assert depth(stack, stack.aws.queue_url) == (1, 0)  # visible at once, not after a timeout
        kept = stack.target().list_multipart_uploads(Bucket=stack.target_bucket, Prefix=prefix)["Uploads"]
        assert len(kept) == 1  # kept for the next worker, not aborted
        sent_first, proxy.parts = proxy.parts, 0
        assert 1 <= sent_first < total_parts
        second = _events(drain(stack, **env).stderr)
        sent_second = proxy.parts
    [resumed] = [e for e in second if e["event"] == "upload_resumed"]
    assert resumed["upload_id"] == kept[0]["UploadId"]
    [done] = [e for e in second if e["event"] == "reconciled"]
    # The requeued message, or its copy put back by a receive that got it while stopping.
    returned = [e["new_message_id"] for e in first if e["event"] == "returned_unstarted"]
    assert done["message_id"] in {requeued["new_message_id"], *returned}
    assert done["receive_count"] == 1
    assert done["resumed_bytes"] > 0
    assert sent_second < total_parts  # fewer parts sent than a whole copy needs
    fault_report.add(
        "SIGTERM during a multipart copy, resumed by the next worker",
        faults=1,
        objects=verify(stack, prefix),  # byte for byte, and no upload left
        lost=0,
        exit_seconds=round(took, 2),
        deadline_seconds=deadline,
        parts=total_parts,
        parts_sent_before_stop=sent_first,
        parts_sent_after_resume=sent_second,
    )


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (
            {
                "TARGET_SECRET_ID": "",
                "TARGET_ACCESS_KEY_ID": "LYVELOCALACCESSKEY",
                "TARGET_SECRET_ACCESS_KEY": "wrong-secret-value-987654",
            },
            "access denied",
        ),
        ({"TARGET_BUCKET": "missing-bucket"}, "does not exist"),
        ({"TARGET_ENDPOINT_URL": "http://127.0.0.1:9"}, "unreachable"),
        ({"ALLOW_HTTP_ENDPOINTS": "false"}, "ALLOW_HTTP_ENDPOINTS"),
    ],
    ids=["wrong-credentials", "missing-bucket", "unreachable-endpoint", "plain-http-refused"],
)
def test_bad_target_stops_at_start_and_consumes_nothing(
    stack: LocalStack, prefix: str, fault_report: FaultReport, env: dict[str, str], expected: str
) -> None:
    stack.source().put_object(Bucket=stack.source_bucket, Key=f"{prefix}waiting", Body=b"x")
    stack.invoker.pump()  # type: ignore[union-attr]
    before = depth(stack, stack.aws.queue_url)
    result = stack.run_worker("--drain", env=stack.env(MAX_ATTEMPTS="1", CONNECT_TIMEOUT_SECONDS="1", **env))
    assert result.returncode in (2, 3)
    assert expected in result.stderr
    assert "wrong-secret-value-987654" not in result.stderr
    assert depth(stack, stack.aws.queue_url) == before
    drain(stack)
    fault_report.add(
        f"bad configuration: {expected}",
        faults=1,
        objects=verify(stack, prefix),
        lost=0,
        exit_code=result.returncode,
    )


def test_secrets_never_reach_logs_or_reports(
    stack: LocalStack, prefix: str, tmp_path: Path, fault_report: FaultReport
) -> None:
    secret = stack.lyve.secret_key
    stack.source().put_object(Bucket=stack.source_bucket, Key=f"{prefix}s", Body=b"secret-free")
    stack.invoker.pump()  # type: ignore[union-attr]
    explicit = {
        "TARGET_SECRET_ID": "",
        "TARGET_ACCESS_KEY_ID": stack.lyve.access_key,
        "TARGET_SECRET_ACCESS_KEY": secret,
        "LOG_LEVEL": "DEBUG",
    }
    outputs: list[str] = []
    worker = stack.run_worker("--drain", env=stack.env(DRAIN_IDLE_SECONDS="2", **explicit))
    assert worker.returncode == 0
    outputs += [worker.stdout, worker.stderr]
    report = tmp_path / "report.json"
    migrate = subprocess.run(
        [sys.executable, "-m", "migrate", "--progress", "log", "--check", "--report", str(report)],
        env=stack.env(**explicit),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    outputs += [migrate.stdout, migrate.stderr, report.read_text()]
    failing = stack.run_worker(
        "--drain", env=stack.env(**(explicit | {"TARGET_SECRET_ACCESS_KEY": "bad-" + secret}))
    )
    assert failing.returncode == 3
    outputs += [failing.stdout, failing.stderr]
    assert any(len(o) > 1000 for o in outputs)  # DEBUG output really was produced and searched
    for output in outputs:
        assert secret not in output
    fault_report.add(
        "known secrets vs every log line and report",
        faults=0,
        objects=verify(stack, prefix),
        lost=0,
        outputs_searched=len(outputs),
    )
