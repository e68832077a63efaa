"""One structlog processor chain for our logs and for stdlib ones (botocore, urllib3).

JSON lines off a terminal (ECS, CloudWatch), coloured console output on one. Known secret values
are registered at start and scrubbed from every line as a last line of defence: the settings keep
them in SecretStr, and nothing logs a client's credentials on purpose. Tracebacks are rendered as
plain text before that scrub, in both formats, and never with local variables (the request
signer's frames hold credentials).

An exception that ends a thread is logged the same way (`thread_crashed`).

Records of the `DATA_LOGGERS` (the EMF metrics) are data, not diagnostics: they are written
whatever LOG_LEVEL says.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Iterable
from typing import Any

# structlog imports rich's traceback renderer and pretty-printer when rich is installed: about
# 0.08 s, a fifth of a command's start. Tracebacks here are plain text without locals (below), so
# structlog loads with rich hidden; rich itself stays importable (the progress bar, `make status`).
_HIDE_RICH = "rich" not in sys.modules
if _HIDE_RICH:
    sys.modules["rich"] = None  # type: ignore[assignment]
try:
    import structlog
    from structlog.typing import EventDict, WrappedLogger
finally:
    if _HIDE_RICH:
        del sys.modules["rich"]

REDACTED = "**********"
DATA_LOGGERS = ("metrics",)
_secrets: set[str] = set()


def register_secrets(values: Iterable[str | None]) -> None:
    """Values that must never appear in a log line. Credentials are long (an AWS secret key has 40
    characters); a short value would redact ordinary words ('secret' in test data, say)."""
    for value in values:
        if value and len(value) >= 16:
            _secrets.add(value)


def _scrub(value: Any) -> Any:
    if isinstance(value, str):
        for secret in _secrets:
            if secret in value:
                value = value.replace(secret, REDACTED)
        return value
    if isinstance(value, dict):
        return {k: _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_scrub(v) for v in value)
    return value


def scrub(text: str) -> str:
    """`text` with every registered secret replaced (for text that leaves by another way than a
    log line, e.g. a dead-letter message attribute)."""
    result: str = _scrub(text)
    return result


def redact_secrets(_: WrappedLogger, __: str, event_dict: EventDict) -> EventDict:
    if not _secrets:
        return event_dict
    return {k: _scrub(v) for k, v in event_dict.items()}


def configure_logging(level: str = "INFO", fmt: str = "auto", stream: Any = None) -> None:
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Tracebacks as plain text without locals, in both formats, so that redact_secrets sees
        # them (rich's console tracebacks print every frame's locals by default, after the scrub).
        structlog.processors.format_exc_info,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if use_json
        else structlog.dev.ConsoleRenderer(
            colors=stream.isatty(), exception_formatter=structlog.dev.plain_traceback
        )
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_secrets,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # botocore at DEBUG prints request headers, the Azure SDK every request at INFO: keep the
    # libraries at WARNING unless asked.
    for noisy in ("botocore", "boto3", "urllib3", "s3transfer", "werkzeug", "azure"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    for data in DATA_LOGGERS:
        logging.getLogger(data).setLevel(logging.INFO)
    threading.excepthook = _log_thread_crash


def _log_thread_crash(args: threading.ExceptHookArgs) -> None:
    """An exception that ends a thread goes through the same chain (scrubbed, no locals), not
    straight to stderr as Python's default hook would print it."""
    if args.exc_type is SystemExit:
        return
    get_logger("thread").error(
        "thread_crashed",
        thread=args.thread.name if args.thread else None,
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
    )


def bind_context(**values: Any) -> None:
    """Fields added to every log line of this thread (or task) until unbind_context."""
    structlog.contextvars.bind_contextvars(**values)


def unbind_context(*names: str) -> None:
    structlog.contextvars.unbind_contextvars(*names)


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    return structlog.stdlib.get_logger(name)
