from __future__ import annotations

import io
import json
import logging

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
