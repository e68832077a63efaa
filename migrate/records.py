"""A run's findings per key (differences, failures, archived sources, ...): all counted, the
first ones kept in memory, every one on disk.

A --check of a bucket of 10^8 keys against a target that lacks most of them finds 10^8
differences: about 300 bytes each as dicts in a list (30 GB), and as many lines if printed.
Here the first `kept` stay in memory for the summary printed at the end, and once there are
more, every finding goes to a temporary JSON-lines file, read back only to write --report.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from typing import IO, Any, Generic, TypeVar, overload

T = TypeVar("T")

# What a summary prints is the first 50; a thousand leaves room for any caller that wants more.
KEPT = 1000


class Records(Generic[T]):
    """Append-only; iterating gives every finding in the order appended (JSON values only)."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._head: list[T] = []
        self._count = 0
        self._spill: IO[bytes] | None = None

    def append(self, item: T) -> None:
        self._count += 1
        if self._spill is None and self._count <= self._kept:
            self._head.append(item)
            return
        if self._spill is None:
            # Unlinked at once on Linux: gone when closed or when the process ends, however.
            self._spill = tempfile.TemporaryFile()  # noqa: SIM115 (closed in close())
            for earlier in self._head:
                self._spill.write(_line(earlier))
        # Readers read by offset (os.pread), so the position stays at the end for appends.
        self._spill.write(_line(item))

    def head(self, count: int) -> list[T]:
        """The first `count` findings (from memory while count <= kept)."""
        if count <= len(self._head):
            return self._head[:count]
        return [item for item, _ in zip(self, range(count), strict=False)]

    def __iter__(self) -> Iterator[T]:
        if self._spill is None:
            yield from list(self._head)
            return
        spill, offset, rest = self._spill, 0, b""
        while True:
            spill.flush()  # what was appended meanwhile is read too
            chunk = os.pread(spill.fileno(), _CHUNK, offset)
            if not chunk:
                return
            offset += len(chunk)
            *lines, rest = (rest + chunk).split(b"\n")
            for line in lines:
                yield json.loads(line)

    def __len__(self) -> int:
        return self._count

    def __bool__(self) -> bool:
        return self._count > 0

    @overload
    def __getitem__(self, index: int) -> T: ...
    @overload
    def __getitem__(self, index: slice) -> list[T]: ...
    def __getitem__(self, index: int | slice) -> T | list[T]:
        if isinstance(index, int) and 0 <= index < len(self._head):
            return self._head[index]
        return list(self)[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Records | list):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Records({len(self)} findings, first {self._head[:3]!r})"

    def clear(self) -> None:
        self.close()
        self._head = []
        self._count = 0

    def close(self) -> None:
        if self._spill is not None:
            self._spill.close()
            self._spill = None

    def write_json(self, out: IO[str]) -> None:
        """As a JSON array, one finding per line, without holding them all."""
        out.write("[")
        for number, item in enumerate(self):
            out.write(("," if number else "") + "\n    " + json.dumps(item, default=str))
        out.write("\n  ]" if self._count else "]")


_CHUNK = 1024 * 1024  # read back a megabyte at a time


def _line(item: Any) -> bytes:
    # ASCII (json escapes the rest, newlines included): one finding, one line.
    return json.dumps(item).encode("ascii") + b"\n"


def as_count(value: Any) -> Any:
    """For models that count findings: a list or Records becomes its length."""
    if isinstance(value, Records | list | tuple):
        return len(value)
    return value
