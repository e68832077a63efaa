"""A run's findings per key (differences, failures, archived sources, ...): all counted, the
first ones kept in memory, every one on disk.

A --check of a bucket of 10^8 keys against a target that lacks most of them finds 10^8
differences: about 300 bytes each as dicts in a list (30 GB), and as many lines if printed.
Here the first `kept` stay in memory for the summary printed at the end, and once there are
more, every finding goes to a temporary JSON-lines file, read back only to write --report.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from typing import IO, Any, Generic, TypeVar, overload

T = TypeVar("T")

# What a summary prints is the first 20; a thousand leaves room for any caller that wants more.
KEPT = 1000


class Records(Generic[T]):
    """Append-only; iterating gives every finding in the order appended (JSON values only)."""

    def __init__(self, kept: int = KEPT) -> None:
        self._kept = kept
        self._head: list[T] = []
        self._count = 0
        self._spill: IO[str] | None = None

    def append(self, item: T) -> None:
        self._count += 1
        if self._spill is None and self._count <= self._kept:
            self._head.append(item)
            return
        if self._spill is None:
            # Unlinked at once on Linux: gone when closed or when the process ends, however.
            self._spill = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115 (closed in close())
            for earlier in self._head:
                self._spill.write(json.dumps(earlier) + "\n")
        # A reader may have left the position anywhere: appends go to the end.
        self._spill.seek(0, 2)
        self._spill.write(json.dumps(item) + "\n")

    def head(self, count: int) -> list[T]:
        """The first `count` findings (from memory while count <= kept)."""
        if count <= len(self._head):
            return self._head[:count]
        return [item for item, _ in zip(self, range(count), strict=False)]

    def __iter__(self) -> Iterator[T]:
        if self._spill is None:
            yield from list(self._head)
            return
        self._spill.flush()
        self._spill.seek(0)
        offset = 0
        while True:
            # Re-seek each time: an append between two items moves the position to the end.
            self._spill.seek(offset)
            line = self._spill.readline()
            if not line:
                return
            offset = self._spill.tell()
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


def as_count(value: Any) -> Any:
    """For models that count findings: a list or Records becomes its length."""
    if isinstance(value, Records | list | tuple):
        return len(value)
    return value
