"""The key space: the order a store lists keys in, key ranges, and split points between keys.

S3 and Lyve Cloud list keys in UTF-8 byte order. SeaweedFS walks its directory tree instead: a
key sorts as its `/`-separated segments do ("d/sub/x" before "d/sub-a"), which is byte order
with "/" taken as the lowest character. Both are total orders a listing can be merged in; a
store known to list in neither is sorted per range on disk.

A `KeyRange` is the half-open interval [start, end) in the order both sides are merged in. Ranges
are disjoint, so they are listed and merged independently, in any order, by several threads or
several tasks. `Projection` maps keys to numbers in [0, 1) preserving that order, so that a point
between two keys (a split point, a probe) can be computed without listing what lies between.
"""

from __future__ import annotations

import bisect
import enum
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

from replicator.aws_endpoint import on_aws
from replicator.clients import Endpoint

_TREE_SEPARATOR = "\x00"  # "/" in tree order: below every character a key can hold in XML
_LYVE_HOSTS = (".lyvecloud.seagate.com", ".lyve.seagate.com")


class Order(enum.StrEnum):
    BYTE = "byte"  # UTF-8 byte order: S3, Lyve Cloud, MinIO
    TREE = "tree"  # by path segments: SeaweedFS


def ordered(key: str, order: Order) -> str:
    """A string whose code-point order (= UTF-8 byte order) is the key's order in `order`."""
    return key.replace("/", _TREE_SEPARATOR) if order is Order.TREE else key


def unordered(text: str, order: Order) -> str:
    return text.replace(_TREE_SEPARATOR, "/") if order is Order.TREE else text


def known_order(endpoint: Endpoint, server: str) -> Order | None:
    """The order the store lists in, when it is known: from its host, else its Server header."""
    host = (urlsplit(endpoint.url).hostname or "").lower()
    if on_aws(endpoint) or host.endswith(_LYVE_HOSTS) or server.startswith(("AmazonS3", "MinIO")):
        return Order.BYTE
    if server.startswith("SeaweedFS"):
        return Order.TREE
    return None


def key_before(key: str) -> str:
    """A string just below `key` in byte order, for StartAfter: only strings that start with the
    result itself lie between the two (UTF-8 byte order is code point order)."""
    last = ord(key[-1])
    if last == 0:
        return key[:-1]
    below = last - 1
    if 0xD800 <= below <= 0xDFFF:  # surrogates are not characters: skip to the one before
        below = 0xD7FF
    return key[:-1] + chr(below) + "\U0010ffff"


def start_after(start: str | None, order: Order) -> str | None:
    """The StartAfter that lists a range starting at `start` (inclusive) in `order`.

    In tree order SeaweedFS lists after a StartAfter by its directory entries: a StartAfter that
    names a directory exactly skips that directory's keys. Starting just below the first path
    segment's name that differs never does; keys listed below `start` are dropped by the caller.
    """
    if start is None:
        return None
    if order is Order.BYTE:
        return key_before(start)
    trimmed = start.rstrip("/")
    return key_before(trimmed) if trimmed else None


def shared_prefix(a: str, b: str) -> str:
    length = 0
    while length < min(len(a), len(b)) and a[length] == b[length]:
        length += 1
    return a[:length]


@dataclass(frozen=True)
class KeyRange:
    """Keys k with start <= k < end in the merge order (None: unbounded). Both ends are raw keys."""

    start: str | None = None
    end: str | None = None

    def listing_prefix(self, prefix: str, order: Order) -> str:
        """A Prefix for ListObjectsV2 that every key of the range has: the user's prefix, or the
        longer one both ends share (every string between two strings shares their prefix)."""
        if self.start is None or self.end is None:
            return prefix
        common = unordered(shared_prefix(ordered(self.start, order), ordered(self.end, order)), order)
        return common if common.startswith(prefix) else prefix

    def describe(self) -> str:
        return f"[{self.start!r}, {self.end!r})"


def ranges_between(splits: list[str]) -> list[KeyRange]:
    """The ranges that the sorted split keys cut the whole key space into."""
    bounds: list[str | None] = [None, *splits, None]
    return [KeyRange(bounds[i], bounds[i + 1]) for i in range(len(bounds) - 1)]


_DIGITS, _LOWER, _UPPER = "0123456789", "abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _widened(chars: set[str]) -> set[str]:
    """The characters a position may hold, from those seen there: a digit stands for all ten
    (the next keys count on), two letters or more for their alphabet, or only for a-f (A-F)
    when no letter past f was seen (hex names). One letter alone is taken for a fixed part of
    the names ("logs", "flat"): widened, it would put split points in names that do not exist."""
    wide = set(chars)
    if wide & set(_DIGITS):
        wide.update(_DIGITS)
    for letters in (_LOWER, _UPPER):
        seen = wide & set(letters)
        if len(seen) > 1:
            wide.update(letters[:6] if max(seen) <= letters[5] else letters)
    return wide


class Projection:
    """Keys (in `ordered` form) to integers in [0, scale), monotone in the merge order.

    The characters after `prefix` are read as the digits of a mixed-radix number, position by
    position in the alphabet the samples use at that position (a digit or a letter brings its
    whole class): sequential names count in decimal, so keys spread evenly. A character a position has not
    shown counts as its lower neighbour, and a key that ends as if it went on with the lowest
    digit: monotone, if not strictly. Integers, not floats: keys that differ only far into
    their names are still told apart.
    """

    DEPTH = 48

    def __init__(self, samples: Iterable[str], prefix: str = "") -> None:
        """`prefix`: what every key of the space starts with (the samples' shared prefix may
        be longer: unseen keys need not share it)."""
        start = len(prefix)
        columns: list[set[str]] = [set() for _ in range(self.DEPTH)]
        for key in set(samples):
            if key.startswith(prefix):
                rest = key[start : start + self.DEPTH]
                for index, char in enumerate(rest):
                    columns[index].add(char)
                if len(rest) < self.DEPTH:
                    columns[len(rest)].add("")  # keys end here: the lowest digit
        self.prefix = prefix
        self.columns = [sorted(_widened(column)) or [""] for column in columns]
        self.weights = [1] * self.DEPTH  # the value of one step at each position
        for index in range(self.DEPTH - 2, -1, -1):
            self.weights[index] = self.weights[index + 1] * len(self.columns[index + 1])
        self.scale = self.weights[0] * len(self.columns[0])

    def value(self, key: str) -> int:
        if not key.startswith(self.prefix):
            return 0 if key < self.prefix else self.scale - 1
        value = 0
        rest = key[len(self.prefix) : len(self.prefix) + self.DEPTH]
        for index, char in enumerate(rest):
            digit = bisect.bisect_right(self.columns[index], char) - 1
            if digit < 0:  # below every digit seen here: just below this position's first
                return value
            if self.columns[index][digit] != char:  # between two digits: the top of the lower one
                return value + (digit + 1) * self.weights[index] - 1
            value += digit * self.weights[index]
        return value

    def key_at(self, value: int) -> str:
        value = min(max(value, 0), self.scale - 1)
        chars = []
        for index in range(self.DEPTH):
            digit, value = divmod(value, self.weights[index])
            char = self.columns[index][digit]
            if not char:  # the key ends here
                break
            chars.append(char)
        return self.prefix + "".join(chars)

    def between(self, low: str, high: str | None) -> str | None:
        """A string strictly between `low` and `high` (None: the end of the key space) near
        their midpoint, or None when the projection cannot tell them apart."""
        top = self.scale if high is None else self.value(high)
        point = self.key_at((self.value(low) + top) // 2)
        if point > low and (high is None or point < high):
            return point
        return None
