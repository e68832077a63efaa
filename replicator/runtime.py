"""Start-up shared by the worker and migrate: settings, logging, clients, preflight checks."""

from __future__ import annotations

import gc
import sys
from dataclasses import dataclass

from replicator.clients import Clients, build_clients
from replicator.errors import StartupError
from replicator.logs import configure_logging, get_logger
from replicator.preflight import check_endpoints
from replicator.settings import ConfigError, Settings, load_settings
from replicator.transfer import TransferEngine

EXIT_CONFIG = 2
EXIT_STARTUP = 3

log = get_logger("startup")


@dataclass
class Runtime:
    settings: Settings
    clients: Clients
    engine: TransferEngine


def start(reverse: bool = False, needs_queue: bool = False) -> Runtime | int:
    """Everything a command needs, or an exit code after one clear line on stderr."""
    try:
        settings = load_settings()
        if reverse:
            settings = settings.swapped()
        if needs_queue:
            settings.require_queue()
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format)
    try:
        clients = build_clients(settings)
        check_endpoints(clients.source, clients.target)
    except StartupError as exc:
        log.error("startup_failed", error=str(exc))
        return EXIT_STARTUP
    runtime = Runtime(settings, clients, TransferEngine(clients.source, clients.target, settings))
    quiet_garbage_collector()
    return runtime


def quiet_garbage_collector() -> None:
    """Keep the cyclic GC off the hot path.

    botocore's loaded service models are hundreds of thousands of long-lived objects; every full
    collection walks them all, and the copy path allocates enough to trigger collections often
    (profiling showed a quarter of a large copy's CPU in the collector). Freezing what exists
    after start-up and collecting less often removes that cost; reference counting still frees
    the part buffers at once.
    """
    gc.freeze()
    gc.set_threshold(50_000, 20, 100)
    gc.enable()  # the entry points turn it off while importing
