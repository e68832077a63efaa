"""Several targets at once, over HTTP: moto as AWS, SeaweedFS as Lyve Cloud ("lyve"), Azurite as
Azure Blob Storage ("azure", reached through a proxy that can refuse its writes), the real
handler, worker and migrate processes."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from local_stack.compare import Content, bucket_contents, container_contents, differences
from local_stack.fault_proxy import FaultPlan, FaultProxy
from local_stack.stack import LocalStack
from replicator.messages import ReplicationMessage

pytestmark = pytest.mark.integration
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ENDPOINT_URL", "QUEUE_URL", "TARGETS"):
            mp.delenv(name, raising=False)
        local = LocalStack(with_azure=True).start(invoker_thread=False)
        try:
            yield local
        finally:
            local.stop()


@pytest.fixture
def proxy(stack: LocalStack) -> Iterator[FaultProxy]:
    """Azurite behind a proxy whose plan the test changes (refuse writes, then recover)."""
    assert stack.azure is not None
    with FaultProxy(stack.azure.blob_endpoint.rsplit("/", 1)[0], FaultPlan()) as running:
        yield running


def env_through(stack: LocalStack, proxy: FaultProxy, **extra: str) -> dict[str, str]:
    """The stack's environment with the Azure target reached through the proxy."""
    assert stack.azure is not None
    targets: dict[str, Any] = stack.targets()
    account = stack.azure.account_name
    targets["azure"] = {
        "type": "azure",
        "container": stack.azure_container,
        "connection_string": stack.azure.connection_string.replace(
            stack.azure.blob_endpoint, f"{proxy.endpoint_url}/{account}"
        ),
    }
    return stack.env(**({"TARGETS": json.dumps(targets), "DRAIN_IDLE_SECONDS": "2"} | extra))


def replicate(stack: LocalStack, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    stack.invoker.pump()  # type: ignore[union-attr]
    result = stack.run_worker("--drain", env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def queue_empty(stack: LocalStack) -> bool:
    attributes = stack.aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.aws.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"])
        + int(attributes["ApproximateNumberOfMessagesNotVisible"])
        == 0
    )


def lyve(stack: LocalStack, prefix: str) -> dict[str, Content]:
    return bucket_contents(stack.target(), stack.target_bucket, prefix)


def azure(stack: LocalStack, prefix: str) -> dict[str, Content]:
    assert stack.azure is not None
    return container_contents(stack.azure.client(), stack.azure_container, prefix)


def source(stack: LocalStack, prefix: str) -> dict[str, Content]:
    return bucket_contents(stack.source(), stack.source_bucket, prefix)


def dead_letters(stack: LocalStack) -> list[dict[str, Any]]:
    sqs = stack.aws.client("sqs")
    found = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=stack.aws.dlq_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not batch:
            return found
        found += batch


def put_objects(stack: LocalStack, prefix: str) -> dict[str, bytes]:
    objects = {
        f"{prefix}small.txt": b"hello",
        f"{prefix}red flower.jpg": os.urandom(70_000),
        f"{prefix}caf\u00e9/\U0001f600 a+b%20.bin": b"odd key",
        f"{prefix}empty": b"",
        f"{prefix}big.bin": os.urandom(9 * MIB + 3),  # above the multipart threshold
    }
    for key, body in objects.items():
        stack.source().upload_fileobj(
            io.BytesIO(body), stack.source_bucket, key, ExtraArgs={"Metadata": {"my-key": "v"}}
        )
    return objects


def test_a_target_refusing_writes_delays_nobody_lands_in_the_dlq_by_name_and_converges_after(
    stack: LocalStack, proxy: FaultProxy, prefix: str
) -> None:
    proxy.plan.refuse_methods = frozenset({"PUT"})
    put_objects(stack, prefix)
    replicate(stack, env_through(stack, proxy))

    # The healthy target has everything; the refusing one has nothing, and every key is in the
    # DLQ for it alone, with the reason.
    assert differences(source(stack, prefix), lyve(stack, prefix)) == []
    assert azure(stack, prefix) == {}
    letters = dead_letters(stack)
    keys = sorted(ReplicationMessage.from_body(m["Body"]).key for m in letters)
    assert keys == sorted(source(stack, prefix))
    for letter in letters:
        assert ReplicationMessage.from_body(letter["Body"]).targets == ("azure",)
        assert letter["MessageAttributes"]["FailureTarget"]["StringValue"] == "azure"

    # Writes allowed again: the dead letters go back (make redrive), and only "azure" converges.
    for letter in letters:  # let them be received by redrive
        stack.aws.client("sqs").change_message_visibility(
            QueueUrl=stack.aws.dlq_url, ReceiptHandle=letter["ReceiptHandle"], VisibilityTimeout=0
        )
    proxy.plan.refuse_methods = frozenset()
    env = env_through(stack, proxy)
    redrive = subprocess.run(
        [sys.executable, "-m", "worker", "redrive"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert redrive.returncode == 0, redrive.stderr[-2000:]
    writes_before = proxy.plan.forwarded
    result = replicate(stack, env)
    assert proxy.plan.forwarded > writes_before
    assert differences(source(stack, prefix), azure(stack, prefix)) == []
    assert differences(source(stack, prefix), lyve(stack, prefix)) == []
    # The redriven messages named "azure" only: nothing was copied to "lyve" again.
    copies = [json.loads(line) for line in result.stderr.splitlines() if '"reconciled"' in line]
    assert copies and all(c.get("target", "azure") == "azure" for c in copies)


def test_a_target_failing_while_the_other_succeeds_is_retried_alone_and_deletes_reach_both(
    stack: LocalStack, proxy: FaultProxy, prefix: str
) -> None:
    objects = put_objects(stack, prefix)
    replicate(stack, env_through(stack, proxy))
    assert differences(source(stack, prefix), azure(stack, prefix)) == []

    # One key deleted, one rewritten, while "azure" answers 503 to every write.
    stack.source().delete_object(Bucket=stack.source_bucket, Key=f"{prefix}small.txt")
    stack.source().put_object(Bucket=stack.source_bucket, Key=f"{prefix}empty", Body=b"now with bytes")
    proxy.plan.slow_down = 1.0
    stack.invoker.pump()  # type: ignore[union-attr]
    failing = stack.run_worker("--drain", env=env_through(stack, proxy, DRAIN_IDLE_SECONDS="1"), timeout=120)
    assert differences(source(stack, prefix), lyve(stack, prefix)) == [], failing.stderr[-4000:]
    assert f"{prefix}small.txt" in azure(stack, prefix)  # not deleted there yet
    assert '"handed_on"' in failing.stderr or '"reconcile_failed"' in failing.stderr

    proxy.plan.slow_down = 0.0
    # The messages handed on for "azure" may still be backing off: drain until none is left.
    deadline = time.monotonic() + 180
    while True:
        replicate(stack, env_through(stack, proxy))
        if queue_empty(stack) or time.monotonic() > deadline:
            break
    assert differences(source(stack, prefix), azure(stack, prefix)) == []
    assert f"{prefix}small.txt" not in azure(stack, prefix)
    assert len(objects) - 1 == len(azure(stack, prefix))


def test_migrate_and_check_per_target(stack: LocalStack, proxy: FaultProxy, prefix: str) -> None:
    put_objects(stack, prefix)
    env = env_through(stack, proxy)

    def migrate(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "migrate", "--prefix", prefix, "--progress", "none", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )

    assert migrate("--check", "--target", "azure").returncode == 1  # nothing there yet
    copied = migrate("--target", "azure")
    assert copied.returncode == 0, copied.stderr[-3000:]
    assert differences(source(stack, prefix), azure(stack, prefix)) == []
    assert lyve(stack, prefix) == {}  # only the target named
    assert migrate("--check", "--target", "azure").returncode == 0
    assert migrate("--check").returncode == 1  # "lyve" still differs
    # One S3 target named: the S3 path (listing splits, child processes for small objects).
    assert migrate("--check", "--target", "lyve").returncode == 1
    first = sorted(source(stack, prefix))[0]
    lyve_only = migrate("--target", "lyve", "--include", first)
    assert lyve_only.returncode == 0, lyve_only.stderr[-3000:]
    assert list(lyve(stack, prefix)) == [first]
    assert migrate().returncode == 0
    assert migrate("--check").returncode == 0
    assert differences(source(stack, prefix), lyve(stack, prefix)) == []
    # A key only on one target: a difference for --check, deleted with --delete.
    stack.target().put_object(Bucket=stack.target_bucket, Key=f"{prefix}stray", Body=b"x")
    stray = migrate("--check")
    assert stray.returncode == 1
    assert "lyve: extra on target" in stray.stderr
    assert migrate("--delete").returncode == 0
    assert f"{prefix}stray" not in lyve(stack, prefix)
    unknown = migrate("--target", "nowhere")
    assert unknown.returncode == 2 and "nowhere" in unknown.stderr


def test_migrating_to_both_targets_reads_each_small_object_once(
    stack: LocalStack, proxy: FaultProxy, prefix: str
) -> None:
    count = 12
    for i in range(count):
        stack.source().put_object(
            Bucket=stack.source_bucket, Key=f"{prefix}o{i:02d}", Body=os.urandom(5000 + i)
        )
    aws = stack.aws.endpoint_url
    with FaultProxy(aws, FaultPlan()) as source_proxy:
        env = env_through(stack, proxy, SOURCE_ENDPOINT_URL=source_proxy.endpoint_url)
        result = subprocess.run(
            [sys.executable, "-m", "migrate", "--prefix", prefix, "--progress", "none"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        requests = source_proxy.plan.forwarded
    assert differences(source(stack, prefix), lyve(stack, prefix)) == []
    assert differences(source(stack, prefix), azure(stack, prefix)) == []
    # One GET per object for both targets, plus the bucket check and one listing page.
    assert requests == count + 2
