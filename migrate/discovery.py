"""Split points that cut the source's key space into shards of about equal key counts, found
with a few requests instead of a listing.

Keys live in folders, and a folder is sized with two requests: its first page of 1,000 keys (a
folder that fits is counted exactly, and so is each subfolder the page holds whole) and one page
listed with Delimiter "/" (its files and subfolders by name). Subfolders not seen whole count as
the median of their siblings that were; when none was, one is sized the same way (at the top,
and in a folder that holds a single folder, every one while the budget lasts). A folder of more
than 1,000 direct entries (a flat folder of millions of names) is sized by galloping along its
names: each probe lands twice as far past the last page as the one before, along a `Projection`
of the names seen, until one lands past the folder; the stretch it jumped is then halved a few
times; counts between probes are interpolated from the pages' densities.

The split points are read off the estimated counts in the merge order: a file, a folder's start,
or a point inside a flat folder snapped to a real key by one more 1-key probe. The result depends
only on the source's keys, so every shard computes the same ranges on its own.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from migrate.keyspace import KeyRange, Order, Projection, ordered, ranges_between, unordered
from migrate.listing import PAGE_KEYS, Lister

BISECTIONS = 3  # halvings of the stretch a gallop jumped (where does the folder end?)
MAX_DEPTH = 4  # folders below the top sized one by one at most this deep


def probe_budget(shards: int) -> int:
    """Requests one shard spends on discovery at most, snapping included (in the README)."""
    return 32 + 4 * shards


@runtime_checkable
class FolderListing(Lister, Protocol):
    """A store's listing, which can also list one folder's entries with Delimiter "/"."""

    def folders(self, prefix: str, start_after: str | None = None) -> tuple[list[str], list[str], bool]: ...


@dataclass
class _Node:
    """An entry of a folder, in merge order: a key, or a subfolder with its estimated count."""

    name: str  # merge-order string: the key, or the folder's prefix
    count: float
    keys: list[str] | None = None  # every key, when the folder was counted exactly
    children: list[_Node] | None = None  # its entries, when listed with Delimiter
    flat: _Flat | None = None  # its estimate from galloping


@dataclass
class _Run:
    after: str | None
    keys: list[str]
    complete: bool  # the folder has no key after the last one


@dataclass
class _Flat:
    """A flat folder's pages seen while galloping, and the estimate between them."""

    name: str
    runs: list[_Run] = field(default_factory=list)
    end: str | None = None  # none of its keys lie above this

    def projection(self) -> Projection:
        return Projection((k for run in self.runs for k in run.keys), self.name)

    def segments(self) -> list[tuple[str, str | None, float, bool]]:
        """(low, high, keys, known) along the folder: pages seen and estimated stretches."""
        projection = self.projection()
        runs = sorted(self.runs, key=lambda run: run.keys[0])
        out: list[tuple[str, str | None, float, bool]] = []
        seen: str | None = None
        for index, run in enumerate(runs):
            keys = [key for key in run.keys if seen is None or key > seen]
            if keys:
                out.append((keys[0], keys[-1], float(len(keys)), True))
                seen = keys[-1]
            if run.complete or seen is None:
                continue
            density = _density(run.keys, projection)
            following = runs[index + 1] if index + 1 < len(runs) else None
            if following is None:
                # Past the last page: the folder ends before its known end (half that width at
                # this density, on average).
                top = projection.value(self.end) if self.end is not None else projection.scale
                width = max(top - projection.value(seen), 0)
                out.append((seen, self.end, width * density / 2, False))
                continue
            if following.keys[0] <= seen:
                continue
            width = max(projection.value(following.keys[0]) - projection.value(seen), 0)
            estimate = width * (density + _density(following.keys, projection)) / 2
            out.append((seen, following.keys[0], estimate, False))
        return out


def _spread(items: list[str], count: int) -> list[str]:
    """`count` of the items, evenly spread (the first included)."""
    if count <= 0 or not items:
        return []
    if count >= len(items):
        return items
    return [items[i * len(items) // count] for i in range(count)]


def _density(keys: list[str], projection: Projection) -> float:
    width = projection.value(keys[-1]) - projection.value(keys[0])
    return len(keys) / width if width > 0 else 0.0


@dataclass
class Discovery:
    lister: FolderListing
    order: Order
    prefix: str = ""
    budget: int = 64
    requests: int = 0

    def __post_init__(self) -> None:
        self.separator = "\x00" if self.order is Order.TREE else "/"

    # -- requests -------------------------------------------------------------------------------

    def _page(self, prefix: str, after: str | None, max_keys: int = PAGE_KEYS) -> tuple[list[str], bool]:
        """(merge-order keys after `after`, whether the page was full)."""
        raw = unordered(after, self.order) if after is not None else None
        self.requests += 1
        page = next(self.lister.pages(unordered(prefix, self.order), raw, max_keys), [])
        keys = sorted(ordered(entry["Key"], self.order) for entry in page)
        return [key for key in keys if after is None or key > after], len(page) >= max_keys

    def _folders(self, prefix: str) -> tuple[list[str], list[str], bool]:
        self.requests += 1
        files, folders, more = self.lister.folders(unordered(prefix, self.order))
        return [ordered(k, self.order) for k in files], [ordered(f, self.order) for f in folders], more

    def _left(self) -> bool:
        return self.requests < self.budget

    # -- sizing ---------------------------------------------------------------------------------

    def size(self, prefix: str, depth: int = 0) -> _Node:
        """The folder's estimated count and entries. At the top every subfolder not seen whole
        is sized in turn while the budget lasts; deeper, one is, when no sibling was seen whole."""
        keys, full = self._page(prefix, None)
        if not full:
            return _Node(prefix, float(len(keys)), keys=keys)
        if not self._left():
            return _Node(prefix, float(len(keys)) * 2)  # at least a page more: a guess
        files, folders, more = self._folders(prefix)
        if more:
            return self._gallop(prefix, keys)
        children = [_Node(key, 1.0) for key in files]
        # The first page holds whole every subfolder it reaches past.
        whole: dict[str, list[str]] = {}
        for key in keys:
            folder = self._subfolder(prefix, key)
            if folder is not None:
                whole.setdefault(folder, []).append(key)
        if keys:
            whole.pop(self._subfolder(prefix, keys[-1]) or "", None)  # cut off by the page's end
        sized = {name: _Node(name, float(len(ks)), keys=ks) for name, ks in whole.items()}
        unknown = [name for name in folders if name not in sized]
        wanted = len(unknown) if depth == 0 else (0 if sized else 1)
        # A folder that only holds one folder is no level of its own (`data/2026/...`).
        below = depth if len(folders) == 1 and not files else depth + 1
        for name in _spread(unknown, wanted):
            if not self._left() or below > MAX_DEPTH:
                break
            sized[name] = self.size(name, below)
        # The median, not the mean: one big folder sized among small ones must not make every
        # folder not sized look big.
        typical = statistics.median(node.count for node in sized.values()) if sized else float(PAGE_KEYS)
        children += [sized.get(name) or _Node(name, typical) for name in folders]
        children.sort(key=lambda node: node.name)
        return _Node(prefix, sum(node.count for node in children), children=children)

    def _subfolder(self, prefix: str, key: str) -> str | None:
        index = key.find(self.separator, len(prefix))
        return key[: index + 1] if index >= 0 else None

    def _gallop(self, prefix: str, first: list[str]) -> _Node:
        flat = _Flat(prefix, [_Run(None, first, False)])
        step = 0
        while self._left():
            projection = flat.projection()
            last_run = max(flat.runs, key=lambda run: run.keys[-1])
            last = last_run.keys[-1]
            low = projection.value(last)
            step = max(2 * step, low - projection.value(last_run.keys[0]), 1)
            point = projection.key_at(low + step)
            if not point > last:
                point = projection.between(last, None) or ""
            if not point > last:
                break
            keys, full = self._page(prefix, point)
            if not keys:
                flat.end = point
                self._bisect(flat, last, point)
                break
            flat.runs.append(_Run(point, keys, not full))
            if not full:
                break
            projection = flat.projection()
            span = projection.value(keys[-1]) - projection.value(keys[0])
            if projection.value(keys[0]) - projection.value(point) > max(span, 1):
                # The probe jumped an empty stretch wider than its page: the names go on in
                # another pattern. Where the last pattern ended lies between `last` and here.
                self._bisect(flat, last, point)
                step = 0
        return _Node(prefix, sum(s[2] for s in flat.segments()), flat=flat)

    def _bisect(self, flat: _Flat, low: str, high: str) -> None:
        for _ in range(BISECTIONS):
            if not self._left():
                return
            point = flat.projection().between(low, high)
            if point is None:
                return
            keys, full = self._page(flat.name, point)
            if keys:
                flat.runs.append(_Run(point, keys, not full))
                if not full:
                    return
                low = keys[-1]  # the folder reaches past the point: look higher
            else:
                high = flat.end = point  # nothing of it from the point on: look lower

    # -- split points ---------------------------------------------------------------------------

    def splits(self, root: _Node, shards: int) -> list[str]:
        """Raw keys (or folder prefixes) where shards 1..n-1 start."""
        if root.count <= 0:
            return []
        wanted = [root.count * j / shards for j in range(1, shards)]
        points = [self._point(root, share) for share in wanted]
        return [unordered(p, self.order) for p in sorted({p for p in points if p})]

    def _point(self, node: _Node, position: float) -> str:
        """The key (or folder start) at `position` keys into the node, in merge order."""
        if node.keys is not None:
            index = min(len(node.keys) - 1, max(0, int(position)))
            return node.keys[index] if node.keys else ""
        if node.children is not None:
            for child in node.children:
                if position < child.count:
                    if child.keys is None and child.children is None and child.flat is None:
                        # Not sized inside: cut at its start, or at the next entry's.
                        following = self._after(node, child)
                        return child.name if position < child.count / 2 or not following else following
                    return self._point(child, position)
                position -= child.count
            return ""
        if node.flat is not None:
            return self._in_flat(node.flat, position)
        return ""

    @staticmethod
    def _after(parent: _Node, child: _Node) -> str:
        children = parent.children or []
        index = children.index(child)
        return children[index + 1].name if index + 1 < len(children) else ""

    def _in_flat(self, flat: _Flat, position: float) -> str:
        projection = flat.projection()
        for low, high, count, known in flat.segments():
            if position >= count:
                position -= count
                continue
            if known:
                keys = sorted({k for run in flat.runs for k in run.keys if low <= k <= (high or low)})
                return keys[min(len(keys) - 1, int(position))] if keys else ""
            bottom = projection.value(low)
            top = projection.value(high) if high is not None else projection.scale
            point = projection.key_at(bottom + int(position / count * (top - bottom)))
            if not point > low:
                return ""
            keys, _ = self._page(flat.name, point, max_keys=1)  # snapped to the next key
            return keys[0] if keys and (high is None or keys[0] <= high) else ""
        return ""


def _counted_splits(lister: Lister, order: Order, prefix: str, shards: int) -> list[str]:
    """Exact split points from a listing that costs no request (an S3 Inventory): two passes."""
    total = sum(len(page) for page in lister.pages(prefix, None))
    wanted = [total * j // shards for j in range(1, shards)]
    keys: list[str] = []
    seen = 0
    for page in lister.pages(prefix, None):
        while wanted and seen + len(page) > wanted[0]:
            keys.append(ordered(page[wanted.pop(0) - seen]["Key"], order))
        seen += len(page)
    return [unordered(key, order) for key in sorted(set(keys))]


def shard_ranges(lister: Lister, order: Order, prefix: str, shards: int) -> tuple[list[KeyRange], int]:
    """All shards' ranges (shard i takes the i-th) and the LIST requests spent finding them."""
    if shards == 1:
        return [KeyRange()], 0
    if not isinstance(lister, FolderListing):
        return _pad(ranges_between(_counted_splits(lister, order, prefix, shards)), shards), 0
    discovery = Discovery(lister, order, ordered(prefix, order), probe_budget(shards) - (shards - 1))
    root = discovery.size(ordered(prefix, order))
    discovery.budget += shards - 1  # the snapping probes
    return _pad(ranges_between(discovery.splits(root, shards)), shards), discovery.requests


def _pad(ranges: list[KeyRange], shards: int) -> list[KeyRange]:
    while len(ranges) < shards:  # fewer keys than shards: the last shards get empty ranges
        end = ranges[-1].end or "\U0010ffff"
        ranges.append(KeyRange(end, end))
    return ranges[:shards]
