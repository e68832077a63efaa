"""Start-up shared by the worker and migrate: settings, logging, clients, preflight checks."""

from __future__ import annotations

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


def start(reverse: bool = False) -> Runtime | int:
    """Everything a command needs, or an exit code after one clear line on stderr."""
    try:
        settings = load_settings()
        if reverse:
            settings = settings.swapped()
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
    return Runtime(settings, clients, TransferEngine(clients.source, clients.target, settings))
