from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from replicator.logs import REDACTED, configure_logging, get_logger, register_secrets


def test_json_lines_off_a_terminal_and_secrets_scrubbed() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "auto", stream=stream)
    register_secrets(["s3cr3t-value-123"])
    get_logger("t").info("hello", detail="token=s3cr3t-value-123", nested={"k": ["s3cr3t-value-123"]})
    logging.getLogger("botocore.x").warning("header Authorization s3cr3t-value-123")
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["event"] == "hello"
    assert lines[0]["detail"] == f"token={REDACTED}"
    assert lines[0]["nested"] == {"k": [REDACTED]}
    assert "s3cr3t-value-123" not in stream.getvalue()
    assert lines[1]["logger"] == "botocore.x"


def test_the_libraries_request_chatter_stays_out_of_info_logs() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    # The Azure SDK logs every request and response at INFO (headers included).
    logging.getLogger("azure.core.pipeline.policies.http_logging_policy").info("Request URL: ...")
    logging.getLogger("botocore.endpoint").info("Sending http request")
    get_logger("t").info("ours")
    assert [json.loads(line)["event"] for line in stream.getvalue().splitlines()] == ["ours"]


def _fail_with_a_secret_in_a_local() -> None:
    signing_key = "local-secret-4f9a2c7e"  # noqa: F841 (what a signer's frame holds)
    raise RuntimeError("request could not be signed")


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_tracebacks_do_not_show_local_variables(fmt: str) -> None:
    stream = io.StringIO()
    configure_logging("INFO", fmt, stream=stream)
    try:
        _fail_with_a_secret_in_a_local()
    except RuntimeError:
        get_logger("t").exception("copy_crashed")
    output = stream.getvalue()
    assert "copy_crashed" in output
    assert "RuntimeError" in output and "request could not be signed" in output  # the traceback is there
    assert "_fail_with_a_secret_in_a_local" in output
    assert "local-secret-4f9a2c7e" not in output


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_registered_secrets_are_scrubbed_from_tracebacks(fmt: str) -> None:
    stream = io.StringIO()
    configure_logging("INFO", fmt, stream=stream)
    register_secrets(["trace-secret-8d1e0b"])
    try:
        raise ValueError("bad credential trace-secret-8d1e0b")
    except ValueError:
        get_logger("t").exception("failed")
        logging.getLogger("botocore.y").exception("stdlib failure")
    output = stream.getvalue()
    assert output.count("ValueError") >= 2
    assert "trace-secret-8d1e0b" not in output
    assert REDACTED in output


@pytest.mark.parametrize("fmt", ["console", "json"])
def test_an_exception_that_ends_a_thread_is_logged_scrubbed_and_without_locals(fmt: str) -> None:
    stream = io.StringIO()
    configure_logging("INFO", fmt, stream=stream)
    register_secrets(["thread-secret-3c9d1f"])

    def crash() -> None:
        _fail_with_a_secret_in_a_local()

    def crash_with_secret() -> None:
        raise ValueError("renewal failed with thread-secret-3c9d1f")

    for target in (crash, crash_with_secret):
        thread = threading.Thread(target=target, name="heartbeat")
        thread.start()
        thread.join()
    output = stream.getvalue()
    assert output.count("thread_crashed") == 2 and "heartbeat" in output
    assert "RuntimeError" in output and "ValueError" in output  # the tracebacks are there
    assert "local-secret-4f9a2c7e" not in output and "thread-secret-3c9d1f" not in output
    assert REDACTED in output


def _modules_after(statement: str) -> set[str]:
    """The modules a fresh interpreter holds after `statement` (this checkout first on the path)."""
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    root = str(Path(__file__).resolve().parents[2])
    done = subprocess.run(
        [sys.executable, "-c", f"import sys; sys.path.insert(0, {root!r}); {code}"],
        capture_output=True,
        text=True,
        check=True,
    )
    return set(done.stdout.split())


def test_logging_and_the_migrate_command_start_without_rich_or_the_inventory_reader() -> None:
    # structlog would import rich's traceback renderer and pretty-printer (a fifth of a start);
    # the S3 Inventory reader is for --source-inventory only.
    loaded = _modules_after("import migrate.cli, worker.cli")
    assert "structlog" in loaded and "replicator.logs" in loaded
    assert not {name for name in loaded if name == "rich" or name.startswith("rich.")}
    assert "migrate.inventory" not in loaded


def test_rich_still_loads_after_logging_for_the_progress_bar_and_the_summary() -> None:
    loaded = _modules_after(
        "import replicator.logs, structlog; import rich.progress, rich.table; "
        "assert structlog.dev.rich is None and sys.modules['rich'] is not None"
    )
    assert {"rich.progress", "rich.table"} <= loaded


def test_console_logs_keep_working_with_rich_hidden_from_structlog() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "console", stream=stream)
    get_logger("t").info("listed", keys=3)
    assert "listed" in stream.getvalue() and "keys=3" in stream.getvalue()
