"""`python -m worker [run] [--drain]`: run the queue consumer until SIGTERM (or until drained).
`python -m worker status [--json]`: queue, DLQ, tasks and latency at a glance.
`python -m worker redrive [--dry-run]`: move dead-lettered messages back to the queue.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import Any

import boto3

from replicator.errors import StartupError
from replicator.logs import configure_logging, get_logger
from replicator.preflight import check_queue
from replicator.reconcile import Reconciler
from replicator.runtime import EXIT_CONFIG, EXIT_STARTUP, Runtime, quiet_garbage_collector, start
from replicator.settings import ConfigError, load_ops_settings
from worker.consumer import QueueConsumer
from worker.ops import dead_letter_queue_url, gather_status, print_status, redrive
from worker.policies import LeasePolicy

log = get_logger("worker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m worker", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", choices=["run", "status", "redrive"], default="run")
    parser.add_argument(
        "--drain",
        action="store_true",
        help="run: exit 0 once the queue has stayed empty for DRAIN_IDLE_SECONDS (tests, batch runs)",
    )
    parser.add_argument("--json", action="store_true", help="status: one JSON object instead of a table")
    parser.add_argument("--dry-run", action="store_true", help="redrive: only count what would move")
    return parser


def build_consumer(runtime: Runtime, sqs: Any, queue_url: str, lease_sqs: Any = None) -> QueueConsumer:
    """The consumer, its reconciler restarting an object as often as the settings allow
    (SOURCE_CHANGED_RESTARTS, INTEGRITY_RESTARTS)."""
    return QueueConsumer(
        runtime.settings,
        sqs,
        queue_url,
        Reconciler(runtime.engine, runtime.settings, runtime.targets),
        lease_sqs=lease_sqs,
    )


def run(drain: bool) -> int:
    runtime = start(needs_queue=True)
    if isinstance(runtime, int):
        return runtime
    settings, clients = runtime.settings, runtime.clients
    try:
        queue_url = settings.require_queue()
        sqs = clients.sqs(settings)
        check_queue(sqs, queue_url)
    except StartupError as exc:
        log.error("startup_failed", error=str(exc))
        return EXIT_STARTUP
    lease_sqs = clients.lease_sqs(settings, LeasePolicy.from_settings(settings).call_timeout)
    consumer = build_consumer(runtime, sqs, queue_url, lease_sqs)
    signal.signal(signal.SIGTERM, consumer.request_stop)
    signal.signal(signal.SIGINT, consumer.request_stop)
    try:
        return consumer.run(drain=drain)
    finally:
        consumer.reconciler.close()
        runtime.close()


def operate(command: str, as_json: bool, dry_run: bool) -> int:
    try:
        settings = load_ops_settings()
        queue_url = settings.require_queue()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format)
    session = boto3.session.Session()
    sqs = session.client("sqs")
    quiet_garbage_collector()
    try:
        check_queue(sqs, queue_url)
        dlq_url = dead_letter_queue_url(sqs, queue_url, settings.dlq_url)
    except StartupError as exc:
        log.error("startup_failed", error=str(exc))
        return EXIT_STARTUP
    if command == "status":
        status = gather_status(
            sqs,
            session.client("cloudwatch"),
            session.client("ecs"),
            queue_url,
            dlq_url,
            settings.ecs_cluster,
            settings.ecs_service,
            settings.metrics_namespace,
            _target_names(),
        )
        print_status(status, as_json)
        return 0
    result = redrive(sqs, dlq_url, queue_url, dry_run=dry_run)
    if dry_run:
        print(f"would move {result.would_move} message(s) from {dlq_url} to {queue_url}")
        return 0
    print(f"moved {result.moved} message(s) back to {queue_url}; {result.failed} could not be sent")
    return 1 if result.failed else 0


def _target_names() -> list[str]:
    """The names in TARGETS, when set where `status` runs (otherwise the targets the worker's
    metrics name are found in CloudWatch)."""
    try:
        targets = json.loads(os.environ.get("TARGETS") or "{}")
    except json.JSONDecodeError:
        return []
    return sorted(targets) if isinstance(targets, dict) else []


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "run":
        return run(args.drain)
    return operate(args.command, args.json, args.dry_run)
