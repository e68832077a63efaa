from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from local_stack.stack import LocalStack


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    """moto + SeaweedFS on loopback; stopped (with any worker it started) after the module."""
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ENDPOINT_URL", "QUEUE_URL"):
            mp.delenv(name, raising=False)
        local = LocalStack().start(invoker_thread=False)
        try:
            yield local
        finally:
            local.stop()


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:8]}/"
