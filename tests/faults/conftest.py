"""The fault-injection suite: each case ends with source == target and no incomplete upload.

Figures from the last run are written to tests/faults/results.md.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest

from local_stack.compare import bucket_contents, differences
from local_stack.fault_proxy import FaultPlan, FaultProxy
from local_stack.stack import LocalStack

RESULTS = Path(__file__).parent / "results.md"


@dataclass
class FaultReport:
    cases: list[dict[str, Any]] = field(default_factory=list)

    def add(self, case: str, **figures: Any) -> None:
        self.cases.append({"case": case, **figures})

    def write(self) -> None:
        lines = [
            "# Fault-injection results",
            "",
            f"Last run: {datetime.now(UTC).isoformat(timespec='seconds')}, written by `make test-faults` "
            "(also part of `make test`). Every case ends with a byte-for-byte comparison of source and "
            "target and a check that no incomplete multipart upload is left on the target.",
            "",
            "| case | faults injected | objects checked | objects lost | details |",
            "|---|---:|---:|---:|---|",
        ]
        for case in self.cases:
            details = {k: v for k, v in case.items() if k not in ("case", "faults", "objects", "lost")}
            lines.append(
                f"| {case['case']} | {case.get('faults', 0)} | {case.get('objects', 0)} | "
                f"{case.get('lost', 0)} | {json.dumps(details) if details else ''} |"
            )
        total_faults = sum(c.get("faults", 0) for c in self.cases)
        total_objects = sum(c.get("objects", 0) for c in self.cases)
        total_lost = sum(c.get("lost", 0) for c in self.cases)
        lines += [
            "",
            f"Cases run: {len(self.cases)}; faults injected: {total_faults}; objects checked: "
            f"{total_objects}; objects lost: {total_lost}.",
            "",
        ]
        RESULTS.write_text("\n".join(lines))


@pytest.fixture(scope="session")
def fault_report() -> Iterator[FaultReport]:
    report = FaultReport()
    yield report
    if report.cases:
        report.write()


@pytest.fixture(scope="module")
def stack() -> Iterator[LocalStack]:
    with pytest.MonkeyPatch.context() as mp:
        for name in ("AWS_ENDPOINT_URL", "QUEUE_URL"):
            mp.delenv(name, raising=False)
        local = LocalStack(max_receive_count=3).start(invoker_thread=False)
        try:
            yield local
        finally:
            local.stop()


def verify(stack: LocalStack, prefix: str) -> int:
    """Source == target under prefix, byte for byte, and no upload left; returns objects checked."""
    source = bucket_contents(stack.source(), stack.source_bucket, prefix)
    target = bucket_contents(stack.target(), stack.target_bucket, prefix)
    assert differences(source, target) == []
    uploads = (
        stack.target().list_multipart_uploads(Bucket=stack.target_bucket, Prefix=prefix).get("Uploads", [])
    )
    assert uploads == []
    return len(source)


class PartCountingProxy(FaultProxy):
    """Forwards everything untouched; counts the UploadPart requests and holds each one for
    `part_delay` seconds, so that a copy is reliably caught part-way."""

    def __init__(self, upstream: str, part_delay: float = 0.0) -> None:
        super().__init__(upstream, FaultPlan())
        self.part_delay = part_delay
        self.parts = 0
        self._count_lock = threading.Lock()

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        if request.command == "PUT" and "partNumber=" in request.path:
            with self._count_lock:
                self.parts += 1
            time.sleep(self.part_delay)
        super().handle(request)
