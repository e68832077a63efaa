from __future__ import annotations

import io
import json
import logging
import threading

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
