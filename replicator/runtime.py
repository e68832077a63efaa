"""Start-up shared by the worker and migrate: settings, logging, clients, preflight checks."""

from __future__ import annotations

import ctypes
import gc
import os
import sys
from dataclasses import dataclass

from replicator.clients import Clients, build_clients
from replicator.errors import StartupError
from replicator.logs import configure_logging, get_logger
from replicator.preflight import check_endpoints
from replicator.settings import ConfigError, Settings, load_settings
from replicator.target_builder import build_targets
from replicator.targets import Target
from replicator.transfer import TransferEngine

EXIT_CONFIG = 2
EXIT_STARTUP = 3

log = get_logger("startup")


@dataclass
class Runtime:
    settings: Settings
    clients: Clients
    # Reads the source (and, with one S3 target, copies to it).
    engine: TransferEngine
    targets: dict[str, Target]

    def close(self) -> None:
        self.engine.close()
        for target in self.targets.values():
            target.close()


def start(reverse: bool = False, needs_queue: bool = False) -> Runtime | int:
    """Everything a command needs, or an exit code after one clear line on stderr."""
    limit_malloc_arenas()
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
        targets, reader = build_targets(settings, clients)
        check_endpoints(clients.source, targets)
    except StartupError as exc:
        log.error("startup_failed", error=str(exc))
        return EXIT_STARTUP
    runtime = Runtime(settings, clients, reader, targets)
    quiet_garbage_collector()
    return runtime


MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # glibc's mallopt parameter number


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas, before the threads start; True if it was done.

    glibc gives threads that allocate arenas of their own (up to 8 per core) and keeps freed
    memory in each. Python's objects come from its own allocator, but page bodies and the large
    buffers of reading them go to malloc: a listing of several ranges, each with its page
    fetchers, held freed pages in a dozen arenas (peak RSS of a 100,000-key --check: 99 MiB,
    82 with two arenas, 75 for 10,000 keys). A MALLOC_ARENA_MAX in the environment is left to
    decide; other C libraries have no such call and are left alone.
    """
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_ARENA_MAX, arenas))


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
