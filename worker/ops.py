"""Operations: `python -m worker status` and `python -m worker redrive`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from botocore.exceptions import BotoCoreError, ClientError

from replicator.errors import StartupError, describe
from replicator.logs import get_logger
from replicator.metrics import DIMENSION, SOURCE_BUCKET_MISSING, TARGET_DIMENSION

if TYPE_CHECKING:
    from rich.console import Console

log = get_logger("ops")

# Message attributes of a message the worker sent to the DLQ itself (a permanent failure): why,
# in a short stable label and in words, and the id of the queue message it stands for.
FAILURE_REASON_ATTRIBUTE = "FailureReason"
FAILURE_DETAIL_ATTRIBUTE = "FailureDetail"
ORIGINAL_MESSAGE_ATTRIBUTE = "OriginalMessageId"
# The target (or targets, comma-separated) a dead-lettered message failed for; absent: all of them.
FAILURE_TARGET_ATTRIBUTE = "FailureTarget"


def dead_letter_queue_url(sqs: Any, queue_url: str, configured: str | None) -> str:
    """DLQ_URL if set, else the dead-letter queue named in the queue's redrive policy."""
    if configured:
        return configured
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])["Attributes"]
    policy = attributes.get("RedrivePolicy")
    if not policy:
        raise StartupError(f"{queue_url} has no redrive policy; set DLQ_URL")
    arn = json.loads(policy)["deadLetterTargetArn"]
    _, _, _, _, account, name = arn.split(":", 5)
    return str(sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def _queue_name(url: str) -> str:
    return url.rstrip("/").rsplit("/", 1)[-1]


# -- status --------------------------------------------------------------------------------------


@dataclass
class Status:
    queue: str
    visible: int
    in_flight: int
    delayed: int
    dead_letter_queue: str
    dead_letter_visible: int
    dead_letter_in_flight: int
    oldest_message_age_seconds: float | None
    running_tasks: int | None
    desired_tasks: int | None
    latency_p50_seconds: float | None
    latency_p99_seconds: float | None
    # Messages backed off in the last 15 minutes because the source bucket is missing.
    source_bucket_missing: int | None
    checked_at: str
    # Per target (when the deployment names several): failures in the last 15 minutes and the
    # replication latency p50 / p99, from the worker's metrics with the Target dimension.
    targets: dict[str, TargetStatus] = field(default_factory=dict)


@dataclass
class TargetStatus:
    failures: int | None
    latency_p50_seconds: float | None
    latency_p99_seconds: float | None


def _counts(sqs: Any, url: str) -> tuple[int, int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return (
        int(attributes.get("ApproximateNumberOfMessages", 0)),
        int(attributes.get("ApproximateNumberOfMessagesNotVisible", 0)),
        int(attributes.get("ApproximateNumberOfMessagesDelayed", 0)),
    )


def _latest_statistic(
    cloudwatch: Any,
    namespace: str,
    metric: str,
    dimensions: list[dict[str, str]],
    minutes: int,
    period: int = 60,
    **statistic: Any,
) -> dict[str, Any] | None:
    """The most recent datapoint of a metric, or None when there is none (or no CloudWatch)."""
    now = datetime.now(UTC)
    try:
        points = cloudwatch.get_metric_statistics(
            Namespace=namespace,
            MetricName=metric,
            Dimensions=dimensions,
            StartTime=now - timedelta(minutes=minutes),
            EndTime=now + timedelta(minutes=1),  # exclusive: the current second's data too
            Period=period,
            **statistic,
        ).get("Datapoints", [])
    except (ClientError, BotoCoreError) as exc:
        log.debug("metric_unavailable", metric=metric, error=describe(exc))
        return None
    return max(points, key=lambda p: p["Timestamp"]) if points else None


def _target_status(cloudwatch: Any, namespace: str, queue: str, target: str) -> TargetStatus:
    dimensions = [{"Name": DIMENSION, "Value": queue}, {"Name": TARGET_DIMENSION, "Value": target}]
    failures = _latest_statistic(
        cloudwatch, namespace, "Failures", dimensions, 15, period=15 * 60, Statistics=["Sum"]
    )
    latency = _latest_statistic(
        cloudwatch, namespace, "ReplicationLatency", dimensions, 15, ExtendedStatistics=["p50", "p99"]
    )
    extended = (latency or {}).get("ExtendedStatistics", {})
    return TargetStatus(
        failures=int(failures["Sum"]) if failures else None,
        latency_p50_seconds=extended.get("p50"),
        latency_p99_seconds=extended.get("p99"),
    )


def _targets_in_metrics(cloudwatch: Any, namespace: str, queue: str) -> list[str]:
    """The targets the workers of this queue publish figures for (the Target dimension)."""
    try:
        pages = cloudwatch.get_paginator("list_metrics").paginate(
            Namespace=namespace,
            MetricName="Failures",
            Dimensions=[{"Name": DIMENSION, "Value": queue}, {"Name": TARGET_DIMENSION}],
        )
        names = {
            d["Value"]
            for page in pages
            for metric in page.get("Metrics", [])
            for d in metric.get("Dimensions", [])
            if d.get("Name") == TARGET_DIMENSION
        }
    except (ClientError, BotoCoreError) as exc:
        log.debug("metrics_unavailable", error=describe(exc))
        return []
    return sorted(names)


def gather_status(
    sqs: Any,
    cloudwatch: Any,
    ecs: Any,
    queue_url: str,
    dlq_url: str,
    cluster: str | None,
    service: str | None,
    namespace: str,
    targets: Sequence[str] = (),
) -> Status:
    visible, in_flight, delayed = _counts(sqs, queue_url)
    dlq_visible, dlq_in_flight, _ = _counts(sqs, dlq_url)
    queue = _queue_name(queue_url)
    oldest = _latest_statistic(
        cloudwatch,
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        [{"Name": "QueueName", "Value": queue}],
        10,
        Statistics=["Maximum"],
    )
    latency = _latest_statistic(
        cloudwatch,
        namespace,
        "ReplicationLatency",
        [{"Name": DIMENSION, "Value": queue}],
        15,
        ExtendedStatistics=["p50", "p99"],
    )
    missing = _latest_statistic(
        cloudwatch,
        namespace,
        SOURCE_BUCKET_MISSING,
        [{"Name": DIMENSION, "Value": queue}],
        15,
        period=15 * 60,
        Statistics=["Sum"],
    )
    running = desired = None
    if cluster and service:
        try:
            found = ecs.describe_services(cluster=cluster, services=[service]).get("services", [])
            if found:
                running, desired = found[0]["runningCount"], found[0]["desiredCount"]
        except (ClientError, BotoCoreError) as exc:
            log.warning("ecs_unavailable", error=describe(exc))
    extended = (latency or {}).get("ExtendedStatistics", {})
    return Status(
        queue=queue,
        visible=visible,
        in_flight=in_flight,
        delayed=delayed,
        dead_letter_queue=_queue_name(dlq_url),
        dead_letter_visible=dlq_visible,
        dead_letter_in_flight=dlq_in_flight,
        oldest_message_age_seconds=oldest["Maximum"] if oldest else None,
        running_tasks=running,
        desired_tasks=desired,
        latency_p50_seconds=extended.get("p50"),
        latency_p99_seconds=extended.get("p99"),
        source_bucket_missing=int(missing["Sum"]) if missing else None,
        checked_at=datetime.now(UTC).isoformat(timespec="seconds"),
        targets={
            name: _target_status(cloudwatch, namespace, queue, name)
            for name in (targets or _targets_in_metrics(cloudwatch, namespace, queue))
        },
    )


def print_status(status: Status, as_json: bool, console: Console | None = None) -> None:
    if as_json:
        print(json.dumps(asdict(status)))
        return
    # rich only here: the worker imports this module, and its start need not load rich.
    from rich.console import Console  # noqa: PLC0415
    from rich.table import Table  # noqa: PLC0415

    console = console or Console()

    def show(value: Any, unit: str = "") -> str:
        return (
            "n/a" if value is None else f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"
        )

    table = Table(title=f"Replication status at {status.checked_at}")
    table.add_column("")
    table.add_column("value", justify="right")
    rows = [
        (f"queue {status.queue}: waiting", show(status.visible)),
        ("in flight (being copied)", show(status.in_flight)),
        ("delayed", show(status.delayed)),
        ("age of the oldest message", show(status.oldest_message_age_seconds, " s")),
        (f"dead-letter queue {status.dead_letter_queue}", show(status.dead_letter_visible)),
        ("worker tasks running / desired", f"{show(status.running_tasks)} / {show(status.desired_tasks)}"),
        (
            "replication latency p50 / p99",
            f"{show(status.latency_p50_seconds, ' s')} / {show(status.latency_p99_seconds, ' s')}",
        ),
        ("source bucket missing, last 15 min", show(status.source_bucket_missing)),
    ]
    for name, target in status.targets.items():
        rows += [
            (f"target {name}: failures, last 15 min", show(target.failures)),
            (
                f"target {name}: latency p50 / p99",
                f"{show(target.latency_p50_seconds, ' s')} / {show(target.latency_p99_seconds, ' s')}",
            ),
        ]
    for name, value in rows:
        table.add_row(name, value)
    console.print(table)
    if status.source_bucket_missing:
        console.print(
            f"[red]{status.source_bucket_missing} message(s) in the last 15 minutes found the source bucket "
            "missing:[/] check SOURCE_BUCKET, SOURCE_REGION and SOURCE_ENDPOINT_URL (worker log: "
            "source_bucket_missing); those messages back off and nothing is deleted."
        )
    if status.dead_letter_visible:
        console.print(
            f"[yellow]{status.dead_letter_visible} message(s) in the dead-letter queue:[/] "
            "see the worker logs (reconcile_failed, reconcile_failed_permanently) or the messages' "
            f"{FAILURE_REASON_ATTRIBUTE} and {FAILURE_TARGET_ATTRIBUTE} attributes (a message naming "
            "targets failed for those only), fix the cause, then `make redrive`."
        )


# -- redrive -------------------------------------------------------------------------------------


@dataclass
class RedriveResult:
    moved: int = 0
    failed: int = 0
    would_move: int = 0


def _release(sqs: Any, url: str, messages: list[dict[str, Any]]) -> None:
    """Make received messages visible again at once (they stay where they are)."""
    sqs.change_message_visibility_batch(
        QueueUrl=url,
        Entries=[
            {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
            for i, m in enumerate(messages)
        ],
    )


def _original_id(message: dict[str, Any]) -> str | None:
    attribute = message.get("MessageAttributes", {}).get(ORIGINAL_MESSAGE_ATTRIBUTE, {})
    return attribute.get("StringValue")  # type: ignore[no-any-return]


def redrive(sqs: Any, dlq_url: str, queue_url: str, dry_run: bool = False) -> RedriveResult:
    """Move every message from the DLQ back to the queue, keeping its group (FIFO order).

    Each message is sent first and deleted from the DLQ only after the send succeeded, so none is
    dropped; a crash between the two leaves a duplicate, which the worker's reconcile absorbs.
    """
    result = RedriveResult()
    if dry_run:
        visible, in_flight, _ = _counts(sqs, dlq_url)
        result.would_move = visible + in_flight
        return result
    sent_ids: set[str] = set()
    while True:
        received = sqs.receive_message(
            QueueUrl=dlq_url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=120,
            MessageSystemAttributeNames=["MessageGroupId"],
            MessageAttributeNames=[ORIGINAL_MESSAGE_ATTRIBUTE],
        ).get("Messages", [])
        if not received:
            return result
        if any(m["MessageId"] in sent_ids or _original_id(m) in sent_ids for m in received):
            # A message moved by this run failed again already (moved by SQS after its receives,
            # or sent by a worker at once): stop instead of cycling.
            _release(sqs, dlq_url, received)
            return result
        entries = [
            {
                "Id": str(i),
                "MessageBody": m["Body"],
                "MessageGroupId": m.get("Attributes", {}).get("MessageGroupId", m["MessageId"]),
                "MessageDeduplicationId": hashlib.sha256(f"redrive\0{m['MessageId']}".encode()).hexdigest(),
            }
            for i, m in enumerate(received)
        ]
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        sent = {s["Id"]: s["MessageId"] for s in response.get("Successful", [])}
        sent_ids.update(sent.values())
        moved = [m for i, m in enumerate(received) if str(i) in sent]
        kept = [m for i, m in enumerate(received) if str(i) not in sent]
        if moved:
            sqs.delete_message_batch(
                QueueUrl=dlq_url,
                Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(moved)],
            )
            result.moved += len(moved)
        if kept:
            result.failed += len(kept)
            for failure in response.get("Failed", []):
                log.error("redrive_send_failed", code=failure.get("Code"), message=failure.get("Message"))
            _release(sqs, dlq_url, kept)
            return result
