"""Which keys a migration looks at: prefix, globs, sizes, ages (and the shard it was given)."""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from replicator.objects import ObjectInfo

_AGE = re.compile(r"^(\d+(?:\.\d+)?)\s*([smhdw])$")
_AGE_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SIZE = re.compile(r"^(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?$", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4}


def parse_size(text: str) -> int:
    """'1024', '5M', '5MiB', '1.5G' -> bytes (binary units)."""
    match = _SIZE.match(text.strip())
    if not match:
        raise ValueError(f"{text!r} is not a size (e.g. 100, 5M, 1.5GiB)")
    unit = (match.group(2) or "").lower()[:1]
    return int(float(match.group(1)) * _SIZE_UNITS[unit])


def parse_when(text: str, now: datetime | None = None) -> datetime:
    """An age ('7d', '12h', '30m') before now, or an ISO date/time ('2026-01-31')."""
    now = now or datetime.now(UTC)
    match = _AGE.match(text.strip())
    if match:
        return now - timedelta(**{_AGE_UNITS[match.group(2)]: float(match.group(1))})
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is neither an age (7d, 12h) nor an ISO date") from None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def parse_shard(text: str) -> tuple[int, int]:
    match = re.match(r"^(\d+)/(\d+)$", text.strip())
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ValueError(f"{text!r} is not a shard i/n with 0 <= i < n")
    return int(match.group(1)), int(match.group(2))


@dataclass(frozen=True)
class KeyFilter:
    prefix: str = ""
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    min_size: int | None = None
    max_size: int | None = None
    newer_than: datetime | None = None  # modified at or after
    older_than: datetime | None = None  # modified before
    shard: tuple[int, int] = (0, 1)  # key range i of n: the runner lists only that range
    _patterns: tuple[re.Pattern[str], ...] = field(default=(), init=False, repr=False, compare=False)

    def key_selected(self, key: str) -> bool:
        """The key-only part: applies to both sides (a target key outside it is left alone)."""
        if not key.startswith(self.prefix):
            return False
        if self.include and not any(fnmatch.fnmatchcase(key, p) for p in self.include):
            return False
        return not any(fnmatch.fnmatchcase(key, p) for p in self.exclude)

    def object_selected(self, obj: ObjectInfo) -> bool:
        """Size and age: properties of the source object."""
        if self.min_size is not None and obj.size < self.min_size:
            return False
        if self.max_size is not None and obj.size > self.max_size:
            return False
        modified = obj.last_modified
        if modified is not None:
            if self.newer_than is not None and modified < self.newer_than:
                return False
            if self.older_than is not None and modified >= self.older_than:
                return False
        return True

    @property
    def filters_objects(self) -> bool:
        return any(v is not None for v in (self.min_size, self.max_size, self.newer_than, self.older_than))
