"""`python -m worker [--drain]`: run the queue consumer until SIGTERM (or until drained)."""

from __future__ import annotations

import argparse
import signal

from replicator.errors import StartupError
from replicator.logs import get_logger
from replicator.preflight import check_queue
from replicator.reconcile import Reconciler
from replicator.runtime import EXIT_STARTUP, start
from worker.consumer import QueueConsumer

log = get_logger("worker")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument(
        "--drain",
        action="store_true",
        help="exit 0 once the queue has stayed empty for DRAIN_IDLE_SECONDS (tests, batch runs)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
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
    consumer = QueueConsumer(settings, sqs, queue_url, Reconciler(runtime.engine, settings.max_attempts))
    signal.signal(signal.SIGTERM, consumer.request_stop)
    signal.signal(signal.SIGINT, consumer.request_stop)
    try:
        return consumer.run(drain=args.drain)
    finally:
        runtime.engine.close()
